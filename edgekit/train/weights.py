"""Load a weights file into a model, with errors that say what does not fit.

Any format ``edgekit.models.import_weights`` reads (edgekit's own state dicts, timm, Keras, .tflite) goes
through here. A classifier whose class count differs from ``model.num_classes`` (or a file without one)
leaves the model's new classifier in place, with one line saying so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.nn as nn

from edgekit.errors import WeightsError
from edgekit.models.import_weights import ImportedWeights, read_weights, shape_text

MAX_LISTED = 3
CLASSIFIER_PREFIX = "classifier."
COUNTER_SUFFIX = ".num_batches_tracked"  # BatchNorm's step counter: no other format has it


def load_weights(model: nn.Module, path: str | Path, weights_format: str = "auto", *,
                 arch: str | None = None, options: dict | None = None, say=None) -> ImportedWeights:
    """Load ``path`` into ``model``; ``arch``/``options`` (the recipe's) are checked against what the file needs."""
    path = Path(path)
    imported = read_weights(path, weights_format)
    _check_architecture(imported, path, arch, options or {})
    state = dict(imported.state)
    expected = model.state_dict()
    new_classifier = _classifier_to_replace(imported, expected)
    if new_classifier:
        state = {key: value for key, value in state.items() if not key.startswith(CLASSIFIER_PREFIX)}
    if imported.format != "edgekit":
        state.update({key: value for key, value in expected.items() if key.endswith(COUNTER_SUFFIX)})
    if new_classifier:
        state.update({key: value for key, value in expected.items() if key.startswith(CLASSIFIER_PREFIX)})
    if imported.format == "edgekit":
        problems = _mismatches(expected, state)
        if problems:
            raise WeightsError(f"model.weights: {path} does not fit the recipe's model: " + "; ".join(problems))
    else:
        _check_first_misfit(expected, state, imported, path)
    model.load_state_dict(state)
    if new_classifier:  # said once the rest fits: an error stays the only line
        (say or _to_stderr)(_new_classifier_line(path, imported, expected))
    return imported


def _check_architecture(imported: ImportedWeights, path: Path, arch: str | None, options: dict) -> None:
    if arch is not None and imported.arch is not None and arch != imported.arch:
        raise WeightsError(f"model.weights: {path} is {imported.description}, a {imported.arch}; "
                           f"model.arch is {arch}")
    for key, needed in imported.requires.items():
        if key in options and options[key] != needed:
            raise WeightsError(f"model.weights: {path} is {imported.description}, which computes with "
                               f"model.{key}: {needed}; the recipe has {options[key]}")


def _classifier_to_replace(imported: ImportedWeights, expected: dict) -> bool:
    weight = expected.get(CLASSIFIER_PREFIX + "weight")
    if weight is None:
        return False
    given = imported.state.get(CLASSIFIER_PREFIX + "weight")
    if given is None:
        return imported.format != "edgekit"  # an edgekit state dict always has one: a missing one is an error
    return given.ndim == 2 and given.shape[0] != weight.shape[0]


def _new_classifier_line(path: Path, imported: ImportedWeights, expected: dict) -> str:
    classes = expected[CLASSIFIER_PREFIX + "weight"].shape[0]
    has = "has no classifier" if imported.num_classes is None else f"has {imported.num_classes} classes"
    return (f"edgekit: note: model.weights: {path.name} {has}, model.num_classes is {classes}: "
            f"loaded the backbone, initialised a new {classes}-class classifier")


def _check_first_misfit(expected: dict, state: dict, imported: ImportedWeights, path: Path) -> None:
    """One line naming the first tensor of the file (in the model's order) that does not fit."""
    for key, value in state.items():
        if key not in expected:
            raise WeightsError(f"model.weights: {path}: {imported.sources.get(key, key)} has no place in the "
                               f"recipe's model (it would be {key})")
    for key, value in expected.items():
        if key not in state:
            raise WeightsError(f"model.weights: {path}: {imported.description} has nothing for {key} "
                               f"{shape_text(value.shape)} of the recipe's model")
        if state[key].shape != value.shape:
            raise WeightsError(f"model.weights: {path}: {imported.sources.get(key, key)} does not fit {key} "
                               f"{shape_text(value.shape)}{_width_hint(key, state[key])}")


def _width_hint(key: str, given) -> str:
    """For the stem: the α the file was made with (the stem has 32·α channels)."""
    if key != "features.stem.conv.weight" or given.ndim != 4:
        return ""
    return f" (the file's stem has {given.shape[0]} channels: α {given.shape[0] / 32:g})"


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


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)
