"""Which layer loses the accuracy: per-layer sensitivity of a PTQ model, in the manner of AIMET's QuantAnalyzer,
and the ``quantize.max_drop`` search that keeps the worst layers in float until the drop is small enough.

Everything is measured in torch on the PT2E converted graph, the graph every int8 file is written from: each
quantize/dequantize pair in it gets a switch, so one calibration serves every configuration (simulated int8:
the files themselves are measured in their runtimes by the ``runtimes`` stage).

Which pairs a configuration keeps: a layer's weights are quantized when the layer is; an activation tensor is
quantized when a quantized layer writes it or reads it (through pads, pooling and reshapes), as in the QDQ
files, where a float layer between two int8 ones still reads and writes int8 tensors.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn

SOURCE = "torch, simulated (the PT2E converted graph with its quantize/dequantize pairs switched per layer)"
LAYER_TARGETS = ("aten.conv2d", "aten.linear")


class _Switch(nn.Module):
    """Passes the quantized tensor when on, the float one when off."""

    def __init__(self):
        super().__init__()
        self.on = True

    def forward(self, raw, quantized):
        return quantized if self.on else raw


@dataclass
class _Pair:
    switch: _Switch
    weight_of: str | None = None  # the layer whose weights this pair quantizes
    neighbours: set[str] = field(default_factory=set)  # activation: the layers that write or read the tensor


class SwitchedGraph:
    """A copy of a converted graph whose quantize/dequantize pairs are switched per layer."""

    def __init__(self, converted: nn.Module, layer_names: list[str]):
        self.module = copy.deepcopy(converted)
        self.layers = list(layer_names)
        self.pairs: list[_Pair] = []
        self._insert_switches()

    def configure(self, quantized: set[str], *, weights: bool = True, activations: bool = True) -> None:
        for pair in self.pairs:
            if pair.weight_of is not None:
                pair.switch.on = weights and pair.weight_of in quantized
            else:
                pair.switch.on = activations and bool(pair.neighbours & quantized)

    def top1(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        return top1(self.module, images, labels)

    def _insert_switches(self) -> None:
        graph = self.module.graph
        layer_nodes = [node for node in graph.nodes if _is_layer(node)]
        if len(layer_nodes) != len(self.layers):
            raise ValueError(f"the converted graph has {len(layer_nodes)} convs/FCs, the model {len(self.layers)}")
        layer_of = {node: name for node, name in zip(layer_nodes, self.layers)}
        for dequantize in [node for node in graph.nodes if _is_dequantize(node)]:
            quantize = dequantize.args[0]
            if not (isinstance(quantize, torch.fx.Node) and _is_quantize(quantize)):
                continue
            raw = quantize.args[0]
            users = list(dequantize.users)
            name = f"edgekit_switch_{len(self.pairs)}"
            self.module.add_submodule(name, _Switch())
            with graph.inserting_after(dequantize):
                switched = graph.call_module(name, (raw, dequantize))
            for user in users:
                user.replace_input_with(dequantize, switched)
            pair = _Pair(self.module.get_submodule(name))
            weight_users = [user for user in users if _is_layer(user) and user.args[1] is switched]
            if weight_users:
                pair.weight_of = layer_of[weight_users[0]]
            else:
                pair.neighbours = {layer_of[node] for node in (_producer_layer(raw), *_consumer_layers(switched))
                                   if node is not None}
            self.pairs.append(pair)
        graph.lint()
        self.module.recompile()


@torch.no_grad()
def top1(module: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 250) -> float:
    """Top-1 in percent, rounded to 0.01, ``batch`` images at a time."""
    correct = 0
    for start in range(0, len(images), batch):
        logits = module(images[start : start + batch])
        correct += int((logits.argmax(1) == labels[start : start + batch]).sum())
    return round(100.0 * correct / len(images), 2)


def _is_layer(node) -> bool:
    return node.op == "call_function" and str(node.target).startswith(LAYER_TARGETS)


def _is_quantize(node) -> bool:
    return node.op == "call_function" and str(node.target).startswith("quantized_decomposed.quantize_per_")


def _is_dequantize(node) -> bool:
    return node.op == "call_function" and str(node.target).startswith("quantized_decomposed.dequantize_per_")


def _producer_layer(node):
    """The conv/FC whose output reaches ``node`` through pass-through ops (pad, pool, reshape), or None."""
    while isinstance(node, torch.fx.Node) and node.op != "placeholder":
        if _is_layer(node):
            return node
        inputs = [arg for arg in node.args if isinstance(arg, torch.fx.Node)]
        if not inputs:
            return None
        node = inputs[0]
    return None


def _consumer_layers(node) -> list:
    """The convs/FCs that read ``node`` through pass-through ops."""
    found, pending, seen = [], list(node.users), set()
    while pending:
        user = pending.pop()
        if user in seen:
            continue
        seen.add(user)
        if _is_layer(user):
            found.append(user)
        elif user.op != "output":
            pending.extend(user.users)
    return found


def layer_sensitivity(graph: SwitchedGraph, images: torch.Tensor, labels: torch.Tensor, *,
                      float_top1: float, ops: dict[str, str] | None = None) -> dict:
    """Top-1 of the model with all layers int8, weights only, activations only, and for each layer with only
    that layer quantized and with only that layer in float; layers ranked worst first."""
    everything = set(graph.layers)
    graph.configure(everything)
    int8_top1 = graph.top1(images, labels)
    graph.configure(everything, activations=False)
    weights_only = graph.top1(images, labels)
    graph.configure(everything, weights=False)
    activations_only = graph.top1(images, labels)
    records = []
    for name in graph.layers:
        graph.configure({name})
        alone = graph.top1(images, labels)
        graph.configure(everything - {name})
        kept = graph.top1(images, labels)
        records.append({"layer": name, "op": (ops or {}).get(name, ""), "only_this_quantized_top1": alone,
                        "only_this_float_top1": kept,
                        "score": round((float_top1 - alone) + (kept - int8_top1), 2)})
    ranked = sorted(records, key=lambda record: -record["score"])  # stable: forward order breaks ties
    for rank, record in enumerate(ranked, 1):
        record["rank"] = rank
    graph.configure(everything)
    return {"source": SOURCE, "samples": len(images), "float_top1": float_top1, "int8_top1": int8_top1,
            "weights_only_top1": weights_only, "activations_only_top1": activations_only, "layers": ranked}


def max_drop_search(graph: SwitchedGraph, ranking: list[str], images: torch.Tensor, labels: torch.Tensor, *,
                    float_top1: float, max_drop: float, always_float: tuple[str, ...] = ()) -> dict:
    """Keep the ``ranking``'s layers in float one at a time (after ``always_float``) until the top-1 drop vs
    float is at most ``max_drop`` points; every step's layers and top-1."""
    kept = list(always_float)
    candidates = [name for name in ranking if name not in kept]
    steps = []
    while True:
        graph.configure(set(graph.layers) - set(kept))
        top1 = graph.top1(images, labels)
        steps.append({"float_layers": list(kept), "top1": top1, "drop": round(float_top1 - top1, 2)})
        if float_top1 - top1 <= max_drop or not candidates:
            break
        kept.append(candidates.pop(0))
    graph.configure(set(graph.layers))
    return {"source": SOURCE, "samples": len(images), "max_drop": max_drop, "float_top1": float_top1,
            "reached": steps[-1]["drop"] <= max_drop, "float_layers": steps[-1]["float_layers"], "steps": steps}


def select_float_layers(backend, model: nn.Module, example: torch.Tensor, calibration, images: torch.Tensor,
                        labels: torch.Tensor, *, per_channel: bool, max_drop: float,
                        always_float: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(sensitivity, max_drop search) of ``model``'s all-int8 PTQ on ``images``: the layers to keep in float."""
    from edgekit.models.layers import model_layers
    from edgekit.quantize.algorithm import ptq

    layers = model_layers(model, example)
    float_top1 = top1(model.eval(), images, labels)
    converted = ptq(backend, model, example, calibration, per_channel).converted
    graph = SwitchedGraph(converted, [layer.name for layer in layers])
    sensitivity = layer_sensitivity(graph, images, labels, float_top1=float_top1,
                                    ops={layer.name: layer.op for layer in layers})
    ranking = [record["layer"] for record in sensitivity["layers"]]
    search = max_drop_search(graph, ranking, images, labels, float_top1=float_top1, max_drop=max_drop,
                             always_float=always_float)
    return sensitivity, search
