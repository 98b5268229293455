"""Is it really int8? Count the conv/matmul and add kernels a runtime will run in int8 and in float.

A file can hold int8 weights and still compute in float: a QDQ ONNX whose DequantizeLinear -> Conv pairs
onnxruntime does not fuse, or a TFLite model with int8 weights but float activations. So the check looks
at what the runtime executes:

* ONNX: onnxruntime optimises the graph with the session options every edgekit session uses (ENABLE_ALL)
  and saves it to a temporary file (such a file is tied to the CPU it was made on, so it is never kept);
  int8 kernels are QLinearConv, QGemm, QLinearMatMul, ConvInteger, MatMulInteger and com.microsoft's
  dynamic-quantisation variants; any other op whose type names a Conv, Gemm or MatMul (Conv, FusedConv,
  the NCHWc Conv, Gemm, FusedGemm, MatMul, ...) is a float kernel. Adds (a residual block's, MobileNet v2):
  QLinearAdd is int8, Add is float.
* TFLite: every CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV and FULLY_CONNECTED op is int8 when both its
  input and its weights are integer tensors (int8/uint8 weights; int8, uint8 or int16 activations);
  anything else (float, or int8 weights on float activations, i.e. dynamic-range "hybrid" ops) is float.
  An ADD is int8 when both its inputs are integer tensors.
* Any other runtime counts with its own ``count_int8_kernels(path)`` (OpenVINO: the compiled model's
  runtime precisions; ExecuTorch: what its program delegates to XNNPACK).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edgekit.errors import EdgekitError, UserInputError
from edgekit.runtimes.base import get_runtime, runtime_for

ONNX_INT8_KERNELS = {
    "QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearConvTranspose", "QLinearAdd",
}
ONNX_COMPUTE_WORDS = ("Conv", "Gemm", "MatMul")
ONNX_FLOAT_ADDS = {"Add", "Sum"}
TFLITE_COMPUTE_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "ADD"}
INTEGER_ACTIVATIONS = {np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16)}
INTEGER_WEIGHTS = {np.dtype(np.int8), np.dtype(np.uint8)}  # uint8: legacy TF1 quantised models


class Int8KernelError(EdgekitError):
    """An artifact meant to be int8 runs some of its convolutions or matmuls in float."""


def check_int8(path: str | Path, runtime_name: str | None = None, *, expected_float: Sequence[str] = (),
               layers: Sequence[str] | None = None) -> dict:
    """{"artifact", "runtime", "int8", "float", "float_ops", "ok"} for one .onnx or .tflite file.

    ``expected_float``: the layers ``quantize.keep_float`` left in float; with ``layers`` (the model's conv/FC
    names in forward order) the float kernels are named (``float_layers``) and must be exactly those layers,
    else only their number must match. Without it, any float kernel fails the check."""
    path = Path(path)
    runtime_name = runtime_name or runtime_for(path).name
    count = _kernel_counter(path, runtime_name)
    if not path.is_file():
        raise UserInputError(f"{path}: model file not found")
    int8_ops, float_ops = count(path)
    result = {"artifact": str(path), "runtime": runtime_name, "int8": len(int8_ops), "float": len(float_ops),
              "float_ops": float_ops, "ok": not float_ops and bool(int8_ops)}
    if expected_float:
        named = float_layer_names(path, runtime_name, layers) if layers else None
        result["expected_float"] = list(expected_float)
        if named is not None:
            result["float_layers"] = named
        result["ok"] = (bool(int8_ops) and len(float_ops) == len(expected_float)
                        and (named is None or sorted(named) == sorted(expected_float)))
    return result


def float_layer_names(path: Path, runtime_name: str, layers: Sequence[str]) -> list[str] | None:
    """The ``layers`` whose kernel runs in float, pairing the runtime's conv/FC kernels with them in order;
    None when the runtime has no such listing or the counts differ."""
    readers = {"onnxruntime": _onnx_layer_kernels, "litert": _tflite_layer_kernels}
    if runtime_name not in readers:
        return None
    kernels = readers[runtime_name](path)
    if len(kernels) != len(layers):
        return None
    return [layer for layer, int8 in zip(layers, kernels) if not int8]


def _onnx_layer_kernels(path: Path) -> list[bool]:
    """Per conv/FC kernel of the optimised graph, in order: does it run in int8?"""
    import onnx

    from edgekit.runtimes.onnxruntime_rt import open_session, session_options

    with tempfile.TemporaryDirectory(prefix="edgekit-int8-check-") as folder:
        optimised_path = Path(folder) / "optimised.onnx"
        open_session(path, session_options(1, optimized_model_path=optimised_path))
        graph = onnx.load(str(optimised_path), load_external_data=False).graph
    return [node.op_type in ONNX_INT8_KERNELS for node in graph.node
            if any(word in node.op_type for word in ONNX_COMPUTE_WORDS)]


def _tflite_layer_kernels(path: Path) -> list[bool]:
    """Per conv/FC op of the .tflite, in order: does it run in int8?"""
    int8_ops, float_ops = _count_tflite(path)
    positions = sorted((int(label.split("#")[1].split("(")[0]), label in int8_ops) for label in int8_ops + float_ops
                       if not label.startswith("ADD#"))
    return [int8 for _, int8 in positions]


def _kernel_counter(path: Path, runtime_name: str):
    """The function counting (int8 ops, float ops) for ``runtime_name``: built in for onnxruntime and litert,
    else the runtime's own ``count_int8_kernels`` (a plugged-in runtime brings its counter with it)."""
    built_in = {"onnxruntime": _count_onnx, "litert": _count_tflite}
    if runtime_name in built_in:
        return built_in[runtime_name]
    counter = getattr(get_runtime(runtime_name), "count_int8_kernels", None)
    if counter is None:
        raise UserInputError(f"{path}: the int8 check cannot look inside '{runtime_name}' (it counts no kernels)")
    return counter


