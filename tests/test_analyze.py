"""quantize.max_drop and `edgekit analyze` on the per-tensor recipe (a smaller slice: the session's trained model
with an outlier channel, no training): the build keeps the fewest worst layers in float that bring PTQ within
max_drop of float, the runtimes confirm it, and analyze reports each step's top-1 and latency cost."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO
from runtimes.test_per_layer_spoiled import READER, SPOILED, outlier_channel_state

MAX_DROP = 0.5
EVAL_IMAGES = 300


@pytest.fixture(scope="module")
def max_drop_build(tmp_path_factory, trained_tiny):
    from edgekit.artifacts import save_torch
    from edgekit.pipeline import build
    from edgekit.recipe import load_recipe

    folder = tmp_path_factory.mktemp("max-drop")
    weights = folder / "spoiled.pt"
    save_torch(weights, outlier_channel_state(trained_tiny.state))
    overrides = [f"model.weights={weights}", "train.epochs=0", "model.resolution=32", "data.max_train_samples=512",
                 f"data.max_eval_samples={EVAL_IMAGES}", "quantize.method=ptq", f"quantize.max_drop={MAX_DROP}",
                 f"quantize.sensitivity_samples={EVAL_IMAGES}", "quantize.calibration_batches=2",
                 "evaluate.per_layer=false", "profile.devices=[devices/host-smoke.yaml]", "train.threads=1"]
    recipe = load_recipe(REPO / "recipes/mobilenet_0.25_32_per_tensor.yaml", overrides)
    report, _ = build(recipe, folder / "build", log=lambda line: None)
    return folder / "build", report


def test_max_drop_keeps_the_fewest_worst_layers_float_and_the_runtimes_agree(max_drop_build):
    _, report = max_drop_build
    search = report["quantization"]["max_drop"]
    kept = report["quantization"]["keep_float"]
    assert search["reached"] and kept == search["float_layers"] and len(kept) >= 1
    assert {f"{SPOILED}.conv", f"{READER}.conv"} <= set(kept), search["steps"]
    steps = search["steps"]
    assert [len(step["float_layers"]) for step in steps] == list(range(len(steps)))
    assert all(step["drop"] > MAX_DROP for step in steps[:-1]) and steps[-1]["drop"] <= MAX_DROP  # the fewest
    float_top1 = {entry["runtime"]: entry["top1"] for entry in report["accuracy"] if entry["method"] == "float"
                  and entry["runtime"] != "torch"}
    for entry in (entry for entry in report["accuracy"] if entry["method"] == "ptq"):
        # the search ran in torch on these same images; one image is 1/3 point
        assert float_top1[entry["runtime"]] - entry["top1"] <= MAX_DROP + 100 / EVAL_IMAGES, entry
    kernels = report["int8_kernels"]
    assert kernels and all(check["ok"] and sorted(check["float_layers"]) == sorted(kept) for check in kernels)


def test_analyze_reports_each_steps_accuracy_and_latency(max_drop_build):
    from edgekit.cli import main
    from edgekit.report.schema import validate_report

    build_dir, _ = max_drop_build
    assert main(["analyze", str(build_dir), "--samples", str(EVAL_IMAGES)]) == 0
    report = json.loads((build_dir / "report.json").read_text())
    validate_report(report, "report.json")
    steps = report["analysis"]["max_drop"]["steps"]
    for step in steps:
        assert {entry["runtime"] for entry in step["files"]} == {"litert", "onnxruntime"}
        for entry in step["files"]:
            assert entry["cost"]["metric"] == "latency" and entry["cost"]["obtained"] == "real"
            assert entry["cost"]["value"] > 0 and entry["cost"]["device"] == "host-smoke"
    first, last = steps[0]["files"], steps[-1]["files"]
    assert min(entry["top1"] for entry in last) > max(entry["top1"] for entry in first)
    html = (build_dir / "report.html").read_text()
    assert "Sensitivity: which layer loses the accuracy" in html and "max_drop 0.5 points: reached" in html
