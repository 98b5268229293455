"""Small real models for the target tests: MobileNet v1 alpha 0.25 at 32x32, 10 classes.

The session's trained model (tests/conftest.py ``trained_tiny``: accuracy far above chance, so quantised
outputs are not flat), exported as float ONNX, int8 QDQ ONNX in the layout Qualcomm's HTP accepts
(onnxruntime ``quantize_static``: uint8 per-tensor activations, int8 per-channel weights), float TFLite
and int8 TFLite (PT2E PTQ with litert-torch). Each builder writes into ``folder`` and returns the path;
``Models`` builds lazily and caches, so a test module pays only for the files it uses.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.data import BatchTransform

RESOLUTION = 32
TEST_SAMPLES = 40


class Models:
    """Lazily built model files and a real Fashion-MNIST .npz, all under ``folder``, from the session's
    trained model (tests/conftest.py ``trained_tiny``)."""

    def __init__(self, folder: Path, trained):
        self.folder = Path(folder)
        self.trained = trained

    @cached_property
    def _data(self):
        return self.trained.train_set, self.trained.test_set.subset(TEST_SAMPLES, seed=0)

    @cached_property
    def transform(self) -> BatchTransform:
        return self.trained.transform

    @cached_property
    def torch_model(self) -> torch.nn.Module:
        return self.trained.model()

    @cached_property
    def calibration(self) -> torch.Tensor:
        return self.transform(self._data[0].load(torch.arange(64)))

    @cached_property
    def inputs_npz(self) -> Path:
        """Real test images, float32 NCHW normalised, with their labels: what ``--inputs`` takes."""
        test = self._data[1]
        path = self.folder / "fashion_mnist_test.npz"
        images = self.transform(test.load(torch.arange(len(test)))).numpy().astype(np.float32)
        np.savez(path, images=images, labels=test.labels.numpy())
        return path

    @cached_property
    def float_onnx(self) -> Path:
        path = self.folder / "float.onnx"
        torch.onnx.export(self.torch_model, _example(), str(path), dynamo=True, opset_version=17,
                          external_data=False, input_names=["image"], output_names=["logits"])
        return path

    @cached_property
    def int8_onnx(self) -> Path:
        return quantize_onnx(self.float_onnx, self.calibration, self.folder / "int8.onnx")

    @cached_property
    def float_tflite(self) -> Path:
        import litert_torch

        path = self.folder / "float.tflite"
        litert_torch.convert(self.torch_model, _example()).export(str(path))
        return path

    @cached_property
    def int8_tflite(self) -> Path:
        return int8_tflite(self.torch_model, self.calibration, self.folder / "int8.tflite")


def _example(batch: int = 1) -> tuple[torch.Tensor]:
    return (torch.zeros(batch, 3, RESOLUTION, RESOLUTION),)


def quantize_onnx(float_path: Path, calibration: torch.Tensor, path: Path, *, per_channel_activations=False) -> Path:
    """QDQ int8: uint8 per-tensor activations, int8 per-channel weights (the layout HTP runs)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter({"image": chunk.numpy()} for chunk in calibration.split(1))

        def get_next(self):
            return next(self.batches, None)

    extra = {"ActivationPerChannel": True} if per_channel_activations else {}
    quantize_static(str(float_path), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, extra_options=extra)
    return path


def int8_tflite(model: torch.nn.Module, calibration: torch.Tensor, path: Path) -> Path:
    """The product's path: PT2E post-training quantisation and ``write_tflite`` (every op int8, int8 NHWC input)."""
    from edgekit.export import write_tflite
    from edgekit.quantize import get_backend
    from edgekit.quantize.algorithm import ptq

    backend = get_backend("pt2e")
    quantized = ptq(backend, model, _example(2)[0], list(calibration.split(16)), per_channel=True)
    return write_tflite(quantized.converted, _example()[0], path,
                        **backend.export_options(quantized.converted, "tflite"))


def reference_logits(model_path: Path, images: np.ndarray) -> np.ndarray:
    """Float logits of ``images`` (NCHW float32) from the model's runtime in this process, one at a time."""
    if model_path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: images[i:i + 1]})[0] for i in range(len(images))])
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for i in range(len(images)):
        image = images[i:i + 1]
        if inp["shape"][-1] == 3:
            image = image.transpose(0, 2, 3, 1)
        scale, zero = inp["quantization"]
        if scale:
            image = np.clip(np.round(image / scale + zero), -128, 127)
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(image.astype(inp["dtype"])))
        interpreter.invoke()
        logits = interpreter.get_tensor(out["index"]).astype(np.float32)
        scale, zero = out["quantization"]
        rows.append((logits - zero) * scale if scale else logits)
    return np.concatenate(rows)


def serve_or_skip(target, kind: str):
    """Fixture body: yield ``target`` when it can run here, else skip saying why; clean it up either way."""
    ok, why = target.available()
    if not ok:
        target.cleanup()
        pytest.skip(f"{kind} not set up here: {why}")
    yield target
    target.cleanup()
