"""LiteRT (the TFLite interpreter) from ``ai-edge-litert``, or ``tflite-runtime`` as a fallback for old boards.

ai-edge-litert 2.3 applies its default delegate, XNNPACK, to float and int8 graphs when tensors are
allocated: the delegated part of the graph becomes DELEGATE nodes, and a session reports the delegate
only when such nodes are really there. tflite-runtime 2.14 does not delegate int8 graphs (they run
~8x slower there) and needs numpy<2.

A model exported with batch 1 is resized to the batch at hand (``resize_tensor_input``); with XNNPACK that
gives the same outputs as running image by image. If a model refuses the resize, images run one by one.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from edgekit.runtimes.base import (Quantization, Runtime, RuntimeFailure, RuntimeUnavailable, Session, TensorSpec,
                                   guess_layout, one_line)

PACKAGES = (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"))
DEFAULT_DELEGATE = "XNNPACK"


def interpreter_module():
    """(the ``interpreter`` module, pip package name, version) of the first LiteRT package installed."""
    for module_name, package in PACKAGES:
        try:
            module = importlib.import_module(f"{module_name}.interpreter")
        except ImportError:
            continue
        version = getattr(importlib.import_module(module_name), "__version__", "unknown")
        return module, package, version
    raise RuntimeUnavailable("litert: Python package 'ai-edge-litert' is not installed; pip install ai-edge-litert")


def make_interpreter(path: Path, threads: int, *, default_delegates: bool = True, preserve_all_tensors: bool = False):
    """An Interpreter for ``path``; a file LiteRT rejects is a one-line RuntimeFailure naming it.
    ``preserve_all_tensors`` keeps every intermediate tensor readable after ``invoke`` (builtin kernels only)."""
    module, _, _ = interpreter_module()
    resolver = module.OpResolverType.AUTO if default_delegates else module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        return module.Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver,
                                  experimental_preserve_all_tensors=preserve_all_tensors)
    except Exception as error:  # ValueError for a bad flatbuffer, RuntimeError from the C++ side
        raise RuntimeFailure(f"{path}: LiteRT cannot load it ({one_line(error)})") from None


def tensor_grid(detail: dict) -> Quantization | None:
    """Per-tensor (scale, zero_point) of an int8/uint8 tensor; None for float tensors."""
    if detail["dtype"] in (np.float32, np.float16):
        return None
    scale, zero_point = detail["quantization"]
    return (float(scale), int(zero_point)) if scale else None


class LiteRTRuntime(Runtime):
    name = "litert"
    package = "ai-edge-litert"

    def _open(self, path: Path, threads: int) -> "LiteRTSession":
        interpreter = make_interpreter(path, threads)
        return LiteRTSession(path, threads, interpreter)

    def describe(self) -> dict:
        _, package, version = interpreter_module()
        delegate = DEFAULT_DELEGATE if package == "ai-edge-litert" else f"{DEFAULT_DELEGATE} (float graphs only)"
        return {"runtime": self.name, "version": version, "package": package, "delegate": delegate}


class LiteRTSession(Session):
    def __init__(self, path: Path, threads: int, interpreter):
        super().__init__(path, threads)
        self.interpreter = interpreter
        self.input, self.output = self._single_input_output(interpreter.get_input_details(), interpreter.get_output_details())
        self._allocate()
        self._spec = self._read_input_spec()
        self._output_grid = tensor_grid(self.output) or self._dequantized_output_grid()
        self._batch = int(self.input["shape"][0])
        self._can_resize = True

    def _allocate(self) -> None:
        try:
            self.interpreter.allocate_tensors()
        except Exception as error:
            raise RuntimeFailure(f"{self.path}: LiteRT cannot prepare it ({one_line(error)})") from None

    def _read_input_spec(self) -> TensorSpec:
        signature = [int(dim) for dim in self.input["shape_signature"]]
        shape = tuple(None if dim < 0 else dim for dim in signature)
        dtype = np.dtype(self.input["dtype"]).name
        return TensorSpec(self.input["name"], shape, guess_layout(shape, "NHWC"), dtype, tensor_grid(self.input))

    def _dequantized_output_grid(self) -> Quantization | None:
        """A float output made by a DEQUANTIZE (an int8 model with float I/O) lies on its input's int8 grid."""
        for op in self.interpreter._get_ops_details():  # the graph's own ops, listed even when delegated
            if op["op_name"] == "DEQUANTIZE" and self.output["index"] in [int(i) for i in op["outputs"]]:
                return tensor_grid(self.interpreter._get_tensor_details(int(op["inputs"][0]), 0))
        return None

    def input_spec(self) -> TensorSpec:
        return self._spec

    def output_quantization(self) -> Quantization | None:
        return self._output_grid

    def delegate_partitions(self) -> int:
        """DELEGATE nodes in the prepared graph: 0 means the builtin kernels run everything."""
        return sum(op["op_name"] == "DELEGATE" for op in self.interpreter._get_ops_details())

    def describe(self) -> dict:
        _, package, version = interpreter_module()
        partitions = self.delegate_partitions()
        return {"runtime": "litert", "version": version, "package": package,
                "delegate": DEFAULT_DELEGATE if partitions else "none", "delegate_partitions": partitions,
                "threads": self.threads}

    def _run_native(self, inputs: np.ndarray) -> np.ndarray:
        if len(inputs) == self._batch or self._resize(len(inputs)):
            return self._invoke(inputs)
        if self._batch != 1:
            raise RuntimeFailure(f"{self.path}: the model's batch is fixed at {self._batch} and LiteRT cannot "
                                 f"resize it to {len(inputs)}")
        return np.concatenate([self._invoke(inputs[index : index + 1]) for index in range(len(inputs))])

    def _resize(self, batch: int) -> bool:
        if not self._can_resize:
            return False
        try:
            self.interpreter.resize_tensor_input(self.input["index"], [batch, *self.input["shape"][1:]])
            self.interpreter.allocate_tensors()
        except Exception:  # a graph with batch-dependent reshapes: fall back to the exported batch
            self._can_resize = False
            self.interpreter.resize_tensor_input(self.input["index"], self.input["shape"])
            self._allocate()
            self._batch = int(self.input["shape"][0])
            return False
        self._batch = batch
        return True

    def _invoke(self, inputs: np.ndarray) -> np.ndarray:
        try:
            self.interpreter.set_tensor(self.input["index"], inputs)
            self.interpreter.invoke()
        except Exception as error:
            raise RuntimeFailure(f"{self.path}: LiteRT failed to run it ({one_line(error)})") from None
        return self.interpreter.get_tensor(self.output["index"])
