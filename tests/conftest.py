import os
from pathlib import Path

import pytest

from edgekit.recipe import validate

os.environ.setdefault("EDGEKIT_NO_PROGRESS", "1")
# NNCF compiles a C++ extension on first use; on a loaded 2-core machine that exceeds its 60 s default.
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")

REPO = Path(__file__).resolve().parent.parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def tiny_recipe_data(**sections) -> dict:
    """A recipe that trains in a few seconds on a real Fashion-MNIST slice."""
    data = {
        "name": "tiny",
        "model": {"alpha": 0.25, "resolution": 32, "num_classes": 10},
        "data": {"max_train_samples": 512, "max_eval_samples": 256},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.004, "checkpoint_every_steps": 4, "threads": 1},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


@pytest.fixture
def tiny_recipe():
    def make(**sections):
        return validate(tiny_recipe_data(**sections), source="<test>")

    return make


@pytest.fixture(autouse=True, scope="session")
def _needs_fashion_mnist():
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.exit("Fashion-MNIST is missing: run `bash scripts/setup.sh --dev` (installs dataset-fashion-mnist)", 2)
