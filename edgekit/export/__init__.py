"""Exports: torch modules (float, or a backend's converted int8 graph) to .tflite and .onnx files."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.artifacts import sha256_file, write_atomically
from edgekit.errors import EdgekitError

FORMAT_SUFFIX = {"tflite": ".tflite", "onnx": ".onnx"}
VERBOSE_HINT = "EDGEKIT_VERBOSE_EXPORT=1 shows the converter's own output"


class ExportError(EdgekitError):
    """A converter failed on a model."""


def write_tflite(module: nn.Module, example: torch.Tensor, path: Path, *, quant_config=None,
                 io: str = "int8") -> Path:
    """litert-torch conversion at batch 1 (how edge devices run it) with NHWC input (no leading
    TRANSPOSE). A quantized model has int8 input and output; ``io="float32"`` rewrites them to float32
    (QUANTIZE/DEQUANTIZE inside the file). ``io`` does nothing to a float model."""
    nhwc_example = example[:1].permute(0, 2, 3, 1).contiguous()
    with _quiet():
        import litert_torch  # its import prints TensorFlow's start-up lines

        wrapped = litert_torch.to_channel_last_io(module, args=[0]).eval()
        try:
            edge_model = litert_torch.convert(wrapped, (nhwc_example,), quant_config=quant_config)
        except Exception as exc:  # converter internals raise anything
            raise ExportError(f"{path.name}: litert-torch conversion failed: {_first_line(exc)}",
                              hint=VERBOSE_HINT) from exc
        write_atomically(path, lambda tmp: edge_model.export(str(tmp)))
    if io == "float32":
        from edgekit.export.tflite_io import write_float_io

        write_float_io(path, path)
    return path


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path, *, opset: int, dynamo: bool = True) -> Path:
    """ONNX with a dynamic batch, one self-contained file; weights stored compactly (int8 for QDQ)."""
    import onnx

    raw = path.with_name(path.stem + ".raw.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)  # an ONNX-only build has written nothing there yet
    dynamic = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {
        "dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}}
    with _quiet():
        try:
            torch.onnx.export(module, (example,), str(raw), dynamo=dynamo, opset_version=opset,
                              input_names=["input"], output_names=["logits"], external_data=False, **dynamic)
        except Exception as exc:
            raise ExportError(f"{path.name}: ONNX export failed: {_first_line(exc)}", hint=VERBOSE_HINT) from exc
    try:
        _compact_onnx(raw, path)
    finally:
        raw.unlink(missing_ok=True)
    onnx.checker.check_model(str(path))
    return path


def _compact_onnx(source: Path, path: Path) -> None:
    """onnxruntime's BASIC optimisation folds the QDQ weight chains into int8 initializers
    (3.2 MB -> 0.94 MB for MobileNet 0.5-160) and is portable, unlike ENABLE_ALL's CPU-specific fusions."""
    import onnxruntime as ort

    def optimise(tmp: Path) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])

    write_atomically(path, optimise)


def artifact_entry(name: str, path: Path, out_dir: Path, fmt: str, precision: str, method: str, backend: str,
                   io: str = "float32") -> dict:
    """``io`` is the element type of the file's input and output tensors (an ONNX QDQ model's are float32)."""
    return {"name": name, "path": str(path.relative_to(out_dir)), "format": fmt, "precision": precision,
            "method": method, "backend": backend, "io": io, "bytes": path.stat().st_size,
            "sha256": sha256_file(path)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


@contextlib.contextmanager
def _quiet():
    """The converters print pages of progress and warnings, some from C++ straight to file descriptors 1
    and 2; keep the build's output readable. ``EDGEKIT_VERBOSE_EXPORT=1`` shows everything."""
    if os.environ.get("EDGEKIT_VERBOSE_EXPORT") == "1":
        yield
        return
    logging.disable(logging.WARNING)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with tempfile.TemporaryFile() as sink, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                _flush_c_stdio()  # C++ printf output still buffered would land on the terminal later
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        logging.disable(logging.NOTSET)


def _flush_c_stdio() -> None:
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to reach (not Linux/macOS): nothing buffered to lose
        pass
