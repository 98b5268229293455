"""Load a user's state dict into a model, with errors that say what does not fit."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import WeightsError

MAX_LISTED = 3


def load_weights(model: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model.weights: {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"model.weights: {path}: not a loadable state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # an edgekit checkpoint
    if not isinstance(state, dict):
        raise WeightsError(f"model.weights: {path}: expected a state dict, got {type(state).__name__}")
    expected = model.state_dict()
    problems = _mismatches(expected, state)
    if problems:
        raise WeightsError(f"model.weights: {path} does not fit the recipe's model: " + "; ".join(problems))
    model.load_state_dict(state)


def _mismatches(expected: dict, given: dict) -> list[str]:
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    shapes = [
        f"{key} {tuple(given[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in given and hasattr(given[key], "shape") and given[key].shape != expected[key].shape
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            problems.append(f"{label}: {', '.join(items[:MAX_LISTED])}{more}")
    return problems
