"""A briefly trained float model and real Fashion-MNIST data for the quantization tests, built once.

MobileNet v1 alpha 0.25 at 32x32, 200 AdamW steps of 32 images (6400 training images, 3-7 s on one core):
~69% top-1 on the 500 test images, far above chance (10%), so a quantization that breaks the model shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from edgekit.data import BatchTransform, ImageSet, build_datasets
from edgekit.models import create_model
from edgekit.quantize.algorithm import calibration_batches
from edgekit.recipe.schema import DataSection, QuantizeSection, TrainSection
from edgekit.train import configure_torch, evaluate, train

RESOLUTION = 32
MEAN = STD = [0.5, 0.5, 0.5]
TRAIN_IMAGES, TEST_IMAGES = 6400, 500
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
def tiny(tmp_path_factory) -> Tiny:
    threads_before = torch.get_num_threads()
    configure_torch(1)  # one core: the machine is shared
    torch.manual_seed(0)
    train_set, test_set = build_datasets(DataSection(max_train_samples=TRAIN_IMAGES, max_eval_samples=TEST_IMAGES),
                                         RESOLUTION, seed=0)
    transform = BatchTransform(RESOLUTION, MEAN, STD, augment=False)
    model = create_model("mobilenet_v1", alpha=0.25, num_classes=10)
    config = TrainSection(epochs=1, batch_size=32, lr=0.01, device="cpu", threads=1, channels_last=False)
    folder = tmp_path_factory.mktemp("float")
    train(model, train_set, transform, config, seed=0, checkpoint_path=folder / "train.pt", checkpoint_key="tiny")
    float_top1 = evaluate(model, test_set, transform, 250)["top1"]
    calibration = list(calibration_batches(train_set, transform, 32, CALIBRATION_BATCHES, seed=0))
    yield Tiny(state={key: value.clone() for key, value in model.state_dict().items()}, train_set=train_set,
               qat_set=train_set.subset(QAT_IMAGES, seed=1), test_set=test_set, transform=transform,
               example=transform(test_set.load(torch.arange(2))), calibration=calibration, float_top1=float_top1)
    torch.set_num_threads(threads_before)
