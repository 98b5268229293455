"""``edgekit gate REPORT``: arguments only; the checks live in ``edgekit.gate``.

Exit codes: 0 every check passed, 1 a regression (one line per failing check), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

DESCRIPTION = """Check a build's report.json for accuracy regressions: int8 top-1 vs float in the same
report (per runtime), top-1 vs a baseline, and optionally the int8/float latency ratio and the artifact sizes
vs the baseline. Thresholds default to the recipe's gate: section; flags override them. Exit 0: pass,
1: a regression, an incomplete report (a build that did not finish) or a gate that checked nothing,
2: a missing/corrupt report or baseline, or an output file that cannot be written."""


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``gate`` to the ``edgekit`` subcommands; its ``handler`` runs the gate and returns the exit code."""
    gate = commands.add_parser("gate", help="fail CI when int8 accuracy, latency ratio or size regresses",
                               description=DESCRIPTION)
    gate.add_argument("report", type=Path, help="report.json of a build")
    gate.add_argument("--baseline", type=Path, metavar="FILE",
                      help="baseline to compare against: a file from --write-baseline, or a report.json "
                           "(default: the recipe's gate.baseline)")
    gate.add_argument("--max-int8-drop", type=_non_negative, metavar="P",
                      help="largest allowed int8 top-1 drop vs float, in points (default: gate.max_int8_drop)")
    gate.add_argument("--max-drop-vs-baseline", type=_non_negative, metavar="P",
                      help="largest allowed top-1 drop vs the baseline, in points (default: gate.max_drop_vs_baseline)")
    gate.add_argument("--max-latency-ratio-increase", type=_non_negative, metavar="R",
                      help="largest allowed relative rise of an int8/float latency ratio vs the baseline, "
                           "0.1 = 10%% (default: gate.max_latency_ratio_increase; off when null)")
    gate.add_argument("--max-size-increase", type=_non_negative, metavar="R",
                      help="largest allowed relative growth of an artifact's size vs the baseline "
                           "(default: gate.max_size_increase; off when null)")
    gate.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    gate.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML, one testcase per check")
    gate.add_argument("--write-baseline", type=Path, metavar="FILE",
                      help="store this report's results as a baseline when the gate passes")
    gate.set_defaults(handler=_gate)
    return gate


def _gate(args) -> int:
    from edgekit.gate import run_gate
    from edgekit.gate.junit import write_junit

    for flag, path in (("--junit", args.junit), ("--write-baseline", args.write_baseline)):
        if path is not None:
            check_output_file(path, flag)
    result = run_gate(
        args.report, baseline=args.baseline, max_int8_drop=args.max_int8_drop,
        max_drop_vs_baseline=args.max_drop_vs_baseline, max_latency_ratio_increase=args.max_latency_ratio_increase,
        max_size_increase=args.max_size_increase, write_baseline=args.write_baseline,
    )
    if args.junit:
        write_junit(result, args.junit)
    print(json.dumps(result.to_json(), indent=2) if args.json else result.text())
    return result.exit_code


def check_output_file(path: Path, flag: str) -> None:
    """Raise UserInputError (exit 2) before any work unless ``path`` can be written as a file: not a
    directory, not below a file, in a directory this process may write (created when missing)."""
    from edgekit.artifacts import make_output_dir
    from edgekit.errors import UserInputError

    try:
        if path.is_dir():
            raise UserInputError(f"{flag} {path}: is a directory, not a file")
        make_output_dir(path.parent, flag)
        if path.exists() and not os.access(path, os.W_OK):
            raise UserInputError(f"{flag} {path}: the file is not writable")
        _probe_write(path, flag)
    except OSError as exc:  # e.g. a name too long
        raise UserInputError(f"{flag} {path}: cannot use this path ({exc.strerror or exc})") from None


def _probe_write(path: Path, flag: str) -> None:
    """Create and drop a file beside ``path``: the one sure test (root passes os.access everywhere)."""
    from edgekit.errors import UserInputError

    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise UserInputError(f"{flag} {path}: cannot write in {path.parent} ({exc.strerror or exc})") from None


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value
