"""Exports: torch modules (float, or a backend's converted int8 graph) to model files, one writer module
per format (``edgekit.formats`` lists them)."""

from edgekit.export.common import ExportError, artifact_entry
from edgekit.export.onnx import write_onnx
from edgekit.export.tflite import write_tflite

__all__ = ["ExportError", "artifact_entry", "write_onnx", "write_tflite"]
