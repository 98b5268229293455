"""Float training on a real Fashion-MNIST slice: determinism, exact resume, NaN guard, weights loading."""

import pytest
import torch

from edgekit.data import BatchTransform, build_datasets
from edgekit.errors import TrainingDiverged, WeightsError
from edgekit.pipeline import build
from edgekit.stages import model_from_recipe
from edgekit.train import load_weights
from edgekit.train.loop import _batch


class Interrupt(Exception):
    pass


def stop_after(steps):
    def hook(step):
        if step == steps:
            raise Interrupt

    return hook


def first_batch_loss(recipe):
    torch.manual_seed(recipe.seed)
    model = model_from_recipe(recipe)
    train_set, _ = build_datasets(recipe.data, recipe.model.resolution, recipe.seed)
    transform = BatchTransform(recipe.model.resolution, recipe.data.mean, recipe.data.std, True)
    images, labels = _batch(train_set, transform, recipe.seed, 0, 0, recipe.train.batch_size, 0)
    return torch.nn.functional.cross_entropy(model(images), labels).item(), labels


def test_same_seed_same_subset_and_first_batch_loss(tiny_recipe):
    loss_a, labels_a = first_batch_loss(tiny_recipe())
    loss_b, labels_b = first_batch_loss(tiny_recipe())
    loss_c, _ = first_batch_loss(tiny_recipe().model_copy(update={"seed": 1}))
    assert loss_a == loss_b and torch.equal(labels_a, labels_b)
    assert loss_a != loss_c


def state(out_dir):
    return torch.load(out_dir / "train/model.pt", weights_only=True)


def test_interrupted_build_resumes_to_the_same_result(tiny_recipe, tmp_path):
    recipe = tiny_recipe()  # 16 steps, checkpoints every 4
    report, _ = build(recipe, tmp_path / "straight", log=lambda _: None, until="evaluate")
    with pytest.raises(Interrupt):
        build(recipe, tmp_path / "resumed", on_step=stop_after(10), log=lambda _: None, until="evaluate")
    checkpoint = torch.load(tmp_path / "resumed/train/checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 8
    resumed_report, records = build(recipe, tmp_path / "resumed", log=lambda _: None, until="evaluate")
    assert resumed_report["training"]["resumed_from_step"] == 8
    straight, resumed = state(tmp_path / "straight"), state(tmp_path / "resumed")
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    # byte-identical too: later stages are keyed on the file's hash
    assert (tmp_path / "straight/train/model.pt").read_bytes() == (tmp_path / "resumed/train/model.pt").read_bytes()
    assert resumed_report["accuracy"][0]["top1"] == report["accuracy"][0]["top1"]
    assert not (tmp_path / "resumed/train/checkpoint.pt").exists()


def test_training_learns_on_real_data(tiny_recipe, tmp_path):
    recipe = tiny_recipe(data={"max_train_samples": 2048}, train={"epochs": 3, "lr": 0.01, "batch_size": 64})
    report, _ = build(recipe, tmp_path, log=lambda _: None, until="evaluate")
    (entry,) = report["accuracy"]
    assert entry["samples"] == 256 and entry["runtime"] == "torch"
    assert entry["top1"] > 35.0  # 10 classes: chance is 10%; this run measured 47%
    assert entry["top5"] >= entry["top1"]
    assert report["training"]["history"][-1]["loss"] < report["training"]["history"][0]["loss"]


def test_nan_guard_stops_with_a_clear_message(tiny_recipe, tmp_path):
    recipe = tiny_recipe(train={"lr": 1e6, "optimizer": "sgd"})
    with pytest.raises(TrainingDiverged, match=r"training diverged: loss .* at step \d+ .*train\.lr=1e\+06"):
        build(recipe, tmp_path, log=lambda _: None, until="evaluate")


def test_weights_load_into_a_fitting_model(tiny_recipe, tmp_path):
    build(tiny_recipe(), tmp_path / "a", log=lambda _: None, until="evaluate")
    weights = tmp_path / "a/train/model.pt"
    report, _ = build(tiny_recipe(model={"weights": str(weights)}, train={"epochs": 0}), tmp_path / "b", log=lambda _: None, until="evaluate")
    assert all(torch.equal(state(tmp_path / "a")[k], state(tmp_path / "b")[k]) for k in state(tmp_path / "a"))
    assert report["training"]["steps"] == 0


@pytest.mark.parametrize("change, pattern", [
    ({"alpha": 0.5}, r"shape mismatches: features\.stem\.conv\.weight \(8, 3, 3, 3\) vs \(16, 3, 3, 3\)"),
    ({"conv": "standard"}, r"missing keys: .*unexpected keys: "),
])
def test_weights_that_do_not_fit_name_the_problem(tiny_recipe, tmp_path, change, pattern):
    source = model_from_recipe(tiny_recipe())
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = model_from_recipe(tiny_recipe(model=change))
    with pytest.raises(WeightsError, match=r"model\.weights: .*w\.pt does not fit the recipe's model: " + pattern):
        load_weights(target, tmp_path / "w.pt")


def test_weights_file_errors(tiny_recipe, tmp_path):
    model = model_from_recipe(tiny_recipe())
    with pytest.raises(WeightsError, match="file not found"):
        load_weights(model, tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="not a loadable state dict"):
        load_weights(model, tmp_path / "junk.pt")


def test_weight_decay_only_on_weights_and_never_on_exempt_parameters(tiny_recipe):
    from edgekit.train.loop import make_optimizer

    recipe = tiny_recipe(train={"weight_decay": 4e-5})
    model = model_from_recipe(recipe)
    convs = [module.weight for module in model.modules() if isinstance(module, torch.nn.Conv2d)]
    decayed, plain = make_optimizer(model, recipe.train).param_groups
    assert decayed["weight_decay"] == 4e-5 and plain["weight_decay"] == 0.0
    assert {id(p) for p in convs} <= {id(p) for p in decayed["params"]}
    assert all(p.ndim == 1 for p in plain["params"])  # biases and BN
    decayed, plain = make_optimizer(model, recipe.train, exempt=convs[:3]).param_groups
    assert {id(p) for p in convs[:3]} <= {id(p) for p in plain["params"]}
    assert not {id(p) for p in convs[:3]} & {id(p) for p in decayed["params"]}
