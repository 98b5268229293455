"""A tensor spoiled on purpose (an outlier channel in a conv's output, the float model's function unchanged) is
found inside LiteRT and inside onnxruntime: the per-layer error ranks the conv that reads it worst, and the
sensitivity ranking puts the conv that writes it and the one that reads it on top.
(tests/runtimes/test_per_layer.py spoils a weight scale inside the written files instead.)"""

from __future__ import annotations

import numpy as np
import torch

from edgekit.runtimes.per_layer import per_layer_errors, worst_layers

SPOILED, READER = "features.block5.pw", "features.block6.dw"  # the spoiled conv block and the depthwise reading it
OUTLIER_CHANNEL, FACTOR = 3, 300.0


def outlier_channel_state(state: dict) -> dict:
    """``state`` with one output channel of SPOILED's conv scaled by FACTOR (its BN scale and shift) and the
    depthwise conv that reads it scaled back: the same float function (ReLU commutes with a positive scale),
    but the channel now sets the int8 range of the whole tensor and of the conv's per-tensor weights."""
    spoiled = {key: value.clone() for key, value in state.items()}
    spoiled[f"{SPOILED}.bn.weight"][OUTLIER_CHANNEL] *= FACTOR
    spoiled[f"{SPOILED}.bn.bias"][OUTLIER_CHANNEL] *= FACTOR
    spoiled[f"{READER}.conv.weight"][OUTLIER_CHANNEL] /= FACTOR
    return spoiled


def spoiled_model(trained_tiny):
    model = trained_tiny.model()
    model.load_state_dict(outlier_channel_state(trained_tiny.state))
    return model.eval()


def test_the_spoiled_model_computes_what_the_trained_one_computes(trained_tiny):
    images = trained_tiny.transform(trained_tiny.test_set.load(torch.arange(32)))
    with torch.no_grad():
        np.testing.assert_allclose(spoiled_model(trained_tiny)(images), trained_tiny.model()(images), atol=1e-4)


def test_an_outlier_channel_is_ranked_worst_in_both_runtimes_and_by_sensitivity(trained_tiny, tmp_path):
    from edgekit.models.layers import model_layers
    from edgekit.quantize import get_backend
    from edgekit.quantize.algorithm import ptq
    from edgekit.quantize.sensitivity import SwitchedGraph, layer_sensitivity, top1
    from quantize.test_keep_float import export_pt2e

    torch.set_num_threads(1)
    model = spoiled_model(trained_tiny)
    calibration = trained_tiny.transform(trained_tiny.train_set.load(torch.arange(64)))
    files = export_pt2e(model, calibration, tmp_path)
    test_images = trained_tiny.transform(trained_tiny.test_set.load(torch.arange(200)))
    for name, runtime in (("int8.tflite", "litert"), ("int8.onnx", "onnxruntime")):
        records = per_layer_errors(files[name], runtime, model, test_images[:64].numpy())
        # the outlier channel dominates the power of the spoiled conv's own output, so its SQNR hardly moves: the
        # crushed channels show where the depthwise conv scales the outlier back down
        assert worst_layers(records)[0]["layer"] == f"{READER}.conv", (runtime, worst_layers(records))

    labels = trained_tiny.test_set.labels[:200]
    layers = [layer.name for layer in model_layers(model, calibration[:1])]
    converted = ptq(get_backend("pt2e"), model, calibration[:2], list(calibration.split(32)), per_channel=True).converted
    ranking = layer_sensitivity(SwitchedGraph(converted, layers), test_images, labels,
                                float_top1=top1(model, test_images, labels))
    # the crushed tensor sits between the spoiled conv and the depthwise that reads it: both rank on top
    assert {record["layer"] for record in ranking["layers"][:2]} == {f"{SPOILED}.conv", f"{READER}.conv"}, ranking
    assert ranking["int8_top1"] < ranking["float_top1"] - 2
