"""Error per layer, measured inside the runtime: SQNR and relative RMSE of every conv and FC output of an int8
file against the float torch model's, each runtime tensor named by the model's layer (``features.block7.pw.conv``).

What a "layer output" is: the tensor a runtime kernel writes, i.e. the conv (or FC) with the BatchNorm and the
activation that follow it folded in. On the torch side that is the output of the last module of the chain
conv -> BatchNorm -> ReLU/ReLU6 (modules that run right after the conv with the same output shape); on the
runtime side:

* LiteRT: the file is loaded with ``experimental_preserve_all_tensors`` and the builtin kernels (a delegate
  such as XNNPACK keeps no intermediate tensors), and each CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED
  output is read and dequantized (NHWC -> NCHW).
* onnxruntime: a copy of the QDQ graph where the int8 output of each Conv/Gemm/MatMul's QuantizeLinear (after
  the Relu/Clip it feeds, as QLinearConv fuses them) becomes a graph output; a layer left in float gives its
  float output. The session runs with edgekit's usual options, so the convs still run as int8 kernels.

Runtime ops are matched to the model's layers by order (both converters keep the forward order of a
chain-shaped model) and every match is checked by shape; a graph that does not line up is an error, never a
guess. The SQNR is cumulative: layer N's output carries the quantisation error of every layer before it, so
each record also gives the layer's own share, the SQNR it loses against its input (``sqnr_drop_db``), and
layers are ranked by that.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.models.layers import Layer, model_layers
from edgekit.runtimes.base import dequantize, get_runtime

DEFAULT_SAMPLES = 64
TFLITE_LAYER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
TFLITE_FOLDED_OPS = ("RELU", "RELU6", "RELU_N1_TO_1")
ONNX_LAYER_OPS = ("Conv", "Gemm", "MatMul")
ONNX_FOLDED_OPS = ("Relu", "Clip", "BatchNormalization", "Div")  # Div: a float layer QAT left as conv / scale -> BN
MAX_SQNR_DB = 200.0  # an exact match has infinite SQNR; JSON has no infinity


class PerLayerError(EdgekitError):
    """The runtime's conv/FC ops cannot be matched to the model's layers."""


@dataclass(frozen=True)
class RuntimeTensor:
    """The output of one conv/FC op inside a runtime, in graph order, as float NCHW (batch first)."""

    op: str  # the runtime's op type, e.g. "CONV_2D" or "Conv"
    values: np.ndarray
    kernel: str  # "int8" or "float": the precision the op computes in

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape[1:])


@dataclass(frozen=True)
class GraphLayerOp:
    """A conv/FC op of a model file, read without running it: its op type, output tensor and output shape (NCHW,
    no batch). Compilers that report per op (Vela) name the op by that tensor."""

    op: str
    tensor: str
    shape: tuple[int, ...]


def float_layer_outputs(model: nn.Module, layers: list[Layer], images: np.ndarray) -> dict[str, np.ndarray]:
    """Each layer's reference output (float NCHW) on ``images``, from forward hooks on the float model."""
    captured: dict[str, np.ndarray] = {}
    modules = dict(model.named_modules())
    by_module = {layer.output_module: layer.name for layer in layers}

    def capture(layer_name: str):
        def hook(module, inputs, output):
            captured[layer_name] = output.detach().clone().numpy()  # clone: an in-place ReLU may follow

        return hook

    handles = [modules[module].register_forward_hook(capture(name)) for module, name in by_module.items()]
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(images))
    finally:
        for handle in handles:
            handle.remove()
    return captured


def litert_layer_outputs(path: Path, images: np.ndarray, threads: int) -> list[RuntimeTensor]:
    """Every conv/FC output of a .tflite run by LiteRT's builtin kernels on ``images`` (float NCHW).

    The images run one at a time: the preserved tensors hold only the last invocation, and a file whose batch
    cannot be resized would otherwise leave the outputs of its last image only."""
    from edgekit.runtimes.int8_check import INTEGER_ACTIVATIONS, INTEGER_WEIGHTS, _data_inputs
    from edgekit.runtimes.litert_rt import LiteRTSession, make_interpreter

    interpreter = make_interpreter(path, threads, default_delegates=False, preserve_all_tensors=True)
    session = LiteRTSession(path, threads, interpreter)
    details = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only op listing the Python API offers
    consumers = _tflite_consumers(ops)
    points = [("input", _litert_input_index(session.input["index"], details, consumers), "input")]
    for op in ops:
        if op["op_name"] not in TFLITE_LAYER_OPS:
            continue
        output = int(op["outputs"][0])
        following = consumers.get(output, [])
        if len(following) == 1 and following[0]["op_name"] in TFLITE_FOLDED_OPS:
            output = int(following[0]["outputs"][0])
        activation, weights = (np.dtype(details[index]["dtype"]) for index in _data_inputs(op))
        integer = activation in INTEGER_ACTIVATIONS and weights in INTEGER_WEIGHTS
        points.append((op["op_name"], output, "int8" if integer else "float"))
    per_image = []
    for image in images:
        session.run(image[None])
        per_image.append([_litert_tensor(interpreter, details[index]) for _, index, _ in points])
    return [RuntimeTensor(op, np.concatenate([tensors[position] for tensors in per_image]), kernel)
            for position, (op, _, kernel) in enumerate(points)]


