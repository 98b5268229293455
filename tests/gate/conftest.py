"""Gate fixtures: the real tiny build (shared with tests/report, one build per session) and a CLI runner."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from pathlib import Path

import pytest

from edgekit.errors import EdgekitError
from edgekit.gate.cli import add_parser


def _report_fixtures_module():
    """tests/report/conftest.py, loaded by path: works under any pytest import mode."""
    path = Path(__file__).resolve().parent.parent / "report" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_edgekit_tests_report_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_reports = _report_fixtures_module()
built, real_report = _reports.built, _reports.real_report  # the same fixtures as tests/report's


@pytest.fixture
def good_report(built) -> dict:
    """A copy of the real report with int8, size and profile sections derived from its real entries."""
    report, out_dir = built
    return _reports.derive_full_report(report, out_dir)


@pytest.fixture
def report_file(tmp_path):
    """Write a report dict to a file in the test's directory; returns the path."""
    def write(report: dict, name: str = "report.json"):
        return _reports.write_report(copy.deepcopy(report), tmp_path / name)

    return write


def gate_cli(argv: list[str]) -> int:
    """``edgekit gate ARGV``: the real ``edgekit`` command once cli.py wires the gate in, else the same
    parser and error-to-exit-code mapping as ``edgekit.cli.main``."""
    from edgekit import cli

    if "gate" in _subcommands(cli._parser()):
        return cli.main(["gate", *argv])
    parser = argparse.ArgumentParser(prog="edgekit")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gate", *argv])
    try:
        return args.handler(args)
    except EdgekitError as exc:
        print(f"edgekit: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices) if actions else set()


@pytest.fixture
def gate():
    """Run ``edgekit gate`` with a list of arguments; returns the exit code."""
    return gate_cli
