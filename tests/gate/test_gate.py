"""The gate on a real build's report: passes, each kind of regression (exit 1), baseline round trip."""

from __future__ import annotations

import copy
import json

import pytest

from edgekit.gate import run_gate


def artifact_label(report, entry):
    """The gate names an accuracy entry by its artifact's name when the report lists it, else by path."""
    names = {artifact["path"]: artifact["name"] for artifact in report.get("artifacts", [])}
    return names.get(entry["artifact"], entry["artifact"])


def first(entries, **match):
    return next(e for e in entries if all(e.get(k) == v for k, v in match.items()))


def failing_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL")]


def write(report: dict, directory, name: str = "report.json"):
    path = directory / name
    path.write_text(json.dumps(report))
    return path


def test_a_good_report_passes(good_report, report_file, gate, capsys):
    assert gate([str(report_file(good_report))]) == 0
    out = capsys.readouterr().out
    assert failing_lines(out) == []
    int8_lines = [line for line in out.splitlines() if line.startswith("PASS int8 drop")]
    assert len(int8_lines) == sum(e["precision"] == "int8" for e in good_report["accuracy"])
    assert "gate passed" in out


def test_a_runtime_without_float_entry_is_compared_with_torch_float(good_report, tmp_path):
    report = copy.deepcopy(good_report)
    report["accuracy"] = [e for e in report["accuracy"]
                          if not (e["runtime"] == "litert" and e["precision"] == "float32")]
    result = run_gate(write(report, tmp_path))
    litert = [c for c in result.checks if c.kind == "int8_drop" and c.name.startswith("litert")]
    assert litert and "compared with the torch float model" in litert[0].detail


def test_the_report_as_built_today_passes_and_says_what_did_not_run(real_report, report_file, gate, capsys):
    assert gate([str(report_file(real_report))]) == 0
    out = capsys.readouterr().out
    if not any(e["precision"] == "int8" for e in real_report["accuracy"]):
        assert "the int8 drop check did not run" in out
    assert "the vs-baseline checks did not run" in out


def test_int8_drop_fails_with_one_readable_line(good_report, report_file, gate, capsys):
    entry = first(good_report["accuracy"], precision="int8", runtime="onnxruntime")
    reference = first(good_report["accuracy"], precision="float32", runtime="onnxruntime")
    entry["top1"] = reference["top1"] - 3.0
    assert gate([str(report_file(good_report))]) == 1
    (line,) = failing_lines(capsys.readouterr().out)
    assert line.startswith(f"FAIL int8 drop onnxruntime {entry['artifact']}: top-1 {entry['top1']:.2f} vs float")
    assert "drop 3.00 points; allowed 1.00 points" in line


def test_flags_override_the_recipe_thresholds(good_report, report_file, gate, capsys):
    entry = first(good_report["accuracy"], precision="int8", runtime="onnxruntime")
    entry["top1"] -= 2.0
    path = report_file(good_report)
    assert gate([str(path), "--max-int8-drop", "5"]) == 0
    good_report["recipe"]["gate"]["max_int8_drop"] = 5.0
    assert gate([str(report_file(good_report))]) == 0
    assert gate([str(report_file(good_report)), "--max-int8-drop", "0.1"]) == 1


