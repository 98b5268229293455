"""The two dataset kinds: Fashion-MNIST IDX files and image folders."""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgekit.errors import DataError
from edgekit.recipe.schema import DEFAULT_FASHION_MNIST_ROOT, DataSection
from edgekit.data.transforms import balanced_subset

FASHION_MNIST_CLASSES = [
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
GET_FASHION_MNIST = "install it with `apt-get install dataset-fashion-mnist` or set data.root to a folder with the four IDX .gz files"


@dataclass
class ImageSet:
    """Labels plus a loader of uint8 images (N, C, H, W) for any list of indices."""

    name: str
    labels: torch.Tensor
    classes: list[str]
    load: Callable[[torch.Tensor], torch.Tensor]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, count: int | None, seed: int) -> "ImageSet":
        if count is None or count >= len(self):
            return self
        chosen = balanced_subset(self.labels, count, seed)
        return ImageSet(
            name=self.name,
            labels=self.labels[chosen],
            classes=self.classes,
            load=lambda indices: self.load(chosen[indices]),
            source=self.source,
        )


def build_datasets(config: DataSection, resolution: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Return (train, test) sets with the recipe's deterministic subsets applied."""
    return build_split(config, resolution, seed, "train"), build_split(config, resolution, seed, "test")


def build_split(config: DataSection, resolution: int, seed: int, split: str) -> ImageSet:
    """The ``train`` or ``test`` set with the recipe's deterministic subset applied; reads only that
    split's options (so a stage that uses one split does not depend on the other's subset size)."""
    if config.dataset == "fashion_mnist":
        images = read_fashion_mnist(Path(config.root or DEFAULT_FASHION_MNIST_ROOT), split)
    else:
        if not config.root:
            raise DataError("data.root: the imagefolder dataset needs a folder with train/ and val/ inside")
        root = Path(config.root)
        train = read_image_folder(root / "train", resolution)
        images = train if split == "train" else read_image_folder(root / "val", resolution, classes=train.classes)
    if split == "train":
        return images.subset(config.max_train_samples, seed)
    return images.subset(config.max_eval_samples, seed)


def read_fashion_mnist(root: Path, split: str) -> ImageSet:
    image_file, label_file = (root / name for name in FASHION_MNIST_FILES[split])
    for file in (image_file, label_file):
        if not file.is_file():
            raise DataError(f"{file}: Fashion-MNIST file not found; {GET_FASHION_MNIST}")
    images = torch.from_numpy(_read_idx(image_file, expected_dims=3)).unsqueeze(1)
    labels = torch.from_numpy(_read_idx(label_file, expected_dims=1).astype(np.int64))
    if len(images) != len(labels):
        raise DataError(f"{image_file}: {len(images)} images but {len(labels)} labels in {label_file.name}")
    return ImageSet(f"fashion_mnist/{split}", labels, FASHION_MNIST_CLASSES, lambda indices: images[indices], str(root))


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        zero, dtype_code, dims = struct.unpack(">HBB", raw[:4])
        shape = struct.unpack(f">{dims}I", raw[4 : 4 + 4 * dims])
        if zero != 0 or dtype_code != 0x08 or dims != expected_dims:
            raise ValueError("not an unsigned-byte IDX file of the expected rank")
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape).copy()
    except (OSError, ValueError, struct.error) as exc:
        raise DataError(f"{path}: not a readable IDX file ({exc})") from None


def read_image_folder(root: Path, resolution: int, classes: list[str] | None = None) -> ImageSet:
    """``root/<class>/<image>``: the layout ImageNet and Imagenette use. Images load lazily."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found (expected class folders inside)")
    found = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    classes = classes or found
    if not classes:
        raise DataError(f"{root}: no class folders inside")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root}: class folders {unknown} are not in the training classes")
    paths, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).glob("*")) if (root / name).is_dir() else []:
            if file.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(file)
                labels.append(label)
    if not paths:
        raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")

    def load(indices: torch.Tensor) -> torch.Tensor:
        return torch.stack([_read_image(paths[int(i)], resolution) for i in indices])

    return ImageSet(f"imagefolder/{root.name}", torch.tensor(labels), classes, load, str(root))


def _read_image(path: Path, resolution: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((resolution, resolution), Image.BILINEAR)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)
