"""The cached build: hits, misses when a field changes, --force, report.json, corrupt records."""

import json

import pytest

from edgekit.cli import main
from edgekit.errors import UserInputError
from edgekit.pipeline import build

quiet = dict(log=lambda _: None, until="evaluate")


def statuses(records):
    return {record.name: record.status for record in records}


def test_cache_hit_then_miss_when_a_recipe_field_changes(tiny_recipe, tmp_path):
    _, first = build(tiny_recipe(), tmp_path, **quiet)
    assert statuses(first) == {"train": "ran", "evaluate": "ran"}
    _, again = build(tiny_recipe(), tmp_path, **quiet)
    assert statuses(again) == {"train": "cached", "evaluate": "cached"}
    # an evaluation-only field: training stays cached
    _, eval_change = build(tiny_recipe(data={"max_eval_samples": 128}), tmp_path, **quiet)
    assert statuses(eval_change) == {"train": "cached", "evaluate": "ran"}
    _, lr_change = build(tiny_recipe(train={"lr": 0.003}), tmp_path, **quiet)
    assert statuses(lr_change) == {"train": "ran", "evaluate": "ran"}


def test_force_reruns_one_stage(tiny_recipe, tmp_path):
    build(tiny_recipe(), tmp_path, **quiet)
    _, forced = build(tiny_recipe(), tmp_path, force=("evaluate",), **quiet)
    assert statuses(forced) == {"train": "cached", "evaluate": "ran"}
    with pytest.raises(UserInputError, match="--force trian: no such stage"):
        build(tiny_recipe(), tmp_path, force=("trian",), **quiet)
    with pytest.raises(UserInputError, match=r"--until evalute: no such stage .*did you mean 'evaluate'"):
        build(tiny_recipe(), tmp_path, until="evalute", log=lambda _: None)


def test_a_changed_artifact_or_corrupt_record_is_recomputed(tiny_recipe, tmp_path):
    build(tiny_recipe(), tmp_path, **quiet)
    (tmp_path / "train/model.pt").write_bytes(b"tampered")
    _, records = build(tiny_recipe(), tmp_path, **quiet)
    assert statuses(records)["train"] == "ran"
    (tmp_path / ".edgekit/stages/evaluate.json").write_text("{broken")
    _, records = build(tiny_recipe(), tmp_path, **quiet)
    assert statuses(records) == {"train": "cached", "evaluate": "ran"}


def test_report_json_has_the_contract_fields(tiny_recipe, tmp_path):
    build(tiny_recipe(), tmp_path, **quiet)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["recipe"]["model"]["alpha"] == 0.25
    assert set(report["model"]) >= {"alpha", "resolution", "num_classes", "macs", "params"}
    assert report["model"]["macs"] > 0 and report["model"]["params"] > 0
    (entry,) = report["accuracy"]
    assert set(entry) >= {"artifact", "runtime", "top1", "top5", "samples"}
    assert entry["artifact"] == "train/model.pt"


def test_cli_build_twice_says_cached(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {alpha: 0.25, resolution: 32, num_classes: 10}\n"
                      "data: {max_train_samples: 128, max_eval_samples: 64}\ntrain: {epochs: 1, batch_size: 32}\n")
    out = tmp_path / "out"
    assert main(["build", str(recipe), "--out", str(out), "--until", "evaluate"]) == 0
    assert main(["build", str(recipe), "--out", str(out), "--until", "evaluate"]) == 0
    printed = capsys.readouterr().out
    assert "[train] cached" in printed and "[evaluate] cached" in printed
    assert "torch" in printed and str(out / "report.json") in printed


def test_cli_build_with_set_override(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {alpha: 0.25, resolution: 32, num_classes: 10}\n")
    args = ["build", str(recipe), "--out", str(tmp_path / "o"), "--set", "data.max_train_samples=64",
            "--set", "data.max_eval_samples=32", "--set", "train.epochs=1", "--until", "evaluate"]
    assert main(args) == 0
    report = json.loads((tmp_path / "o/report.json").read_text())
    assert report["training"]["images"] == 64 and report["accuracy"][0]["samples"] == 32


def test_an_identical_retrain_leaves_later_stages_cached(tiny_recipe, tmp_path):
    build(tiny_recipe(), tmp_path, **quiet)
    before = (tmp_path / "train/model.pt").read_bytes()
    _, records = build(tiny_recipe(), tmp_path, force=("train",), **quiet)
    assert (tmp_path / "train/model.pt").read_bytes() == before  # byte-identical, so the key of evaluate holds
    assert statuses(records) == {"train": "ran", "evaluate": "cached"}


def test_force_of_a_stage_after_until_says_so(tiny_recipe, tmp_path):
    with pytest.raises(UserInputError, match="--force profile: the stage does not run in this build, which stops "
                                             "after --until train"):
        build(tiny_recipe(), tmp_path, force=("profile",), until="train", log=lambda _: None)


def test_report_records_which_stages_finished(tiny_recipe, tmp_path):
    build(tiny_recipe(), tmp_path, **quiet)
    report = json.loads((tmp_path / "report.json").read_text())
    assert {key: report["build"][key] for key in ("complete", "stages_planned", "stages_finished")} == {
        "complete": True, "stages_planned": ["train", "evaluate"], "stages_finished": ["train", "evaluate"]}
