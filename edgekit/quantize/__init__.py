"""Quantization: PTQ and QAT behind one algorithm surface, one module per backend."""

from __future__ import annotations

from edgekit.errors import UserInputError, suggest
from edgekit.quantize.base import QuantizationBackend, QuantScheme

# Built-in backends by name -> "module:Class"; imported only when used.
BACKENDS = {
    "pt2e": "edgekit.quantize.pt2e:PT2EBackend",
}
# Measured choice (see README "Quantization"): one PT2E model feeds both formats.
DEFAULT_BACKEND = {"tflite": "pt2e", "onnx": "pt2e"}


def get_backend(name: str) -> QuantizationBackend:
    if name not in BACKENDS:
        raise UserInputError(f"quantize.backend: unknown backend '{name}' (available: {', '.join(BACKENDS)})",
                             hint=suggest(name, BACKENDS))
    module_name, class_name = BACKENDS[name].split(":")
    import importlib

    return getattr(importlib.import_module(module_name), class_name)()


def resolve_backend(requested: str, formats: list[str]) -> str:
    """``auto`` picks the measured default for the requested formats."""
    if requested != "auto":
        return requested
    chosen = {DEFAULT_BACKEND[fmt] for fmt in formats}
    return chosen.pop() if len(chosen) == 1 else "pt2e"


__all__ = ["BACKENDS", "QuantScheme", "QuantizationBackend", "get_backend", "resolve_backend"]
