"""The ``edgekit`` command: parses arguments, calls the library, maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from edgekit import __version__
from edgekit.errors import EdgekitError, UserInputError

EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    # torch.export's pytree warns on every deepcopy of an exported graph; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = ["edgekit", *(sys.argv[1:] if argv is None else argv)]  # recorded as the report's build.command
    try:
        return args.handler(args)
    except EdgekitError as exc:
        print(f"edgekit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `edgekit inspect ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("\nedgekit: interrupted; finished stages and the last checkpoint are kept: "
              "rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgekit",
        description="Train, quantize, export and measure a MobileNet for edge devices from one YAML recipe.",
    )
    parser.add_argument("--version", action="version", version=f"edgekit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="run a recipe's build (cached stage by stage)")
    _recipe_args(build)
    build.add_argument("--out", type=Path, help="build directory (default: builds/<recipe name>)")
    build.add_argument("--force", action="append", default=[], metavar="STAGE",
                       help="rerun STAGE even when its inputs are unchanged (repeatable)")
    build.add_argument("--until", metavar="STAGE", help="stop after STAGE (train, evaluate, export, quantize, "
                       "export_int8, runtimes, profile)")
    build.add_argument("--wide", action="store_true", help="print the full summary table (default: fit 120 columns)")
    _distributed_args(build)
    build.set_defaults(handler=_build)

    inspect = commands.add_parser("inspect", help="print the model's per-layer cost table (paper Tables 1-2)")
    _recipe_args(inspect)
    inspect.add_argument("--json", action="store_true", help="print JSON on stdout instead of tables")
    inspect.set_defaults(handler=_inspect)

    schema = commands.add_parser("schema", help="print the recipe schema: every key, its type, default and meaning")
    schema.set_defaults(handler=_schema)

    from edgekit.analyze import add_parser as add_analyze_parser
    from edgekit.gate.cli import add_parser as add_gate_parser
    from edgekit.profile.cli import add_parser as add_profile_parser
    from edgekit.profile.devices_cli import add_parser as add_devices_parser
    from edgekit.sweep.cli import add_parser as add_sweep_parser

    add_profile_parser(commands)
    add_devices_parser(commands)
    add_gate_parser(commands)
    add_sweep_parser(commands)
    add_analyze_parser(commands)
    return parser


def _recipe_args(command: argparse.ArgumentParser) -> None:
    command.add_argument("recipe", type=Path, help="recipe YAML file")
    command.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
                         help="override a recipe field, e.g. --set model.alpha=0.75 (repeatable)")


def _distributed_args(build: argparse.ArgumentParser) -> None:
    """torchrun's flags: training processes per node and nodes set ``train.distributed``; where the nodes meet
    is this invocation's business only. See docs/distributed.md."""
    build.add_argument("--nproc-per-node", type=int, metavar="N",
                       help="train with N processes on this node under torchrun (train.distributed.nproc_per_node)")
    build.add_argument("--nnodes", type=int, metavar="M", help="nodes taking part (train.distributed.nnodes)")
    build.add_argument("--node-rank", type=int, default=0, metavar="R",
                       help="this node's rank; 0 runs the build, the others only train (default 0)")
    build.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="node 0's address for the rendezvous "
                       "(needed with --nnodes above 1; default on one node: 127.0.0.1 and a free port)")


def _distributed_overrides(args) -> list[str]:
    flags = (("nproc_per_node", args.nproc_per_node, "--nproc-per-node"), ("nnodes", args.nnodes, "--nnodes"))
    overrides = []
    for key, value, flag in flags:
        if value is None:
            continue
        if value < 1:
            raise UserInputError(f"{flag} {value}: must be at least 1")
        overrides.append(f"train.distributed.{key}={value}")
    if args.node_rank < 0:
        raise UserInputError(f"--node-rank {args.node_rank}: must be 0 or more")
    return overrides


def _build(args) -> int:
    from edgekit.pipeline import build, default_out_dir
    from edgekit.recipe import load_recipe
    from edgekit.report import format_summary
    from edgekit.train.distributed import Rendezvous, check_rendezvous, follow

    recipe = load_recipe(args.recipe, [*args.overrides, *_distributed_overrides(args)])
    rendezvous = Rendezvous(args.node_rank, args.rdzv_endpoint)
    check_rendezvous(recipe.train, rendezvous)
    if args.node_rank > 0:
        jobs = follow(recipe, args.out or default_out_dir(recipe), rendezvous, log=_stderr)
        print(f"node {args.node_rank}: took part in {jobs} training job(s); node 0 ran the build")
        return 0
    report, _records = build(recipe, args.out, force=tuple(args.force), until=args.until,
                             command=f"edgekit build {args.recipe}", argv=args.argv, rendezvous=rendezvous)
    print(format_summary(report, args.out or default_out_dir(recipe), wide=args.wide))
    return 0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _inspect(args) -> int:
    from edgekit.models.cost import format_table, profile_model
    from edgekit.stages import model_from_recipe
    from edgekit.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    cost = profile_model(model_from_recipe(recipe), recipe.model.resolution)
    if args.json:
        print(json.dumps(cost.to_json(), indent=2))
    else:
        section = recipe.model
        options = " ".join(f"{key}={value}" for key, value in section.options.items() if key != "alpha")
        width = f"α={section.options['alpha']} " if "alpha" in section.options else ""
        print(f"{section.arch} {width}ρ={section.resolution} classes={section.num_classes} {options}\n")
        print(format_table(cost))
    return 0


def _schema(args) -> int:
    from edgekit.recipe.docs import schema_markdown

    print(schema_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
