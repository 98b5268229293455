"""report.schema.json: real builds validate; a bad report is one line naming the file, JSON path and problem;
a version-1 report is read through upgrade_report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from edgekit.report.schema import (
    REPORT_SCHEMA_VERSION, ReportSchemaError, load_report, report_schema, upgrade_report, validate_report,
)

V1_REPORT = Path(__file__).with_name("data") / "report_v1.json"  # written in the shape edgekit 0.1 wrote


def test_the_schema_is_a_valid_draft_2020_12_schema():
    schema = report_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"schema_version", "edgekit_version", "recipe", "build", "stages", "model",
                                       "accuracy"}
    assert schema["properties"]["schema_version"]["const"] == REPORT_SCHEMA_VERSION
    Draft202012Validator.check_schema(report_schema(1))


def test_a_real_build_report_validates(built):
    report, out_dir = built
    assert load_report(out_dir / "report.json") == report


def test_the_report_with_every_optional_section_validates(full_report):
    validate_report(full_report, "full")
    assert {"artifacts", "int8_kernels", "profiles", "qat", "environment"} <= set(full_report)


@pytest.mark.parametrize("tamper, expected", [
    (lambda r: r["model"].update(params=-5), "$.model.params: -5 is less than the minimum of 0"),
    (lambda r: r["stages"][0].update(status="skipped"), "$.stages[0].status: 'skipped' is not one of ['ran', 'cached']"),
    (lambda r: r["artifacts"][0].pop("sha256"), "$.artifacts[0]: 'sha256' is missing (a required key)"),
    (lambda r: r["profiles"][0].update(obtained="guessed"), "$.profiles[0].obtained: 'guessed' is not one of"),
    (lambda r: r["profiles"][0].update(threads=True), "$.profiles[0].threads: True is not of type 'integer'"),
    (lambda r: r.pop("build"), "$: 'build' is missing (a required key)"),
    (lambda r: r["accuracy"][0].update(top1=101), "$.accuracy[0].top1: 101 is greater than the maximum of 100"),
    (lambda r: r.update(schema_version=3), "$.schema_version: 3 is not supported (this edgekit reads versions 1 and 2)"),
])
def test_a_bad_report_is_one_line_with_file_and_json_path(full_report, tamper, expected):
    tamper(full_report)
    with pytest.raises(ReportSchemaError) as error:
        validate_report(full_report, "builds/x/report.json")
    message = str(error.value)
    assert message.startswith("builds/x/report.json: ") and expected in message
    assert "\n" not in message
    assert error.value.exit_code == 2


def test_a_report_that_is_not_an_object_is_rejected():
    with pytest.raises(ReportSchemaError, match=r"r.json: \$: a report is a JSON object, not an array"):
        validate_report([], "r.json")


def test_an_emulated_time_can_never_be_a_latency(full_report):
    emulated = next(p for p in full_report["profiles"] if p["obtained"] == "emulated")
    emulated.update(metric="latency", unit="ms", value=12.5)
    with pytest.raises(ReportSchemaError, match=r"\$\.profiles\[\d\]\.metric: .* should not be valid"):
        validate_report(full_report, "r.json")


def test_a_version_1_report_is_upgraded_on_load():
    old = json.loads(V1_REPORT.read_text())
    report = load_report(V1_REPORT)
    assert old["schema_version"] == 1 and report["schema_version"] == REPORT_SCHEMA_VERSION
    assert report["build"] == {"complete": True, "stages_planned": [s["name"] for s in old["stages"]],
                               "stages_finished": [s["name"] for s in old["stages"]]}
    for before, after in zip(old["profiles"], report["profiles"]):
        assert not {"latency_ms", "instructions_per_inference", "emulated", "simulated", "mode"} & set(after)
        assert (after["delegate"], after["threads"], after["ratio_to_float"]) == (
            before["delegate"], before["threads"], before["ratio_to_float"])
        if before["emulated"]:  # an emulated run's time is no latency: its instructions are the measurement
            assert (after["metric"], after["unit"], after["obtained"], after["distribution"]) == (
                "instructions", "instructions", "emulated", None)
            assert after["value"] == before["instructions_per_inference"]
        else:
            assert (after["metric"], after["unit"], after["obtained"]) == ("latency", "ms", "real")
            assert after["value"] == before["latency_ms"]["p50"] and after["distribution"] == before["latency_ms"]
    assert upgrade_report(report) is report  # a current report is left as it is


@pytest.mark.parametrize("tamper, missing", [
    (lambda r: r.update(stages=[s for s in r["stages"] if s["name"] != "profile"]), "stages"),
    (lambda r: r.update(accuracy=[]), "accuracy"),
])
def test_a_version_1_report_without_every_stage_or_accuracy_is_incomplete(tamper, missing):
    old = json.loads(V1_REPORT.read_text())
    tamper(old)
    build = upgrade_report(old)["build"]
    assert build["complete"] is False
    if missing == "stages":
        assert "profile" in build["stages_planned"] and "profile" not in build["stages_finished"]


def test_a_bad_version_1_report_is_reported_against_its_own_schema(tmp_path):
    old = json.loads(V1_REPORT.read_text())
    old["profiles"][0]["latency_ms"] = "fast"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    with pytest.raises(ReportSchemaError, match=r"old.json: \$\.profiles\[0\]\.latency_ms: "):
        load_report(path)


def test_a_real_build_records_when_it_started_and_its_command(built):
    report, _out_dir = built
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["build"]["started"])
    assert report["build"]["command"] and report["build"]["command"][0] == "edgekit"


def test_build_started_and_command_are_optional_and_typed(real_report):
    without = json.loads(json.dumps(real_report))
    for key in ("started", "command"):
        without["build"].pop(key, None)
    validate_report(without, "r.json")  # a schema-2 report written before they were recorded
    bad = json.loads(json.dumps(real_report))
    bad["build"]["started"] = "yesterday"
    with pytest.raises(ReportSchemaError, match=r"\$\.build\.started"):
        validate_report(bad, "r.json")
    bad["build"].update(started="2025-01-31T09:30:00Z", command="edgekit build x.yaml")
    with pytest.raises(ReportSchemaError, match=r"\$\.build\.command"):
        validate_report(bad, "r.json")


def test_the_qat_loss_is_logged_often_enough_to_draw_a_curve(built):
    """QAT logs about QAT_LOG_POINTS points (every step when it is shorter), not only at checkpoints."""
    from edgekit.quantize.algorithm import QAT_LOG_POINTS

    report, _out_dir = built
    steps = [point["step"] for point in report["qat"]["history"]]
    total = steps[-1]
    assert len(steps) >= min(total, QAT_LOG_POINTS) - 1 and len(steps) >= 3
    assert steps == sorted(set(steps))
