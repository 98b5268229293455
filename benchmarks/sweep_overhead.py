"""The sweep's overhead per point: the same builds run by hand (one ``edgekit build`` per point, one after
another) and through ``edgekit sweep`` (local executor, one job), in one invocation, each into fresh
directories so neither reuses the other's caches. Goal: the sweep takes at most 5% longer.

Two figures: the wall-time ratio of the two runs (noisy: it holds the builds' own variation), and the
sweep driver's own time, its wall time less the sum of its points' build times from sweep.json (grid
validation, the lock, sweep.json after every point, sweep.html and the table: what the sweep adds).
With --repeats N the order alternates (by hand first, then the sweep first) and the sums are compared.

    .venv/bin/python benchmarks/sweep_overhead.py            # smoke grid: 4 points, full builds (~10 min)
    .venv/bin/python benchmarks/sweep_overhead.py --quick    # 2 points, builds stop after train (~1-2 min)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgekit.sweep.grid import plan_points
from edgekit.sweep.run import point_environment

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "sweeps" / "smoke_grid.yaml"
FULL_GRID = ["model.alpha=[0.25,0.5]", "model.resolution=[32,64]"]
QUICK_GRID = ["model.resolution=[32,64]"]
QUICK_SET = ["data.max_train_samples=256", "data.max_eval_samples=128", "train.epochs=1"]
QUICK_UNTIL = "train"


def edgekit(args: list[str]) -> float:
    """Seconds ``python -m edgekit.cli ARGS`` took; its output is kept out of the way, a failure stops here.
    Both sides run in a sweep point's environment (no progress bar, passive OpenMP threads), so only the
    sweep's machinery differs."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "edgekit.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=point_environment(os.environ))
    if done.returncode != 0:
        sys.exit(f"edgekit {' '.join(args[:2])} failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.monotonic() - started


def by_hand(recipe: Path, points: list, until: str | None, out: Path) -> float:
    """Every point's ``edgekit build`` with the same --set arguments the sweep gives it, one after another."""
    total = 0.0
    for point in points:
        args = ["build", str(recipe)] + [item for arg in point.set_args for item in ("--set", arg)]
        total += edgekit(args + ["--out", str(out / point.id)] + (["--until", until] if until else []))
    return total


def through_sweep(recipe: Path, grid: list[str], set_args: list[str], until: str | None, out: Path) -> tuple[float, float]:
    """(the sweep's wall time, the sum of its points' build times)."""
    args = ["sweep", str(recipe)] + [item for axis in grid for item in ("--grid", axis)]
    args += [item for arg in set_args for item in ("--set", arg)] + ["--out", str(out)]
    wall = edgekit(args + (["--until", until] if until else []))
    points = json.loads((out / "sweep.json").read_text())["points"]
    return wall, sum(point["seconds"] for point in points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE, help=f"default: {RECIPE.relative_to(REPO)}")
    parser.add_argument("--grid", action="append", help=f"an axis (repeatable); default: {' '.join(FULL_GRID)}")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, the order alternating (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help=f"2 points, 256 training images, builds stop after {QUICK_UNTIL}: checks it runs")
    args = parser.parse_args()
    args.recipe = args.recipe.resolve()
    os.chdir(REPO)  # recipes name their device profiles relative to the checkout
    grid = args.grid or (QUICK_GRID if args.quick else FULL_GRID)
    set_args = QUICK_SET if args.quick else []
    until = QUICK_UNTIL if args.quick else None
    _axes, points = plan_points(args.recipe, grid, set_args)

    hand_total = sweep_total = inside_total = 0.0
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as scratch:
        # untimed: the first point once, so that neither side pays for cold file and import caches
        warm = by_hand(args.recipe, points[:1], until, Path(scratch) / "warm-up")
        print(f"warm-up: the first point built once, {warm:.1f} s (not compared)")
        for repeat in range(args.repeats):
            hand_dir, sweep_dir = Path(scratch) / f"hand-{repeat}", Path(scratch) / f"sweep-{repeat}"
            if repeat % 2 == 0:
                hand = by_hand(args.recipe, points, until, hand_dir)
                wall, inside = through_sweep(args.recipe, grid, set_args, until, sweep_dir)
            else:
                wall, inside = through_sweep(args.recipe, grid, set_args, until, sweep_dir)
                hand = by_hand(args.recipe, points, until, hand_dir)
            print(f"run {repeat + 1}: by hand {hand:.1f} s, sweep {wall:.1f} s ({inside:.1f} s in its builds)")
            hand_total, sweep_total, inside_total = hand_total + hand, sweep_total + wall, inside_total + inside

    builds = len(points) * args.repeats
    ratio = sweep_total / hand_total - 1
    driver = sweep_total - inside_total
    print(f"{len(points)} points x {args.repeats} run(s), recipe {args.recipe.name}, grid {' '.join(grid)}"
          f"{', until ' + until if until else ''}")
    print(f"sweep vs by hand: {sweep_total:.1f} s vs {hand_total:.1f} s -> {ratio:+.1%} "
          f"({(sweep_total - hand_total) / builds:+.2f} s per point); goal <= +5%")
    print(f"the sweep driver's own time: {driver:.1f} s = {driver / builds:.2f} s per point, "
          f"{driver / hand_total:.1%} of the builds by hand")


if __name__ == "__main__":
    main()
