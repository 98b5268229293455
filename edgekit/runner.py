"""A generic runner of cached stages: knows nothing of models, formats or reports.

A stage is a function from the build context (recipe + earlier artifacts) to a ``StageOutput``: the
files it wrote and the fragment of ``report.json`` it contributes. Its cache key is the sha256 of
canonical JSON of (stage name, the recipe sections it reads minus the fields it declares irrelevant, the
sha256 of each input artifact, anything else it declares, and the versions of edgekit and of the packages
the stage uses). A finished stage leaves a record in ``DIR/.edgekit/stages/<name>.json``; a rebuild whose
key and artifact hashes match skips the stage and reuses its record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from edgekit import __version__
from edgekit.artifacts import sha256_file, sha256_json, write_json
from edgekit.errors import UserInputError, suggest

ALL_ARTIFACTS = "*"


@dataclass
class StageOutput:
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact name -> path relative to the build dir
    report: dict = field(default_factory=dict)


@dataclass
class BuildContext:
    recipe: Any
    out_dir: Path
    artifacts: dict[str, str] = field(default_factory=dict)
    stage_key: str = ""
    on_step: Callable[[int], None] | None = None  # test hook: called after every training step
    rendezvous: Any = None  # where this invocation's training processes meet others' (never part of a key)

    def path(self, relative: str) -> Path:
        return self.out_dir / relative

    def artifact(self, name: str) -> Path:
        return self.out_dir / self.artifacts[name]


@dataclass
class Stage:
    name: str
    sections: tuple[str, ...]  # top-level recipe fields the stage reads ("seed" or a section name)
    inputs: tuple[str, ...]  # artifact names, or (ALL_ARTIFACTS,)
    run: Callable[[BuildContext], StageOutput]
    extra_key: Callable[[Any], dict] = lambda recipe: {}
    cache: bool = True  # profiling measures the machine as it is now: never reused
    ignore: tuple[str, ...] = ()  # "section.field" entries that do not affect this stage's result
    packages: tuple[str, ...] = ()  # distributions whose versions change the stage's result


@dataclass
class StageRecord:
    name: str
    status: str  # "ran" | "cached"
    seconds: float
    key: str


@lru_cache(maxsize=None)
def package_version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def stage_key(stage: Stage, context: BuildContext) -> str:
    recipe = context.recipe
    return sha256_json({
        "stage": stage.name,
        "sections": {name: section_for_key(recipe, name, stage.ignore) for name in stage.sections},
        "inputs": {name: sha256_file(context.artifact(name)) for name in input_names(stage, context)},
        "extra": stage.extra_key(recipe),
        "versions": {"edgekit": __version__, **{name: package_version(name) for name in stage.packages}},
    })


def section_for_key(recipe, name: str, ignore: tuple[str, ...]):
    value = getattr(recipe, name)
    if not hasattr(value, "model_dump"):
        return value
    values = value.model_dump(mode="json")
    for dotted in ignore:
        section, _, field_name = dotted.partition(".")
        if section == name:
            values.pop(field_name, None)
    return values


def input_names(stage: Stage, context: BuildContext) -> list[str]:
    if stage.inputs == (ALL_ARTIFACTS,):
        return sorted(context.artifacts)
    return list(stage.inputs)


def select_stages(stages: list[Stage], until: str | None, force: tuple[str, ...] = ()) -> list[Stage]:
    """The stages up to and including ``until``; every ``force`` name must be one of those."""
    names = [stage.name for stage in stages]
    if until is not None and until not in names:
        raise UserInputError(f"--until {until}: no such stage (stages: {', '.join(names)})", hint=suggest(until, names))
    selected = stages if until is None else stages[: names.index(until) + 1]
    selected_names = [stage.name for stage in selected]
    for name in force:
        if name in selected_names:
            continue
        if name in names:
            raise UserInputError(f"--force {name}: the stage does not run in this build, which stops after "
                                 f"--until {until}")
        raise UserInputError(f"--force {name}: no such stage (stages: {', '.join(names)})", hint=suggest(name, names))
    return selected


def run_stages(
    stages: list[Stage],
    context: BuildContext,
    *,
    force: tuple[str, ...] = (),
    on_progress: Callable[[list[dict], list[StageRecord]], None] = lambda fragments, records: None,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], list[StageRecord]]:
    """Run (or reuse) each stage in order; ``on_progress`` sees the report fragments after each one."""
    records: list[StageRecord] = []
    fragments: list[dict] = []
    for stage in stages:
        missing = [name for name in input_names(stage, context) if name not in context.artifacts]
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
        on_progress(fragments, records)
        if status == "ran":
            log(f"[{stage.name}] done in {seconds:.1f} s")
    return fragments, records


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