def test_top1_drop_vs_baseline_fails(good_report, report_file, gate, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert gate([str(report_file(good_report)), "--write-baseline", str(baseline)]) == 0
    entry = first(good_report["accuracy"], runtime="onnxruntime", precision="int8")
    entry["top1"] -= 0.8
    new = str(report_file(good_report, "new.json"))
    assert gate([new, "--baseline", str(baseline), "--max-int8-drop", "5"]) == 1  # only the baseline check fails
    (line,) = failing_lines(capsys.readouterr().out)
    label = artifact_label(good_report, entry)
    assert line.startswith(f"FAIL top-1 vs baseline onnxruntime {label}: top-1 {entry['top1']:.2f}"), line
    assert "drop 0.80 points; allowed 0.50 points" in line


def test_latency_ratio_rise_fails_only_when_the_check_is_on(good_report, report_file, gate, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    gate([str(report_file(good_report)), "--write-baseline", str(baseline)])
    profile = next(p for p in good_report["profiles"] if p["ratio_to_float"] and p["obtained"] == "real")
    old = profile["ratio_to_float"]
    profile["ratio_to_float"] = old * 1.3
    path = str(report_file(good_report, "new.json"))
    capsys.readouterr()
    assert gate([path, "--baseline", str(baseline)]) == 0
    assert "max_latency_ratio_increase is null: the latency ratio check is off" in capsys.readouterr().out
    assert gate([path, "--baseline", str(baseline), "--max-latency-ratio-increase", "0.1"]) == 1
    (line,) = failing_lines(capsys.readouterr().out)
    assert line.startswith(f"FAIL latency ratio vs baseline {profile['device']} {profile['runtime']}")
    assert f"int8/float latency {old * 1.3:.3f} vs baseline {old:.3f} = +30.0%; allowed +10.0%" in line


def test_size_growth_fails(good_report, report_file, gate, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    gate([str(report_file(good_report)), "--write-baseline", str(baseline)])
    artifact = first(good_report["artifacts"], precision="int8")
    artifact["bytes"] = int(artifact["bytes"] * 1.5)
    assert gate([str(report_file(good_report, "new.json")), "--baseline", str(baseline),
                 "--max-size-increase", "0.1"]) == 1
    (line,) = failing_lines(capsys.readouterr().out)
    assert line.startswith(f"FAIL size vs baseline {artifact['name']}: size {artifact['bytes']:,} bytes")
    assert "allowed +10.0%" in line


def test_an_entry_missing_from_the_report_fails_against_the_baseline(good_report, tmp_path):
    baseline = run_gate(write(good_report, tmp_path), write_baseline=tmp_path / "b.json").baseline_written
    dropped = good_report["accuracy"].pop()
    result = run_gate(write(good_report, tmp_path, "new.json"), baseline=baseline)
    (failure,) = result.failures()
    assert failure.name == f"{dropped['runtime']} {artifact_label(good_report, dropped)}"
    assert "not measured in this report" in failure.detail


def test_write_baseline_round_trips(good_report, tmp_path):
    path = write(good_report, tmp_path)
    result = run_gate(path, write_baseline=tmp_path / "baseline.json")
    assert result.passed and result.baseline_written == str(tmp_path / "baseline.json")
    stored = json.loads((tmp_path / "baseline.json").read_text())
    assert stored["kind"] == "edgekit-gate-baseline" and stored["baseline_version"] == 2
    ratio = stored["latency_ratios"][0]
    assert {"delegate", "threads", "metric", "obtained"} <= set(ratio)
    assert stored["recipe"]["name"] == good_report["recipe"]["name"]
    assert stored["edgekit_version"] == good_report["edgekit_version"]
    assert len(stored["accuracy"]) == len(good_report["accuracy"])
    again = run_gate(path, baseline=tmp_path / "baseline.json", max_latency_ratio_increase=0.0, max_size_increase=0.0)
    kinds = {check.kind for check in again.checks}
    assert again.passed and kinds == {"complete", "int8_drop", "vs_baseline", "latency_ratio", "size"}


def test_a_report_json_works_as_the_baseline_and_the_recipe_names_it(good_report, tmp_path):
    baseline = write(good_report, tmp_path, "baseline-report.json")
    good_report["recipe"]["gate"]["baseline"] = str(baseline)
    result = run_gate(write(good_report, tmp_path))
    assert result.passed and result.baseline_path == str(baseline)
    assert any(check.kind == "vs_baseline" for check in result.checks)


def test_a_failing_gate_does_not_write_the_baseline(good_report, tmp_path):
    first(good_report["accuracy"], precision="int8")["top1"] = 0.0
    result = run_gate(write(good_report, tmp_path), max_int8_drop=0.0, write_baseline=tmp_path / "b.json")
    assert not result.passed and result.baseline_written is None
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("value", ["-1", "abc"])
def test_a_bad_threshold_flag_is_exit_2(good_report, report_file, gate, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gate([str(report_file(good_report)), "--max-int8-drop", value])
    assert exit_info.value.code == 2
    assert "--max-int8-drop" in capsys.readouterr().err


def test_an_int8_entry_with_no_float_entry_at_all_fails(good_report, tmp_path):
    good_report["accuracy"] = [e for e in good_report["accuracy"] if e["precision"] == "int8"]
    result = run_gate(write(good_report, tmp_path))
    assert result.exit_code == 1
    assert all("no float accuracy entry to compare with" in check.detail for check in result.failures())


def test_a_one_thread_baseline_is_not_compared_with_a_two_thread_run(good_report, tmp_path, capsys, gate):
    baseline = tmp_path / "baseline.json"
    run_gate(write(good_report, tmp_path), write_baseline=baseline)
    profile = next(p for p in good_report["profiles"] if p["ratio_to_float"] and p["obtained"] == "real")
    profile.update(threads=2, ratio_to_float=profile["ratio_to_float"] * 1.5)  # 2 threads: another ratio
    path = write(good_report, tmp_path, "new.json")
    assert gate([str(path), "--baseline", str(baseline), "--max-latency-ratio-increase", "0.1"]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("NOT COMPARABLE")]
    assert line.startswith(f"NOT COMPARABLE latency ratio vs baseline {profile['device']} {profile['runtime']}/"
                           f"{profile['delegate']} 1t ")
    assert f"measured here with {profile['delegate']} 2t, in the baseline with {profile['delegate']} 1t" in line
    assert "(1 not comparable)" in out.splitlines()[-1]


def test_another_delegate_is_not_compared_either(good_report, tmp_path):
    baseline = tmp_path / "baseline.json"
    run_gate(write(good_report, tmp_path), write_baseline=baseline)
    profile = next(p for p in good_report["profiles"] if p["ratio_to_float"] and p["obtained"] == "real")
    profile.update(delegate="gpu", ratio_to_float=profile["ratio_to_float"] * 3)
    result = run_gate(write(good_report, tmp_path, "new.json"), baseline=baseline, max_latency_ratio_increase=0.1)
    assert result.passed
    (check,) = result.not_comparable()
    assert "measured here with gpu 1t" in check.detail


def test_the_same_settings_are_still_compared(good_report, tmp_path):
    baseline = tmp_path / "baseline.json"
    run_gate(write(good_report, tmp_path), write_baseline=baseline)
    profile = next(p for p in good_report["profiles"] if p["ratio_to_float"] and p["obtained"] == "real")
    profile["ratio_to_float"] *= 1.5
    result = run_gate(write(good_report, tmp_path, "new.json"), baseline=baseline, max_latency_ratio_increase=0.1)
    (failure,) = result.failures()
    assert failure.kind == "latency_ratio" and failure.measured == pytest.approx(0.5)
