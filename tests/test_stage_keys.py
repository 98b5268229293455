"""Every recipe field a stage reads is covered by its cache key; keys follow package versions; agreement
compares the same images when ``evaluate.max_samples`` subsets the test split."""

import dataclasses

import pytest
from pydantic import BaseModel

from edgekit import stages as stage_module
from edgekit import runner
from edgekit.pipeline import build
from edgekit.runner import BuildContext, stage_key


class RecordingSection:
    """Stands in for the recipe (or one of its sections) and records every field read, as a dotted path."""

    def __init__(self, target, prefix: str, reads: set[str]):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_reads", reads)

    def _dotted(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def __getattr__(self, name):
        value = getattr(self._target, name)
        if name == "model_dump":  # reading every field at once
            self._reads.update(self._dotted(field) for field in type(self._target).model_fields)
            return value
        if isinstance(value, BaseModel):
            return RecordingSection(value, self._dotted(name), self._reads)
        self._reads.add(self._dotted(name))
        return value


def _recording(stage, reads_by_stage: dict):
    def run(context: BuildContext):
        reads = reads_by_stage.setdefault(stage.name, set())
        recipe = context.recipe
        context.recipe = RecordingSection(recipe, "", reads)
        try:
            return stage.run(context)
        finally:
            context.recipe = recipe

    return dataclasses.replace(stage, run=run)


@pytest.fixture(scope="module")
def recorded_build(tmp_path_factory):
    """A whole tiny build (PTQ, both formats, the quick host profile) with every stage's reads recorded;
    ``evaluate.max_samples`` is smaller than the test split."""
    from conftest import tiny_recipe_data
    from edgekit.recipe import validate

    recipe = validate(tiny_recipe_data(
        quantize={"method": "ptq", "calibration_batches": 2},
        evaluate={"max_samples": 64, "threads": 1},
        profile={"devices": ["devices/host-smoke.yaml"], "threads": [1]},
    ), source="<test>")
    reads: dict[str, set[str]] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage_module, "STAGES", tuple(_recording(stage, reads) for stage in stage_module.STAGES))
        report, _records = build(recipe, tmp_path_factory.mktemp("keys"), log=lambda _: None)
    return report, reads


def uncovered_reads(stage, reads: set[str]) -> list[str]:
    """Fields read by ``stage`` that its cache key leaves out."""
    missing = []
    for dotted in sorted(reads):
        top = dotted.split(".")[0]
        field = ".".join(dotted.split(".")[:2])
        if top == "name":
            continue  # the build's name chooses the folder, never a result
        if top not in stage.sections or field in stage.ignore:
            missing.append(dotted)
    return missing


@pytest.mark.slow
def test_every_field_a_stage_reads_is_in_its_cache_key(recorded_build):
    _report, reads = recorded_build
    assert set(reads) == {stage.name for stage in stage_module.STAGES}
    problems = {stage.name: uncovered_reads(stage, reads[stage.name]) for stage in stage_module.STAGES}
    assert problems == {stage.name: [] for stage in stage_module.STAGES}


def test_the_coverage_check_catches_a_read_outside_the_key():
    evaluate_without_seed = dataclasses.replace(stage_module.EVALUATE, sections=("model", "data", "train"))
    assert uncovered_reads(evaluate_without_seed, {"seed", "model.alpha"}) == ["seed"]
    train = stage_module.TRAIN
    assert uncovered_reads(train, {"data.max_eval_samples", "data.root"}) == ["data.max_eval_samples"]


@pytest.mark.slow
def test_agreement_compares_the_images_the_reference_saw(recorded_build):
    report, _reads = recorded_build
    entries = [entry for entry in report["accuracy"] if entry["runtime"] != "torch"]
    assert {entry["samples"] for entry in entries} == {64}
    for entry in entries:
        agreement = entry["agreement"]
        assert agreement["samples"] == 256  # the quantize stage's reference images, not the 64 evaluated
        if entry["method"] == "float":
            assert agreement["top1_agreement"] == 1.0 and agreement["max_diff"] < 1e-3, entry
        else:
            # within a few output steps of its torch graph; other images would agree on ~1 in 5 at best
            assert agreement["top1_agreement"] >= 0.97 and agreement["max_diff"] <= 16, entry  # LSB


def test_stage_keys_follow_the_versions_of_the_packages_they_use(tiny_recipe, tmp_path, monkeypatch):
    (tmp_path / "model.pt").write_bytes(b"weights")
    context = BuildContext(tiny_recipe(), tmp_path, artifacts={"float_model": "model.pt"})
    before = {stage.name: stage_key(stage, context) for stage in (stage_module.TRAIN, stage_module.EXPORT)}
    real = runner.package_version
    monkeypatch.setattr(runner, "package_version", lambda name: "9.9" if name == "onnxruntime" else real(name))
    after = {stage.name: stage_key(stage, context) for stage in (stage_module.TRAIN, stage_module.EXPORT)}
    assert after["train"] == before["train"]  # training does not use onnxruntime
    assert after["export"] != before["export"]
    monkeypatch.setattr(runner, "package_version", lambda name: "9.9" if name == "torch" else real(name))
    assert stage_key(stage_module.TRAIN, context) != before["train"]


def test_every_stage_declares_the_packages_it_uses():
    assert all(stage.packages for stage in stage_module.STAGES)
    assert [stage.name for stage in stage_module.STAGES] == [
        "train", "evaluate", "export", "quantize", "export_int8", "runtimes", "per_layer", "per_op", "profile"]
