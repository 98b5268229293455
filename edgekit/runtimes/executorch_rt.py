"""ExecuTorch (``executorch.runtime``) for .pte programs lowered to XNNPACK.

The program's ``forward`` takes the NCHW float image at the batch it was exported with (1: edgekit's
writer exports one image at a time), so a batch runs image by image. Threads: ExecuTorch's XNNPACK
delegate runs on one process-wide thread pool, sized to the session's ``threads`` before its program
loads (``_unsafe_reset_threadpool``, the only knob the Python runtime has). XNNPACK keeps the pool it was
loaded with, so a session asking for another size while others are open is a RuntimeFailure, not a crash.

What runs where is read from the file itself: the program's own operators (run by ExecuTorch's portable
kernels) and, inside each XNNPACK delegate, the XNNPACK subgraph (its flatbuffer, decoded with the schema
and flatc that ship with executorch). A conv, depthwise conv, deconv or fully-connected node is an int8
kernel when its input and its filter are quantized int8 values; a conv/linear left among the program's
own operators is not delegated, hence float.
"""

from __future__ import annotations

import json
import tempfile
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgekit.export.common import quiet
from edgekit.runtimes.base import (Quantization, Runtime, RuntimeFailure, Session, TensorSpec, import_runtime_package,
                                   one_line)

DELEGATE = "XnnpackBackend"
SCALAR_TYPES = {6: "float32", 1: "int8", 0: "uint8"}  # c10::ScalarType codes: Float, Char, Byte
#: convs and matmuls, and adds (a residual block's), as the onnxruntime and LiteRT checks count them
XNN_COMPUTE_NODES = {"XNNConv2d", "XNNDepthwiseConv2d", "XNNConvTranspose2d", "XNNFullyConnected",
                     "XNNBatchMatrixMultiply", "XNNAdd"}
XNN_INT8_VALUES = {"xnn_datatype_qint8", "xnn_datatype_quint8", "xnn_datatype_qcint8", "xnn_datatype_qdint8"}
PORTABLE_COMPUTE_WORDS = ("convolution", "linear", "addmm", "mm", "bmm", "matmul")


def _runtime_module():
    with quiet():  # importing it prints torchao's optional CUDA kernels that fail to load on a CPU build
        return import_runtime_package("executorch.runtime", "executorch", "executorch")


def _version() -> str:
    from importlib.metadata import version

    return version("executorch")


#: open sessions: their XNNPACK runtimes hold the thread pool that was current when they were loaded
_OPEN_SESSIONS: "weakref.WeakSet[ExecuTorchSession]" = weakref.WeakSet()


def _use_threads(path: Path, threads: int) -> None:
    """Size the process-wide thread pool before a program loads: XNNPACK keeps a pointer to the pool it
    was loaded with, so resizing it under an open session would leave that session a freed pool."""
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() == threads:
        return
    others = {session.threads for session in _OPEN_SESSIONS}
    if others:
        raise RuntimeFailure(f"{path}: ExecuTorch has one thread pool per process and sessions with "
                             f"{', '.join(map(str, sorted(others)))} threads are open; close them to use {threads}")
    with quiet():  # the pool's C++ logs its CPU probing to stderr on first use
        portable_lib._unsafe_reset_threadpool(threads)