def _litert_input_index(index: int, details: dict, consumers: dict) -> int:
    """The model input as the int8 graph sees it: the input tensor, or the QUANTIZE a float input feeds."""
    following = consumers.get(index, [])
    if np.dtype(details[index]["dtype"]) == np.float32 and len(following) == 1 and following[0]["op_name"] == "QUANTIZE":
        return int(following[0]["outputs"][0])
    return index


def _litert_tensor(interpreter, detail: dict) -> np.ndarray:
    """A tensor after ``invoke``, dequantized, NHWC -> NCHW."""
    from edgekit.runtimes.litert_rt import tensor_grid

    values = interpreter.get_tensor(detail["index"])
    grid = tensor_grid(detail)
    values = dequantize(values, grid) if grid else values.astype(np.float32)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2) if values.ndim == 4 else values)


def _tflite_consumers(ops: list[dict]) -> dict[int, list[dict]]:
    consumers: dict[int, list[dict]] = {}
    for op in ops:
        for index in op["inputs"]:
            consumers.setdefault(int(index), []).append(op)
    return consumers


def onnx_layer_outputs(path: Path, images: np.ndarray, threads: int) -> list[RuntimeTensor]:
    """Every conv/FC output of a (QDQ) .onnx run by onnxruntime on ``images`` (float NCHW)."""
    import onnx

    from edgekit.runtimes.onnxruntime_rt import _constant_grid, open_session, session_options

    model = onnx.load(str(path))
    spec = get_runtime("onnxruntime").load(path, threads=threads)
    points = [_onnx_input_point(model.graph, spec.input.name), *_onnx_layer_points(model.graph)]
    graph_inputs = {value.name for value in model.graph.input}
    known_outputs = {output.name for output in model.graph.output}
    for name, _, _, _ in points:
        if name not in known_outputs | graph_inputs:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    with tempfile.TemporaryDirectory(prefix="edgekit-per-layer-") as folder:
        probed = Path(folder) / "probed.onnx"
        onnx.save(model, str(probed))
        session = open_session(probed, session_options(threads))
        inputs = spec._to_model_input(np.asarray(images, dtype=np.float32), spec.input_spec())
        read = [name for name, _, _, _ in points if name not in graph_inputs]
        outputs = dict(zip(read, session.run(read, {spec.input.name: inputs})))
    outputs = [inputs if name in graph_inputs else outputs[name] for name, _, _, _ in points]
    found = []
    for (name, op_type, quantize_node, kernel), values in zip(points, outputs):
        grid = _constant_grid(model.graph, quantize_node) if quantize_node is not None else None
        values = dequantize(values, grid) if grid else np.asarray(values, dtype=np.float32)
        found.append(RuntimeTensor(op_type, values, kernel))
    return found


def _onnx_input_point(graph, input_name: str) -> tuple[str, str, object, str]:
    """The model input as the int8 graph sees it: the QuantizeLinear it feeds, else the input itself."""
    following = [node for node in graph.node if input_name in node.input]
    if len(following) == 1 and following[0].op_type == "QuantizeLinear":
        return following[0].output[0], "input", following[0], "input"
    return input_name, "input", None, "input"


def _onnx_layer_points(graph) -> list[tuple[str, str, object, str]]:
    """(tensor to read, op type, the QuantizeLinear that wrote it or None, kernel precision) per conv/FC op.

    A conv whose input and weights come from DequantizeLinear and whose (Relu-folded) output goes into a
    QuantizeLinear is what onnxruntime fuses into QLinearConv/QGemm: an int8 kernel."""
    consumers: dict[str, list] = {}
    producers = {output: node for node in graph.node for output in node.output}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    points = []
    for node in graph.node:
        if node.op_type not in ONNX_LAYER_OPS:
            continue
        tensor = node.output[0]
        while len(consumers.get(tensor, [])) == 1 and consumers[tensor][0].op_type in ONNX_FOLDED_OPS:
            tensor = consumers[tensor][0].output[0]
        following = consumers.get(tensor, [])
        quantize_node = following[0] if len(following) == 1 and following[0].op_type == "QuantizeLinear" else None
        dequantized_inputs = all(getattr(producers.get(name), "op_type", None) == "DequantizeLinear"
                                 for name in node.input[:2])
        kernel = "int8" if quantize_node is not None and dequantized_inputs else "float"
        points.append((quantize_node.output[0] if quantize_node is not None else tensor, node.op_type,
                       quantize_node, kernel))
    return points


