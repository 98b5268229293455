"""edgekit's build: its stages in the order data flows, run by the generic runner (``edgekit.runner``),
with report.json rewritten after every stage and report.html written at the end."""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgekit import __version__
from edgekit.artifacts import write_json
from edgekit.recipe import Recipe
from edgekit.runner import BuildContext, Stage, StageRecord, run_stages, select_stages

REPORT_PACKAGES = ("torch", "torchao", "litert-torch", "ai-edge-litert", "onnx", "onnxruntime", "nncf", "numpy")


def build_stages() -> list[Stage]:
    from edgekit import stages

    return list(stages.STAGES)


def stage_names() -> list[str]:
    return [stage.name for stage in build_stages()]


def default_out_dir(recipe: Recipe) -> Path:
    return Path("builds") / (recipe.name or "build")


def build(recipe: Recipe, out_dir: Path | None = None, *, force: tuple[str, ...] = (), until: str | None = None,
          on_step: Callable[[int], None] | None = None, log: Callable[[str], None] = print,
          command: str = "edgekit build", argv: list[str] | None = None,
          rendezvous=None) -> tuple[dict, list[StageRecord]]:
    """Run the build of ``recipe`` into ``out_dir`` (``--out``; default ``builds/<recipe name>``) under the
    directory's lock, up to and including stage ``until`` (default: all), write report.html beside
    report.json, then enforce ``export.require_int8_kernels``. With ``train.distributed`` the training
    stages run under torchrun, meeting the other nodes at ``rendezvous`` (``distributed.Rendezvous``)."""
    from edgekit.artifacts import make_output_dir
    from edgekit.lock import build_lock
    from edgekit.quantize import check_backend_formats
    from edgekit.report import write_html
    from edgekit.runtimes import require_int8
    from edgekit.stages import model_summary

    check_backend_formats(recipe.quantize.backend, recipe.export.formats)
    selected = select_stages(build_stages(), until, force)
    if out_dir is None:
        out_dir = make_output_dir(default_out_dir(recipe), "build directory")
    else:
        out_dir = make_output_dir(out_dir, "--out")
    context = BuildContext(recipe, out_dir, on_step=on_step, rendezvous=rendezvous)
    base_report = {"model": model_summary(recipe), "environment": environment()}
    planned = [stage.name for stage in selected]
    invocation = {"started": utc_now_iso(), "command": list(argv) if argv else shlex.split(command)}

    def write_progress(fragments: list[dict], records: list[StageRecord]) -> None:
        write_report(context, [base_report, *fragments], records, planned, invocation)

    with build_lock(out_dir, command=command):
        write_progress([], [])  # a build killed before its first stage ends leaves a report marked incomplete
        _fragments, records = run_stages(selected, context, force=force, on_progress=write_progress, log=log)
        _release_other_nodes(context)
        report = read_report(out_dir)
        write_html(report, out_dir / "report.html")
    if recipe.export.require_int8_kernels:
        require_int8(report.get("int8_kernels", []))
    return report, records


def _release_other_nodes(context: BuildContext) -> None:
    """A build over several nodes: the other nodes wait for training jobs until node 0 says it is done."""
    if context.recipe.train.distributed.nnodes > 1:
        from edgekit.train.distributed import Rendezvous, release_followers

        release_followers(context.recipe, context.out_dir, context.rendezvous or Rendezvous())


def write_report(context: BuildContext, fragments: list[dict], records: list[StageRecord], planned: list[str],
                 invocation: dict | None = None) -> None:
    """``invocation``: the build's start time and command line (``build.started``, ``build.command``)."""
    from edgekit.report.schema import REPORT_SCHEMA_VERSION

    finished = [record.name for record in records]
    report: dict = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "edgekit_version": __version__,
        "recipe": context.recipe.model_dump(mode="json"),
        "build": {"complete": finished == planned, "stages_planned": planned, "stages_finished": finished,
                  **(invocation or {})},
        "stages": [record.__dict__ for record in records],
        "accuracy": [],
    }
    for fragment in fragments:
        for key, value in fragment.items():
            if isinstance(value, list) and isinstance(report.get(key), list):
                report[key] = report[key] + value
            else:
                report[key] = value
    write_json(context.out_dir / "report.json", report)


def read_report(out_dir: Path) -> dict:
    import json

    return json.loads((out_dir / "report.json").read_text())


def environment() -> dict:
    """Versions of the packages whose behaviour the numbers depend on."""
    import platform

    from edgekit.runner import package_version

    return {"python": platform.python_version(), "machine": platform.machine(),
            **{package: package_version(package) for package in REPORT_PACKAGES}}


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
