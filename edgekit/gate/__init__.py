"""The CI accuracy-regression gate: ``run_gate(report)`` checks a build's report.json and returns a GateResult.

The gate fails closed: an incomplete report (a build that did not finish) fails, and so does a gate
that ran no check at all. Checks: (a) int8 top-1 drop vs float in the same report, per runtime; (b) top-1
vs a baseline per (artifact, runtime); (c) optionally the int8/float latency ratio per (artifact, device,
runtime, delegate, threads) and the size per artifact vs the baseline. Thresholds come from the report's
recipe ``gate:`` section; arguments override them. Bad input (a missing or corrupt report or baseline, a
schema mismatch) raises ReportSchemaError (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgekit.artifacts import write_json
from edgekit.gate.checks import (
    FAIL, NOT_COMPARABLE, PASS, Check, accuracy_checks, baseline_from_report, int8_drop_checks, latency_ratio_checks,
    read_baseline, size_checks,
)
from edgekit.report.schema import ReportSchemaError, load_report
from edgekit.report.summary import incomplete_text

THRESHOLDS = ("max_int8_drop", "max_drop_vs_baseline", "max_latency_ratio_increase", "max_size_increase")


@dataclass
class GateResult:
    report_path: str
    baseline_path: str | None
    thresholds: dict
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    baseline_written: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures()

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.failed]

    def not_comparable(self) -> list[Check]:
        return [check for check in self.checks if check.status == NOT_COMPARABLE]

    def text(self) -> str:
        lines = [check.line() for check in self.checks] + [f"note: {note}" for note in self.notes]
        verdict = "passed" if self.passed else f"FAILED ({len(self.failures())} of {len(self.checks)} checks)"
        skipped = f" ({len(self.not_comparable())} not comparable)" if self.not_comparable() else ""
        lines.append(f"gate {verdict}: {len(self.checks)} checks{skipped} on {self.report_path}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"passed": self.passed, "exit_code": self.exit_code, "report": self.report_path,
                "baseline": self.baseline_path, "thresholds": self.thresholds,
                "checks": [check.to_json() for check in self.checks], "notes": self.notes,
                "baseline_written": self.baseline_written}


def run_gate(
    report_path: str | Path,
    *,
    baseline: str | Path | None = None,
    max_int8_drop: float | None = None,
    max_drop_vs_baseline: float | None = None,
    max_latency_ratio_increase: float | None = None,
    max_size_increase: float | None = None,
    write_baseline: str | Path | None = None,
) -> GateResult:
    """Check ``report_path``; None arguments take the report's recipe ``gate:`` values."""
    report = load_report(Path(report_path))
    overrides = {"max_int8_drop": max_int8_drop, "max_drop_vs_baseline": max_drop_vs_baseline,
                 "max_latency_ratio_increase": max_latency_ratio_increase, "max_size_increase": max_size_increase,
                 "baseline": None if baseline is None else str(baseline)}
    settings = gate_settings(report, overrides, str(report_path))
    thresholds = {name: settings[name] for name in THRESHOLDS}
    result = GateResult(str(report_path), settings["baseline"], thresholds)
    result.checks.append(completeness_check(report))
    _check_int8(result, report)
    if settings["baseline"] is None:
        result.notes.append("no baseline (gate.baseline or --baseline): the vs-baseline checks did not run")
    else:
        _check_vs_baseline(result, baseline_from_report(report), read_baseline(Path(settings["baseline"])))
    _check_something_ran(result)
    if write_baseline is not None:
        _write_baseline(result, report, Path(write_baseline))
    return result


def gate_settings(report: dict, overrides: dict, source: str) -> dict:
    """The recipe's gate section (its defaults where absent), with the non-None overrides applied."""
    from pydantic import ValidationError

    from edgekit.recipe.schema import GateSection

    section = dict(report["recipe"].get("gate") or {})
    section.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return GateSection(**section).model_dump()
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ReportSchemaError(f"{source}: gate setting {where}: {error['msg']}") from None


def completeness_check(report: dict) -> Check:
    """Fails on a report whose build did not finish every planned stage (or, for a version-1 report,
    lacks a stage of the full build or any accuracy entry)."""
    build = report["build"]
    finished, planned = build["stages_finished"], build["stages_planned"]
    if build["complete"]:
        return Check("complete", "", PASS, len(finished), None, "stages",
                     f"{len(finished)} of {len(planned)} planned stages finished")
    return Check("complete", "", FAIL, len(finished), None, "stages",
                 f"{incomplete_text(build)}: the report holds partial results, so it cannot pass")


def _check_something_ran(result: GateResult) -> None:
    """A gate that compared nothing fails: a pass must mean that something was checked."""
    if any(check.kind != "complete" and check.status in (PASS, FAIL) for check in result.checks):
        return
    result.checks.append(Check(
        "no_checks", "", FAIL, 0, None, "checks",
        "the gate ran no check: the report has no int8 accuracy entry and no baseline was compared "
        "(set gate.baseline or pass --baseline)"))


def _check_int8(result: GateResult, report: dict) -> None:
    checks = int8_drop_checks(report, result.thresholds["max_int8_drop"])
    if not checks:
        result.notes.append("no int8 accuracy entry in the report: the int8 drop check did not run")
    result.checks += checks


def _check_vs_baseline(result: GateResult, current: dict, baseline: dict) -> None:
    thresholds = result.thresholds
    result.checks += accuracy_checks(current, baseline, thresholds["max_drop_vs_baseline"])
    for name, check, what in (("max_latency_ratio_increase", latency_ratio_checks, "latency ratio"),
                              ("max_size_increase", size_checks, "size")):
        if thresholds[name] is None:
            result.notes.append(f"{name} is null: the {what} check is off")
        else:
            result.checks += check(current, baseline, thresholds[name])
    known = {(e["artifact"], e["runtime"]) for e in baseline["accuracy"]}
    new = [f"{e['runtime']} {e['artifact']}" for e in current["accuracy"] if (e["artifact"], e["runtime"]) not in known]
    if new:
        result.notes.append(f"not in the baseline, so not compared: {', '.join(new)}")


def _write_baseline(result: GateResult, report: dict, path: Path) -> None:
    if not result.passed:
        result.notes.append(f"baseline not written to {path}: the gate failed (a baseline holds good results)")
        return
    write_json(path, baseline_from_report(report))
    result.baseline_written = str(path)
    result.notes.append(f"baseline written to {path}")
