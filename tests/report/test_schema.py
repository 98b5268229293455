"""report.schema.json: real builds validate; a bad report is one line naming the file, JSON path and problem."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from edgekit.report.schema import ReportSchemaError, load_report, report_schema, validate_report


def test_the_schema_is_a_valid_draft_2020_12_schema():
    schema = report_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"schema_version", "edgekit_version", "recipe", "stages", "model", "accuracy"}


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
    (lambda r: r["profiles"][0].update(emulated="yes"), "$.profiles[0].emulated: 'yes' is not of type 'boolean'"),
    (lambda r: r["accuracy"][0].update(top1=101), "$.accuracy[0].top1: 101 is greater than the maximum of 100"),
    (lambda r: r.update(schema_version=2), "$.schema_version: 2 is not supported (this edgekit reads version 1)"),
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
