"""Batch preprocessing and deterministic subsets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def balanced_subset(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Indices of ``count`` samples, classes interleaved, chosen by ``seed`` (sorted, so order is stable)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled_labels = labels[order]
    rank_in_class = torch.zeros(len(labels), dtype=torch.long)
    for label in shuffled_labels.unique():
        members = (shuffled_labels == label).nonzero().squeeze(1)
        rank_in_class[members] = torch.arange(len(members))
    # Sort by rank within class first: the first `count` then hold every class in equal share.
    interleaved = order[torch.argsort(rank_in_class * len(labels) + torch.arange(len(labels)))]
    return interleaved[:count].sort().values


class BatchTransform:
    """uint8 (B, C, h, w) -> normalised float (B, 3, R, R); augmentation only when ``train``."""

    def __init__(self, resolution: int, mean: list[float], std: list[float], augment: bool):
        self.resolution = resolution
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.augment = augment

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch = images.float().div_(255.0)
        if self.augment and generator is not None:
            batch = _random_shift_and_flip(batch, generator)
        if batch.shape[-2:] != (self.resolution, self.resolution):
            batch = F.interpolate(batch, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        return (batch - self.mean) / self.std


def _random_shift_and_flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    size, height, width = len(batch), batch.shape[-2], batch.shape[-1]
    pad = max(1, height // 8)
    padded = F.pad(batch, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (size, 2), generator=generator).tolist()
    flips = torch.rand(size, generator=generator).lt(0.5).tolist()
    shifted = torch.empty_like(batch)
    for index, ((dy, dx), flip) in enumerate(zip(offsets, flips)):
        crop = padded[index, :, dy : dy + height, dx : dx + width]
        shifted[index] = crop.flip(-1) if flip else crop
    return shifted
