"""``edgekit recommend``: the point of a sweep to ship on one device, under constraints.

Every shipped file (one per point and runtime) measured on the device is a candidate. With a cost budget
(``--max-latency-ms`` / ``--max-instructions``) the pick is the highest top-1 within it; with only an
accuracy floor (``--min-top1``) it is the lowest cost above it; ties go to the other objective, so the pick
lies on the Pareto front of the candidates that meet the constraints. Every other candidate gets the reason
it was not picked; when none fits, the nearest misses are listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgekit.errors import UserInputError, suggest
from edgekit.report.plots import format_number
from edgekit.sweep.results import (
    Series, cost_series, deployed, done_points, pareto_front, point_label, series_of,
)

COST_METRICS = {"latency": "ms", "instructions": "instructions"}
NEAREST_MISSES = 3


@dataclass(frozen=True)
class Constraints:
    metric: str | None = None  # latency | instructions: the metric of max_cost
    max_cost: float | None = None
    min_top1: float | None = None
    max_size_mb: float | None = None

    @property
    def maximise_top1(self) -> bool:
        """Highest top-1 within a budget; lowest cost when only an accuracy floor is given."""
        return self.max_cost is not None or self.min_top1 is None


@dataclass(frozen=True)
class Candidate:
    point: dict
    artifact: str
    series: Series
    top1: float
    cost: float | None
    bytes: int | None

    @property
    def name(self) -> str:
        return f"{point_label(self.point)} ({self.series.runtime})"

    @property
    def cost_text(self) -> str:
        if self.cost is None:
            return "not measured"
        unit = self.series.unit
        return f"{self.cost:#.3g} ms" if unit == "ms" else f"{format_number(self.cost)} {unit}"

    @property
    def size_mb(self) -> float | None:
        return None if self.bytes is None else self.bytes / 1e6


@dataclass
class Recommendation:
    constraints: Constraints
    chosen: Candidate | None
    runner_up: Candidate | None
    on_front: bool
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (name, reason), every candidate not picked
    misses: list[tuple[Candidate, str]] = field(default_factory=list)  # nearest misses when nothing fits


def select_series(sweep: dict, device: str, runtime: str | None, threads: int | None, metric: str | None) -> list[Series]:
    """The series on ``device`` to choose among; a device, runtime, thread count or metric the sweep never
    measured is a UserInputError naming what it did measure."""
    every = cost_series(sweep)
    on_device = [series for series in every if series.device == device]
    if not on_device:
        known = sorted({series.device for series in every})
        raise UserInputError(f"--device {device}: no point of this sweep was profiled on it (devices: "
                             f"{', '.join(known) or 'none'})", hint=suggest(device, known))
    for flag, wanted, attribute in (("--runtime", runtime, "runtime"), ("--threads", threads, "threads"),
                                    ("--max-latency-ms/--max-instructions", metric, "metric")):
        if wanted is None:
            continue
        measured = sorted({getattr(series, attribute) for series in on_device}, key=str)
        if wanted not in measured:
            shown = ", ".join(map(str, measured))
            raise UserInputError(f"{flag}: {device} has no {attribute} {wanted} in this sweep (measured: {shown})",
                                 hint=suggest(str(wanted), map(str, measured)))
        on_device = [series for series in on_device if getattr(series, attribute) == wanted]
    if metric is None:  # costs in different metrics do not compare: the first metric measured
        on_device = [series for series in on_device if series.metric == on_device[0].metric]
    return on_device


def candidates(sweep: dict, series_list: list[Series]) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """(every shipped file of a finished point in one of the series, (name, reason) of each unusable point)."""
    found, unusable = [], []
    for point in sweep["points"]:
        if point["status"] != "done":
            reason = f"build failed: {point['error']}" if point["status"] == "failed" else "not built yet"
            unusable.append((point_label(point), reason))
    for series in series_list:
        for point in done_points(sweep):
            shipped = [item for item in deployed(point) if item["runtime"] == series.runtime]
            if not shipped:
                unusable.append((f"{point_label(point)} ({series.runtime})", f"no file evaluated in {series.runtime}"))
            for item in shipped:
                found.append(Candidate(point, item["artifact"], series, item["top1"],
                                       _cost(point, item["artifact"], series), item["bytes"]))
    return found, unusable


def _cost(point: dict, artifact: str, series: Series) -> float | None:
    from edgekit.report.summary import artifact_key

    key = artifact_key(point, artifact)
    for profile in point["profiles"]:
        if series_of(profile) == series and artifact_key(point, profile["artifact"]) == key:
            return profile["value"]
    return None


def recommend(found: list[Candidate], unusable: list[tuple[str, str]], constraints: Constraints) -> Recommendation:
    measured = [candidate for candidate in found if candidate.cost is not None]
    feasible = [candidate for candidate in measured if not violations(candidate, constraints)]
    if constraints.maximise_top1:
        ranked = sorted(feasible, key=lambda item: (-item.top1, item.cost))
    else:
        ranked = sorted(feasible, key=lambda item: (item.cost, -item.top1))
    chosen = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None
    front = pareto_front(measured, cost=lambda item: item.cost, top1=lambda item: item.top1)
    result = Recommendation(constraints, chosen, runner_up, any(item is chosen for item in front))
    result.excluded = list(unusable)
    result.excluded += [(item.name, f"{item.series.device} has no measurement of it")
                        for item in found if item.cost is None]
    for item in measured:
        if item is chosen:
            continue
        broken = violations(item, constraints)
        if broken:
            result.excluded.append((item.name, "; ".join(broken)))
        else:
            result.excluded.append((item.name, _lost_because(item, chosen, measured, constraints)))
    if chosen is None:
        result.misses = nearest_misses(measured, constraints)
    return result


def violations(item: Candidate, constraints: Constraints) -> list[str]:
    """Each constraint ``item`` breaks, with its measured value and the limit."""
    broken = []
    if constraints.max_cost is not None and item.cost > constraints.max_cost:
        broken.append(f"{item.series.metric} {item.cost_text} > {_limit_text(constraints)}")
    if constraints.min_top1 is not None and item.top1 < constraints.min_top1:
        broken.append(f"top-1 {item.top1:.2f}% < {constraints.min_top1:g}%")
    if constraints.max_size_mb is not None and (item.size_mb is None or item.size_mb > constraints.max_size_mb):
        size = "unknown" if item.size_mb is None else f"{item.size_mb:.3f} MB"
        broken.append(f"size {size} > {constraints.max_size_mb:g} MB")
    return broken


def _limit_text(constraints: Constraints) -> str:
    if constraints.metric == "latency":
        return f"{constraints.max_cost:g} ms"
    return f"{format_number(constraints.max_cost)} {COST_METRICS.get(constraints.metric, '')}".rstrip()


def _lost_because(item: Candidate, chosen: Candidate, measured: list[Candidate], constraints: Constraints) -> str:
    dominator = next((other for other in measured if other is not item and other.cost <= item.cost
                      and other.top1 >= item.top1 and (other.cost, other.top1) != (item.cost, item.top1)), None)
    if dominator is not None:
        return (f"dominated by {dominator.name}: {dominator.cost_text} and {dominator.top1:.2f}% vs "
                f"{item.cost_text} and {item.top1:.2f}%")
    if constraints.maximise_top1:
        return f"meets the constraints, but top-1 {item.top1:.2f}% is below the pick's {chosen.top1:.2f}%"
    return f"meets the constraints, but costs {item.cost_text} against the pick's {chosen.cost_text}"


def nearest_misses(measured: list[Candidate], constraints: Constraints) -> list[tuple[Candidate, str]]:
    """The candidates that miss by the least (sum of their relative excess over each limit)."""
    def excess(item: Candidate) -> float:
        total = 0.0
        if constraints.max_cost is not None:
            total += max(item.cost - constraints.max_cost, 0) / constraints.max_cost
        if constraints.min_top1 is not None:
            total += max(constraints.min_top1 - item.top1, 0) / max(constraints.min_top1, 1e-9)
        if constraints.max_size_mb is not None:
            size = item.size_mb if item.size_mb is not None else float("inf")
            total += max(size - constraints.max_size_mb, 0) / constraints.max_size_mb
        return total

    ranked = sorted(measured, key=excess)[:NEAREST_MISSES]
    return [(item, "; ".join(violations(item, constraints))) for item in ranked]


def format_recommendation(result: Recommendation) -> str:
    lines = []
    if result.chosen is None:
        lines.append("no point meets the constraints; nearest misses:")
        lines += [f"  {item.name}: {reason}" for item, reason in result.misses] or ["  (no point was measured)"]
        return "\n".join(lines)
    chosen = result.chosen
    objective = "highest top-1 within the budget" if result.constraints.maximise_top1 else "lowest cost above the floor"
    front = "on the Pareto front" if result.on_front else "not on the Pareto front (a better point breaks a constraint)"
    lines.append(f"pick: {_describe(chosen)}; {objective}, {front}")
    lines.append(f"  overrides: {_overrides_text(chosen.point)}")
    lines.append(f"runner-up: {_describe(result.runner_up)}" if result.runner_up else "runner-up: none")
    if result.excluded:
        lines.append("not picked:")
        lines += [f"  {name}: {reason}" for name, reason in result.excluded]
    return "\n".join(lines)


def _describe(item: Candidate) -> str:
    series = item.series
    size = f", {item.size_mb:.3f} MB" if item.size_mb is not None else ""
    how = "" if series.obtained == "real" else f" ({series.obtained})"
    return (f"{item.name}: {item.artifact}, top-1 {item.top1:.2f}%, {series.metric} {item.cost_text}{how} on "
            f"{series.device} ({series.runtime}/{series.delegate or 'default'}, {series.threads} thread"
            f"{'s' if series.threads != 1 else ''}){size}")


def _overrides_text(point: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in point["overrides"].items())


def write_recipe(item: Candidate, path: Path, sweep_dir: Path) -> Path:
    """A ready recipe for the picked point: its resolved recipe (every default filled), as YAML."""
    from edgekit.artifacts import write_atomically

    header = (f"# Written by edgekit recommend: point {point_label(item.point)} of the sweep in {sweep_dir}\n"
              f"# ({_overrides_text(item.point)}); ship {item.artifact} with {item.series.runtime}.\n")
    text = header + yaml.safe_dump(item.point["recipe"], sort_keys=False, allow_unicode=True)
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_baseline(item: Candidate, sweep_dir: Path, path: Path):
    """The gate run on the picked point's report.json, storing it as a baseline at ``path`` through the gate's
    own writer, which writes only when the gate passes (a baseline holds good results). Returns the GateResult."""
    from edgekit.gate import run_gate

    base = sweep_dir if sweep_dir.is_dir() else sweep_dir.parent  # the sweep directory or its sweep.json
    return run_gate(base / item.point["build_dir"] / "report.json", write_baseline=path)
