"""The session's trained float model (tests/conftest.py ``trained_tiny``) and real Fashion-MNIST data for the
quantization tests: ~69% top-1 on the 500 test images, far above chance (10%), so a quantization that breaks
the model shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from edgekit.data import BatchTransform, ImageSet
from edgekit.models import create_model
from edgekit.quantize.algorithm import calibration_batches
from edgekit.recipe.schema import QuantizeSection, TrainSection
from edgekit.train import configure_torch, evaluate

QAT_IMAGES = 640  # 20 QAT steps of 32
CALIBRATION_BATCHES = 8  # 256 images


@dataclass
class Tiny:
    state: dict  # the trained float weights
    train_set: ImageSet
    qat_set: ImageSet
    test_set: ImageSet
    transform: BatchTransform  # no augmentation
    example: torch.Tensor  # two real test images
    calibration: list[torch.Tensor]
    float_top1: float  # torch, on test_set

    def float_model(self) -> torch.nn.Module:
        """A fresh copy: backends may change the model they are given."""
        model = create_model("mobilenet_v1", alpha=0.25, num_classes=10)
        model.load_state_dict(self.state)
        return model.eval()

    def train_config(self, **changes) -> TrainSection:
        return TrainSection(**{"batch_size": 32, "device": "cpu", "threads": 1, **changes})

    def quantize_config(self, **changes) -> QuantizeSection:
        return QuantizeSection(**{"epochs": 1, "lr": 1e-4, **changes})


@pytest.fixture(scope="session")
def tiny(trained_tiny) -> Tiny:
    threads_before = torch.get_num_threads()
    configure_torch(1)  # one core: the machine is shared
    train_set, test_set, transform = trained_tiny.train_set, trained_tiny.test_set, trained_tiny.transform
    float_top1 = evaluate(trained_tiny.model(), test_set, transform, 250)["top1"]
    calibration = list(calibration_batches(train_set, transform, 32, CALIBRATION_BATCHES, seed=0))
    yield Tiny(state=trained_tiny.state, train_set=train_set, qat_set=train_set.subset(QAT_IMAGES, seed=1),
               test_set=test_set, transform=transform, example=transform(test_set.load(torch.arange(2))),
               calibration=calibration, float_top1=float_top1)
    torch.set_num_threads(threads_before)
