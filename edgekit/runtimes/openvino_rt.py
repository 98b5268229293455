"""OpenVINO on the CPU plugin, for the .onnx files (float, and int8 QDQ, which it runs as int8 kernels).

A session compiles the model for ``CPU`` with ``INFERENCE_NUM_THREADS=threads``, one stream, and
``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16 (AVX512-BF16, AMX) the plugin otherwise runs a float
model in bf16, and its accuracy would not be the file's. ``precision="bf16"`` (a device profile's
``cpu-bf16`` delegate) asks for bf16 instead; ``describe()`` says which is in force. A QDQ model's int8
layers are not affected by the hint.

Is it int8: the compiled model's runtime graph (``get_runtime_model()``) gives each executed layer its
``layerType`` and ``runtimePrecision``; a Convolution / FullyConnected / MatMul / Deconvolution running
in i8 or u8 is an int8 kernel, in anything else a float one. A residual add counts too, through the layer
it was fused into (``originalLayersNames``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtimes.base import (Quantization, Runtime, RuntimeFailure, Session, TensorSpec, guess_layout,
                                   import_runtime_package, one_line)

DEVICE = "CPU"
PRECISIONS = {"f32": "f32", "bf16": "bf16"}
COMPUTE_LAYERS = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Gemm"}
INT8_PRECISIONS = {"i8", "u8"}


def _openvino():
    return import_runtime_package("openvino", "openvino", "openvino")


def _version() -> str:
    """The release ("2026.4.1"), not the build string ``get_version()`` gives."""
    from importlib.metadata import version

    _openvino()
    return version("openvino")


def compile_model(path: Path, threads: int, precision: str = "f32"):
    """(read model, compiled model) on the CPU plugin; a file OpenVINO rejects is a one-line RuntimeFailure."""
    ov = _openvino()
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": PRECISIONS[precision]}
    try:
        model = core.read_model(str(path))
        return model, core.compile_model(model, DEVICE, config)
    except Exception as error:  # OpenVINO raises RuntimeError (and its own GeneralFailure) with pages of text
        raise RuntimeFailure(f"{path}: OpenVINO cannot load it ({one_line(error)})") from None


class OpenVINORuntime(Runtime):
    name = "openvino"
    package = "openvino"

    def __init__(self, precision: str = "f32"):
        self.precision = precision

    def _open(self, path: Path, threads: int) -> "OpenVINOSession":
        model, compiled = compile_model(path, threads, self.precision)
        return OpenVINOSession(path, threads, model, compiled)

    def describe(self) -> dict:
        return {"runtime": self.name, "version": _version(), "device": DEVICE,
                "float_precision": self.precision}

    def count_int8_kernels(self, path: Path) -> tuple[list[str], list[str]]:
        """(int8 layers, float layers) among the convs and matmuls of the compiled runtime graph, and the
        file's residual adds: the CPU plugin fuses an int8 add into the convolution before it (a sum
        post-op), so an add is int8 when the runtime layer it ended up in runs in i8/u8."""
        _, compiled = compile_model(path, 1, self.precision)
        int8_ops, float_ops = [], []
        holder_of: dict[str, tuple[str, str]] = {}  # an original node name -> (layer type, precision)
        for layer in compiled.get_runtime_model().get_ordered_ops():
            info = layer.get_rt_info()
            layer_type, precision = _rt_value(info, "layerType"), _rt_value(info, "runtimePrecision")
            for original in _rt_value(info, "originalLayersNames").split(","):
                holder_of[original] = (layer_type, precision)
            if layer_type not in COMPUTE_LAYERS:
                continue
            _sort_kernel(f"{layer_type}({layer.get_friendly_name()})", precision, int8_ops, float_ops)
        for add in _onnx_adds(path):
            layer_type, precision = holder_of.get(add, ("", "not in the runtime graph"))
            _sort_kernel(f"Add({add})" + (f" in {layer_type}" if layer_type else ""), precision, int8_ops, float_ops)
        return int8_ops, float_ops


def _sort_kernel(label: str, precision: str, int8_ops: list[str], float_ops: list[str]) -> None:
    """File a kernel as int8 (i8/u8) or as float, the float ones labelled with their precision."""
    if precision in INT8_PRECISIONS:
        int8_ops.append(label)
    else:
        float_ops.append(f"{label}[{precision}]")


def _onnx_adds(path: Path) -> list[str]:
    """The element-wise adds of two activations in an .onnx (a residual block's), by node name."""
    import onnx

    if Path(path).suffix != ".onnx":
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {tensor.name for tensor in graph.initializer}
    constants |= {output for node in graph.node if node.op_type == "Constant" for output in node.output}
    return [node.name for node in graph.node
            if node.op_type in ("Add", "Sum") and not any(name in constants for name in node.input)]


def _rt_value(info, key: str) -> str:
    return info[key].astype(str) if key in info else ""


class OpenVINOSession(Session):
    def __init__(self, path: Path, threads: int, model, compiled):
        super().__init__(path, threads)
        self.compiled = compiled
        self.input, self.output = self._single_input_output(compiled.inputs, compiled.outputs)
        self.request = compiled.create_infer_request()
        self._spec = self._read_input_spec(model)
        self._output_grid = _onnx_output_grid(path, self.output.get_any_name())

    def _read_input_spec(self, model) -> TensorSpec:
        port = model.inputs[0]
        dtype = np.dtype(port.get_element_type().to_dtype()).name
        shape = tuple(None if dim.is_dynamic else dim.get_length() for dim in port.get_partial_shape())
        grid = None if dtype == "float32" else _onnx_input_grid(self.path, port.get_any_name())
        return TensorSpec(port.get_any_name(), shape, guess_layout(shape, "NCHW"), dtype, grid)

    def input_spec(self) -> TensorSpec:
        return self._spec

    def output_quantization(self) -> Quantization | None:
        return self._output_grid

    def describe(self) -> dict:
        return {"runtime": "openvino", "version": _version(), "device": DEVICE,
                "float_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS"))}

    def _run_native(self, inputs: np.ndarray) -> np.ndarray:
        return self._whole_or_one_by_one(inputs, self._invoke)

    def _invoke(self, inputs: np.ndarray) -> np.ndarray:
        try:
            self.request.infer({0: inputs})
        except Exception as error:
            raise RuntimeFailure(f"{self.path}: OpenVINO failed to run it ({one_line(error)})") from None
        return self.request.get_output_tensor(0).data.copy()


def _onnx_output_grid(path: Path, output_name: str) -> Quantization | None:
    """A QDQ ONNX's logits lie on the grid of the DequantizeLinear that makes them (as in onnxruntime)."""
    from edgekit.runtimes.onnxruntime_rt import _load_graph, _output_grid

    return _output_grid(_load_graph(path), output_name) if path.suffix.lower() == ".onnx" else None


def _onnx_input_grid(path: Path, input_name: str) -> Quantization | None:
    from edgekit.runtimes.onnxruntime_rt import _input_grid, _load_graph

    return _input_grid(_load_graph(path), input_name) if path.suffix.lower() == ".onnx" else None
