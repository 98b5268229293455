"""Real model files for the runtime tests, built once per session.

The session's trained MobileNet v1 (tests/conftest.py ``trained_tiny``: alpha 0.25, 32x32, 10 classes, ~70% top-1), then:
float ONNX (dynamo export, dynamic batch), int8 ONNX (onnxruntime ``quantize_static``: QDQ, per-channel,
calibrated on 64 real images), float TFLite (NCHW input, batch fixed at 1) and int8 TFLite (PT2E PTQ,
int8 I/O, NHWC input, through edgekit's own PT2E backend and ``write_tflite``) and the same int8 TFLite rewritten to
float I/O. Building them takes ~30 s of CPU (each conversion 5-8 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.data import BatchTransform, ImageSet
from edgekit.export.tflite_io import write_float_io
from edgekit.train import configure_torch

RESOLUTION = 32
CALIBRATION_IMAGES = 64
TEST_IMAGES = 300


@dataclass
class Fixtures:
    model: torch.nn.Module
    test_set: ImageSet
    transform: BatchTransform
    images: np.ndarray  # the whole test set, preprocessed: float32 NCHW
    labels: np.ndarray
    quantized_graph: torch.nn.Module  # the PT2E-converted (fake-quantised) torch graph behind int8.tflite, NCHW
    files: dict[str, Path]  # "float.onnx", "int8.onnx", "float.tflite", "int8.tflite", "int8_float_io.tflite"


@pytest.fixture(scope="session")
def built(tmp_path_factory, trained_tiny) -> Fixtures:
    folder = tmp_path_factory.mktemp("runtimes")
    threads_before = torch.get_num_threads()
    configure_torch(1)  # one core: the machine is shared
    torch.manual_seed(0)
    try:
        train_set, transform = trained_tiny.train_set, trained_tiny.transform
        test_set = trained_tiny.test_set.subset(TEST_IMAGES, seed=0)
        model = trained_tiny.model()
        calibration = transform(train_set.load(torch.arange(CALIBRATION_IMAGES)))
        files = {
            "float.onnx": _export_onnx(model, folder / "float.onnx"),
            "float.tflite": _export_tflite(model, folder / "float.tflite"),
        }
        quantized_graph, files["int8.tflite"] = _export_int8_tflite(model, calibration, folder / "int8.tflite")
        files["int8_float_io.tflite"] = write_float_io(files["int8.tflite"], folder / "int8_float_io.tflite")
        files["int8.onnx"] = _quantize_onnx(files["float.onnx"], calibration, folder / "int8.onnx")
    finally:
        torch.set_num_threads(threads_before)
    images = transform(test_set.load(torch.arange(len(test_set)))).numpy()
    return Fixtures(model, test_set, transform, images, test_set.labels.numpy(), quantized_graph, files)


@pytest.fixture(scope="session")
def torch_logits(built) -> np.ndarray:
    with torch.no_grad():
        return built.model(torch.from_numpy(built.images)).numpy()


@pytest.fixture(scope="session")
def batch_one_onnx(built, tmp_path_factory) -> Path:
    """The float ONNX with its batch dimension pinned to 1, as some exporters write it."""
    import onnx

    model = onnx.load(str(built.files["float.onnx"]))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path_factory.mktemp("batch1") / "batch1.onnx"
    onnx.save(model, str(path))
    return path


def _example(batch: int = 1) -> tuple[torch.Tensor]:
    return (torch.zeros(batch, 3, RESOLUTION, RESOLUTION),)


def _export_onnx(model: torch.nn.Module, path: Path) -> Path:
    batch = torch.export.Dim("batch")
    torch.onnx.export(model, _example(), str(path), dynamo=True, opset_version=17, external_data=False,
                      dynamic_shapes=({0: batch},), input_names=["image"], output_names=["logits"])
    return path


def _quantize_onnx(float_path: Path, calibration: torch.Tensor, path: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter({"image": chunk.numpy()} for chunk in calibration.split(16))

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(float_path), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return path


def _export_tflite(model: torch.nn.Module, path: Path) -> Path:
    import litert_torch

    litert_torch.convert(model, _example()).export(str(path))
    return path


def _export_int8_tflite(model: torch.nn.Module, calibration: torch.Tensor, path: Path) -> tuple[torch.nn.Module, Path]:
    """The product's path: PT2E PTQ (per-channel) and ``write_tflite``, which converts at batch 1 with NHWC input."""
    from edgekit.export import write_tflite
    from edgekit.quantize import get_backend
    from edgekit.quantize.algorithm import ptq

    backend = get_backend("pt2e")
    quantized = ptq(backend, model, _example(2)[0], list(calibration.split(16)), per_channel=True)
    write_tflite(quantized.converted, _example(1)[0], path, **backend.export_options(quantized.converted, "tflite"))
    return quantized.converted, path