class ExecuTorchRuntime(Runtime):
    name = "executorch"
    package = "executorch"

    def _open(self, path: Path, threads: int) -> "ExecuTorchSession":
        runtime = _runtime_module().Runtime.get()
        _use_threads(path, threads)
        try:
            loaded = runtime.load_program(path)
            method = loaded.load_method("forward")
        except Exception as error:  # RuntimeError / ValueError from the C++ loader
            raise RuntimeFailure(f"{path}: ExecuTorch cannot load it ({one_line(error)})") from None
        if method is None:
            raise RuntimeFailure(f"{path}: the ExecuTorch program has no 'forward' method")
        return ExecuTorchSession(path, threads, loaded, method, read_program(path))

    def describe(self) -> dict:
        _runtime_module()
        return {"runtime": self.name, "version": _version(), "delegate": "XNNPACK"}

    def count_int8_kernels(self, path: Path) -> tuple[list[str], list[str]]:
        """(int8 kernels, float kernels): delegated XNNPACK convs/FCs by their value types, plus every
        conv/linear the program runs outside a delegate (float)."""
        program = read_program(path)
        int8_ops, float_ops = [], []
        for index, graph in enumerate(program.xnnpack_graphs):
            for node_type, label, int8 in graph.compute_nodes():
                (int8_ops if int8 else float_ops).append(f"{node_type}#{index}.{label}")
        float_ops += [f"{name}(not delegated)" for name in program.operators
                      if any(word in name.split("::")[-1] for word in PORTABLE_COMPUTE_WORDS)]
        return int8_ops, float_ops


class ExecuTorchSession(Session):
    def __init__(self, path: Path, threads: int, loaded, method, program: "ProgramContents"):
        super().__init__(path, threads)
        self.loaded = loaded  # the method runs in the loaded program's memory: a freed program crashes it
        self.method = method
        self.program = program
        meta = method.metadata
        if meta.num_inputs() != 1 or meta.num_outputs() != 1:
            raise RuntimeFailure(f"{path}: expected one input and one output, the program has "
                                 f"{meta.num_inputs()} inputs and {meta.num_outputs()} outputs")
        self._spec = _input_spec(path, meta.input_tensor_meta(0))
        self._output_grid = program.output_grid()
        _OPEN_SESSIONS.add(self)

    def input_spec(self) -> TensorSpec:
        return self._spec

    def output_quantization(self) -> Quantization | None:
        return self._output_grid

    def describe(self) -> dict:
        partitions = len(self.program.xnnpack_graphs)
        return {"runtime": "executorch", "version": _version(), "delegate": "XNNPACK" if partitions else "none",
                "delegate_partitions": partitions, "threads": self.threads}

    def _run_native(self, inputs: np.ndarray) -> np.ndarray:
        return self._whole_or_one_by_one(inputs, self._invoke)

    def _invoke(self, inputs: np.ndarray) -> np.ndarray:
        import torch

        try:
            outputs = self.method.execute([torch.from_numpy(np.ascontiguousarray(inputs))])
        except Exception as error:
            raise RuntimeFailure(f"{self.path}: ExecuTorch failed to run it ({one_line(error)})") from None
        return outputs[0].numpy().copy()


def _input_spec(path: Path, info) -> TensorSpec:
    dtype = SCALAR_TYPES.get(int(info.dtype()))
    if dtype is None:
        raise RuntimeFailure(f"{path}: unsupported input scalar type {info.dtype()}")
    shape = tuple(int(size) for size in info.sizes())
    if dtype != "float32":
        raise RuntimeFailure(f"{path}: {dtype} program inputs carry no quantisation parameters edgekit can read")
    return TensorSpec("input", shape, "NCHW", dtype, None)


# --- reading a .pte: the program's operators and its XNNPACK subgraphs ---------------------------------


@dataclass
class XnnGraph:
    """One XNNPACK delegate's subgraph, as decoded from its flatbuffer."""

    nodes: list[dict]
    values: dict[int, dict]  # id -> {"datatype", "quant": (scale, zero_point) or None}
    output_ids: list[int]

    def compute_nodes(self):
        """(node type, label, runs in int8) for every conv / FC / add node (an add's second input stands
        where a conv's filter does)."""
        for node in self.nodes:
            node_type = node["xnode_union_type"]
            if node_type not in XNN_COMPUTE_NODES:
                continue
            fields = node["xnode_union"]
            activation = self.values[fields.get("input1_id", fields.get("input_id"))]["datatype"]
            weights = self.values[fields.get("filter_id", fields.get("input2_id"))]["datatype"]
            int8 = activation in XNN_INT8_VALUES and weights in XNN_INT8_VALUES
            label = f"node{node.get('debug_handle')}" + ("" if int8 else f"({activation}, weights {weights})")
            yield node_type, label, int8

    def output_grid(self) -> Quantization | None:
        """The grid of a float output converted from a quantized value (an int8 model's logits)."""
        for node in self.nodes:
            fields = node["xnode_union"]
            if node["xnode_union_type"] == "XNNConvert" and fields.get("output_id") in self.output_ids:
                return self.values[fields["input_id"]]["quant"]
        return None


