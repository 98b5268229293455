"""Model registry (timm style): entrypoints are stored by function name in a module-level dict.

Built-in model files register themselves with ``@register_model`` and are imported explicitly by
``edgekit.models``; nothing is discovered by scanning packages. A family also registers its own recipe
options (``@register_model(options=...)``, a pydantic model): the keys of the recipe's ``model`` section
that only it has, validated when a recipe picks it and listed by ``edgekit schema``.
"""

from __future__ import annotations

import warnings
from typing import Callable

from pydantic import BaseModel
from torch import nn

from edgekit.errors import UserInputError, suggest

__all__ = ["register_model", "list_models", "model_entrypoint", "model_options", "create_model"]

ModelEntrypoint = Callable[..., nn.Module]

_model_entrypoints: dict[str, ModelEntrypoint] = {}


def register_model(fn: ModelEntrypoint | None = None, *, options: type[BaseModel] | None = None):
    """Register ``fn`` under its function name; a later registration of the same name wins, with a warning.

    ``@register_model`` or ``@register_model(options=FamilyOptions)``: ``options`` declares the family's
    own recipe keys; they reach ``fn`` as keyword arguments.
    """

    def register(fn: ModelEntrypoint) -> ModelEntrypoint:
        name = fn.__name__
        if name in _model_entrypoints:
            warnings.warn(f"model '{name}' is registered twice; the later definition replaces the earlier", stacklevel=3)
        fn.recipe_options = options
        _model_entrypoints[name] = fn
        return fn

    return register if fn is None else register(fn)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_model_entrypoints)


def model_entrypoint(name: str) -> ModelEntrypoint:
    """The entrypoint registered as ``name``; raises ``UserInputError`` with a close-match hint if unknown."""
    try:
        return _model_entrypoints[name]
    except KeyError:
        raise UserInputError(f"unknown model '{name}'", hint=suggest(name, _model_entrypoints)) from None


def model_options(name: str) -> type[BaseModel] | None:
    """The options model ``name`` was registered with (None: the family has no options of its own)."""
    return getattr(model_entrypoint(name), "recipe_options", None)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build model ``name``. ``None`` kwargs are dropped so the model's own defaults stay in force."""
    entrypoint = model_entrypoint(name)
    given = {key: value for key, value in kwargs.items() if value is not None}
    return entrypoint(**given)
