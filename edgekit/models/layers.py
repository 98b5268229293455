"""A model's convs and FCs as runtimes see them: each with the BatchNorm and activation folded into its kernel."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

LAYER_TYPES = (nn.Conv2d, nn.Linear)
#: modules a converter folds into the conv before it: the last one's output is the kernel's output
FOLDED_AFTER = (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Identity, nn.Dropout)


@dataclass(frozen=True)
class Layer:
    """A conv or FC of the torch model: its name, kind and the module whose output the runtime kernel writes."""

    name: str
    op: str  # "conv", "depthwise_conv" or "fc"
    output_module: str
    shape: tuple[int, ...]  # output shape without the batch, NCHW
    modules: tuple[str, ...] = ()  # the conv/FC and the modules folded into its kernel, in order


def layer_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "fc"
    return "depthwise_conv" if module.groups > 1 and module.groups == module.in_channels else "conv"


def model_layers(model: nn.Module, example: torch.Tensor) -> list[Layer]:
    """The model's convs and FCs in forward order, each with the module whose output its kernel writes."""
    calls: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    handles = [module.register_forward_hook(_recorder(name, calls)) for name, module in leaves]
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    layers = []
    for position, (name, module, shape) in enumerate(calls):
        if not isinstance(module, LAYER_TYPES):
            continue
        chain = [name]
        for follower_name, follower, follower_shape in calls[position + 1:]:
            if not isinstance(follower, FOLDED_AFTER) or follower_shape != shape:
                break
            chain.append(follower_name)
        layers.append(Layer(name, layer_kind(module), chain[-1], shape, tuple(chain)))
    return layers


def _recorder(name: str, calls: list):
    def hook(module, inputs, output):
        calls.append((name, module, tuple(output.shape[1:])))

    return hook


def layer_names(model: nn.Module) -> list[str]:
    """The model's conv and FC module names, in definition order."""
    return [name for name, module in model.named_modules() if isinstance(module, LAYER_TYPES)]
