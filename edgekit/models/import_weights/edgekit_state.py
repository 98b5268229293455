"""edgekit's own state dicts (and torch files in general): ``torch.load(weights_only=True)``, never pickle code."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from edgekit.models.import_weights import ImportedWeights, weights_error

#: keys that wrap a state dict in a training checkpoint: edgekit's ("model"), timm's train script's
WRAPPER_KEYS = ("model", "state_dict", "state_dict_ema")


def read_edgekit(path: Path) -> ImportedWeights:
    state = torch_state(path)
    classifier = state.get("classifier.weight")
    num_classes = int(classifier.shape[0]) if classifier is not None and classifier.ndim == 2 else None
    return ImportedWeights("edgekit", "an edgekit state dict", dict(state), {key: key for key in state},
                           num_classes=num_classes)


def torch_state(path: Path) -> dict:
    """The state dict in a torch file, unwrapped from a checkpoint; a one-line error otherwise."""
    return _cached_state(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _cached_state(path: str, _mtime_ns: int) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if str(exc) else type(exc).__name__
        raise weights_error(Path(path), f"not a loadable state dict ({reason})") from None
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise weights_error(Path(path), f"expected a state dict, got {type(state).__name__}")
    tensors = {_strip_wrapper_prefix(key): value for key, value in state.items()}
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise weights_error(Path(path), f"expected a state dict of tensors, {key!s:.60} is a {type(value).__name__}")
    return tensors


def _strip_wrapper_prefix(key) -> str:
    """``module.`` is what DataParallel/DDP put before every name."""
    key = str(key)
    return key[len("module."):] if key.startswith("module.") else key
