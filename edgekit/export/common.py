"""What every export writer shares: the error type, quiet converters, the report entry of a written file."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

from edgekit.artifacts import sha256_file
from edgekit.errors import EdgekitError

VERBOSE_HINT = "EDGEKIT_VERBOSE_EXPORT=1 shows the converter's own output"


class ExportError(EdgekitError):
    """A converter failed on a model."""


def artifact_entry(name: str, path: Path, out_dir: Path, fmt: str, precision: str, method: str, backend: str,
                   io: str = "float32") -> dict:
    """``io`` is the element type of the file's input and output tensors (an ONNX QDQ model's are float32)."""
    return {"name": name, "path": str(path.relative_to(out_dir)), "format": fmt, "precision": precision,
            "method": method, "backend": backend, "io": io, "bytes": path.stat().st_size,
            "sha256": sha256_file(path)}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


@contextlib.contextmanager
def quiet():
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
