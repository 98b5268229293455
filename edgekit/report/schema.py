"""Validate ``report.json`` (and other edgekit JSON files) against their JSON Schema (draft 2020-12).

A problem is one line: the file, the JSON path of the offending value, what is wrong with it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from edgekit.errors import UserInputError

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
SUPPORTED_SCHEMA_VERSION = 1


class ReportSchemaError(UserInputError):
    """A report (or baseline) file is not what its schema says. Exit code 2."""


@lru_cache(maxsize=1)
def report_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_report(report: dict, source: str) -> None:
    """Raise ReportSchemaError naming ``source``, the JSON path and the problem when ``report`` is invalid."""
    if not isinstance(report, dict):
        raise ReportSchemaError(f"{source}: $: a report is a JSON object, not {_json_type(report)}")
    version = report.get("schema_version")
    if "schema_version" in report and version != SUPPORTED_SCHEMA_VERSION:
        raise ReportSchemaError(
            f"{source}: $.schema_version: {version!r} is not supported (this edgekit reads version "
            f"{SUPPORTED_SCHEMA_VERSION})", hint="rebuild the report with this edgekit version")
    validate_against(report_schema(), report, source)


def validate_against(schema: dict, data, source: str) -> None:
    """Validate ``data`` against ``schema``; raise ReportSchemaError with the most relevant error."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        raise ReportSchemaError(f"{source}: {error.json_path}: {_problem(error)}")


def load_json(path: Path, what: str):
    """Read a JSON file; a missing or unparsable file is a ReportSchemaError that names it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportSchemaError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportSchemaError(f"{what} {path}: cannot read it ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportSchemaError(
            f"{what} {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def load_report(path: Path) -> dict:
    """Read and validate a report.json."""
    report = load_json(path, "report")
    validate_report(report, str(path))
    return report


def _problem(error) -> str:
    if error.validator == "required":
        return error.message.replace("is a required property", "is missing (a required key)")
    if error.validator == "const" and error.path and error.path[-1] == "schema_version":
        return f"{error.instance!r} is not a supported schema version"
    message = error.message
    return message if len(message) <= 200 else message[:197] + "..."


def _json_type(value) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)
