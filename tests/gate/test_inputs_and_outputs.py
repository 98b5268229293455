"""Bad input is exit 2 with one line naming the file; --json and --junit are machine-readable."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("edgekit: error: ")
    return err


def test_a_missing_report_is_exit_2(gate, tmp_path, capsys):
    missing = tmp_path / "nope" / "report.json"
    assert gate([str(missing)]) == 2
    assert f"report {missing}: no such file" in error_line(capsys)


def test_a_corrupt_report_is_exit_2(gate, tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text('{"schema_version": 1, "accuracy": [')
    assert gate([str(path)]) == 2
    assert f"report {path}: not valid JSON (line 1" in error_line(capsys)


@pytest.mark.parametrize("tamper, expected", [
    (lambda r: r["accuracy"][0].update(top1="high"), "$.accuracy[0].top1: 'high' is not of type 'number'"),
    (lambda r: r.pop("model"), "$: 'model' is missing (a required key)"),
    (lambda r: r.update(schema_version=3), "$.schema_version: 3 is not supported"),
    (lambda r: r["accuracy"][0].update(precision="fp16"), "$.accuracy[0].precision: 'fp16' is not one of"),
])
def test_a_report_that_does_not_match_the_schema_is_exit_2(good_report, report_file, gate, capsys, tamper, expected):
    tamper(good_report)
    path = report_file(good_report)
    assert gate([str(path)]) == 2
    line = error_line(capsys)
    assert str(path) in line and expected in line


def test_a_missing_baseline_is_exit_2(good_report, report_file, gate, tmp_path, capsys):
    missing = tmp_path / "baseline.json"
    assert gate([str(report_file(good_report)), "--baseline", str(missing)]) == 2
    assert f"baseline {missing}: no such file" in error_line(capsys)


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not valid JSON"),
    ('{"hello": 1}', "neither an edgekit gate baseline nor a report.json"),
    ('{"kind": "edgekit-gate-baseline", "baseline_version": 1, "accuracy": [{"artifact": "a", "runtime": "torch", '
     '"top1": "x"}], "sizes": [], "latency_ratios": []}', "$.accuracy[0].top1: 'x' is not of type 'number'"),
    ('{"kind": "edgekit-gate-baseline", "baseline_version": 7, "accuracy": [], "sizes": [], "latency_ratios": []}',
     "$.baseline_version"),
])
def test_a_corrupt_baseline_is_exit_2(good_report, report_file, gate, tmp_path, capsys, content, expected):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(content)
    assert gate([str(report_file(good_report)), "--baseline", str(baseline)]) == 2
    line = error_line(capsys)
    assert f"baseline {baseline}" in line and expected in line


def test_json_output_parses(good_report, report_file, gate, capsys):
    first_int8 = next(e for e in good_report["accuracy"] if e["precision"] == "int8")
    first_int8["top1"] = 0.0
    assert gate([str(report_file(good_report)), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is False and result["exit_code"] == 1
    assert result["thresholds"]["max_int8_drop"] == good_report["recipe"]["gate"]["max_int8_drop"]
    failed = [check for check in result["checks"] if not check["passed"]]
    assert len(failed) == 1 and failed[0]["kind"] == "int8_drop" and failed[0]["unit"] == "points"


def test_junit_has_one_testcase_per_check(good_report, report_file, gate, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    gate([str(report_file(good_report)), "--write-baseline", str(baseline)])
    capsys.readouterr()
    next(a for a in good_report["artifacts"] if a["precision"] == "int8")["bytes"] *= 2
    junit = tmp_path / "gate.xml"
    code = gate([str(report_file(good_report, "new.json")), "--baseline", str(baseline), "--max-size-increase", "0.1",
                 "--junit", str(junit), "--json"])
    assert code == 1
    checks = json.loads(capsys.readouterr().out)["checks"]
    root = ET.parse(junit).getroot()
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(checks) and root.get("tests") == str(len(checks))
    failed = [case for case in cases if case.find("failure") is not None]
    assert len(failed) == 1 and failed[0].get("classname") == "edgekit.gate.size"
    assert "size vs baseline" in failed[0].find("failure").get("message")
