#!/usr/bin/env python3
"""Write a few Fashion-MNIST classes as an imagefolder dataset (root/train/<class>/*.png, root/val/<class>/*.png),
the layout ``data.dataset: imagefolder`` reads, for trying recipes/finetune_imagefolder.yaml without other data.

    .venv/bin/python scripts/fashion-mnist-imagefolder.py data/fashion4 --classes sneaker bag trouser dress --train 250 --val 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.data.datasets import DEFAULT_FASHION_MNIST_ROOT, FASHION_MNIST_CLASSES, read_fashion_mnist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write (train/ and val/ inside)")
    parser.add_argument("--classes", nargs="+", default=["sneaker", "bag", "trouser", "dress"],
                        help=f"class names, from: {', '.join(name.lower() for name in FASHION_MNIST_CLASSES)}")
    parser.add_argument("--train", type=int, default=250, help="training images per class")
    parser.add_argument("--val", type=int, default=100, help="validation images per class (from the test split)")
    parser.add_argument("--fashion-mnist", type=Path, default=Path(DEFAULT_FASHION_MNIST_ROOT))
    args = parser.parse_args(argv)
    names = {_folder_name(name): index for index, name in enumerate(FASHION_MNIST_CLASSES)}
    unknown = [name for name in args.classes if _folder_name(name) not in names]
    if unknown:
        parser.error(f"unknown class {unknown[0]!r} (one of {', '.join(names)})")
    for split, folder, count in (("train", "train", args.train), ("test", "val", args.val)):
        images = read_fashion_mnist(args.fashion_mnist, split)
        for name in args.classes:
            label = names[_folder_name(name)]
            target = args.root / folder / _folder_name(name)
            target.mkdir(parents=True, exist_ok=True)
            for number, index in enumerate(np.flatnonzero(images.labels.numpy() == label)[:count]):
                pixels = images.load(np.array([index]))[0, 0].numpy()
                Image.fromarray(pixels).save(target / f"{number:05d}.png")
    print(f"wrote {args.root}/train and {args.root}/val: {len(args.classes)} classes, "
          f"{args.train} + {args.val} images each", file=sys.stderr)
    return 0


def _folder_name(name: str) -> str:
    return name.lower().replace("/", "_").replace(" ", "_")


if __name__ == "__main__":
    sys.exit(main())
