"""Run a sweep: one ``edgekit build`` per grid point, each in its own process and build directory
(``DIR/points/<id>``), so the driver's memory stays flat and every stage cache works as it does for a
single build. A point whose report.json is complete for the same recipe and stages is reused; a point
that fails is recorded with its error and the sweep goes on. sweep.json is rewritten after every point.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from edgekit.artifacts import make_output_dir, write_json
from edgekit.lock import build_lock
from edgekit.report.schema import ReportSchemaError, load_report
from edgekit.sweep.grid import Axis, Point
from edgekit.sweep.results import POINTS_DIR, SWEEP_FILE, point_entry, sweep_document
from edgekit.train.progress import progress_bar

LOGS_DIR = "logs"
ERROR_PREFIX = "edgekit: error: "


@dataclass(frozen=True)
class Outcome:
    ok: bool
    seconds: float
    error: str | None = None


PointRunner = Callable[[Path, Point, Path, str | None, Path], Outcome]


def default_sweep_dir(recipe_name: str) -> Path:
    return Path("builds") / f"{recipe_name}-sweep"


def run_sweep(recipe_path: Path, axes: list[Axis], points: list[Point], out_dir: Path, *, set_args: list[str],
              until: str | None = None, jobs: int = 1, run_point: PointRunner | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Build every point not finished yet (``jobs`` at a time); return the sweep document written to
    ``out_dir/sweep.json``."""
    from edgekit.pipeline import build_stages
    from edgekit.runner import select_stages

    planned = [stage.name for stage in select_stages(build_stages(), until)]  # a bad --until fails here
    out_dir = make_output_dir(out_dir, "--out")
    run_point = run_point or build_point
    with build_lock(out_dir, command=f"edgekit sweep {recipe_path}"):
        entries = {point.id: point_entry(point.id, point.overrides, "pending") for point in points}
        for point in points:
            report = finished_report(out_dir / POINTS_DIR / point.id, point, planned)
            if report is not None:
                entries[point.id] = point_entry(point.id, point.overrides, "done", report=report, reused=True)

        def save() -> dict:
            document = sweep_document(str(recipe_path), [{"key": axis.key, "values": list(axis.values)} for axis in axes],
                                      set_args, until, list(entries.values()))
            write_json(out_dir / SWEEP_FILE, document)
            return document

        save()
        todo = [point for point in points if entries[point.id]["status"] == "pending"]
        tracker = _Progress(len(points), len(points) - len(todo), jobs, log)
        (out_dir / LOGS_DIR).mkdir(exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            futures = {pool.submit(run_point, recipe_path, point, out_dir / POINTS_DIR / point.id, until,
                                   out_dir / LOGS_DIR / f"{point.id}.log"): point for point in todo}
            for future in as_completed(futures):
                point = futures[future]
                entries[point.id] = _entry_after(point, future.result(), out_dir, planned)
                save()
                tracker.finished(entries[point.id])
        tracker.close()
        return save()


def _entry_after(point: Point, outcome: Outcome, out_dir: Path, planned: list[str]) -> dict:
    report = finished_report(out_dir / POINTS_DIR / point.id, point, planned) if outcome.ok else None
    if report is not None:
        return point_entry(point.id, point.overrides, "done", report=report, seconds=round(outcome.seconds, 2))
    error = outcome.error or "the build ended without a complete report.json"
    return point_entry(point.id, point.overrides, "failed", error=error, seconds=round(outcome.seconds, 2))


def finished_report(point_dir: Path, point: Point, planned: list[str]) -> dict | None:
    """The point's report.json when its build completed the planned stages for this very recipe, else None."""
    if not (point_dir / "report.json").is_file():
        return None
    try:
        report = load_report(point_dir / "report.json")
    except ReportSchemaError:
        return None
    build = report["build"]
    same_recipe = report["recipe"] == point.recipe.model_dump(mode="json")
    return report if build["complete"] and build["stages_planned"] == planned and same_recipe else None


def build_point(recipe_path: Path, point: Point, point_dir: Path, until: str | None, log_path: Path) -> Outcome:
    """``edgekit build`` of one point in a child process; its output goes to ``log_path``."""
    return run_build(build_args(recipe_path, point.set_args, point_dir, until), log_path)


def build_args(recipe_path: Path, set_args: tuple[str, ...], point_dir: Path, until: str | None) -> list[str]:
    """The ``edgekit build`` arguments of one point (after ``python -m edgekit.cli``)."""
    args = ["build", str(recipe_path)]
    for arg in set_args:
        args += ["--set", arg]
    return args + ["--out", str(point_dir)] + (["--until", until] if until else [])


def run_build(args: list[str], log_path: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> Outcome:
    """Run ``python -m edgekit.cli ARGS`` with this process's Python, its output to ``log_path``; ``env``
    adds to this process's environment."""
    command = [sys.executable, "-m", "edgekit.cli", *args]
    started = time.monotonic()
    with open(log_path, "wb") as log_file:
        returncode = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=cwd, env=point_environment(os.environ, env)).returncode
    seconds = time.monotonic() - started
    if returncode == 0:
        return Outcome(True, seconds)
    return Outcome(False, seconds, _error_line(log_path, returncode))


def point_environment(parent: Mapping[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """A point's environment: the driver's, no progress bar, OpenMP threads that sleep while they wait
    (unless the user chose a policy), then ``extra``. Points share cores with each other (``--jobs``) and
    with whatever else runs; spinning OpenMP threads then fight for them: a 2-thread training step of a
    small MobileNet took 1.35 s spinning and 0.36 s passive on this 2-core machine at load 4."""
    return {"OMP_WAIT_POLICY": "PASSIVE", **parent, "EDGEKIT_NO_PROGRESS": "1", **(extra or {})}


def _error_line(log_path: Path, returncode: int) -> str:
    """The build's ``edgekit: error:`` line, else its last output line, with the exit status."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix(ERROR_PREFIX) for line in lines if line.startswith(ERROR_PREFIX)]
    status = f"killed by signal {-returncode}" if returncode < 0 else f"exit {returncode}"
    detail = errors[-1] if errors else (lines[-1] if lines else "no output")
    return f"{detail} ({status}; log: {LOGS_DIR}/{log_path.name})"


class _Progress:
    """Points done, failed and left, and an ETA from the mean time of the points built in this run."""

    def __init__(self, total: int, reused: int, jobs: int, log: Callable[[str], None]):
        self.total, self.jobs, self.log = total, max(jobs, 1), log
        self.done, self.failed, self.seconds = reused, 0, []
        self.bar = progress_bar(total=total, initial=reused, desc="sweep", unit="point")
        if reused:
            log(f"sweep: {reused} of {total} points already built, reused")

    def finished(self, entry: dict) -> None:
        if entry["status"] == "done":
            self.done += 1
        else:
            self.failed += 1
        self.seconds.append(entry["seconds"] or 0.0)
        left = self.total - self.done - self.failed
        self.bar.update(1)
        self.bar.set_postfix_str(f"{self.done} done, {self.failed} failed, {left} left")
        what = f"done in {entry['seconds']:.1f} s" if entry["status"] == "done" else f"FAILED: {entry['error']}"
        self.log(f"[{self.done + self.failed}/{self.total}] {entry['id']}: {what}; {self.done} done, "
                 f"{self.failed} failed, {left} left{self._eta(left)}")

    def _eta(self, left: int) -> str:
        if not left or not self.seconds:
            return ""
        remaining = sum(self.seconds) / len(self.seconds) * math.ceil(left / self.jobs)
        return f", ETA {_duration(remaining)}"

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
