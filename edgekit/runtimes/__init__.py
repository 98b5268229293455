"""Run exported models inside real runtimes: onnxruntime (.onnx) and LiteRT (.tflite).

``get_runtime(name).load(path, threads=...)`` gives a ``Session`` whose ``run`` maps float NCHW images to
float logits, whatever the file's own layout and int8 I/O. ``evaluate_file`` measures accuracy in a
runtime; ``check_int8`` / ``require_int8`` verify that the convs and matmuls really run as int8 kernels.
"""

from edgekit.runtimes.base import (Runtime, RuntimeFailure, RuntimeUnavailable, Session, TensorSpec, get_runtime,
                                   list_runtimes, register_runtime, runtime_for)
from edgekit.runtimes.evaluate import evaluate_file
from edgekit.runtimes.int8_check import Int8KernelError, check_int8, require_int8

__all__ = [
    "Int8KernelError", "Runtime", "RuntimeFailure", "RuntimeUnavailable", "Session", "TensorSpec",
    "check_int8", "evaluate_file", "get_runtime", "list_runtimes", "register_runtime", "require_int8", "runtime_for",
]
