"""Quantization: PTQ and QAT behind one algorithm surface, one module per backend."""

from __future__ import annotations

from edgekit.errors import UserInputError, suggest
from edgekit.quantize.base import QuantizationBackend, QuantScheme

# Built-in backends by name -> "module:Class"; imported only when used.
BACKENDS = {
    "pt2e": "edgekit.quantize.pt2e:PT2EBackend",
    "nncf": "edgekit.quantize.nncf_backend:NNCFBackend",
}
# Capabilities as data: the export formats each backend writes int8 files for (checked before any stage runs).
BACKEND_FORMATS = {"pt2e": ("tflite", "onnx", "executorch"), "nncf": ("onnx",)}
# Measured choice (docs/quantization.md): one PT2E model feeds both formats, and its PTQ held up better.
DEFAULT_BACKEND = {"tflite": "pt2e", "onnx": "pt2e", "executorch": "pt2e"}


def get_backend(name: str) -> QuantizationBackend:
    if name not in BACKENDS:
        raise UserInputError(f"quantize.backend: unknown backend '{name}' (available: {', '.join(BACKENDS)})",
                             hint=suggest(name, BACKENDS))
    module_name, class_name = BACKENDS[name].split(":")
    import importlib

    return getattr(importlib.import_module(module_name), class_name)()


def check_backend_formats(name: str, formats: list[str]) -> None:
    """A recipe whose backend cannot write one of its export formats is an error before anything runs."""
    if name == "auto":
        return
    if name not in BACKENDS:
        raise UserInputError(f"quantize.backend: unknown backend '{name}' (available: {', '.join(BACKENDS)})",
                             hint=suggest(name, BACKENDS))
    unsupported = [fmt for fmt in formats if fmt not in BACKEND_FORMATS[name]]
    if unsupported:
        able = [other for other, written in BACKEND_FORMATS.items() if set(formats) <= set(written)]
        raise UserInputError(f"quantize.backend: {name} cannot write {', '.join(unsupported)} "
                             f"(export.formats asks for it); use {' or '.join(able) or 'another backend'}")


def resolve_backend(requested: str, formats: list[str]) -> str:
    """``auto`` picks the measured default for the requested formats."""
    if requested != "auto":
        return requested
    chosen = {DEFAULT_BACKEND[fmt] for fmt in formats}
    return chosen.pop() if len(chosen) == 1 else "pt2e"


__all__ = ["BACKENDS", "BACKEND_FORMATS", "QuantScheme", "check_backend_formats", "QuantizationBackend", "get_backend", "resolve_backend"]
