"""The gate's checks and its baseline file.

A baseline holds what the gate compares, keyed the same way in every build: top-1 per (artifact,
runtime), bytes per artifact, int8/float ratio per (artifact, device, runtime). It is written from a
report (``--write-baseline``) or read from one (a report.json given as ``--baseline`` works too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.artifacts import sha256_json
from edgekit.report.schema import ReportSchemaError, load_json, validate_against, validate_report
from edgekit.report.summary import artifact_key, measurement_kind

BASELINE_KIND = "edgekit-gate-baseline"
BASELINE_VERSION = 1
TOLERANCE = 1e-9  # a drop equal to the threshold passes despite float rounding

_NAMED = {"artifact": {"type": "string"}, "runtime": {"type": "string"}, "device": {"type": "string"}}
BASELINE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["kind", "baseline_version", "accuracy", "sizes", "latency_ratios"],
    "properties": {
        "kind": {"const": BASELINE_KIND},
        "baseline_version": {"const": BASELINE_VERSION},
        "recipe": {"type": "object"},
        "edgekit_version": {"type": "string"},
        "accuracy": {"type": "array", "items": {"type": "object", "required": ["artifact", "runtime", "top1"],
                                                 "properties": {**_NAMED, "top1": {"type": "number"}}}},
        "sizes": {"type": "array", "items": {"type": "object", "required": ["artifact", "bytes"],
                                              "properties": {**_NAMED, "bytes": {"type": "integer", "minimum": 0}}}},
        "latency_ratios": {"type": "array", "items": {
            "type": "object", "required": ["artifact", "device", "runtime", "ratio"],
            "properties": {**_NAMED, "ratio": {"type": "number", "exclusiveMinimum": 0}}}},
    },
}


@dataclass
class Check:
    kind: str  # int8_drop | vs_baseline | latency_ratio | size
    name: str  # what was checked: runtime + artifact, or device + runtime + artifact
    passed: bool
    measured: float | None  # drop in points, or relative increase (0.1 = +10%); None when not measured
    allowed: float
    unit: str  # points | relative
    detail: str  # the numbers behind ``measured``, in words

    @property
    def title(self) -> str:
        return {"int8_drop": "int8 drop", "vs_baseline": "top-1 vs baseline",
                "latency_ratio": "latency ratio vs baseline", "size": "size vs baseline"}[self.kind]

    def line(self) -> str:
        allowed = f"{self.allowed:.2f} points" if self.unit == "points" else f"+{self.allowed:.1%}"
        return f"{'PASS' if self.passed else 'FAIL'} {self.title} {self.name}: {self.detail}; allowed {allowed}"

    def to_json(self) -> dict:
        return asdict(self)


# --- (a) int8 vs float in the same report -------------------------------------------------------


def int8_drop_checks(report: dict, max_drop: float) -> list[Check]:
    """Pair each int8 accuracy entry with the float entry of its runtime (else the torch float entry)."""
    floats = [entry for entry in report["accuracy"] if entry["precision"] == "float32"]
    checks = []
    for entry in (e for e in report["accuracy"] if e["precision"] == "int8"):
        name = f"{entry['runtime']} {entry['artifact']}"
        reference, fallback = _float_reference(entry, floats)
        if reference is None:
            checks.append(Check("int8_drop", name, False, None, max_drop, "points",
                                "no float accuracy entry to compare with (neither this runtime nor torch)"))
            continue
        drop = reference["top1"] - entry["top1"]
        source = f"{reference['runtime']} {reference['artifact']}"
        if fallback:
            source += f"; no {entry['runtime']} float entry, so compared with the torch float model"
        detail = f"top-1 {entry['top1']:.2f} vs float {reference['top1']:.2f} ({source}) = drop {drop:.2f} points"
        checks.append(Check("int8_drop", name, drop <= max_drop + TOLERANCE, drop, max_drop, "points", detail))
    return checks


def _float_reference(entry: dict, floats: list[dict]) -> tuple[dict | None, bool]:
    same_runtime = [f for f in floats if f["runtime"] == entry["runtime"]]
    same_data = [f for f in same_runtime if f["dataset"] == entry["dataset"]]
    if same_data or same_runtime:
        return (same_data or same_runtime)[0], False
    torch_floats = [f for f in floats if f["runtime"] == "torch"]
    return (torch_floats[0] if torch_floats else None), True


# --- (b), (c) the current build vs a baseline ---------------------------------------------------


def accuracy_checks(current: dict, baseline: dict, max_drop: float) -> list[Check]:
    now = {(e["artifact"], e["runtime"]): e for e in current["accuracy"]}
    checks = []
    for base in baseline["accuracy"]:
        name = f"{base['runtime']} {base['artifact']}"
        entry = now.get((base["artifact"], base["runtime"]))
        if entry is None:
            checks.append(Check("vs_baseline", name, False, None, max_drop, "points",
                                f"in the baseline (top-1 {base['top1']:.2f}) but not measured in this report"))
            continue
        drop = base["top1"] - entry["top1"]
        detail = f"top-1 {entry['top1']:.2f} vs baseline {base['top1']:.2f} = drop {drop:.2f} points"
        if "samples" in base and base["samples"] != entry.get("samples"):
            detail += f" (samples differ: {entry.get('samples')} now, {base['samples']} in the baseline)"
        checks.append(Check("vs_baseline", name, drop <= max_drop + TOLERANCE, drop, max_drop, "points", detail))
    return checks


def latency_ratio_checks(current: dict, baseline: dict, max_increase: float) -> list[Check]:
    now = {(r["artifact"], r["device"], r["runtime"]): r for r in current["latency_ratios"]}
    checks = []
    for base in baseline["latency_ratios"]:
        name = f"{base['device']} {base['runtime']} {base['artifact']}"
        entry = now.get((base["artifact"], base["device"], base["runtime"]))
        measured_as = "instructions" if base.get("measured", "real") != "real" else "latency"
        checks.append(_relative_check("latency_ratio", name, entry and entry["ratio"], base["ratio"], max_increase,
                                      f"int8/float {measured_as}", lambda v: f"{v:.3f}"))
    return checks


def size_checks(current: dict, baseline: dict, max_increase: float) -> list[Check]:
    now = {s["artifact"]: s["bytes"] for s in current["sizes"]}
    return [_relative_check("size", base["artifact"], now.get(base["artifact"]), base["bytes"], max_increase,
                            "size", lambda v: f"{v:,} bytes") for base in baseline["sizes"]]


def _relative_check(kind, name, value, base_value, max_increase, what, show) -> Check:
    if value is None:
        return Check(kind, name, False, None, max_increase, "relative",
                     f"in the baseline ({what} {show(base_value)}) but not measured in this report")
    increase = value / base_value - 1 if base_value else float(value > 0)
    detail = f"{what} {show(value)} vs baseline {show(base_value)} = {increase:+.1%}"
    return Check(kind, name, increase <= max_increase + TOLERANCE, increase, max_increase, "relative", detail)


# --- the baseline file --------------------------------------------------------------------------


def baseline_from_report(report: dict) -> dict:
    """The numbers the gate compares, keyed by artifact name (not path) so they survive a new build dir."""
    recipe = report.get("recipe", {})
    return {
        "kind": BASELINE_KIND,
        "baseline_version": BASELINE_VERSION,
        "recipe": {"name": recipe.get("name"), "sha256": sha256_json(recipe)},
        "edgekit_version": report["edgekit_version"],
        "accuracy": [{"artifact": artifact_key(report, e["artifact"]), "runtime": e["runtime"],
                      "precision": e["precision"], "method": e["method"], "dataset": e["dataset"],
                      "samples": e["samples"], "top1": e["top1"], "top5": e["top5"]} for e in report["accuracy"]],
        "sizes": [{"artifact": a["name"], "bytes": a["bytes"]} for a in report.get("artifacts", [])],
        "latency_ratios": [{"artifact": artifact_key(report, p["artifact"]), "device": p["device"],
                            "runtime": p["runtime"], "measured": measurement_kind(p), "ratio": p["ratio_to_float"]}
                           for p in report.get("profiles", []) if p.get("ratio_to_float") is not None],
    }


def read_baseline(path: Path) -> dict:
    """A baseline file, or a whole report.json used as the baseline."""
    data = load_json(path, "baseline")
    if isinstance(data, dict) and "schema_version" in data and "kind" not in data:
        validate_report(data, f"baseline {path}")
        return baseline_from_report(data)
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND:
        raise ReportSchemaError(f"baseline {path}: neither an edgekit gate baseline nor a report.json",
                                hint="write one with `edgekit gate REPORT --write-baseline FILE`")
    validate_against(BASELINE_SCHEMA, data, f"baseline {path}")
    return data
