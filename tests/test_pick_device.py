"""train.device: an unavailable cuda is a recipe error (exit 2) naming the key, not a run-time failure."""

import pytest
import torch

from edgekit.errors import UserInputError
from edgekit.train import pick_device


def test_unavailable_cuda_is_a_recipe_error_naming_train_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserInputError) as caught:
        pick_device("cuda")
    assert caught.value.exit_code == 2 and str(caught.value).startswith("train.device: cuda was asked for")
    assert pick_device("auto") == torch.device("cpu")
