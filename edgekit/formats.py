"""Export formats, one row each: what every stage and the report know about a file format.

A row says what a format is: its suffix, the function that writes it (imported only when a file is
written), the options it takes from the recipe's ``export`` section, the runtimes that load it (the first
evaluates it in a build and runs it on a device), the precisions edgekit writes in it, and the element
type of an int8 file's input and output. Adding a format is a writer module and one row here; an
unknown format is an error when a recipe loads (``check_format``).

This module imports nothing heavy: the recipe schema, the runtimes and the report all read it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import UserInputError, suggest


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    writer: str  # "module:function" with the signature (module, example, path, **options)
    runtimes: tuple[str, ...]  # runtimes that load files of this format; the first one evaluates them
    writer_options: Callable[[Any, str], dict]  # (recipe.export, precision) -> keyword options of the writer
    precisions: tuple[str, ...] = ("float32", "int8")
    int8_io: Callable[[Any], str] = lambda export: "float32"  # recipe.export -> element type of an int8 file's I/O
    default: bool = True  # exported when a recipe does not set export.formats

    @property
    def runtime(self) -> str:
        return self.runtimes[0]

    def write(self, module, example, path: Path, export_section, precision: str, **backend_options) -> Path:
        module_name, function_name = self.writer.split(":")
        write = getattr(importlib.import_module(module_name), function_name)
        return write(module, example, path, **self.writer_options(export_section, precision), **backend_options)

    def io_type(self, export_section, precision: str) -> str:
        return self.int8_io(export_section) if precision == "int8" else "float32"


FORMATS: dict[str, ExportFormat] = {
    fmt.name: fmt for fmt in (
        ExportFormat(
            "tflite", ".tflite", "edgekit.export.tflite:write_tflite", ("litert",),
            writer_options=lambda export, precision: {"io": export.tflite_io} if precision == "int8" else {},
            int8_io=lambda export: export.tflite_io,
        ),
        ExportFormat(
            "onnx", ".onnx", "edgekit.export.onnx:write_onnx", ("onnxruntime", "openvino"),
            writer_options=lambda export, precision: {"opset": export.onnx_opset},
        ),
        ExportFormat(
            "executorch", ".pte", "edgekit.export.executorch:write_executorch", ("executorch",),
            writer_options=lambda export, precision: {}, default=False,  # an optional extra (edgekit[executorch])
        ),
    )
}


def get_format(name: str) -> ExportFormat:
    """The row of ``name``; a one-line error with a close-match hint when there is none."""
    if name not in FORMATS:
        raise UserInputError(f"unknown export format '{name}' (known: {', '.join(FORMATS)})", hint=suggest(name, FORMATS))
    return FORMATS[name]


def format_for_path(path: str | Path) -> ExportFormat:
    """The format of a model file, by its suffix."""
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS.values():
        if fmt.suffix == suffix:
            return fmt
    known = ", ".join(f"{fmt.suffix} ({fmt.name})" for fmt in FORMATS.values())
    raise UserInputError(f"{path}: no runtime runs '{suffix or 'no suffix'}' files; known: {known}")


def formats_loaded_by(runtime: str) -> list[str]:
    return [fmt.name for fmt in FORMATS.values() if runtime in fmt.runtimes]


def runtime_names() -> list[str]:
    """Every runtime some format is loaded by, in table order."""
    return list(dict.fromkeys(runtime for fmt in FORMATS.values() for runtime in fmt.runtimes))
