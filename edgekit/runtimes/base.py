"""The one interface every inference runtime implements: ``Runtime.load(path) -> Session``.

A ``Session`` always takes a float32 NCHW batch, normalised like the training data, and returns float32
logits. What the model file itself wants (NHWC input, int8 input/output tensors, a batch fixed at 1) is
the session's business: it transposes, quantizes and dequantizes, and splits or resizes batches.

Built-in runtimes: ``onnxruntime`` (.onnx) and ``litert`` (.tflite). Each backend module imports its
runtime package only when a model is loaded. Later runtimes (OpenVINO for .onnx/.xml, Qualcomm QNN through
onnxruntime-qnn) plug in with ``register_runtime(name, "module:Class")``; which files a runtime loads is
the format table's business (``edgekit.formats``).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, UserInputError, suggest

Quantization = tuple[float, int]  # (scale, zero_point): real = scale * (q - zero_point)

_RUNTIMES: dict[str, str] = {
    "onnxruntime": "edgekit.runtimes.onnxruntime_rt:OnnxRuntime",
    "litert": "edgekit.runtimes.litert_rt:LiteRTRuntime",
    "openvino": "edgekit.runtimes.openvino_rt:OpenVINORuntime",
    "executorch": "edgekit.runtimes.executorch_rt:ExecuTorchRuntime",
}


class RuntimeFailure(EdgekitError):
    """A runtime could not load or run a model file. Exit code 1."""


class RuntimeUnavailable(RuntimeFailure):
    """The runtime's Python package is not installed here."""


@dataclass(frozen=True)
class TensorSpec:
    """The model's own input: ``shape`` has None for a dynamic dimension; ``dtype`` is a numpy name."""

    name: str
    shape: tuple[int | None, ...]
    layout: str  # "NCHW" or "NHWC"
    dtype: str
    quantization: Quantization | None


class Session(ABC):
    """A loaded model. Subclasses implement ``_run_native`` on arrays already in the model's layout/dtype."""

    def __init__(self, path: Path, threads: int):
        self.path = path
        self.threads = threads

    def _single_input_output(self, inputs: list, outputs: list) -> tuple:
        """(the input, the output): a classifier file has exactly one of each."""
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeFailure(f"{self.path}: expected one input and one output, the model has "
                                 f"{len(inputs)} inputs and {len(outputs)} outputs")
        return inputs[0], outputs[0]

    @abstractmethod
    def input_spec(self) -> TensorSpec:
        """Shape, layout, dtype and quantisation of the model's input tensor."""

    @abstractmethod
    def output_quantization(self) -> Quantization | None:
        """The (scale, zero_point) grid the logits lie on, or None for a float output."""

    @abstractmethod
    def describe(self) -> dict:
        """Facts for the report: runtime, version, provider or delegate actually in use, threads."""

    @abstractmethod
    def _run_native(self, inputs: np.ndarray) -> np.ndarray:
        """Run a batch already in the model's layout and dtype; return the raw output (any batch size)."""

    def _whole_or_one_by_one(self, inputs: np.ndarray, invoke) -> np.ndarray:
        """``invoke`` on the whole batch, or image by image when the model's batch is fixed at 1."""
        if self.input_spec().shape[0] == 1 and len(inputs) > 1:
            return np.concatenate([invoke(inputs[index : index + 1]) for index in range(len(inputs))])
        return invoke(inputs)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Float32 NCHW normalised images (B, C, H, W) -> float32 logits (B, classes)."""
        spec = self.input_spec()
        inputs = self._to_model_input(np.asarray(batch, dtype=np.float32), spec)
        outputs = self._run_native(inputs)
        if not np.issubdtype(outputs.dtype, np.integer):
            return outputs.astype(np.float32, copy=False)
        grid = self.output_quantization()
        if grid is None:
            raise RuntimeFailure(f"{self.path}: output is {outputs.dtype} but carries no quantisation parameters")
        return dequantize(outputs, grid)

    def _to_model_input(self, batch: np.ndarray, spec: TensorSpec) -> np.ndarray:
        expected_chw = spec.shape[1:] if spec.layout == "NCHW" else (spec.shape[3], *spec.shape[1:3])
        if batch.ndim != 4 or any(want is not None and want != got for want, got in zip(expected_chw, batch.shape[1:])):
            raise UserInputError(
                f"{self.path}: the model wants (batch, {', '.join(map(str, expected_chw))}) NCHW input, "
                f"got an array of shape {batch.shape}")
        if spec.layout == "NHWC":
            batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        if spec.dtype == "float32":
            return batch
        if spec.quantization is None:
            raise RuntimeFailure(f"{self.path}: input is {spec.dtype} but carries no quantisation parameters")
        return quantize(batch, spec.quantization, np.dtype(spec.dtype))


class Runtime(ABC):
    """A runtime: ``load`` a model file into a ``Session``; ``describe`` the package and its defaults."""

    name: str = ""
    #: the pip package to install when the runtime's import fails
    package: str = ""

    def load(self, path: str | Path, *, threads: int) -> Session:
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"{path}: model file not found")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise UserInputError(f"{path}: threads must be an integer >= 1, got {threads!r}")
        return self._open(path, threads)

    @abstractmethod
    def _open(self, path: Path, threads: int) -> Session:
        """Create the session; raise RuntimeFailure (one line, naming ``path``) if the runtime rejects the file."""

    @abstractmethod
    def describe(self) -> dict:
        """{"runtime", "version", and the execution provider or delegate it uses by default}."""


def register_runtime(name: str, target: str) -> None:
    """Make ``get_runtime(name)`` build ``target`` ("package.module:Class"), imported only when asked for."""
    _RUNTIMES[name] = target


def list_runtimes() -> list[str]:
    return sorted(_RUNTIMES)


def get_runtime(name: str) -> Runtime:
    """The runtime registered as ``name``; UserInputError with a close-match hint when unknown."""
    if name not in _RUNTIMES:
        raise UserInputError(f"unknown runtime '{name}' (known: {', '.join(list_runtimes())})",
                             hint=suggest(str(name), _RUNTIMES))
    module_name, class_name = _RUNTIMES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def runtime_for(path: str | Path) -> Runtime:
    """The runtime that runs ``path``: the first runtime of its format's row (.onnx -> onnxruntime,
    .tflite -> litert)."""
    from edgekit.formats import format_for_path

    return get_runtime(format_for_path(path).runtime)


def import_runtime_package(module: str, runtime: str, package: str):
    """Import ``module`` or raise RuntimeUnavailable naming the pip package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeUnavailable(f"{runtime}: Python package '{package}' is not installed; pip install {package}") from None


def one_line(error: BaseException) -> str:
    """A runtime's exception text squeezed onto one line (they often span several)."""
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def guess_layout(shape: tuple[int | None, ...], default: str) -> str:
    """NCHW or NHWC from a 4-D image shape: the channel axis is the small one that is not spatial."""
    if len(shape) != 4:
        return default
    _, second, third, fourth = shape
    if third is not None and third == fourth and second != third:
        return "NCHW"
    if second is not None and second == third and fourth != third:
        return "NHWC"
    return default


def quantize(values: np.ndarray, grid: Quantization, dtype: np.dtype) -> np.ndarray:
    scale, zero_point = grid
    info = np.iinfo(dtype)
    scaled = values / scale
    # Round half away from zero, as TFLite's reference QUANTIZE kernel does (np.rint would round to even).
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + zero_point, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, grid: Quantization) -> np.ndarray:
    scale, zero_point = grid
    return ((values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
