"""timm's MobileNet v1 (``mobilenetv1_100``, ``mobilenetv1_125``; ``.safetensors`` or ``.pth``).

timm builds it as an EfficientNet: ``conv_stem`` + ``bn1``, then ``blocks.<stage>.<index>`` depthwise-
separable blocks (``conv_dw``, ``bn1``, ``conv_pw``, ``bn2``), global average pool and ``classifier``.
The 13 blocks in (stage, index) order are edgekit's ``block1`` .. ``block13``. Same layers as edgekit's
``mobilenet_v1`` with ``activation: relu6`` and the default symmetric padding; PyTorch's batch-norm eps.
timm rounds channels to multiples of 8 (``round_channels``), edgekit rounds half up: the two agree on the
paper's α grid, and a width that differs is refused by the shape check. ``mobilenetv1_100h`` adds a 1x1
``conv_head`` before the pool, which edgekit's model does not have: it is refused by name.

Preprocessing: timm's published mobilenetv1_* weights were trained on [-1, 1] inputs (their
pretrained_cfg says IMAGENET_INCEPTION_MEAN/STD = 0.5/0.5); a hub download's ``config.json`` beside the
file, when present, is read instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from edgekit.models.import_weights import TIMM_MOBILENETV1, ImportedWeights, Preprocessing, require_module, weights_error

BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(\d+)\.(conv_dw|bn1|conv_pw|bn2)\.(\w+)")
BLOCK_PARTS = {"conv_dw": "dw.conv", "bn1": "dw.bn", "conv_pw": "pw.conv", "bn2": "pw.bn"}
TOP_PARTS = {"conv_stem": "features.stem.conv", "bn1": "features.stem.bn", "classifier": "classifier"}
REQUIRES = {"activation": "relu6", "padding": "symmetric"}
MAX_CONFIG_BYTES = 1_000_000


def read_timm(path: Path) -> ImportedWeights:
    state = _load(path)
    blocks = sorted({(int(match[1]), int(match[2])) for match in map(BLOCK_KEY.fullmatch, state) if match})
    number = {stage_index: position for position, stage_index in enumerate(blocks, start=1)}
    unmapped = [key for key in state if _edgekit_key(key, number) is None]
    if unmapped:
        # a conv's or linear's kernel names the layer better than its batch norm (safetensors sorts the keys)
        first = next((key for key in unmapped if state[key].ndim > 1), unmapped[0])
        more = f" (and {len(unmapped) - 1} more)" if len(unmapped) > 1 else ""
        raise weights_error(path, f"tensor {first} {tuple(state[first].shape)} of this timm checkpoint has no "
                                  f"place in edgekit's mobilenet_v1{more}; only timm's mobilenetv1_100 layout maps")
    mapped, sources = {}, {}
    for key, tensor in state.items():
        target = _edgekit_key(key, number)
        mapped[target], sources[target] = tensor.float() if tensor.is_floating_point() else tensor, key
    classifier = state.get("classifier.weight")
    return ImportedWeights("timm", "a timm MobileNet v1 checkpoint", mapped, sources, "mobilenet_v1", dict(REQUIRES),
                           int(classifier.shape[0]) if classifier is not None else None, _preprocessing(path))


def _preprocessing(path: Path) -> Preprocessing:
    """The hub layout's ``config.json`` beside the weights says the mean/std; else timm's mobilenetv1_* default."""
    config_path = path.with_name("config.json")
    try:
        if config_path.is_file() and config_path.stat().st_size < MAX_CONFIG_BYTES:
            config = json.loads(config_path.read_text())["pretrained_cfg"]
            mean, std = (tuple(float(value) for value in config[key]) for key in ("mean", "std"))
            if len(mean) == len(std) == 3 and all(0 < value <= 1 for value in std):
                return Preprocessing(mean, std, f"timm pretrained_cfg in {config_path.name}")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return TIMM_MOBILENETV1


def _edgekit_key(key: str, number: dict) -> str | None:
    match = BLOCK_KEY.fullmatch(key)
    if match:
        block = number[int(match[1]), int(match[2])]
        return f"features.block{block}.{BLOCK_PARTS[match[3]]}.{match[4]}"
    module, _, leaf = key.partition(".")
    if module in TOP_PARTS and "." not in leaf:
        return f"{TOP_PARTS[module]}.{leaf}"
    return None


def _load(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors" or safetensors_keys(path, quiet=True):
        safetensors_torch = require_module("safetensors.torch", "safetensors", path)
        try:
            return safetensors_torch.load_file(str(path), device="cpu")
        except Exception as exc:
            raise weights_error(path, f"not a readable safetensors file ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    from edgekit.models.import_weights.edgekit_state import torch_state

    return dict(torch_state(path))


def safetensors_keys(path: Path, quiet: bool = False) -> list[str]:
    """The tensor names in a safetensors header (read as JSON, no tensor data); [] when ``quiet`` and not one."""
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= min(path.stat().st_size - 8, 100_000_000):
                raise ValueError("header length out of range")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError) as exc:
        if quiet:
            return []
        raise weights_error(path, f"not a readable safetensors file ({exc})") from None
    return [key for key in header if key != "__metadata__"]
