"""The .pte writer: torch.export at batch 1, lowered to XNNPACK as ONE delegate, as an ExecuTorch program.

The float model and a PT2E-converted int8 graph go the same way: ``to_edge_transform_and_lower`` with
``XnnpackPartitioner``, then ``to_executorch``. The PT2E backend converts with ``fold_quantize=False``
(litert-torch needs the weights' quantize ops), which XNNPACK does not take: the weights' quantize ops
are folded here first, on a copy (the same int8 values, computed once), as ``convert_pt2e``'s default does.

A program that does not lower to a single XNNPACK delegate with every op inside it is an ``ExportError``: two delegates mean an op between them runs on ExecuTorch's portable CPU kernels and
copies tensors in and out of XNNPACK on every inference.
"""

from __future__ import annotations

import copy
from operator import getitem
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.artifacts import write_atomically
from edgekit.export.common import VERBOSE_HINT, ExportError, first_line, quiet

DELEGATE_CALL = "executorch_call_delegate"
RESHAPES = {torch.ops.aten.view.default, torch.ops.aten.reshape.default, torch.ops.aten._unsafe_view.default,
            torch.ops.aten.flatten.using_ints}


def write_executorch(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """A .pte for one image at a time (batch 1, NCHW float input, float logits)."""
    with quiet():
        try:
            program = _lower(_fold_weight_quantizers(module), example[:1])
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"{path.name}: ExecuTorch export failed: {first_line(exc)}", hint=VERBOSE_HINT) from exc
    delegates, outside = _delegation(program.exported_program().graph_module)
    if delegates != 1 or outside:
        raise ExportError(f"{path.name}: the model lowers to {delegates} XNNPACK delegates"
                          + (f" and leaves {', '.join(outside)} outside" if outside else "")
                          + "; ExecuTorch files must lower to one delegate",
                          hint="a global pool as mean(dim=(2, 3), keepdim=True) then a reshape keeps one delegate")
    buffer = program.to_executorch().buffer
    write_atomically(path, lambda tmp: tmp.write_bytes(buffer))
    return path


def _fold_weight_quantizers(module: nn.Module) -> nn.Module:
    """A PT2E graph with its constant weights' quantize ops folded into int8 constants and its reshapes
    on one grid (a copy); a plain module as it is."""
    if not isinstance(module, torch.fx.GraphModule):
        return module
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    folded = copy.deepcopy(module)
    constant_fold(folded, _quant_node_constraint)
    _requantize_before_reshapes(folded)
    return folded


def _requantize_before_reshapes(graph_module: torch.fx.GraphModule) -> None:
    """``dequantize(grid a) -> reshape -> quantize(grid b)`` becomes ``dequantize(a) -> quantize(b) ->
    dequantize(b) -> reshape -> quantize(b)``: the same int8 values (a reshape moves values, it does not
    change them), but XNNPACK copies a reshape's int8 values as they are and refuses one whose input and
    output grids differ ("Failed to create squeeze node"). The PT2E quantizer leaves the reshape between
    the global pool and the classifier unannotated, so its two sides get their own observers; where the
    pool's output is 1x1 they happen to agree."""
    quantize = torch.ops.quantized_decomposed.quantize_per_tensor.default
    dequantize = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in RESHAPES or len(node.users) != 1:
            continue
        source, (consumer,) = node.args[0], node.users
        if not (isinstance(source, torch.fx.Node) and source.target == dequantize and consumer.target == quantize):
            continue
        grid = tuple(consumer.args[1:])
        if tuple(source.args[1:]) == grid:
            continue
        with graph.inserting_before(node):
            requantized = graph.call_function(quantize, (source, *grid))
            on_grid = graph.call_function(dequantize, (requantized, *grid))
        node.replace_input_with(source, on_grid)
    graph.lint()
    graph_module.recompile()


def _lower(module: nn.Module, example: torch.Tensor):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(module, (example,))
    return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])


def _delegation(graph_module) -> tuple[int, list[str]]:
    """(delegate calls, the ops left outside any delegate) in the lowered edge graph."""
    calls = [node for node in graph_module.graph.nodes if node.op == "call_function" and node.target is not getitem]
    delegates = sum(str(node.target) == DELEGATE_CALL for node in calls)
    outside = [_op_name(node.target) for node in calls if str(node.target) != DELEGATE_CALL]
    return delegates, outside


def _op_name(target) -> str:
    """``aten.mean.dim`` rather than an edge op's full schema."""
    return str(target).split(">")[0].split(": ")[-1].strip("<")
