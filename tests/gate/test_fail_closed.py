"""The gate fails closed: an incomplete report or a gate that checked nothing is exit 1; a file it cannot
read safely (huge, deeply nested, endless digits) or an output it cannot write is exit 2, one line, fast.
An old (version-1) baseline still gates, and so does an old report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgekit.report.schema import MAX_JSON_BYTES

from .test_inputs_and_outputs import error_line

REPO = Path(__file__).resolve().parents[2]
SMOKE_BASELINE = REPO / "baselines" / "smoke.json"  # written by edgekit 0.1 (baseline version 1): kept as is
V1_REPORT = REPO / "tests" / "report" / "data" / "report_v1.json"


def lines_of(capsys, prefix: str) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(prefix)]


# --- incomplete reports and empty gates: exit 1, saying why ---------------------------------------------


def test_an_incomplete_report_fails_and_names_the_missing_stages(good_report, report_file, gate, capsys):
    build = good_report["build"]
    build.update(complete=False, stages_finished=build["stages_planned"][:3])
    missing = ", ".join(build["stages_planned"][3:])
    assert gate([str(report_file(good_report))]) == 1
    (line,) = lines_of(capsys, "FAIL")
    assert line.startswith(f"FAIL build complete: build incomplete: stages not finished: {missing}")


def test_a_complete_report_says_so(good_report, report_file, gate, capsys):
    assert gate([str(report_file(good_report))]) == 0
    planned = len(good_report["build"]["stages_planned"])
    assert f"PASS build complete: {planned} of {planned} planned stages finished" in capsys.readouterr().out


def test_a_gate_that_checked_nothing_fails(good_report, report_file, gate, capsys):
    good_report["accuracy"] = [e for e in good_report["accuracy"] if e["precision"] == "float32"]
    good_report["recipe"]["gate"]["baseline"] = None
    assert gate([str(report_file(good_report))]) == 1
    (line,) = lines_of(capsys, "FAIL")
    assert line.startswith("FAIL checks run: the gate ran no check: the report has no int8 accuracy entry and no "
                           "baseline was compared")


def test_only_not_comparable_ratios_are_no_check_either(good_report, report_file, gate, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert gate([str(report_file(good_report)), "--write-baseline", str(baseline)]) == 0
    stored = json.loads(baseline.read_text())
    stored.update(accuracy=[], sizes=[])
    for ratio in stored["latency_ratios"]:
        ratio["threads"] = 8
    baseline.write_text(json.dumps(stored))
    good_report["accuracy"] = [e for e in good_report["accuracy"] if e["precision"] == "float32"]
    capsys.readouterr()
    code = gate([str(report_file(good_report)), "--baseline", str(baseline), "--max-latency-ratio-increase", "0.1"])
    assert code == 1
    assert any(line.startswith("FAIL checks run") for line in capsys.readouterr().out.splitlines())


# --- old baselines and old reports still gate -----------------------------------------------------------


def test_the_old_smoke_baseline_gates_an_old_report(gate, capsys):
    assert json.loads(SMOKE_BASELINE.read_text())["baseline_version"] == 1
    assert gate([str(V1_REPORT), "--baseline", str(SMOKE_BASELINE), "--max-latency-ratio-increase", "0.1"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("PASS top-1 vs baseline") for line in out.splitlines()) == 7
    assert sum(line.startswith("PASS size vs baseline") for line in out.splitlines()) == 6
    # version 1 recorded no delegate and threads: its ratios are not compared with a run of unknown settings
    not_comparable = [line for line in out.splitlines() if line.startswith("NOT COMPARABLE latency ratio")]
    assert len(not_comparable) == 8
    assert all("the baseline (version 1) does not record delegate and threads" in line for line in not_comparable)


def test_the_old_smoke_baseline_still_catches_a_regression(tmp_path, gate, capsys):
    report = json.loads(V1_REPORT.read_text())
    next(e for e in report["accuracy"] if e["method"] == "qat" and e["runtime"] == "litert")["top1"] -= 1.5
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert gate([str(path), "--baseline", str(SMOKE_BASELINE)]) == 1
    (line,) = lines_of(capsys, "FAIL")
    assert line.startswith("FAIL top-1 vs baseline litert qat_tflite: top-1 70.10 vs baseline 71.60")


def test_the_old_smoke_baseline_gates_a_current_report(real_report, report_file, gate, capsys):
    assert gate([str(report_file(real_report)), "--baseline", str(SMOKE_BASELINE),
                 "--max-drop-vs-baseline", "100", "--max-size-increase", "0.5"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("PASS top-1 vs baseline") for line in out.splitlines()) == 7
    assert sum(line.startswith("PASS size vs baseline") for line in out.splitlines()) == 6


# --- files the gate cannot read safely: exit 2, one line, within a second or two ------------------------


@pytest.mark.parametrize("content, expected", [
    ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep"),
    ('{"schema_version": ' + "7" * 100_000 + "}", "a number with 100,000 digits"),
    ('{"a": ' * 65 + "1" + "}" * 65, "nested more than 64 levels deep"),  # deep, yet within Python's recursion
])
def test_a_report_too_deep_or_with_endless_digits_is_exit_2(tmp_path, gate, capsys, content, expected):
    path = tmp_path / "report.json"
    path.write_text(content)
    started = time.perf_counter()
    assert gate([str(path)]) == 2
    assert time.perf_counter() - started < 3
    assert f"report {path}: {expected}" in error_line(capsys)


def test_a_huge_file_is_not_read(tmp_path, gate, capsys):
    path = tmp_path / "report.json"
    with path.open("wb") as file:  # sparse: no disk space used
        file.truncate(MAX_JSON_BYTES * 8)
    started = time.perf_counter()
    assert gate([str(path)]) == 2
    assert time.perf_counter() - started < 3
    assert f"report {path}: larger than 16 MiB, too large for a report; not read" in error_line(capsys)


def test_a_deeply_nested_baseline_is_exit_2(good_report, report_file, gate, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    baseline.write_text('{"kind": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert gate([str(report_file(good_report)), "--baseline", str(baseline)]) == 2
    assert f"baseline {baseline}: nested more than 64 levels deep" in error_line(capsys)


# --- outputs it cannot write: exit 2 before any work -----------------------------------------------------


@pytest.mark.parametrize("flag", ["--junit", "--write-baseline"])
def test_an_output_at_a_directory_is_refused_before_the_report_is_read(gate, tmp_path, capsys, flag):
    missing_report = tmp_path / "no-such-report.json"
    assert gate([str(missing_report), flag, str(tmp_path)]) == 2
    assert f"{flag} {tmp_path}: is a directory, not a file" in error_line(capsys)


@pytest.mark.parametrize("flag", ["--junit", "--write-baseline"])
def test_an_output_below_a_file_is_refused(good_report, report_file, gate, capsys, flag):
    path = report_file(good_report)
    assert gate([str(path), flag, f"{path}/out.xml"]) == 2
    assert f"{flag} {path}: is a file, not a directory" in error_line(capsys)
    assert json.loads(path.read_text()) == good_report  # untouched


def test_a_junit_file_in_a_new_directory_is_written(good_report, report_file, gate, tmp_path):
    junit = tmp_path / "ci" / "gate.xml"
    assert gate([str(report_file(good_report)), "--junit", str(junit)]) == 0
    assert junit.read_text().startswith("<?xml")
