"""Model registry (timm style): entrypoints are stored by function name in a module-level dict.

Built-in model files register themselves with ``@register_model`` and are imported explicitly by
``edgekit.models``; nothing is discovered by scanning packages.
"""

from __future__ import annotations

import warnings
from typing import Callable

from torch import nn

from edgekit.errors import UserInputError, suggest

__all__ = ["register_model", "list_models", "model_entrypoint", "create_model"]

ModelEntrypoint = Callable[..., nn.Module]

_model_entrypoints: dict[str, ModelEntrypoint] = {}


def register_model(fn: ModelEntrypoint) -> ModelEntrypoint:
    """Register ``fn`` under its function name; a later registration of the same name wins, with a warning."""
    name = fn.__name__
    if name in _model_entrypoints:
        warnings.warn(f"model '{name}' is registered twice; the later definition replaces the earlier", stacklevel=2)
    _model_entrypoints[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_model_entrypoints)


def model_entrypoint(name: str) -> ModelEntrypoint:
    """The entrypoint registered as ``name``; raises ``UserInputError`` with a close-match hint if unknown."""
    try:
        return _model_entrypoints[name]
    except KeyError:
        raise UserInputError(f"unknown model '{name}'", hint=suggest(name, _model_entrypoints)) from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build model ``name``. ``None`` kwargs are dropped so the model's own defaults stay in force."""
    entrypoint = model_entrypoint(name)
    given = {key: value for key, value in kwargs.items() if value is not None}
    return entrypoint(**given)
