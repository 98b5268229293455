"""Published MobileNet v1 weights, read into edgekit's parameter names: one module per source format.
(A float ``.tflite`` reader, with batch norm folded into the convs, is not written yet.)

``read_weights(path, fmt)`` returns an ``ImportedWeights``: a state dict in edgekit's names, where each
tensor came from in the file (for one-line errors), the options edgekit's model needs to compute the same
function (``activation``, ``padding``), the classifier's class count and the preprocessing the weights were
trained with. ``detect(path)`` guesses the format from the file's first bytes and, for torch files, its keys;
``model.weights_format`` overrides the guess. Mapping the result into a model is ``edgekit.train.weights``.

| format | files | read with |
| --- | --- | --- |
| ``edgekit`` | edgekit's own state dicts (``train/model.pt``, checkpoints) | ``torch.load(weights_only=True)`` |
| ``timm`` | timm's ``mobilenetv1_100`` family, ``.safetensors`` or ``.pth`` | safetensors / ``torch.load(weights_only=True)`` |
| ``keras`` | Keras' ``MobileNet``, ``.h5`` (Keras 2 and legacy ``model.save``) and ``.weights.h5`` (Keras 3) | h5py |
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from edgekit.errors import WeightsError

__all__ = ["ImportedWeights", "Preprocessing", "FORMAT_NAMES", "detect", "read_weights", "weights_error"]

#: ``model.weights_format`` values besides ``auto``, each with the module:function that reads it
READERS = {
    "edgekit": "edgekit.models.import_weights.edgekit_state:read_edgekit",
    "timm": "edgekit.models.import_weights.timm:read_timm",
    "keras": "edgekit.models.import_weights.keras:read_keras",
}
FORMAT_NAMES = tuple(READERS)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
TFLITE_IDENTIFIER = b"TFL3"  # bytes 4..8 of a .tflite flatbuffer
#: the stem conv's name in timm's EfficientNet-style models (timm's MobileNet v1 is one)
TIMM_STEM_KEY = "conv_stem.weight"


@dataclass(frozen=True)
class Preprocessing:
    """Per-channel mean/std of images scaled to [0, 1], as the weights were trained with."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    says: str  # where the numbers come from, for messages

    def matches(self, mean, std, tolerance: float = 1e-6) -> bool:
        pairs = list(zip(self.mean, mean)) + list(zip(self.std, std))
        return all(abs(a - b) <= tolerance for a, b in pairs)


#: timm 1.0's pretrained_cfg of each published mobilenetv1_* weight (ra4_e3600_r224_in1k): IMAGENET_INCEPTION_
#: MEAN/STD, i.e. [-1, 1], not the IMAGENET_DEFAULT mean/std most timm models use
TIMM_MOBILENETV1 = Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "timm mobilenetv1_* pretrained_cfg: [-1, 1]")
#: keras.applications.mobilenet.preprocess_input (mode "tf"): x / 127.5 - 1, i.e. [-1, 1]
KERAS_TF_MODE = Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "Keras MobileNet: [-1, 1]")


@dataclass
class ImportedWeights:
    """A weights file in edgekit's names; ``sources[key]`` names the tensor of the file it came from."""

    format: str
    description: str  # e.g. "a Keras MobileNet (.weights.h5)"
    state: dict[str, torch.Tensor]
    sources: dict[str, str] = field(default_factory=dict)
    arch: Optional[str] = None  # the edgekit family the file is, when the format says
    requires: dict = field(default_factory=dict)  # model options the source architecture computes with
    num_classes: Optional[int] = None  # the classifier's outputs; None: the file has no classifier
    preprocessing: Optional[Preprocessing] = None


def weights_error(path: Path, problem: str) -> WeightsError:
    return WeightsError(f"model.weights: {path}: {problem}")


def detect(path: str | Path) -> str:
    """The format of a weights file, from its first bytes (and a torch file's keys)."""
    path = Path(path)
    head = _head(path)
    if head.startswith(HDF5_MAGIC):
        return "keras"
    if head[4:8] == TFLITE_IDENTIFIER:
        raise weights_error(path, "a .tflite file: edgekit does not read weights from .tflite files yet (Keras' "
                                  ".h5 or timm's .safetensors of the same model load)")
    if path.suffix == ".safetensors" or _is_safetensors(head, path):
        from edgekit.models.import_weights.timm import safetensors_keys

        return "timm" if TIMM_STEM_KEY in safetensors_keys(path) else "edgekit"
    if head.startswith(ZIP_MAGIC) or path.suffix in (".pt", ".pth", ".bin"):
        from edgekit.models.import_weights.edgekit_state import torch_state

        return "timm" if TIMM_STEM_KEY in torch_state(path) else "edgekit"
    raise weights_error(path, "not a weights file edgekit reads (an edgekit or timm state dict, or Keras "
                              ".h5/.weights.h5); set model.weights_format if it is one of them")


def read_weights(path: str | Path, fmt: str = "auto") -> ImportedWeights:
    path = Path(path)
    if not path.is_file():
        raise weights_error(path, "file not found")
    name = detect(path) if fmt == "auto" else fmt
    if name not in READERS:
        raise WeightsError(f"model.weights_format: unknown format {name!r} (one of auto, {', '.join(FORMAT_NAMES)})")
    module_name, function = READERS[name].split(":")
    return getattr(importlib.import_module(module_name), function)(path)


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(16)
    except OSError as exc:
        raise weights_error(path, f"cannot be read ({exc.strerror})") from None


def _is_safetensors(head: bytes, path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header_length = int.from_bytes(head[:8], "little")
    return 0 < header_length < path.stat().st_size


def require_module(name: str, fmt: str, path: Path):
    """Import an optional reader dependency, or a one-line error that says how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise weights_error(path, f"reading {fmt} weights needs the Python package {name} "
                                  f"(pip install 'edgekit[import]')") from None


def shape_text(shape) -> str:
    return "(" + ", ".join(str(int(size)) for size in shape) + ")"
