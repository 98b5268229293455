"""Datasets and preprocessing.

A dataset is an ``ImageSet``: labels plus a ``load(indices)`` that returns uint8 images. Batches are
preprocessed as whole tensors (augment, resize to the recipe's resolution, grey -> 3 channels,
normalise), which keeps the CPU pipeline cheap next to the model's own step.
"""

from edgekit.data.datasets import ImageSet, build_datasets, build_split
from edgekit.data.transforms import BatchTransform, balanced_subset

__all__ = ["BatchTransform", "ImageSet", "balanced_subset", "build_datasets", "build_split"]