@dataclass
class ProgramContents:
    operators: list[str]  # the program's own (non-delegated) operators
    xnnpack_graphs: list[XnnGraph]

    def output_grid(self) -> Quantization | None:
        return self.xnnpack_graphs[-1].output_grid() if self.xnnpack_graphs else None


def read_program(path: Path) -> ProgramContents:
    _runtime_module()  # a clear "pip install executorch" when it is missing
    from executorch.exir._serialize import _program

    data = path.read_bytes()
    try:
        header = _program._get_extended_header(data)
        program = _program._flatbuffer_to_program(data[: header.program_size] if header else data)
    except Exception as error:
        raise RuntimeFailure(f"{path}: not an ExecuTorch program ({one_line(error)})") from None
    plan = program.execution_plan[0]
    graphs = []
    ordinal = 0
    for delegate in plan.delegates:
        if delegate.id != DELEGATE:
            continue
        payload = _program._extract_delegate_payload(data, DELEGATE, ordinal)
        ordinal += 1
        graphs.append(_decode_xnnpack(path, payload))
    return ProgramContents([operator.name for operator in plan.operators], graphs)


def _decode_xnnpack(path: Path, payload: bytes) -> XnnGraph:
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader

    header = XNNHeader.from_bytes(payload[: XNNHeader.EXPECTED_LENGTH])
    flatbuffer = payload[header.flatbuffer_offset : header.flatbuffer_offset + header.flatbuffer_size]
    graph = _flatbuffer_to_json(path, flatbuffer)
    values = {}
    for value in graph["xvalues"]:
        fields = value["xvalue_union"]
        tensor = fields.get("tensor_value", fields)
        values[tensor["id_out"]] = {"datatype": tensor["datatype"], "quant": _per_tensor_grid(fields)}
    return XnnGraph(graph["xnodes"], values, list(graph.get("output_ids", [])))


def _per_tensor_grid(fields: dict) -> Quantization | None:
    if fields.get("quant_params_type") != "PerTensorQuant":
        return None
    params = fields["quant_params"]
    return float(params["scale"]), int(params["zero_point"])


def _flatbuffer_to_json(path: Path, flatbuffer: bytes) -> dict:
    """flatc (shipped in executorch) decodes the subgraph with XNNPACK's schema; inf/nan become JSON's spellings."""
    from executorch.exir._serialize._flatbuffer import _flatc_decompile

    with tempfile.TemporaryDirectory(prefix="edgekit-pte-") as folder:
        binary = Path(folder) / "graph.bin"
        binary.write_bytes(flatbuffer)
        try:
            _flatc_decompile(folder, str(_xnnpack_schema()), str(binary), ["--raw-binary"])
            text = (Path(folder) / "graph.json").read_text()
        except Exception as error:
            raise RuntimeFailure(f"{path}: cannot decode its XNNPACK subgraph ({one_line(error)})") from None
    for word, spelling in (("-inf", "-Infinity"), ("inf", "Infinity"), ("nan", "NaN")):
        text = text.replace(f": {word}", f": {spelling}")
    return json.loads(text)


@lru_cache(maxsize=1)
def _xnnpack_schema() -> Path:
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize

    return Path(xnnpack_graph_serialize.__file__).with_name("schema.fbs")
