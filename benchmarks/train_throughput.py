"""Training images/s of edgekit's training loop vs a plain PyTorch loop, same model, batch and data.

The pipeline's loop adds per-step seeding (exact resume), learning-rate scheduling, the NaN guard,
progress and atomic checkpoints. Both loops run interleaved in one process, several rounds each, and
the ratio of the medians is printed. Goal: >= 0.95.

    .venv/bin/python benchmarks/train_throughput.py [--recipe recipes/mobilenet_0.5_160.yaml] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from edgekit.data import BatchTransform, build_datasets
from edgekit.recipe import load_recipe
from edgekit.stages import model_from_recipe
from edgekit.train import configure_torch, train


def plain_loop(model, dataset, transform, config, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format).train()
    order = torch.randperm(len(dataset))
    started = time.perf_counter()
    for step in range(steps):
        indices = order[step * config.batch_size : (step + 1) * config.batch_size]
        images = transform(dataset.load(indices), torch.Generator().manual_seed(step))
        images = images.contiguous(memory_format=memory_format)
        loss = torch.nn.functional.cross_entropy(model(images), dataset.labels[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * config.batch_size / (time.perf_counter() - started)


def pipeline_loop(model, dataset, transform, config, steps: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, dataset, transform, config, seed=seed, checkpoint_path=Path(tmp) / "c.pt",
                       checkpoint_key="bench")
    return result.steps * config.batch_size / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/mobilenet_0.5_160.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    samples = args.steps * recipe.train.batch_size
    recipe.data.max_train_samples = samples
    config = recipe.train.model_copy(update={"epochs": 1.0})
    configure_torch(config.threads)
    dataset, _ = build_datasets(recipe.data, recipe.model.resolution, recipe.seed)
    transform = BatchTransform(recipe.model.resolution, recipe.data.mean, recipe.data.std, recipe.data.augment)
    plain, pipeline = [], []
    # A discarded warm-up round: the first steps of a process pay for allocator and kernel warm-up.
    plain_loop(model_from_recipe(recipe), dataset, transform, config, 2)
    pipeline_loop(model_from_recipe(recipe), dataset, transform, config.model_copy(update={"epochs": 2 / args.steps}),
                  2, recipe.seed)
    for round_index in range(args.rounds):
        torch.manual_seed(round_index)
        plain.append(plain_loop(model_from_recipe(recipe), dataset, transform, config, args.steps))
        torch.manual_seed(round_index)
        pipeline.append(pipeline_loop(model_from_recipe(recipe), dataset, transform, config, args.steps, recipe.seed))
        print(f"round {round_index + 1}: plain {plain[-1]:.1f} img/s, edgekit {pipeline[-1]:.1f} img/s", flush=True)
    ratio = statistics.median(pipeline) / statistics.median(plain)
    print(f"{recipe.name}: batch {config.batch_size}, {args.steps} steps x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, CPU, real (not emulated)")
    print(f"median images/s: plain PyTorch loop {statistics.median(plain):.1f}, edgekit {statistics.median(pipeline):.1f}")
    print(f"ratio edgekit/plain: {ratio:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
