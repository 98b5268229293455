"""``edgekit sweep RECIPE --grid KEY=[...]`` and ``edgekit recommend SWEEP_DIR --device NAME``: arguments
only; the work lives in ``grid``, ``run``, ``results``, ``html`` and ``recommend``.

Exit codes: sweep 0 every point built, 1 a point failed (the others still ran), 2 bad input before any
point ran; recommend 0 a pick, 1 no point meets the constraints (nearest misses listed) or the gate failed on the
pick's report so --write-baseline wrote nothing, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SWEEP_DESCRIPTION = """Build one point per combination of the --grid values, each in its own process and
build directory (DIR/points/<id>); finished points are reused on a rerun, a failing point is recorded and the
sweep goes on. Writes DIR/sweep.json and DIR/sweep.html (default DIR: builds/<recipe name>-sweep)."""
RECOMMEND_DESCRIPTION = """Pick the point of a sweep to ship on a device: the highest top-1 within a cost
budget, or the lowest cost above an accuracy floor; names the runner-up and why every other point lost."""


def add_parser(commands) -> None:
    """Add ``sweep`` and ``recommend`` to the ``edgekit`` subcommands."""
    sweep = commands.add_parser("sweep", help="build every point of a grid of recipe overrides, then compare them",
                                description=SWEEP_DESCRIPTION)
    sweep.add_argument("recipe", type=Path, help="recipe YAML file")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY.PATH=[V1,V2,...]", required=True,
                       help="an axis: a recipe key and its values, e.g. --grid model.alpha=[0.25,0.5] (repeatable)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
                       help="override a recipe field in every point (repeatable)")
    sweep.add_argument("--out", type=Path, help="sweep directory (default: builds/<recipe name>-sweep)")
    sweep.add_argument("--jobs", type=_positive_int, metavar="N",
                       help="points built at once (default: 1 locally; on Ray, as many as the cluster's CPUs fit)")
    sweep.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: child processes here (default); ray: one Ray task per point on an existing "
                            "cluster, the sweep directory on a path every node shares (docs/sweep.md)")
    sweep.add_argument("--ray-address", metavar="ADDR",
                       help="the Ray cluster's address, HOST:PORT or auto (default: RAY_ADDRESS)")
    sweep.add_argument("--until", metavar="STAGE", help="stop every point's build after STAGE")
    sweep.set_defaults(handler=_sweep)

    recommend = commands.add_parser("recommend", help="pick a sweep's point for a device under constraints",
                                    description=RECOMMEND_DESCRIPTION)
    recommend.add_argument("sweep_dir", type=Path, help="a sweep directory (or its sweep.json)")
    recommend.add_argument("--device", required=True, metavar="NAME", help="device name, as in the profiles")
    recommend.add_argument("--runtime", metavar="R", help="only this runtime (default: every runtime measured)")
    recommend.add_argument("--threads", type=_positive_int, metavar="N", help="only this thread count")
    budget = recommend.add_mutually_exclusive_group()
    budget.add_argument("--max-latency-ms", type=_positive_float, metavar="X", help="latency budget (real devices)")
    budget.add_argument("--max-instructions", type=_positive_float, metavar="X",
                        help="instructions per inference budget (emulated devices)")
    recommend.add_argument("--min-top1", type=_positive_float, metavar="Y", help="accuracy floor, top-1 in percent")
    recommend.add_argument("--max-size-mb", type=_positive_float, metavar="Z", help="largest shipped file, in MB")
    recommend.add_argument("--write-recipe", type=Path, metavar="FILE", help="write a ready recipe for the pick")
    recommend.add_argument("--write-baseline", type=Path, metavar="FILE",
                           help="write a gate baseline (edgekit gate --baseline FILE) from the pick's report.json, "
                                "when the gate passes on it")
    recommend.set_defaults(handler=_recommend)


def _sweep(args) -> int:
    from tqdm import tqdm

    from edgekit.errors import UserInputError
    from edgekit.sweep.grid import plan_points
    from edgekit.sweep.html import write_sweep_html
    from edgekit.sweep.run import default_sweep_dir, run_sweep

    def log(line: str) -> None:
        tqdm.write(line, file=sys.stdout)

    axes, points = plan_points(args.recipe, args.grid, args.overrides)
    out_dir = args.out or default_sweep_dir(points[0].recipe.name or args.recipe.stem)
    if args.executor == "ray":
        from edgekit.sweep.ray_executor import import_ray, ray_runner

        run_point, jobs = ray_runner(points, args.ray_address, args.jobs, out_dir, log)
        try:
            document = run_sweep(args.recipe, axes, points, out_dir, set_args=args.overrides, until=args.until,
                                 jobs=jobs, run_point=run_point, log=log)
        finally:
            import_ray().shutdown()
    else:
        if args.ray_address is not None:
            raise UserInputError("--ray-address: only with --executor ray")
        document = run_sweep(args.recipe, axes, points, out_dir, set_args=args.overrides, until=args.until,
                             jobs=args.jobs or 1, log=log)
    write_sweep_html(document, out_dir / "sweep.html")
    print(format_sweep(document, out_dir))
    return 1 if any(point["status"] != "done" for point in document["points"]) else 0


def format_sweep(sweep: dict, out_dir: Path) -> str:
    """The terminal table: one row per built point, the points that failed, Kendall's τ per series."""
    from edgekit.report.summary import _table as text_table
    from edgekit.sweep.results import cost_series, rank_agreement, table

    header, rows, not_done = table(sweep)
    lines = text_table(header, rows) if rows else ["no point has finished"]
    lines += [f"FAILED {point_id}: {why}" for point_id, why in not_done]
    for series in cost_series(sweep):
        agreement = rank_agreement(sweep, series)
        tau = "-" if agreement.tau is None else f"{agreement.tau:.2f}"
        flips = ", ".join(f"{cheap} < {costly}" for cheap, costly in agreement.flips) or "none"
        lines.append(f"Kendall τ (mult-adds vs {series.label}): {tau} over {agreement.pairs} pairs; "
                     f"order flips (fewer mult-adds, costlier): {flips}")
    lines += [f"results: {out_dir / 'sweep.json'}", f"html:    {out_dir / 'sweep.html'}"]
    return "\n".join(lines)


