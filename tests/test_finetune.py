"""Fine-tuning: train.freeze (none | backbone | backbone_then_all), train.unfreeze_after, train.head_lr_multiplier,
and a fine-tune of an imported Keras MobileNet through QAT and both int8 exports."""

import json

import pytest
import torch
import yaml

from edgekit.cli import main
from edgekit.data import BatchTransform, build_split
from edgekit.models import create_model
from edgekit.recipe import validate
from edgekit.train import train
from edgekit.train.loop import backbone_frozen, make_optimizer

from conftest import REPO, tiny_recipe_data
from keras_mobilenet import make_keras_mobilenet


def tiny_config(**train_values):
    recipe = validate(tiny_recipe_data(train={"epochs": 1, "batch_size": 16, "threads": 1, "optimizer": "sgd",
                                              "lr": 0.05, "schedule": "constant", "weight_decay": 0.0,
                                              **train_values},
                                       data={"max_train_samples": 64, "augment": False}), source="<test>")
    return recipe


def test_backbone_frozen_is_a_function_of_the_step():
    config = tiny_config(freeze="backbone_then_all", unfreeze_after=0.25).train
    assert [backbone_frozen(config, step, 8) for step in range(8)] == [True, True] + [False] * 6
    assert all(backbone_frozen(tiny_config(freeze="backbone").train, step, 8) for step in range(8))
    assert not any(backbone_frozen(tiny_config().train, step, 8) for step in range(8))


def test_the_head_gets_its_own_learning_rate_scale():
    model = create_model("mobilenet_v1", alpha=0.25, num_classes=10)
    groups = make_optimizer(model, tiny_config(head_lr_multiplier=10.0).train).param_groups
    head = {id(p) for p in model.classifier.parameters()}
    assert [group["lr_scale"] for group in groups] == [1.0, 1.0, 10.0, 10.0]
    assert {id(p) for group in groups[2:] for p in group["params"]} == head
    assert not head & {id(p) for group in groups[:2] for p in group["params"]}
    assert len(make_optimizer(model, tiny_config().train).param_groups) == 2  # unchanged without a multiplier


def _run(tmp_path, steps_seen=None, **train_values):
    """Train a fresh seeded tiny model for 4 steps of 16 real Fashion-MNIST images; return (before, after)."""
    recipe = tiny_config(**train_values)
    torch.manual_seed(0)
    model = create_model("mobilenet_v1", alpha=0.25, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dataset = build_split(recipe.data, recipe.model.resolution, recipe.seed, "train")
    transform = BatchTransform(recipe.model.resolution, recipe.data.mean, recipe.data.std, augment=False)
    snapshots = {}

    def on_step(done):
        snapshots[done] = {k: v.clone() for k, v in model.state_dict().items()}

    train(model, dataset, transform, recipe.train, seed=0, checkpoint_path=tmp_path / "c.pt",
          checkpoint_key=str(train_values), on_step=on_step)
    assert all(p.requires_grad for p in model.parameters())  # handed back trainable (QAT trains everything)
    return before, snapshots


def _changed(before, after, prefix):
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


@pytest.mark.slow
def test_freeze_backbone_trains_the_classifier_only(tmp_path):
    before, steps = _run(tmp_path, freeze="backbone")
    after = steps[4]
    assert _changed(before, after, "features.") == []  # weights and batch-norm statistics alike
    assert set(_changed(before, after, "classifier.")) == {"classifier.weight", "classifier.bias"}


@pytest.mark.slow
def test_backbone_then_all_thaws_the_backbone_after_the_fraction(tmp_path):
    before, steps = _run(tmp_path, freeze="backbone_then_all", unfreeze_after=0.5)
    assert _changed(before, steps[2], "features.") == []
    assert _changed(before, steps[2], "classifier.")
    thawed = _changed(steps[2], steps[3], "features.")
    assert "features.stem.conv.weight" in thawed and "features.block13.pw.bn.running_var" in thawed


@pytest.mark.slow
def test_head_lr_multiplier_scales_the_classifiers_step_only(tmp_path):
    before, plain = _run(tmp_path / "plain")
    _, scaled = _run(tmp_path / "scaled", head_lr_multiplier=10.0)
    step_plain = plain[1]["classifier.weight"] - before["classifier.weight"]
    step_scaled = scaled[1]["classifier.weight"] - before["classifier.weight"]
    assert torch.allclose(step_scaled, 10 * step_plain, rtol=1e-4, atol=1e-7)
    assert torch.equal(plain[1]["features.stem.conv.weight"], scaled[1]["features.stem.conv.weight"])


@pytest.mark.slow
def test_fine_tune_an_imported_keras_mobilenet_through_qat_and_both_exports(tmp_path, capsys, monkeypatch):
    """Keras' MobileNet (α 0.25, random weights, 1000 classes) -> 10 Fashion-MNIST classes at 32 px with the
    recipe's own preprocessing taken from the weights, the backbone frozen for the first half, then QAT and
    int8 .tflite and .onnx, evaluated in LiteRT and onnxruntime."""
    keras = make_keras_mobilenet(tmp_path / "keras", alpha=0.25, size=32, classes=1000)
    recipe = tmp_path / "finetune.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_data(
        model={"activation": "relu6", "padding": "same", "weights": str(keras["weights_h5"])},
        data={"normalize": "from_weights", "max_train_samples": 256, "max_eval_samples": 128},
        train={"freeze": "backbone_then_all", "unfreeze_after": 0.5, "head_lr_multiplier": 10.0, "epochs": 1},
        quantize={"method": "qat", "epochs": 0.25, "calibration_batches": 2},
        evaluate={"per_layer": False, "threads": 1}, profile={"devices": []})))
    monkeypatch.chdir(REPO)
    code = main(["build", str(recipe), "--out", str(tmp_path / "out"), "--until", "runtimes"])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert ("keras.weights.h5 has 1000 classes, model.num_classes is 10: loaded the backbone, initialised a new "
            "10-class classifier") in err
    assert "differ from the preprocessing" not in err  # from_weights took Keras' [-1, 1]
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["recipe"]["data"]["mean"] == [0.5, 0.5, 0.5]
    written = {entry["name"] for entry in report["artifacts"]}
    assert {"qat_tflite", "qat_onnx"} <= written, written
    runtimes = {(entry["runtime"], entry["method"]) for entry in report["accuracy"]}
    assert {("litert", "qat"), ("onnxruntime", "qat")} <= runtimes, runtimes