RUNTIME_READERS = {"litert": litert_layer_outputs, "onnxruntime": onnx_layer_outputs}


def match_layers(layers: list[Layer], tensors: list[RuntimeTensor], source: str) -> list[tuple[Layer, RuntimeTensor]]:
    """Pair the model's layers with the runtime's conv/FC outputs in order; every pair must agree in shape."""
    if len(layers) != len(tensors):
        raise PerLayerError(f"{source}: {len(tensors)} conv/FC ops in the runtime graph, {len(layers)} in the model; "
                            "cannot name the runtime's layers")
    for position, (layer, tensor) in enumerate(zip(layers, tensors)):
        if tensor.shape != layer.shape:
            raise PerLayerError(f"{source}: conv/FC op #{position} ({tensor.op}) writes shape "
                                f"{tensor.shape}, layer {layer.name} {layer.shape}")
    return list(zip(layers, tensors))


def tflite_layer_ops(path: Path) -> list[GraphLayerOp]:
    """Every conv/FC op of a .tflite in graph order, with its output tensor's name and shape (NHWC -> NCHW)."""
    from edgekit.runtimes.litert_rt import make_interpreter

    interpreter = make_interpreter(path, 1, default_delegates=False)
    details = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():  # the only op listing the Python API offers
        if op["op_name"] in TFLITE_LAYER_OPS:
            output = details[int(op["outputs"][0])]
            shape = tuple(int(size) for size in output["shape"][1:])
            found.append(GraphLayerOp(op["op_name"], output["name"], (shape[-1], *shape[:-1]) if len(shape) == 3 else shape))
    return found


def layer_names_by_tensor(path: str | Path, layers: list[Layer]) -> dict[str, str]:
    """The model's layer name for the output tensor of each conv/FC op of a .tflite, matched by order and checked
    by shape as the per-layer errors are (PerLayerError when the graph does not line up)."""
    ops = tflite_layer_ops(Path(path))
    return {op.tensor: layer.name for layer, op in match_layers(layers, ops, str(path))}


def error_metrics(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(SQNR in dB, relative RMSE) of ``values`` against ``reference``."""
    reference = reference.astype(np.float64)
    signal = float(np.mean(reference ** 2))
    noise = float(np.mean((values.astype(np.float64) - reference) ** 2))
    rel_rmse = float(np.sqrt(noise / signal)) if signal > 0 else (0.0 if noise == 0 else float("inf"))
    if noise == 0:
        return MAX_SQNR_DB, rel_rmse
    sqnr = 10.0 * np.log10(signal / noise) if signal > 0 else -MAX_SQNR_DB
    return float(min(MAX_SQNR_DB, max(-MAX_SQNR_DB, sqnr))), min(rel_rmse, 1e6)


def per_layer_errors(path: str | Path, runtime: str, model: nn.Module, images: np.ndarray, *,
                     threads: int = 1) -> list[dict]:
    """One record per conv/FC of ``model``: {layer, op, kernel, sqnr_db, sqnr_drop_db, rel_rmse, runtime,
    samples}, in forward order, measured on ``images`` (float32 NCHW, preprocessed) by ``runtime`` running ``path``.

    ``sqnr_db`` is cumulative (every layer before it is quantized too); ``sqnr_drop_db`` is what the layer
    itself loses: the SQNR of its input (the layer before it in forward order, the quantized model input for
    the first) minus its own. A broken layer stands out in the drop; its damage carries on in later SQNRs."""
    path = Path(path)
    if runtime not in RUNTIME_READERS:
        raise PerLayerError(f"{path}: per-layer errors are read from {' and '.join(RUNTIME_READERS)}, not {runtime}")
    images = np.ascontiguousarray(images, dtype=np.float32)
    layers = model_layers(model, torch.from_numpy(images[:1]))
    reference = float_layer_outputs(model, layers, images)
    model_input, *tensors = RUNTIME_READERS[runtime](path, images, threads)
    input_sqnr, _ = error_metrics(model_input.values, images)
    records, previous_sqnr = [], input_sqnr
    for layer, tensor in match_layers(layers, tensors, f"{path} ({runtime})"):
        sqnr_db, rel_rmse = error_metrics(tensor.values, reference[layer.name])
        records.append({"layer": layer.name, "op": layer.op, "kernel": tensor.kernel, "sqnr_db": round(sqnr_db, 3),
                        "sqnr_drop_db": round(previous_sqnr - sqnr_db, 3), "rel_rmse": round(rel_rmse, 6),
                        "runtime": runtime, "samples": len(images)})
        previous_sqnr = sqnr_db
    return records


def worst_layers(records: list[dict], count: int = 3) -> list[dict]:
    """The ``count`` layers that lose the most SQNR themselves (``sqnr_drop_db``), worst first."""
    return sorted(records, key=lambda record: -record["sqnr_drop_db"])[:count]
