"""quantize.keep_float on a mid-network layer: in both formats the layer runs as a float kernel between int8
neighbours, every other layer stays int8, and the int8 check expects exactly the kept layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.models.layers import model_layers
from edgekit.runtimes import check_int8, get_runtime
from edgekit.runtimes.per_layer import per_layer_errors

KEPT = ("features.block7.pw.conv", "features.block3.dw.conv")  # a pointwise and a depthwise conv mid-network
FILES = (("int8.tflite", "litert"), ("int8.onnx", "onnxruntime"))
SAMPLES = 64


def export_pt2e(model, calibration: torch.Tensor, folder: Path, keep_float=()) -> dict[str, Path]:
    """The build's path: PT2E PTQ, then the tflite and onnx writers with the backend's export options."""
    from edgekit.export import write_tflite
    from edgekit.export.onnx import write_onnx
    from edgekit.quantize import get_backend
    from edgekit.quantize.algorithm import ptq

    backend = get_backend("pt2e")
    example = calibration[:2]
    quantized = ptq(backend, model, example, list(calibration.split(32)), per_channel=True, keep_float=keep_float)
    files = {"int8.tflite": write_tflite(quantized.converted, example, folder / "int8.tflite",
                                         **backend.export_options(quantized.converted, "tflite")),
             "int8.onnx": write_onnx(quantized.converted, example, folder / "int8.onnx", opset=17,
                                     **backend.export_options(quantized.converted, "onnx"))}
    return {"converted": quantized.converted, **files}


@pytest.fixture(scope="module")
def kept_files(tmp_path_factory, trained_tiny):
    torch.set_num_threads(1)
    calibration = trained_tiny.transform(trained_tiny.train_set.load(torch.arange(64)))
    return export_pt2e(trained_tiny.model(), calibration, tmp_path_factory.mktemp("keep-float"), keep_float=KEPT)


@pytest.fixture(scope="module")
def images(trained_tiny) -> np.ndarray:
    return trained_tiny.transform(trained_tiny.test_set.load(torch.arange(SAMPLES))).numpy()


@pytest.fixture(scope="module")
def forward_order(trained_tiny) -> list[str]:
    return [layer.name for layer in model_layers(trained_tiny.model(), torch.zeros(1, 3, 32, 32))]


@pytest.mark.parametrize("name, runtime", FILES)
def test_the_int8_check_expects_exactly_the_kept_layers(kept_files, forward_order, name, runtime):
    expected = check_int8(kept_files[name], runtime, expected_float=KEPT, layers=forward_order)
    assert expected["ok"], expected
    assert (expected["int8"], expected["float"]) == (26, 2) and sorted(expected["float_layers"]) == sorted(KEPT)
    plain = check_int8(kept_files[name], runtime)  # a build without keep_float would fail on these two
    assert not plain["ok"] and plain["float"] == 2
    other = check_int8(kept_files[name], runtime, expected_float=("features.block7.pw.conv", "features.block4.dw.conv"),
                       layers=forward_order)
    assert not other["ok"], other  # right count, wrong layer: still a failure


@pytest.mark.parametrize("name, runtime", FILES)
def test_kept_layers_run_float_in_the_runtime_and_compute_what_torch_computes(kept_files, trained_tiny, images,
                                                                             name, runtime):
    records = per_layer_errors(kept_files[name], runtime, trained_tiny.model(), images)
    assert sorted(record["layer"] for record in records if record["kernel"] == "float") == sorted(KEPT)
    session = get_runtime(runtime).load(kept_files[name], threads=1)
    if runtime == "litert":
        assert session.input_spec().dtype == "int8"  # strict QDQ conversion keeps edgekit's int8 I/O
    logits = session.run(images)
    with torch.no_grad():
        reference = kept_files["converted"](torch.from_numpy(images)).numpy()
    step = session.output_quantization()[0] if runtime == "litert" else float(np.abs(reference).max()) / 127
    # float kernels between int8 ones round differently from torch: a few output steps apart, rarely more
    assert np.abs(logits - reference).max() <= 8 * step and np.abs(logits - reference).mean() <= step, step
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.95


# --- the NNCF backend (ONNX only): the same layers and the classifier -----------------------------------------

NNCF_KEPT = (*KEPT, "classifier")


@pytest.fixture(scope="module")
def nncf_kept(tmp_path_factory, trained_tiny):
    from edgekit.export.onnx import write_onnx
    from edgekit.quantize import get_backend
    from edgekit.quantize.algorithm import ptq

    torch.set_num_threads(1)
    calibration = trained_tiny.transform(trained_tiny.train_set.load(torch.arange(64)))
    backend = get_backend("nncf")
    example = calibration[:2]
    quantized = ptq(backend, trained_tiny.model(), example, list(calibration.split(32)), per_channel=True,
                    keep_float=NNCF_KEPT)
    path = write_onnx(quantized.converted, example, tmp_path_factory.mktemp("nncf-keep-float") / "int8.onnx",
                      opset=17, **backend.export_options(quantized.converted, "onnx"))
    return quantized.converted, path


def test_nncf_keeps_exactly_the_kept_layers_float(nncf_kept, forward_order):
    _converted, path = nncf_kept
    expected = check_int8(path, "onnxruntime", expected_float=NNCF_KEPT, layers=forward_order)
    assert expected["ok"], expected
    assert (expected["int8"], expected["float"]) == (25, 3) and sorted(expected["float_layers"]) == sorted(NNCF_KEPT)


def test_nncf_kept_layers_compute_what_torch_computes(nncf_kept, trained_tiny, images):
    converted, path = nncf_kept
    records = per_layer_errors(path, "onnxruntime", trained_tiny.model(), images)
    assert sorted(record["layer"] for record in records if record["kernel"] == "float") == sorted(NNCF_KEPT)
    logits = get_runtime("onnxruntime").load(path, threads=1).run(images)
    with torch.no_grad():
        reference = converted(torch.from_numpy(images)).numpy()
    step = float(np.abs(reference).max()) / 127
    assert np.abs(logits - reference).max() <= 8 * step and (logits.argmax(1) == reference.argmax(1)).mean() >= 0.95


def test_nncf_keep_float_restores_from_its_saved_state(nncf_kept, trained_tiny):
    """QAT's checkpoint and the export stage rebuild the NNCF model from its saved state: the kept layers stay
    without weight quantizers."""
    from edgekit.quantize import QuantScheme, get_backend
    from edgekit.quantize.algorithm import ptq

    backend = get_backend("nncf")
    calibration = trained_tiny.transform(trained_tiny.train_set.load(torch.arange(32)))
    scheme = QuantScheme(per_channel_weights=True, qat=False, keep_float=NNCF_KEPT)
    prepared = ptq(backend, trained_tiny.model(), calibration[:2], [calibration], per_channel=True,
                   keep_float=NNCF_KEPT).prepared
    restored = backend.restore(trained_tiny.model(), calibration[:2], scheme, backend.state_dict(prepared))
    with torch.no_grad():
        torch.testing.assert_close(backend.convert(restored)(calibration), backend.convert(prepared)(calibration))
    assert len(backend.no_weight_decay(restored)) == len(backend.no_weight_decay(prepared))
