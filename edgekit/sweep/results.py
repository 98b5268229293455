"""sweep.json: one entry per grid point, gathered from the point's report.json (overrides, mult-adds,
parameters, accuracy per runtime, artifact sizes and every profile measurement, copied through as the
report holds them), under a versioned JSON Schema (``sweep.schema.json``); and the read-side views that
the HTML page, the terminal table and ``recommend`` share: the file a point deploys per runtime, the cost
series (device, runtime, delegate, threads, metric), the Pareto front and Kendall's τ.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.report.schema import ReportSchemaError, load_json, validate_against
from edgekit.report.summary import artifact_key, find_artifact, metric_label

SWEEP_SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("sweep.schema.json")
SWEEP_FILE = "sweep.json"
POINTS_DIR = "points"
REPORT_SECTIONS = ("accuracy", "artifacts", "profiles")


@lru_cache(maxsize=None)
def sweep_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


# --- writing ------------------------------------------------------------------------------------


def point_entry(point_id: str, overrides: dict, status: str, *, report: dict | None = None,
                error: str | None = None, seconds: float | None = None, reused: bool = False) -> dict:
    """One point of sweep.json; ``report`` (a finished build's report.json) fills the measured part."""
    entry: dict[str, Any] = {"id": point_id, "overrides": overrides, "status": status,
                             "build_dir": f"{POINTS_DIR}/{point_id}", "seconds": seconds, "reused": reused,
                             "error": error}
    if report is not None:
        entry["recipe"] = report["recipe"]
        entry["model"] = report["model"]
        entry.update({section: report.get(section, []) for section in REPORT_SECTIONS})
    return entry


def sweep_document(recipe: str, axes: list[dict], set_args: list[str], until: str | None,
                   points: list[dict]) -> dict:
    return {"schema_version": SWEEP_SCHEMA_VERSION, "edgekit_version": __version__, "recipe": recipe,
            "axes": axes, "set": list(set_args), "until": until, "points": points}


# --- reading ------------------------------------------------------------------------------------


def load_sweep(path: Path) -> dict:
    """Read and validate ``DIR/sweep.json`` (or the file itself); bad input is a one-line error (exit 2)."""
    path = Path(path)
    if path.is_dir():
        path = path / SWEEP_FILE
    sweep = load_json(path, "sweep results")
    validate_sweep(sweep, str(path))
    return sweep


def validate_sweep(sweep: Any, source: str) -> None:
    if not isinstance(sweep, dict) or sweep.get("schema_version") != SWEEP_SCHEMA_VERSION:
        version = sweep.get("schema_version") if isinstance(sweep, dict) else None
        raise ReportSchemaError(f"{source}: $.schema_version: {version!r} is not supported (this edgekit reads "
                                f"sweep results of version {SWEEP_SCHEMA_VERSION})")
    validate_against(sweep_schema(), sweep, source)


def done_points(sweep: dict) -> list[dict]:
    return [point for point in sweep["points"] if point["status"] == "done"]


def deployed_method(point: dict) -> tuple[str, str]:
    """(precision, method) of the files a point ships: its quantize.method's int8 files, or float."""
    method = point["recipe"].get("quantize", {}).get("method", "none")
    return ("float32", "float") if method == "none" else ("int8", method)


def deployed(point: dict) -> list[dict]:
    """The point's shipped file in each runtime that evaluated it: artifact, runtime, top1, bytes."""
    precision, method = deployed_method(point)
    files = []
    for entry in point["accuracy"]:
        if (entry["precision"], entry["method"]) == (precision, method) and entry["runtime"] != "torch":
            described = find_artifact(point, entry["artifact"])
            files.append({"artifact": entry["artifact"], "runtime": entry["runtime"], "top1": entry["top1"],
                          "bytes": described["bytes"] if described else None})
    return files


def top1_by_runtime(point: dict, precision: str) -> dict[str, float]:
    """Top-1 per runtime of the point's float files, or of its shipped int8 files."""
    _shipped, method = deployed_method(point)
    return {entry["runtime"]: entry["top1"] for entry in point["accuracy"]
            if entry["precision"] == precision and (precision == "float32" or entry["method"] == method)}


@dataclass(frozen=True)
class Series:
    """Measurements that compare across points: one device, runtime, delegate, thread count and metric."""
    device: str
    runtime: str
    delegate: str | None
    threads: int
    metric: str
    unit: str
    obtained: str

    @property
    def label(self) -> str:
        delegate = f"/{self.delegate}" if self.delegate else ""
        how = self.unit if self.obtained == "real" else f"{self.unit}, {self.obtained}"
        return f"{self.device} {self.runtime}{delegate} {self.threads}t: {metric_label(self.metric)} ({how})"

    @property
    def slug(self) -> str:
        return "-".join(str(part) for part in (self.device, self.runtime, self.delegate or "default", self.threads,
                                               self.metric))


def series_of(profile: dict) -> Series:
    return Series(profile["device"], profile["runtime"], profile["delegate"], profile["threads"], profile["metric"],
                  profile["unit"], profile["obtained"])


def cost_series(sweep: dict) -> list[Series]:
    """Every series in which some point's shipped file was measured, in sweep order."""
    found: dict[Series, None] = {}
    for point in done_points(sweep):
        for shipped in deployed(point):
            for profile in _profiles_of(point, shipped["artifact"], shipped["runtime"]):
                found.setdefault(series_of(profile))
    return list(found)


def cost_of(point: dict, series: Series) -> float | None:
    """The value the point's shipped file measured in ``series`` (None when not measured)."""
    for shipped in deployed(point):
        if shipped["runtime"] != series.runtime:
            continue
        for profile in _profiles_of(point, shipped["artifact"], series.runtime):
            if series_of(profile) == series and profile["value"] is not None:
                return profile["value"]
    return None


def _profiles_of(point: dict, artifact: str, runtime: str) -> list[dict]:
    key = artifact_key(point, artifact)
    return [profile for profile in point["profiles"]
            if profile["runtime"] == runtime and artifact_key(point, profile["artifact"]) == key]


def point_label(point: dict) -> str:
    return point["id"]


# --- analysis -----------------------------------------------------------------------------------


def pareto_front(items: list, cost=lambda item: item[0], top1=lambda item: item[1]) -> list:
    """The items no other item beats on both cost (lower) and top-1 (higher), cheapest first."""
    front, best = [], -math.inf
    for item in sorted(items, key=lambda item: (cost(item), -top1(item))):
        if top1(item) > best:
            front.append(item)
            best = top1(item)
    return front


@dataclass(frozen=True)
class RankAgreement:
    tau: float | None  # Kendall's τ-b; None with fewer than two points or no variation
    pairs: int
    flips: list[tuple[str, str]]  # (a, b): a has fewer mult-adds than b but costs more


def kendall_tau(points: list[tuple[str, float, float]]) -> RankAgreement:
    """τ-b between mult-adds and measured cost over (name, macs, cost) triples, and the pairs whose order flips."""
    concordant = discordant = ties_x = ties_y = 0
    flips = []
    for index, (name_a, macs_a, cost_a) in enumerate(points):
        for name_b, macs_b, cost_b in points[index + 1:]:
            sign = _sign(macs_a - macs_b) * _sign(cost_a - cost_b)
            if macs_a == macs_b:
                ties_x += 1
            if cost_a == cost_b:
                ties_y += 1
            if sign > 0:
                concordant += 1
            elif sign < 0:
                discordant += 1
                flips.append((name_a, name_b) if macs_a < macs_b else (name_b, name_a))
    pairs = len(points) * (len(points) - 1) // 2
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    tau = (concordant - discordant) / denominator if denominator else None
    return RankAgreement(tau, pairs, flips)


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def rank_agreement(sweep: dict, series: Series) -> RankAgreement:
    triples = []
    for point in done_points(sweep):
        cost = cost_of(point, series)
        if cost is not None:
            triples.append((point_label(point), point["model"]["macs"], cost))
    return kendall_tau(triples)


# --- the table (paper Tables 6 and 7, re-measured) ----------------------------------------------


def table(sweep: dict) -> tuple[list[str], list[list[str]], list[tuple[str, str]]]:
    """(header, one row per finished point, (id, error) per failed or pending point): the axes, mult-adds,
    parameters, float and shipped top-1 per runtime, and the shipped file's cost in every series."""
    from edgekit.report.plots import format_number
    from edgekit.sweep.grid import axis_label

    points = done_points(sweep)
    axes = [axis["key"] for axis in sweep["axes"]]
    float_runtimes = _runtimes(points, "float32")
    int8_runtimes = _runtimes(points, "int8")
    series = cost_series(sweep)
    header = (["point"] + [axis_label(key) for key in axes] + ["mult-adds", "params"]
              + [f"float top-1 {runtime}" for runtime in float_runtimes]
              + [f"int8 top-1 {runtime}" for runtime in int8_runtimes] + [item.label for item in series])
    rows = []
    for point in points:
        floats, int8s = top1_by_runtime(point, "float32"), top1_by_runtime(point, "int8")
        row = [point["id"]] + [_cell(point["overrides"].get(key)) for key in axes]
        row += [f"{point['model']['macs'] / 1e6:.2f} M", f"{point['model']['params'] / 1e6:.3f} M"]
        row += [_percent(floats.get(runtime)) for runtime in float_runtimes]
        row += [_percent(int8s.get(runtime)) for runtime in int8_runtimes]
        row += [_cost_cell(cost_of(point, item), item, format_number) for item in series]
        rows.append(row)
    not_done = [(point["id"], point["error"] or "not built yet") for point in sweep["points"] if point["status"] != "done"]
    return header, rows, not_done


def _runtimes(points: list[dict], precision: str) -> list[str]:
    return list(dict.fromkeys(runtime for point in points for runtime in top1_by_runtime(point, precision)))


def _cell(value) -> str:
    if isinstance(value, list):
        return "+".join(map(str, value))
    return "-" if value is None else str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cost_cell(value: float | None, series: Series, format_number) -> str:
    if value is None:
        return "-"
    return f"{value:#.3g}" if series.unit == "ms" else format_number(value)
