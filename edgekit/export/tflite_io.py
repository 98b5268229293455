"""Float input/output for an int8 .tflite: what TFLiteConverter's ``inference_input_type=tf.float32`` gives.

litert-torch 0.10.0 always writes an int8 PT2E model with int8 input and output tensors and has no
option for float ones (its issue #670). This rewrites the flatbuffer instead: a new float32 input feeds a
QUANTIZE op into the old int8 input, and a DEQUANTIZE op turns the old int8 output into a new float32
output. The int8 tensors keep their scale and zero point, so the graph between is untouched and its
outputs are bit-identical to the int8-I/O file's, dequantized. The float tensors take over the old names
and signature keys; the int8 ones are renamed ``<name>_int8``.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.artifacts import write_atomically
from edgekit.errors import EdgekitError

FILE_IDENTIFIER = b"TFL3"
# Op versions the TFLite op-version table gives QUANTIZE float->int8 and DEQUANTIZE int8->float.
IO_OP_VERSION = 2


class TfliteRewriteError(EdgekitError):
    """A .tflite file is not the int8-I/O model the rewrite expects."""


def schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def read_model(path: Path):
    """The file as the flatbuffer object API's ``ModelT`` (every table unpacked, editable)."""
    buffer = Path(path).read_bytes()
    return schema().ModelT.InitFromPackedBuf(bytearray(buffer), 0)


def model_bytes(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024 * 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def write_float_io(source: Path, path: Path) -> Path:
    """``source`` (int8 I/O) rewritten with float32 I/O into ``path``; ``path`` may be ``source``."""
    model = read_model(source)
    to_float_io(model, Path(source).name)
    data = model_bytes(model)
    return write_atomically(Path(path), lambda tmp: tmp.write_bytes(data))


def to_float_io(model, file_name: str) -> None:
    """Edit ``model`` in place: every int8/uint8 input and output of its subgraphs gets a float32 twin."""
    tensor_type = schema().TensorType
    for subgraph_index, subgraph in enumerate(model.subgraphs):
        renamed: dict[int, int] = {}
        quantize_ops, dequantize_ops = [], []
        for position, tensor_index in enumerate(subgraph.inputs):
            if subgraph.tensors[tensor_index].type in (tensor_type.INT8, tensor_type.UINT8):
                float_index = _float_twin(model, subgraph, tensor_index, file_name)
                quantize_ops.append(_operator(model, "QUANTIZE", float_index, tensor_index))
                subgraph.inputs[position] = renamed[tensor_index] = float_index
        for position, tensor_index in enumerate(subgraph.outputs):
            if subgraph.tensors[tensor_index].type in (tensor_type.INT8, tensor_type.UINT8):
                float_index = _float_twin(model, subgraph, tensor_index, file_name)
                dequantize_ops.append(_operator(model, "DEQUANTIZE", tensor_index, float_index))
                subgraph.outputs[position] = renamed[tensor_index] = float_index
        subgraph.operators = quantize_ops + list(subgraph.operators or []) + dequantize_ops
        _retarget_signatures(model, subgraph_index, renamed)


def to_int8_io(model) -> None:
    """Edit ``model`` in place: a float32 input that only feeds a QUANTIZE and a float32 output that a DEQUANTIZE
    writes give way to the int8 tensors beside them, which take their names (the inverse of ``to_float_io``)."""
    names = _operator_names(model)
    for subgraph_index, subgraph in enumerate(model.subgraphs):
        operators, renamed, dropped = list(subgraph.operators or []), {}, []
        for position, tensor_index in enumerate(subgraph.inputs):
            users = [op for op in operators if tensor_index in op.inputs]
            if len(users) == 1 and names[users[0].opcodeIndex] == "QUANTIZE":
                subgraph.inputs[position] = renamed[tensor_index] = users[0].outputs[0]
                dropped.append(users[0])
        for position, tensor_index in enumerate(subgraph.outputs):
            writers = [op for op in operators if tensor_index in op.outputs]
            if len(writers) == 1 and names[writers[0].opcodeIndex] == "DEQUANTIZE":
                subgraph.outputs[position] = renamed[tensor_index] = writers[0].inputs[0]
                dropped.append(writers[0])
        for float_index, int8_index in renamed.items():
            float_tensor, int8_tensor = subgraph.tensors[float_index], subgraph.tensors[int8_index]
            float_tensor.name, int8_tensor.name = _as_bytes(float_tensor.name) + b"_float", float_tensor.name
        subgraph.operators = [op for op in operators if not any(op is gone for gone in dropped)]
        _retarget_signatures(model, subgraph_index, renamed)


def _operator_names(model) -> list[str]:
    """The builtin op name of each operator code, by index."""
    codes = {code: name for name, code in vars(schema().BuiltinOperator).items() if not name.startswith("_")}
    return [codes.get(max(opcode.builtinCode, opcode.deprecatedBuiltinCode), "CUSTOM") for opcode in model.operatorCodes]


def _float_twin(model, subgraph, tensor_index: int, file_name: str) -> int:
    """Append a float32 tensor shaped like ``tensor_index``, give it that tensor's name; return its index."""
    generated = schema()
    quantized = subgraph.tensors[tensor_index]
    if quantized.quantization is None or not quantized.quantization.scale:
        name = quantized.name.decode() if isinstance(quantized.name, bytes) else quantized.name
        raise TfliteRewriteError(f"{file_name}: int8 tensor '{name}' has no scale; cannot give it float I/O")
    twin = generated.TensorT()
    twin.shape = list(quantized.shape)
    twin.shapeSignature = None if quantized.shapeSignature is None else list(quantized.shapeSignature)
    twin.type = generated.TensorType.FLOAT32
    twin.name = quantized.name
    twin.buffer = _empty_buffer(model)
    quantized.name = _as_bytes(quantized.name) + b"_int8"
    subgraph.tensors.append(twin)
    return len(subgraph.tensors) - 1


def _empty_buffer(model) -> int:
    model.buffers.append(schema().BufferT())
    return len(model.buffers) - 1


def _operator(model, op_name: str, input_index: int, output_index: int):
    operator = schema().OperatorT()
    operator.opcodeIndex = _opcode_index(model, op_name)
    operator.inputs, operator.outputs = [input_index], [output_index]
    return operator


def _opcode_index(model, op_name: str) -> int:
    """Index of ``op_name``'s operator code, added when missing; the version is raised to int8's if lower."""
    generated = schema()
    code = getattr(generated.BuiltinOperator, op_name)
    for index, opcode in enumerate(model.operatorCodes):
        if max(opcode.builtinCode, opcode.deprecatedBuiltinCode) == code:
            opcode.version = max(opcode.version, IO_OP_VERSION)
            return index
    opcode = generated.OperatorCodeT()
    opcode.builtinCode = code
    # Codes under 127 are also stored in the old int8 field, as every TFLite writer does.
    opcode.deprecatedBuiltinCode = min(code, generated.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    opcode.version = IO_OP_VERSION
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _retarget_signatures(model, subgraph_index: int, renamed: dict[int, int]) -> None:
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex != subgraph_index:
            continue
        for entry in (signature.inputs or []) + (signature.outputs or []):
            entry.tensorIndex = renamed.get(entry.tensorIndex, entry.tensorIndex)


def _as_bytes(name) -> bytes:
    return name if isinstance(name, bytes) else str(name).encode()
