"""Training images/s of edgekit's training loop vs a plain PyTorch loop doing the same work.

Like for like: both loops take the recipe's optimiser (edgekit's ``make_optimizer``: the same parameter
groups, SGD/AdamW, momentum and weight decay), its learning-rate schedule (``learning_rate`` set every
step), its loss (label smoothing), its batch size, memory format and threads, and the same loader (the
dataset's ``load`` and the recipe's ``BatchTransform``, one seeded generator per step). What differs is
edgekit's loop machinery alone: per-step reshuffle and seeding (exact resume), the NaN guard, the
running loss/accuracy and progress bar, and atomic checkpoints (here one per round, at the epoch end).
Both loops run interleaved in one process, several rounds each, on the CPU; the ratio of the medians is
printed. Goal: >= 0.95.

    .venv/bin/python benchmarks/train_throughput.py [--recipe recipes/mobilenet_0.5_160.yaml] [--steps 20] [--rounds 3]
    .venv/bin/python benchmarks/train_throughput.py --quick     # smoke recipe, 3 steps, 1 round: checks it runs
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.data import BatchTransform, build_datasets
from edgekit.recipe import load_recipe
from edgekit.stages import model_from_recipe
from edgekit.train import configure_torch, train
from edgekit.train.loop import learning_rate, make_optimizer

DEFAULT_RECIPE = "recipes/mobilenet_0.5_160.yaml"
QUICK_RECIPE = "recipes/smoke.yaml"


def plain_loop(model, dataset, transform, config, steps: int, seed: int) -> float:
    """The recipe's training step with nothing around it: images/s."""
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format).train()
    optimizer = make_optimizer(model, config)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    started = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, steps)
        indices = order[step * config.batch_size : (step + 1) * config.batch_size]
        images = transform(dataset.load(indices), torch.Generator().manual_seed(step))
        images = images.contiguous(memory_format=memory_format)
        loss = loss_fn(model(images), dataset.labels[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * config.batch_size / (time.perf_counter() - started)


def pipeline_loop(model, dataset, transform, config, seed: int) -> float:
    """edgekit's ``train`` for one epoch of ``dataset``: images/s."""
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, dataset, transform, config, seed=seed, checkpoint_path=Path(tmp) / "c.pt",
                       checkpoint_key="bench")
    return result.steps * config.batch_size / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", help=f"default: {DEFAULT_RECIPE} ({QUICK_RECIPE} with --quick)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 3, 1
    recipe = load_recipe(args.recipe or (QUICK_RECIPE if args.quick else DEFAULT_RECIPE))

    # One epoch of exactly `steps` batches: edgekit's loop then runs `steps` steps and the schedule spans them.
    recipe.data.max_train_samples = args.steps * recipe.train.batch_size
    config = recipe.train.model_copy(update={"epochs": 1.0})
    configure_torch(config.threads)
    dataset, _ = build_datasets(recipe.data, recipe.model.resolution, recipe.seed)
    transform = BatchTransform(recipe.model.resolution, recipe.data.mean, recipe.data.std, recipe.data.augment)
    # A discarded warm-up round: the first steps of a process pay for allocator and kernel warm-up.
    plain_loop(model_from_recipe(recipe), dataset, transform, config, 2, recipe.seed)
    pipeline_loop(model_from_recipe(recipe), dataset, transform, config.model_copy(update={"epochs": 2 / args.steps}),
                  recipe.seed)
    plain, pipeline = [], []
    for round_index in range(args.rounds):
        torch.manual_seed(round_index)
        plain.append(plain_loop(model_from_recipe(recipe), dataset, transform, config, args.steps, recipe.seed))
        torch.manual_seed(round_index)
        pipeline.append(pipeline_loop(model_from_recipe(recipe), dataset, transform, config, recipe.seed))
        print(f"round {round_index + 1}: plain {plain[-1]:.1f} img/s, edgekit {pipeline[-1]:.1f} img/s", flush=True)
    ratio = statistics.median(pipeline) / statistics.median(plain)
    print(f"{recipe.name}: {config.optimizer} lr {config.lr:g} {config.schedule}, batch {config.batch_size}, "
          f"{'channels-last' if config.channels_last else 'contiguous'}, {args.steps} steps x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, CPU, real (not emulated)")
    print(f"median images/s: plain PyTorch loop {statistics.median(plain):.1f}, edgekit {statistics.median(pipeline):.1f}")
    print(f"ratio edgekit/plain: {ratio:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
