"""Read, validate and upgrade ``report.json`` (and other edgekit JSON files) against their JSON Schema
(draft 2020-12).

A problem is one line: the file, the JSON path of the offending value, what is wrong with it. Reading
is bounded (size, nesting depth, digits per number) so that no file can make a reader hang or crash.
Version 1 reports are validated against their own schema, then upgraded by ``upgrade_report``.
"""

from __future__ import annotations

import copy
import json
import math
from functools import lru_cache
from pathlib import Path

from edgekit.errors import UserInputError, excerpt

REPORT_SCHEMA_VERSION = 2
SCHEMA_PATHS = {1: Path(__file__).with_name("report.schema.v1.json"),
                REPORT_SCHEMA_VERSION: Path(__file__).with_name("report.schema.json")}
SCHEMA_PATH = SCHEMA_PATHS[REPORT_SCHEMA_VERSION]
V1_STAGES = ("train", "evaluate", "export", "quantize", "export_int8", "runtimes", "profile")  # a full version-1 build

MAX_JSON_BYTES = 16 * 2**20  # a real report is well under 1 MiB
MAX_JSON_DEPTH = 64  # a real report nests about 6 levels
MAX_NUMBER_CHARS = 64  # longer than any float repr or 64-bit integer


class ReportSchemaError(UserInputError):
    """A report (or baseline) file is not what its schema says. Exit code 2."""


class _JsonLimit(ValueError):
    """Raised from json's parse hooks: the text holds a number or constant a report never holds."""


@lru_cache(maxsize=None)
def report_schema(version: int = REPORT_SCHEMA_VERSION) -> dict:
    return json.loads(SCHEMA_PATHS[version].read_text(encoding="utf-8"))


def validate_report(report: dict, source: str) -> None:
    """Raise ReportSchemaError naming ``source``, the JSON path and the problem when ``report`` is invalid
    under the schema of its own version (1 or 2)."""
    if not isinstance(report, dict):
        raise ReportSchemaError(f"{source}: $: a report is a JSON object, not {_json_type(report)}")
    version = report.get("schema_version", REPORT_SCHEMA_VERSION)
    if isinstance(version, bool) or version not in SCHEMA_PATHS:
        raise ReportSchemaError(
            f"{source}: $.schema_version: {excerpt(version)} is not supported (this edgekit reads versions "
            f"{' and '.join(map(str, SCHEMA_PATHS))})", hint="rebuild the report with this edgekit version")
    validate_against(report_schema(version), report, source)


def upgrade_report(report: dict) -> dict:
    """A version-1 report in the version-2 shape (a copy); any other report as it is.

    Profiles get the typed measurement (metric, unit, value, distribution, obtained) in place of
    ``latency_ms`` / ``instructions_per_inference``; the report gets a ``build`` section, complete only
    when every stage of a version-1 build finished and accuracy was measured.
    """
    if not isinstance(report, dict) or report.get("schema_version") != 1:
        return report
    upgraded = copy.deepcopy(report)
    upgraded["schema_version"] = REPORT_SCHEMA_VERSION
    if isinstance(upgraded.get("profiles"), list):
        upgraded["profiles"] = [_upgrade_profile(entry) if isinstance(entry, dict) else entry
                                for entry in upgraded["profiles"]]
    upgraded.setdefault("build", _v1_build(upgraded))
    return upgraded


def _upgrade_profile(entry: dict) -> dict:
    if "metric" in entry:  # already typed
        return entry
    latency = entry.pop("latency_ms", None)
    instructions = entry.pop("instructions_per_inference", None)
    emulated, simulated = bool(entry.pop("emulated", False)), bool(entry.pop("simulated", False))
    simulator_wall_ms = entry.pop("simulator_wall_ms", None)
    entry.pop("mode", None)
    if emulated:
        typed = measurement("instructions", "instructions", instructions, None, "emulated")
    elif simulated:
        typed = measurement("simulator_wall_time", "ms", simulator_wall_ms, None, "simulated")
    else:
        distribution = latency if isinstance(latency, dict) else None
        typed = measurement("latency", "ms", (distribution or {}).get("p50"), distribution, "real")
    entry.setdefault("delegate", None)
    entry.update(typed)
    return entry


