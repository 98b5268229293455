"""The preprocessing a weights file was trained with, for ``data.normalize: from_weights`` and the mismatch warning."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import RecipeError


def weights_normalization(weights: str | Path, weights_format: str = "auto"):
    """The ``Preprocessing`` recorded for ``weights``; None when the file is missing (the path check says so)."""
    from edgekit.models.import_weights import read_weights

    if not Path(weights).is_file():
        return None
    imported = read_weights(weights, weights_format)
    if imported.preprocessing is None:
        raise RecipeError(f"data.normalize: from_weights: {weights} is {imported.description}, which records no "
                          f"preprocessing; set data.normalize: recipe and give data.mean/data.std")
    return imported.preprocessing


def normalization_warning(mean, std, preprocessing) -> str | None:
    """One line when the recipe normalises differently from how the weights were trained, else None."""
    if preprocessing is None or preprocessing.matches(mean, std):
        return None
    return (f"edgekit: warning: data.mean {list(mean)} / data.std {list(std)} differ from the preprocessing of "
            f"model.weights ({preprocessing.says}: mean {list(preprocessing.mean)}, std {list(preprocessing.std)}); "
            f"set data.normalize: from_weights to use it")
