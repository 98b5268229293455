"""The framework-neutral quantization algorithm: calibrate, fine-tune (QAT) with freeze points, convert."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.data import BatchTransform, ImageSet
from edgekit.quantize.base import QuantizationBackend, QuantScheme
from edgekit.recipe.schema import QuantizeSection, TrainSection
from edgekit.train import TrainResult, train

QAT_LOG_POINTS = 25  # about this many QAT loss points, however short the fine-tuning (a curve, not 1-2 points)


@dataclass
class Quantized:
    prepared: nn.Module
    converted: nn.Module | None
    training: TrainResult | None


def calibration_batches(dataset: ImageSet, transform: BatchTransform, batch_size: int, count: int, seed: int):
    """The first ``count`` batches of a seeded shuffle of the training set, without augmentation."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + 17))
    for start in range(0, min(count * batch_size, len(dataset)), batch_size):
        indices = order[start : start + batch_size]
        yield transform(dataset.load(indices))


def ptq(backend: QuantizationBackend, model: nn.Module, example: torch.Tensor, batches,
        per_channel: bool, keep_float: tuple[str, ...] = ()) -> Quantized:
    scheme = QuantScheme(per_channel_weights=per_channel, qat=False, keep_float=tuple(keep_float))
    prepared = backend.prepare(model, example, scheme, batches)
    return Quantized(prepared, backend.convert(prepared), None)


def qat_train_config(train_config: TrainSection, config: QuantizeSection) -> TrainSection:
    """QAT fine-tunes with its own schedule: a short cosine decay from ``quantize.lr``, no warm-up."""
    return train_config.model_copy(update={
        "epochs": config.epochs, "lr": config.lr, "schedule": "cosine", "warmup_fraction": 0.0,
        "channels_last": False, "freeze": "none", "head_lr_multiplier": 1.0,
    })


def qat(backend: QuantizationBackend, model: nn.Module, example: torch.Tensor, batches, *,
        dataset: ImageSet, transform: BatchTransform, train_config: TrainSection, config: QuantizeSection,
        seed: int, checkpoint_path: Path, checkpoint_key: str, on_step=None, convert: bool = True,
        keep_float: tuple[str, ...] = ()) -> Quantized:
    """Calibrate, then fine-tune with fake quantization (in float32, never compiled); ``convert: False``
    leaves ``converted`` None (a rank under torchrun: the driver converts rank 0's state)."""
    scheme = QuantScheme(per_channel_weights=config.weights == "per_channel", qat=True, keep_float=tuple(keep_float))
    prepared = backend.prepare(model, example, scheme, batches)
    fine_tune = qat_train_config(train_config, config).model_copy(update={"amp": "off", "compile": False})
    total_steps = int(round(fine_tune.epochs * max(1, len(dataset) // fine_tune.batch_size)))
    freeze = _FreezeSchedule(backend, prepared, total_steps, config)
    result = train(prepared, dataset, transform, fine_tune, seed=seed + 1, checkpoint_path=checkpoint_path,
                   checkpoint_key=checkpoint_key, on_step=on_step, before_step=freeze, description="QAT",
                   no_weight_decay=backend.no_weight_decay(prepared),
                   log_every_steps=max(1, math.ceil(total_steps / QAT_LOG_POINTS)))
    freeze.apply_all()
    return Quantized(prepared, backend.convert(prepared) if convert else None, result)


class _FreezeSchedule:
    """Freezes BN statistics and quantizer ranges once training passes the configured fractions.

    Called before every step, so a resumed run re-applies the freezes its checkpoint had passed."""

    def __init__(self, backend, prepared, total_steps: int, config: QuantizeSection):
        self.backend, self.prepared = backend, prepared
        self.bn_step = math.floor(config.freeze_bn_after * total_steps)
        self.observer_step = math.floor(config.freeze_observers_after * total_steps)
        self.bn_frozen = self.observers_frozen = False

    def __call__(self, step: int) -> None:
        if step >= self.bn_step and not self.bn_frozen:
            self.backend.freeze_bn(self.prepared)
            self.bn_frozen = True
        if step >= self.observer_step and not self.observers_frozen:
            self.backend.freeze_observers(self.prepared)
            self.observers_frozen = True

    def apply_all(self) -> None:
        self(max(self.bn_step, self.observer_step))
