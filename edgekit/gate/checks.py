"""The gate's checks and its baseline file.

A baseline holds what the gate compares, keyed the same way in every build: top-1 per (artifact,
runtime), bytes per artifact, int8/float ratio per (artifact, device, runtime, delegate, threads) with
its metric and how it was obtained. It is written from a report (``--write-baseline``) or read from one
(a report.json given as ``--baseline`` works too). A version-1 baseline, which did not record delegate
and threads, still gates accuracy and size; its ratios are "not comparable".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.artifacts import sha256_json
from edgekit.report.schema import ReportSchemaError, load_json, upgraded_and_checked, validate_against, validate_report
from edgekit.report.summary import artifact_key, metric_label, profile_key

BASELINE_KIND = "edgekit-gate-baseline"
BASELINE_VERSION = 2
TOLERANCE = 1e-9  # a drop equal to the threshold passes despite float rounding
PASS, FAIL, NOT_COMPARABLE = "pass", "fail", "not comparable"
MEASURED_AS_V1 = {"real": "latency", "emulated": "instructions", "simulated": "simulator_wall_time"}

_NAMED = {"artifact": {"type": "string"}, "runtime": {"type": "string"}, "device": {"type": "string"}}
_SETTINGS = {"delegate": {"type": ["string", "null"]}, "threads": {"type": ["integer", "null"], "minimum": 0},
             "metric": {"type": "string"}, "obtained": {"type": "string"}}
BASELINE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["kind", "baseline_version", "accuracy", "sizes", "latency_ratios"],
    "properties": {
        "kind": {"const": BASELINE_KIND},
        "baseline_version": {"enum": [1, BASELINE_VERSION]},
        "recipe": {"type": "object"},
        "edgekit_version": {"type": "string"},
        "accuracy": {"type": "array", "items": {"type": "object", "required": ["artifact", "runtime", "top1"],
                                                 "properties": {**_NAMED, "top1": {"type": "number"}}}},
        "sizes": {"type": "array", "items": {"type": "object", "required": ["artifact", "bytes"],
                                              "properties": {**_NAMED, "bytes": {"type": "integer", "minimum": 0}}}},
        "latency_ratios": {"type": "array", "items": {
            "type": "object", "required": ["artifact", "device", "runtime", "ratio"],
            "properties": {**_NAMED, **_SETTINGS, "ratio": {"type": "number", "exclusiveMinimum": 0}}}},
    },
    "if": {"properties": {"baseline_version": {"const": BASELINE_VERSION}}},
    "then": {"properties": {"latency_ratios": {"items": {"required": list(_SETTINGS)}}}},
}


@dataclass
class Check:
    kind: str  # complete | no_checks | int8_drop | vs_baseline | latency_ratio | size
    name: str  # what was checked: runtime + artifact, or device + runtime/delegate + threads + artifact
    status: str  # pass | fail | not comparable (a baseline entry measured differently from this report's)
    measured: float | None  # drop in points, or relative increase (0.1 = +10%); None when not measured
    allowed: float | None  # None for checks without a threshold (complete, no_checks)
    unit: str  # points | relative | stages | checks
    detail: str  # the numbers behind ``measured``, in words

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    @property
    def title(self) -> str:
        return {"complete": "build complete", "no_checks": "checks run", "int8_drop": "int8 drop",
                "vs_baseline": "top-1 vs baseline", "latency_ratio": "latency ratio vs baseline",
                "size": "size vs baseline"}[self.kind]

    def line(self) -> str:
        verdict = {PASS: "PASS", FAIL: "FAIL", NOT_COMPARABLE: "NOT COMPARABLE"}[self.status]
        subject = f"{verdict} {self.title} {self.name}".rstrip()
        if self.allowed is None or self.status == NOT_COMPARABLE:
            return f"{subject}: {self.detail}"
        allowed = f"{self.allowed:.2f} points" if self.unit == "points" else f"+{self.allowed:.1%}"
        return f"{subject}: {self.detail}; allowed {allowed}"

    def to_json(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def _verdict(passed: bool) -> str:
    return PASS if passed else FAIL


# --- (a) int8 vs float in the same report -------------------------------------------------------


def int8_drop_checks(report: dict, max_drop: float) -> list[Check]:
    """Pair each int8 accuracy entry with the float entry of its runtime (else the torch float entry)."""
    floats = [entry for entry in report["accuracy"] if entry["precision"] == "float32"]
    checks = []
    for entry in (e for e in report["accuracy"] if e["precision"] == "int8"):
        name = f"{entry['runtime']} {entry['artifact']}"
        reference, fallback = _float_reference(entry, floats)
        if reference is None:
            checks.append(Check("int8_drop", name, FAIL, None, max_drop, "points",
                                "no float accuracy entry to compare with (neither this runtime nor torch)"))
            continue
        drop = reference["top1"] - entry["top1"]
        source = f"{reference['runtime']} {reference['artifact']}"
        if fallback:
            source += f"; no {entry['runtime']} float entry, so compared with the torch float model"
        detail = f"top-1 {entry['top1']:.2f} vs float {reference['top1']:.2f} ({source}) = drop {drop:.2f} points"
        checks.append(Check("int8_drop", name, _verdict(drop <= max_drop + TOLERANCE), drop, max_drop, "points", detail))
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
            checks.append(Check("vs_baseline", name, FAIL, None, max_drop, "points",
                                f"in the baseline (top-1 {base['top1']:.2f}) but not measured in this report"))
            continue
        drop = base["top1"] - entry["top1"]
        detail = f"top-1 {entry['top1']:.2f} vs baseline {base['top1']:.2f} = drop {drop:.2f} points"
        if "samples" in base and base["samples"] != entry.get("samples"):
            detail += f" (samples differ: {entry.get('samples')} now, {base['samples']} in the baseline)"
        checks.append(Check("vs_baseline", name, _verdict(drop <= max_drop + TOLERANCE), drop, max_drop, "points", detail))
    return checks


def latency_ratio_checks(current: dict, baseline: dict, max_increase: float) -> list[Check]:
    """Each baseline ratio against this report's ratio measured the same way: same artifact, device,
    runtime, delegate and threads, and the same metric obtained the same way; else "not comparable"."""
    now = {_ratio_key(r): r for r in current["latency_ratios"]}
    checks = []
    for base in baseline["latency_ratios"]:
        name = f"{base['device']} {base['runtime']}{_setting_text(base)} {base['artifact']}"
        entry = now.get(_ratio_key(base))
        if entry is None or _how(entry) != _how(base):
            reason = _not_comparable(base, entry, current["latency_ratios"])
            if reason:
                checks.append(Check("latency_ratio", name, NOT_COMPARABLE, None, max_increase, "relative", reason))
                continue
            entry = None
        what = f"int8/float {_ratio_metric_text(base)}"
        checks.append(_relative_check("latency_ratio", name, entry and entry["ratio"], base["ratio"], max_increase,
                                      what, lambda v: f"{v:.3f}"))
    return checks


def _ratio_key(entry: dict) -> tuple:
    return entry["artifact"], entry["device"], entry["runtime"], entry["delegate"], entry["threads"]


def _how(entry: dict) -> tuple:
    return entry["metric"], entry["obtained"]


def _setting_text(entry: dict) -> str:
    if entry["delegate"] is None and entry["threads"] is None:
        return ""
    return f"/{entry['delegate'] or '?'} {entry['threads'] if entry['threads'] is not None else '?'}t"


def _ratio_metric_text(entry: dict) -> str:
    label = metric_label(entry["metric"])
    return label if entry["obtained"] == "real" else f"{label} ({entry['obtained']})"


def _not_comparable(base: dict, entry: dict | None, ratios: list[dict]) -> str | None:
    """Why a baseline ratio has no like-for-like ratio in this report although the same artifact was measured
    on the same device and runtime; None when it was not measured there at all (a failure)."""
    if entry is not None:
        return (f"int8/float {_ratio_metric_text(entry)} now, "
                f"{_ratio_metric_text(base)} in the baseline")
    same = [r for r in ratios if (r["artifact"], r["device"], r["runtime"]) == (base["artifact"], base["device"],
                                                                                base["runtime"])]
    if not same:
        return None
    measured = ", ".join(sorted({f"{r['delegate']} {r['threads']}t" for r in same}))
    if base["delegate"] is None and base["threads"] is None:
        return (f"the baseline (version 1) does not record delegate and threads; measured here "
                f"with {measured} (rewrite the baseline with --write-baseline)")
    return f"measured here with {measured}, in the baseline with {base['delegate']} {base['threads']}t"


def size_checks(current: dict, baseline: dict, max_increase: float) -> list[Check]:
    now = {s["artifact"]: s["bytes"] for s in current["sizes"]}
    return [_relative_check("size", base["artifact"], now.get(base["artifact"]), base["bytes"], max_increase,
                            "size", lambda v: f"{v:,} bytes") for base in baseline["sizes"]]


def _relative_check(kind, name, value, base_value, max_increase, what, show) -> Check:
    if value is None:
        return Check(kind, name, FAIL, None, max_increase, "relative",
                     f"in the baseline ({what} {show(base_value)}) but not measured in this report")
    increase = value / base_value - 1 if base_value else float(value > 0)
    detail = f"{what} {show(value)} vs baseline {show(base_value)} = {increase:+.1%}"
    return Check(kind, name, _verdict(increase <= max_increase + TOLERANCE), increase, max_increase, "relative", detail)


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
        "latency_ratios": [_ratio_entry(report, p) for p in report.get("profiles", [])
                           if p.get("ratio_to_float") is not None],
    }


def _ratio_entry(report: dict, profile: dict) -> dict:
    artifact, device, runtime, delegate, threads = profile_key(report, profile)
    return {"artifact": artifact, "device": device, "runtime": runtime, "delegate": delegate, "threads": threads,
            "metric": profile["metric"], "obtained": profile["obtained"], "ratio": profile["ratio_to_float"]}


def read_baseline(path: Path) -> dict:
    """A baseline file (version 1 upgraded), or a whole report.json used as the baseline."""
    data = load_json(path, "baseline")
    if isinstance(data, dict) and "schema_version" in data and "kind" not in data:
        validate_report(data, f"baseline {path}")
        return baseline_from_report(upgraded_and_checked(data, f"baseline {path}"))
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND:
        raise ReportSchemaError(f"baseline {path}: neither an edgekit gate baseline nor a report.json",
                                hint="write one with `edgekit gate REPORT --write-baseline FILE`")
    validate_against(BASELINE_SCHEMA, data, f"baseline {path}")
    return upgrade_baseline(data)


def upgrade_baseline(baseline: dict) -> dict:
    """A version-1 baseline's ratios with delegate and threads unknown (None) and metric/obtained from its
    ``measured``; a current baseline as it is."""
    if baseline["baseline_version"] == BASELINE_VERSION:
        return baseline
    ratios = [{**entry, "delegate": None, "threads": None, "obtained": entry.get("measured", "real"),
               "metric": MEASURED_AS_V1.get(entry.get("measured", "real"), "latency")}
              for entry in baseline["latency_ratios"]]
    return {**baseline, "baseline_version": BASELINE_VERSION, "latency_ratios": ratios}
