"""The .tflite writer: litert-torch conversion, with float32 I/O for int8 files on request."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from edgekit.artifacts import write_atomically
from edgekit.export.common import VERBOSE_HINT, ExportError, first_line, quiet


def write_tflite(module: nn.Module, example: torch.Tensor, path: Path, *, quant_config=None,
                 io: str = "int8") -> Path:
    """litert-torch conversion at batch 1 (how edge devices run it) with NHWC input (no leading
    TRANSPOSE). A quantized model has int8 input and output; ``io="float32"`` rewrites them to float32
    (QUANTIZE/DEQUANTIZE inside the file). ``io`` does nothing to a float model."""
    nhwc_example = example[:1].permute(0, 2, 3, 1).contiguous()
    with quiet():
        import litert_torch  # its import prints TensorFlow's start-up lines

        wrapped = litert_torch.to_channel_last_io(module, args=[0]).eval()
        try:
            edge_model = litert_torch.convert(wrapped, (nhwc_example,), quant_config=quant_config)
        except Exception as exc:  # converter internals raise anything
            raise ExportError(f"{path.name}: litert-torch conversion failed: {first_line(exc)}",
                              hint=VERBOSE_HINT) from exc
        write_atomically(path, lambda tmp: edge_model.export(str(tmp)))
    if io == "float32":
        from edgekit.export.tflite_io import write_float_io

        write_float_io(path, path)
    return path
