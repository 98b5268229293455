"""``quantize.keep_float``: conv/FC layers left in float, named by the model's module names or globs."""

from __future__ import annotations

import difflib
import fnmatch

import torch
import torch.nn as nn

from edgekit.errors import UserInputError
from edgekit.models.layers import layer_names, model_layers


def resolve_keep_float(model: nn.Module, patterns) -> tuple[str, ...]:
    """The conv/FC layer names that ``patterns`` (names or fnmatch globs) select, in model order; a pattern
    that selects none is a one-line error listing the closest layer names."""
    names = layer_names(model)
    selected: set[str] = set()
    for pattern in patterns:
        matches = fnmatch.filter(names, pattern)
        if not matches:
            closest = difflib.get_close_matches(pattern, names, n=3, cutoff=0.0)
            raise UserInputError(f"quantize.keep_float: '{pattern}' matches no conv or FC layer of the model "
                                 f"(closest: {', '.join(closest)})")
        selected.update(matches)
    return tuple(name for name in names if name in selected)


def folded_modules(model: nn.Module, example: torch.Tensor, layers: tuple[str, ...]) -> set[str]:
    """The modules of each kept layer's kernel: the conv/FC and the BatchNorm/activation folded into it."""
    if not layers:
        return set()
    return {module for layer in model_layers(model, example) if layer.name in layers for module in layer.modules}