def _recommend(args) -> int:
    from edgekit.gate.cli import check_output_file
    from edgekit.sweep.recommend import (
        Constraints, candidates, format_recommendation, recommend, select_series, write_baseline, write_recipe,
    )
    from edgekit.sweep.results import load_sweep

    for flag, path in (("--write-recipe", args.write_recipe), ("--write-baseline", args.write_baseline)):
        if path is not None:
            check_output_file(path, flag)
    metric = "latency" if args.max_latency_ms is not None else "instructions" if args.max_instructions is not None else None
    max_cost = args.max_latency_ms if args.max_latency_ms is not None else args.max_instructions
    constraints = Constraints(metric, max_cost, args.min_top1, args.max_size_mb)
    sweep = load_sweep(args.sweep_dir)
    series = select_series(sweep, args.device, args.runtime, args.threads, metric)
    found, unusable = candidates(sweep, series)
    result = recommend(found, unusable, constraints)
    print(format_recommendation(result))
    if result.chosen is None:
        return 1
    if args.write_recipe is not None:
        write_recipe(result.chosen, args.write_recipe, args.sweep_dir)
        print(f"recipe: {args.write_recipe}")
    if args.write_baseline is not None:
        gate = write_baseline(result.chosen, args.sweep_dir, args.write_baseline)
        if gate.baseline_written is None:
            print(f"{gate.text()}\nbaseline not written: the gate failed on the pick's report")
            return 1
        print(f"baseline: {args.write_baseline}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value
