"""The .onnx writer: torch.onnx export with a dynamic batch, compacted by onnxruntime's basic optimiser."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from edgekit.artifacts import write_atomically
from edgekit.export.common import VERBOSE_HINT, ExportError, first_line, quiet


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path, *, opset: int, dynamo: bool = True) -> Path:
    """ONNX with a dynamic batch, one self-contained file; weights stored compactly (int8 for QDQ)."""
    import onnx

    raw = path.with_name(path.stem + ".raw.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)  # an ONNX-only build has written nothing there yet
    dynamic = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {
        "dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}}
    with quiet():
        try:
            torch.onnx.export(module, (example,), str(raw), dynamo=dynamo, opset_version=opset,
                              input_names=["input"], output_names=["logits"], external_data=False, **dynamic)
        except Exception as exc:
            raise ExportError(f"{path.name}: ONNX export failed: {first_line(exc)}", hint=VERBOSE_HINT) from exc
    try:
        _keep_float_layers_float(raw)
        _compact_onnx(raw, path)
    finally:
        raw.unlink(missing_ok=True)
    onnx.checker.check_model(str(path))
    return path


def _keep_float_layers_float(path: Path) -> None:
    """In an int8 file, a Conv/Gemm with float weights (a layer ``quantize.keep_float`` left in float) reads
    its input through an unbounded Clip, an identity.

    onnxruntime's WeightBiasQuantization (basic level, every session) quantizes the float weights of any
    Conv/Gemm whose input comes from a DequantizeLinear, and the layer would run as an int8 kernel. The
    DequantizeLinear need not be its producer in the file: the same optimiser first moves Q/DQ pairs
    across Reshape and Flatten (the classifier's input), so every float-weight layer gets the Clip."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    if not any(node.op_type == "DequantizeLinear" for node in graph.node):
        return  # a float file
    float_weights = {tensor.name for tensor in graph.initializer if tensor.data_type == onnx.TensorProto.FLOAT}
    changed = False
    for node in list(graph.node):
        if node.op_type not in ("Conv", "Gemm") or node.input[1] not in float_weights:
            continue
        identity = helper.make_node("Clip", [node.input[0]], [f"{node.name}_float_input"],
                                    name=f"{node.name}_keep_float")
        graph.node.insert(list(graph.node).index(node), identity)
        node.input[0] = identity.output[0]
        changed = True
    if changed:
        onnx.save(model, str(path))


def _compact_onnx(source: Path, path: Path) -> None:
    """onnxruntime's BASIC optimisation folds the QDQ weight chains into int8 initializers
    (3.2 MB -> 0.94 MB for MobileNet 0.5-160) and is portable, unlike ENABLE_ALL's CPU-specific fusions."""
    import onnxruntime as ort

    def optimise(tmp: Path) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        _uint8_activations(tmp)

    write_atomically(path, optimise)


def _uint8_activations(path: Path) -> None:
    """Rewrite int8 activation QuantizeLinear/DequantizeLinear pairs as uint8 (zero point + 128, same scale:
    the same numbers); weights stay int8.

    onnxruntime's x86 kernels take uint8 activations and it converts an int8 pair itself, but not one whose
    tensor feeds two consumers (a residual block's input feeds its first conv and its add): there the conv
    and the add stayed float (MobileNet v2: 15 of 63 kernels). uint8 activations are what QNN HTP runs too."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    outputs = {value.name for value in graph.output}
    twins: dict[str, str] = {}  # int8 zero point -> its uint8 twin

    def int8_scalar(name: str) -> bool:
        return name in constants and constants[name].data_type == onnx.TensorProto.INT8 and not constants[name].dims

    def twin(name: str) -> str:
        if name not in twins:
            twins[name] = f"{name}_uint8"
            shifted = numpy_helper.to_array(constants[name]).astype(np.int16) + 128
            graph.initializer.append(numpy_helper.from_array(shifted.astype(np.uint8), twins[name]))
        return twins[name]

    rewritten = set()  # outputs of the rewritten QuantizeLinear nodes (activations: their input is no constant)
    for node in graph.node:
        if (node.op_type == "QuantizeLinear" and len(node.input) == 3 and node.input[0] not in constants
                and node.output[0] not in outputs and int8_scalar(node.input[2])):
            node.input[2] = twin(node.input[2])
            rewritten.add(node.output[0])
    readers = [node for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] in rewritten]
    if not readers or any(not int8_scalar(node.input[2]) for node in readers):
        return  # nothing to do, or a layout this rewrite does not know: leave the file as onnxruntime wrote it
    for node in readers:
        node.input[2] = twin(node.input[2])
    kept = [value for value in graph.value_info if value.name not in rewritten]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    onnx.save(model, str(path))
