"""Wire the stages of a build, run them in order, cache each by a content hash of its inputs.

A stage is a function from the build context (recipe + earlier artifacts) to a ``StageOutput``: the
files it wrote and the fragment of ``report.json`` it contributes. Its cache key is the sha256 of
canonical JSON of (stage name, the recipe sections it reads, the sha256 of each input artifact,
edgekit's version). A finished stage leaves a record in ``DIR/.edgekit/stages/<name>.json``; a rebuild
whose key and artifact hashes match skips the stage and reuses its record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgekit import __version__
from edgekit.artifacts import sha256_file, sha256_json, write_json
from edgekit.errors import UserInputError, suggest
from edgekit.recipe import Recipe

REPORT_SCHEMA_VERSION = 1
NOT_YET_BUILT: tuple[str, ...] = ()


@dataclass
class StageOutput:
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact name -> path relative to the build dir
    report: dict = field(default_factory=dict)


@dataclass
class BuildContext:
    recipe: Recipe
    out_dir: Path
    artifacts: dict[str, str] = field(default_factory=dict)
    stage_key: str = ""
    on_step: Callable[[int], None] | None = None  # test hook: called after every training step

    def path(self, relative: str) -> Path:
        return self.out_dir / relative

    def artifact(self, name: str) -> Path:
        return self.out_dir / self.artifacts[name]


@dataclass
class Stage:
    name: str
    sections: tuple[str, ...]
    inputs: tuple[str, ...]
    run: Callable[[BuildContext], StageOutput]
    extra_key: Callable[[Recipe], dict] = lambda recipe: {}
    cache: bool = True  # profiling measures the machine as it is now: never reused
    ignore: tuple[str, ...] = ()  # "section.field" entries that do not affect this stage's result


@dataclass
class StageRecord:
    name: str
    status: str  # "ran" | "cached"
    seconds: float
    key: str


def default_out_dir(recipe: Recipe) -> Path:
    return Path("builds") / (recipe.name or "build")


def stage_key(stage: Stage, context: BuildContext) -> str:
    recipe = context.recipe
    return sha256_json({
        "stage": stage.name,
        "sections": {name: _section_for_key(recipe, name, stage.ignore) for name in stage.sections},
        "inputs": {name: sha256_file(context.artifact(name)) for name in _input_names(stage, context)},
        "extra": stage.extra_key(recipe),
        "edgekit": __version__,
    })


ALL_ARTIFACTS = "*"


def _section_for_key(recipe: Recipe, name: str, ignore: tuple[str, ...]):
    if name == "seed":
        return recipe.seed
    values = getattr(recipe, name).model_dump()
    for dotted in ignore:
        section, _, field_name = dotted.partition(".")
        if section == name:
            values.pop(field_name, None)
    return values


def _input_names(stage: Stage, context: BuildContext) -> list[str]:
    if stage.inputs == (ALL_ARTIFACTS,):
        return sorted(context.artifacts)
    return list(stage.inputs)


def run_stages(
    stages: list[Stage],
    context: BuildContext,
    *,
    force: tuple[str, ...] = (),
    base_report: dict | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, list[StageRecord]]:
    """Run (or reuse) each stage in order; ``report.json`` is rewritten after each one."""
    unknown = [name for name in force if name not in {stage.name for stage in stages}]
    if unknown:
        names = ", ".join(stage.name for stage in stages)
        raise UserInputError(f"--force {unknown[0]}: no such stage (stages: {names})")
    records: list[StageRecord] = []
    fragments: list[dict] = [base_report or {}]
    for stage in stages:
        missing = [name for name in _input_names(stage, context) if name not in context.artifacts]
        if missing:
            raise RuntimeError(f"stage {stage.name} needs {missing}, which no earlier stage made")  # a wiring bug
        key = stage_key(stage, context)
        reusable = stage.cache and stage.name not in force
        cached = _cached_output(context.out_dir, stage.name, key) if reusable else None
        started = time.perf_counter()
        if cached is not None:
            output, status = cached, "cached"
            log(f"[{stage.name}] cached: inputs unchanged (key {key[:12]}); --force {stage.name} reruns it")
        else:
            log(f"[{stage.name}] running")
            context.stage_key = key
            output, status = stage.run(context), "ran"
            _write_record(context.out_dir, stage.name, key, output)
        seconds = time.perf_counter() - started
        records.append(StageRecord(stage.name, status, seconds, key))
        context.artifacts.update(output.artifacts)
        fragments.append(output.report)
        write_report(context, fragments, records)
        if status == "ran":
            log(f"[{stage.name}] done in {seconds:.1f} s")
    return read_report(context.out_dir), records


def write_report(context: BuildContext, fragments: list[dict], records: list[StageRecord]) -> None:
    report: dict = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "edgekit_version": __version__,
        "recipe": context.recipe.model_dump(mode="json"),
        "stages": [record.__dict__ for record in records],
        "not_yet_built": list(NOT_YET_BUILT),
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
    return json.loads((out_dir / "report.json").read_text())


def _record_path(out_dir: Path, stage_name: str) -> Path:
    return out_dir / ".edgekit" / "stages" / f"{stage_name}.json"


def _write_record(out_dir: Path, stage_name: str, key: str, output: StageOutput) -> None:
    hashes = {name: sha256_file(out_dir / path) for name, path in output.artifacts.items()}
    write_json(_record_path(out_dir, stage_name), {
        "key": key, "artifacts": output.artifacts, "sha256": hashes, "report": output.report,
    })


def _cached_output(out_dir: Path, stage_name: str, key: str) -> StageOutput | None:
    """The stage's recorded output when its key matches and every artifact is intact; else None."""
    record_path = _record_path(out_dir, stage_name)
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None  # absent or corrupt: recompute
    if record.get("key") != key:
        return None
    for name, path in record["artifacts"].items():
        file = out_dir / path
        if not file.is_file() or sha256_file(file) != record["sha256"].get(name):
            return None
    return StageOutput(record["artifacts"], record["report"])