def measurement(metric: str, unit: str, value, distribution: dict | None, obtained: str) -> dict:
    """The typed part of a profile entry: what was measured, in what unit, and how it was obtained."""
    return {"metric": metric, "unit": unit, "value": value, "distribution": distribution, "obtained": obtained}


def _v1_build(report: dict) -> dict:
    stages = report.get("stages") if isinstance(report.get("stages"), list) else []
    finished = [stage.get("name") for stage in stages if isinstance(stage, dict)]
    complete = all(name in finished for name in V1_STAGES) and bool(report.get("accuracy"))
    return {"complete": complete, "stages_planned": list(V1_STAGES), "stages_finished": finished}


def validate_against(schema: dict, data, source: str) -> None:
    """Validate ``data`` against ``schema``; raise ReportSchemaError with the most relevant error."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        raise ReportSchemaError(f"{source}: {error.json_path}: {_problem(error)}")


def load_json(path: Path, what: str):
    """Read a JSON file of at most MAX_JSON_BYTES; a missing, unreadable, oversized, too deeply nested or
    unparsable file is a ReportSchemaError that names it."""
    source = f"{what} {path}"
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise ReportSchemaError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ReportSchemaError(f"{source}: is a directory, not a JSON file") from None
    except OSError as exc:
        raise ReportSchemaError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_JSON_BYTES:
        raise ReportSchemaError(f"{source}: larger than {MAX_JSON_BYTES // 2**20} MiB, too large for a {what}; "
                                f"not read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportSchemaError(f"{source}: not a JSON text file (not UTF-8 at byte {exc.start})") from None
    if not text.strip():
        raise ReportSchemaError(f"{source}: the file is empty, not JSON")
    return parse_json(text, source)


def parse_json(text: str, source: str):
    """``json.loads`` with numbers of at most MAX_NUMBER_CHARS characters, no NaN or Infinity, and at most
    MAX_JSON_DEPTH levels of nesting."""
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_reject_constant)
    except RecursionError:
        raise ReportSchemaError(f"{source}: nested more than {MAX_JSON_DEPTH} levels deep; not read") from None
    except _JsonLimit as exc:
        raise ReportSchemaError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ReportSchemaError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if _deeper_than(data, MAX_JSON_DEPTH):
        raise ReportSchemaError(f"{source}: nested more than {MAX_JSON_DEPTH} levels deep; not read")
    return data


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _JsonLimit(f"a number with {len(text):,} digits ({text[:12]}...); not read")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _JsonLimit(f"a number {len(text):,} characters long ({text[:12]}...); not read")
    value = float(text)
    if not math.isfinite(value):
        raise _JsonLimit(f"the number {text} is out of range (must be a finite number)")
    return value


def _reject_constant(name: str):
    raise _JsonLimit(f"{name} is not a JSON number (must be a finite number)")


def _deeper_than(data, limit: int) -> bool:
    """True when ``data`` nests more than ``limit`` arrays/objects (walked without recursion)."""
    stack = [(data, 1)] if isinstance(data, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def load_report(path: Path) -> dict:
    """Read and validate a report.json; a version-1 report comes back upgraded to the current shape."""
    report = load_json(path, "report")
    validate_report(report, str(path))
    return upgraded_and_checked(report, str(path))


def upgraded_and_checked(report: dict, source: str) -> dict:
    """``upgrade_report`` of a valid report, checked against the current schema."""
    if report.get("schema_version") == REPORT_SCHEMA_VERSION:
        return report
    upgraded = upgrade_report(report)
    validate_against(report_schema(), upgraded,
                     f"{source} (upgraded from schema version {report.get('schema_version')})")
    return upgraded


def _problem(error) -> str:
    if error.validator == "required":
        return error.message.replace("is a required property", "is missing (a required key)")
    if error.validator == "const" and error.path and error.path[-1] == "schema_version":
        return f"{excerpt(error.instance)} is not a supported schema version"
    return excerpt(error.message, 200)


def _json_type(value) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)