def require_int8(results: Iterable[dict]) -> None:
    """Raise Int8KernelError naming every artifact that has float convs/matmuls (or no int8 ones at all)."""
    failures = [_failure(result) for result in results if not result["ok"]]
    if failures:
        raise Int8KernelError("not really int8: " + "; ".join(failures),
                              hint="docs/runtimes.md explains what the check counts")


def _failure(result: dict) -> str:
    total = result["int8"] + result["float"]
    if total == 0:
        return f"{result['artifact']}: no conv/matmul kernels found ({result['runtime']})"
    if result.get("expected_float"):
        found = ", ".join(result.get("float_layers") or result["float_ops"]) or "none"
        return (f"{result['artifact']}: float kernels {found}, but quantize.keep_float keeps "
                f"{', '.join(result['expected_float'])} ({result['runtime']})")
    return f"{result['artifact']}: {result['float']} of {total} convs/matmuls/adds run in float ({result['runtime']})"


def _count_onnx(path: Path) -> tuple[list[str], list[str]]:
    import onnx

    from edgekit.runtimes.onnxruntime_rt import open_session, session_options

    with tempfile.TemporaryDirectory(prefix="edgekit-int8-check-") as folder:
        optimised_path = Path(folder) / "optimised.onnx"
        open_session(path, session_options(1, optimized_model_path=optimised_path))
        # Only op types are needed; the saved graph may point at external weight files relative to ``folder``.
        graph = onnx.load(str(optimised_path), load_external_data=False).graph
    int8_ops, float_ops = [], []
    for node in graph.node:
        label = f"{node.op_type}({node.name})"
        if node.op_type in ONNX_INT8_KERNELS:
            int8_ops.append(label)
        elif node.op_type in ONNX_FLOAT_ADDS or any(word in node.op_type for word in ONNX_COMPUTE_WORDS):
            float_ops.append(label)
    return int8_ops, float_ops


def _count_tflite(path: Path) -> tuple[list[str], list[str]]:
    from edgekit.runtimes.litert_rt import make_interpreter

    # Without the default delegate the op list is the model's own, not one DELEGATE node.
    interpreter = make_interpreter(path, 1, default_delegates=False)
    dtypes = {detail["index"]: np.dtype(detail["dtype"]) for detail in interpreter.get_tensor_details()}
    int8_ops, float_ops = [], []
    for op in interpreter._get_ops_details():  # the only op listing the Python API offers
        if op["op_name"] not in TFLITE_COMPUTE_OPS:
            continue
        activation, weights = (dtypes.get(int(index)) for index in _data_inputs(op))
        label = f"{op['op_name']}#{op['index']}"
        if activation in INTEGER_ACTIVATIONS and weights in INTEGER_WEIGHTS:
            int8_ops.append(label)
        else:
            float_ops.append(f"{label}({activation}, weights {weights})")
    return int8_ops, float_ops


def _data_inputs(op: dict) -> tuple[int, int]:
    """(activation, weights) tensor indices; TRANSPOSE_CONV lists (output_shape, weights, activation)."""
    inputs = [int(index) for index in op["inputs"]]
    return (inputs[2], inputs[1]) if op["op_name"] == "TRANSPOSE_CONV" else (inputs[0], inputs[1])