def build_stages() -> list[Stage]:
    from edgekit import stages

    return [
        Stage("train", ("seed", "model", "data", "train"), (), stages.train_stage, stages.weights_key,
              ignore=("data.max_eval_samples", "train.eval_batch_size")),
        Stage("evaluate", ("model", "data", "train"), ("float_model",), stages.evaluate_float_stage),
        Stage("export", ("model", "data", "export"), ("float_model",), stages.export_float_stage),
        Stage("quantize", ("seed", "model", "data", "train", "quantize", "export"), ("float_model",),
              stages.quantize_stage, ignore=stages.EXPORT_ONLY_OPTIONS),
        Stage("export_int8", ("seed", "model", "data", "train", "quantize", "export"), (ALL_ARTIFACTS,),
              stages.export_int8_stage),
        Stage("runtimes", ("model", "data", "train", "evaluate", "export"), (ALL_ARTIFACTS,),
              stages.evaluate_runtimes_stage),
        Stage("profile", ("profile",), (ALL_ARTIFACTS,), stages.profile_stage, stages.device_files_key, cache=False),
    ]


def stages_until(until: str | None) -> list[Stage]:
    stages = build_stages()
    names = [stage.name for stage in stages]
    if until is None:
        return stages
    if until not in names:
        raise UserInputError(f"--until {until}: no such stage (stages: {', '.join(names)})", hint=suggest(until, names))
    return stages[: names.index(until) + 1]


def build(recipe: Recipe, out_dir: Path | None = None, *, force: tuple[str, ...] = (), until: str | None = None,
          on_step: Callable[[int], None] | None = None, log: Callable[[str], None] = print) -> tuple[dict, list[StageRecord]]:
    """Run the build of ``recipe`` into ``out_dir`` (default ``builds/<recipe name>``), up to and including
    stage ``until`` (default: all), write report.html beside report.json, then enforce
    ``export.require_int8_kernels``."""
    from edgekit.report import write_html
    from edgekit.runtimes import require_int8
    from edgekit.stages import model_summary

    from edgekit.quantize import check_backend_formats

    check_backend_formats(recipe.quantize.backend, recipe.export.formats)
    context = BuildContext(recipe, Path(out_dir or default_out_dir(recipe)), on_step=on_step)
    context.out_dir.mkdir(parents=True, exist_ok=True)
    base_report = {"model": model_summary(recipe), "environment": environment()}
    report, records = run_stages(stages_until(until), context, force=force, base_report=base_report, log=log)
    write_html(report, context.out_dir / "report.html")
    if recipe.export.require_int8_kernels:
        require_int8(report.get("int8_kernels", []))
    return report, records


def environment() -> dict:
    """Versions of the packages whose behaviour the numbers depend on."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version(), "machine": platform.machine()}
    for package in ("torch", "torchao", "litert-torch", "ai-edge-litert", "onnx", "onnxruntime", "nncf", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
