"""onnxruntime on the CPU execution provider.

Sessions use ``threads`` intra-op threads, one inter-op thread (a MobileNet is a chain: nothing runs in
parallel) and graph optimisation ENABLE_ALL, which is what fuses QDQ pairs around Conv/Gemm into
QLinearConv/QGemm int8 kernels. A model whose batch dimension is fixed at 1 runs a batch image by image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtimes.base import (Quantization, Runtime, RuntimeFailure, Session, TensorSpec, guess_layout,
                                   import_runtime_package, one_line)

PROVIDER = "CPUExecutionProvider"
ONNX_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


def _onnxruntime():
    return import_runtime_package("onnxruntime", "onnxruntime", "onnxruntime")


def session_options(threads: int, *, optimized_model_path: Path | None = None):
    """The options every edgekit onnxruntime session uses (the int8 check optimises with the same ones)."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the serialise-optimised-model warning is expected
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    return options


def open_session(path: Path, options):
    """An InferenceSession on the CPU provider; a file onnxruntime rejects is a one-line RuntimeFailure."""
    ort = _onnxruntime()
    try:
        return ort.InferenceSession(str(path), options, providers=[PROVIDER])
    except Exception as error:  # onnxruntime raises its own pybind exception types (InvalidProtobuf, Fail, ...)
        raise RuntimeFailure(f"{path}: onnxruntime cannot load it ({one_line(error)})") from None


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    package = "onnxruntime"

    def _open(self, path: Path, threads: int) -> "OnnxSession":
        session = open_session(path, session_options(threads))
        return OnnxSession(path, threads, session)

    def describe(self) -> dict:
        return {"runtime": self.name, "version": _onnxruntime().__version__, "provider": PROVIDER,
                "graph_optimization": "ENABLE_ALL"}


class OnnxSession(Session):
    def __init__(self, path: Path, threads: int, session):
        super().__init__(path, threads)
        self.session = session
        self.input, self.output = self._single_input_output(session.get_inputs(), session.get_outputs())
        graph = _load_graph(path)
        self._spec = self._read_input_spec(graph)
        self._output_grid = _output_grid(graph, self.output.name)

    def _read_input_spec(self, graph) -> TensorSpec:
        dtype = ONNX_DTYPES.get(self.input.type)
        if dtype is None:
            raise RuntimeFailure(f"{self.path}: unsupported input type {self.input.type}")
        shape = tuple(dim if isinstance(dim, int) else None for dim in self.input.shape)
        grid = None if dtype == "float32" else _input_grid(graph, self.input.name)
        return TensorSpec(self.input.name, shape, guess_layout(shape, "NCHW"), dtype, grid)

    def input_spec(self) -> TensorSpec:
        return self._spec

    def output_quantization(self) -> Quantization | None:
        return self._output_grid

    def describe(self) -> dict:
        return {"runtime": "onnxruntime", "version": _onnxruntime().__version__,
                "provider": self.session.get_providers()[0], "graph_optimization": "ENABLE_ALL",
                "threads": self.threads}

    def _run_native(self, inputs: np.ndarray) -> np.ndarray:
        return self._whole_or_one_by_one(inputs, self._invoke)

    def _invoke(self, inputs: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output.name], {self.input.name: inputs})[0]
        except Exception as error:
            raise RuntimeFailure(f"{self.path}: onnxruntime failed to run it ({one_line(error)})") from None


def _input_grid(graph, input_name: str) -> Quantization | None:
    """An int8 input's grid: the scale/zero point of the DequantizeLinear that consumes it."""
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] == input_name:
            return _constant_grid(graph, node)
    return None


def _output_grid(graph, output_name: str) -> Quantization | None:
    """The grid the output lies on: set by the QuantizeLinear / DequantizeLinear node that produces it.

    A QDQ model's float logits come out of a DequantizeLinear, so they are int8 values in disguise and a
    difference to a reference is best read in steps of that scale.
    """
    for node in graph.node:
        if output_name in node.output and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            return _constant_grid(graph, node)
    return None


def _load_graph(path: Path):
    onnx = import_runtime_package("onnx", "onnxruntime", "onnx")
    try:
        # Weights are not needed to read a few scalars; external data files stay unread.
        return onnx.load(str(path), load_external_data=False).graph
    except Exception as error:  # protobuf's DecodeError and friends
        raise RuntimeFailure(f"{path}: the onnx package cannot parse it ({one_line(error)})") from None


def _constant_grid(graph, node) -> Quantization | None:
    """(scale, zero_point) of a Q/DQ node when both are scalar constants (initializers or Constant nodes)."""
    constants = _constants(graph)
    scale = constants.get(node.input[1])
    zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1, np.int8)
    if scale is None or zero_point is None or scale.size != 1 or zero_point.size != 1:
        return None  # computed or per-channel: no single step to count differences in
    return float(scale.reshape(())), int(zero_point.reshape(()))


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    found = {init.name: numpy_helper.to_array(init) for init in graph.initializer if _is_small(init)}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def _is_small(tensor) -> bool:
    return all(dim <= 1 for dim in tensor.dims) and not tensor.external_data
