"""Datasets on real Fashion-MNIST: shapes, deterministic balanced subsets, preprocessing, image folders."""

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.data import BatchTransform, balanced_subset, build_datasets
from edgekit.data.datasets import read_fashion_mnist
from edgekit.errors import DataError
from edgekit.recipe.schema import DataSection

from conftest import FASHION_MNIST


def test_fashion_mnist_splits_and_shapes():
    train = read_fashion_mnist(FASHION_MNIST, "train")
    test = read_fashion_mnist(FASHION_MNIST, "test")
    assert (len(train), len(test)) == (60000, 10000)
    images = train.load(torch.tensor([0, 1, 2]))
    assert images.shape == (3, 1, 28, 28) and images.dtype == torch.uint8
    assert sorted(test.labels.unique().tolist()) == list(range(10))
    assert len(train.classes) == 10


def test_subsets_are_deterministic_balanced_and_seeded():
    config = DataSection(max_train_samples=500, max_eval_samples=200)
    train_a, test_a = build_datasets(config, resolution=32, seed=3)
    train_b, _ = build_datasets(config, resolution=32, seed=3)
    train_c, _ = build_datasets(config, resolution=32, seed=4)
    assert (len(train_a), len(test_a)) == (500, 200)
    assert torch.equal(train_a.labels, train_b.labels)
    assert torch.equal(train_a.load(torch.arange(500)), train_b.load(torch.arange(500)))
    assert not torch.equal(train_a.load(torch.arange(500)), train_c.load(torch.arange(500)))
    assert torch.bincount(train_a.labels, minlength=10).tolist() == [50] * 10


def test_balanced_subset_is_sorted_and_unique():
    labels = torch.tensor([0] * 90 + [1] * 10)
    chosen = balanced_subset(labels, 20, seed=0)
    assert chosen.tolist() == sorted(set(chosen.tolist()))
    assert torch.bincount(labels[chosen]).tolist() == [10, 10]


def test_transform_resizes_greys_to_three_channels_and_normalises():
    images = read_fashion_mnist(FASHION_MNIST, "test").load(torch.arange(8))
    batch = BatchTransform(64, [0.5] * 3, [0.5] * 3, augment=False)(images)
    assert batch.shape == (8, 3, 64, 64)
    assert torch.equal(batch[:, 0], batch[:, 2])
    assert batch.min() >= -1.0 and batch.max() <= 1.0 and batch.min() < -0.99


def test_augmentation_is_seeded_and_changes_the_batch():
    images = read_fashion_mnist(FASHION_MNIST, "test").load(torch.arange(16))
    transform = BatchTransform(32, [0.5] * 3, [0.5] * 3, augment=True)
    first = transform(images, torch.Generator().manual_seed(1))
    again = transform(images, torch.Generator().manual_seed(1))
    other = transform(images, torch.Generator().manual_seed(2))
    plain = transform(images)  # no generator: evaluation path, no augmentation
    assert torch.equal(first, again) and not torch.equal(first, other) and not torch.equal(first, plain)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"Fashion-MNIST file not found; install it with `apt-get install dataset-fashion-mnist`"):
        build_datasets(DataSection(root=str(tmp_path)), 32, 0)


def test_corrupt_idx_file(tmp_path):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable IDX file"):
        build_datasets(DataSection(root=str(tmp_path)), 32, 0)


def _write_image_folder(root, count_per_class=6):
    test = read_fashion_mnist(FASHION_MNIST, "test")
    for split, offset in (("train", 0), ("val", 500)):
        for label in range(3):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True)
            members = (test.labels == label).nonzero().squeeze(1)[offset : offset + count_per_class]
            for index in members.tolist():
                pixels = test.load(torch.tensor([index]))[0, 0].numpy()
                Image.fromarray(np.stack([pixels] * 3, -1)).save(folder / f"{index}.png")


def test_imagefolder_reads_class_folders(tmp_path):
    _write_image_folder(tmp_path)
    train, val = build_datasets(DataSection(dataset="imagefolder", root=str(tmp_path)), 32, 0)
    assert (len(train), len(val)) == (18, 18)
    assert train.classes == ["class_0", "class_1", "class_2"]
    images = train.load(torch.tensor([0, 17]))
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8
    assert BatchTransform(32, [0.5] * 3, [0.5] * 3, False)(images).shape == (2, 3, 32, 32)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="data.root"):
        build_datasets(DataSection(dataset="imagefolder"), 32, 0)
    with pytest.raises(DataError, match="image folder not found"):
        build_datasets(DataSection(dataset="imagefolder", root=str(tmp_path)), 32, 0)
