"""The .tflite writer: litert-torch conversion, with float32 I/O for int8 files on request."""

from __future__ import annotations

import contextlib
import types
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.artifacts import write_atomically
from edgekit.export.common import VERBOSE_HINT, ExportError, first_line, quiet


def write_tflite(module: nn.Module, example: torch.Tensor, path: Path, *, quant_config=None,
                 io: str = "int8", strict_qdq: bool = False) -> Path:
    """litert-torch conversion at batch 1 (how edge devices run it) with NHWC input (no leading
    TRANSPOSE). A quantized model has int8 input and output; ``io="float32"`` rewrites them to float32
    (QUANTIZE/DEQUANTIZE inside the file). ``io`` does nothing to a float model.

    ``strict_qdq``: the converter quantizes only ops whose weights carry their own quantize/dequantize, so a
    layer kept in float (``quantize.keep_float``) stays a float op between DEQUANTIZE and QUANTIZE; by default
    it re-quantizes any float op that sits between a dequantize and a quantize."""
    nhwc_example = example[:1].permute(0, 2, 3, 1).contiguous()
    with quiet():
        import litert_torch  # its import prints TensorFlow's start-up lines

        wrapped = litert_torch.to_channel_last_io(module, args=[0]).eval()
        try:
            with _strict_qdq(strict_qdq):
                edge_model = litert_torch.convert(wrapped, (nhwc_example,), quant_config=quant_config)
        except Exception as exc:  # converter internals raise anything
            raise ExportError(f"{path.name}: litert-torch conversion failed: {first_line(exc)}",
                              hint=VERBOSE_HINT) from exc
        write_atomically(path, lambda tmp: edge_model.export(str(tmp)))
    if strict_qdq:
        _restore_int8_io(path)
    if io == "float32":
        from edgekit.export.tflite_io import write_float_io

        write_float_io(path, path)
    return path


@contextlib.contextmanager
def _strict_qdq(enabled: bool):
    """litert-torch builds its converter config inside ``convert`` and sets no strict mode: hand it one that does."""
    if not enabled:
        yield
        return
    from litert_torch._convert import litert_converter

    extension = litert_converter.converter_api_ext

    def strict_config():
        config = extension.ConvertToTFLConfig()
        config.strict_qdq_mode = True
        return config

    members = {name: getattr(extension, name) for name in dir(extension) if not name.startswith("__")}
    litert_converter.converter_api_ext = types.SimpleNamespace(**{**members, "ConvertToTFLConfig": strict_config})
    try:
        yield
    finally:
        litert_converter.converter_api_ext = extension


def _restore_int8_io(path: Path) -> None:
    """Strict QDQ mode gives the file float32 I/O; edgekit's int8 files have int8 I/O unless asked otherwise."""
    from edgekit.export.tflite_io import model_bytes, read_model, to_int8_io

    model = read_model(path)
    to_int8_io(model)
    data = model_bytes(model)
    write_atomically(path, lambda tmp: tmp.write_bytes(data))
