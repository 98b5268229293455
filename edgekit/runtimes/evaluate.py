"""Accuracy of an exported file measured inside its runtime, optionally against a reference model.

The reference comparison answers "does the runtime compute what the model we trained computes?" on the
first ``reference_samples`` images: top-1 agreement is the fraction of images whose argmax is the same,
and the largest logit difference is counted in output quantisation steps ("LSB") when the file's output
lies on an int8 grid, else in absolute logit units ("abs"). What the numbers mean depends on the reference:
against the quantised torch graph (PT2E ``convert_pt2e`` output) a runtime should stay within a few LSB,
as a float file should match its float model to ~1e-5; against the float model an int8 file also carries
its quantisation error (tens of LSB on a small model) and the agreement is the PTQ/QAT accuracy story.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgekit.data import BatchTransform, ImageSet
from edgekit.errors import UserInputError
from edgekit.runtimes.base import Quantization, get_runtime, runtime_for
from edgekit.train.loop import topk_hits
from edgekit.train.progress import progress_bar

Reference = Callable[[np.ndarray], np.ndarray]  # float NCHW batch -> float logits (a torch model works too)


def evaluate_file(
    path: str | Path,
    runtime_name: str | None,
    dataset: ImageSet,
    transform: BatchTransform,
    *,
    threads: int,
    batch_size: int,
    reference: Reference | torch.nn.Module | None = None,
    reference_samples: int = 500,
) -> dict:
    """Top-1/top-5 (percent) of ``path`` run by ``runtime_name`` (None: by suffix) on every image of ``dataset``."""
    path = Path(path)
    if batch_size < 1 or reference_samples < 1:
        raise UserInputError(f"{path}: batch_size and reference_samples must be >= 1")
    runtime = get_runtime(runtime_name) if runtime_name else runtime_for(path)
    session = runtime.load(path, threads=threads)
    comparison = _Comparison(session.output_quantization()) if reference is not None else None
    top1 = top5 = 0
    started = time.perf_counter()
    with progress_bar(total=len(dataset), desc=f"{runtime.name} {path.name}", unit="img") as bar:
        for start, images, labels in _batches(dataset, transform, batch_size):
            logits = session.run(images)
            hits = topk_hits(torch.from_numpy(logits), labels)
            top1, top5 = top1 + hits[0], top5 + hits[1]
            if comparison is not None and start < reference_samples:
                kept = min(len(images), reference_samples - start)
                comparison.add(logits[:kept], run_reference(reference, images[:kept]))
            bar.update(len(images))
    samples = len(dataset)
    result = {"artifact": str(path), "runtime": runtime.name, "threads": threads,
              "top1": 100.0 * top1 / max(1, samples), "top5": 100.0 * top5 / max(1, samples), "samples": samples,
              "seconds": time.perf_counter() - started}
    result.update({key: value for key, value in session.describe().items() if key not in result})
    if comparison is not None:
        result["reference"] = comparison.summary()
    return result


def compare_file(path: str | Path, runtime_name: str, images: np.ndarray, reference_logits: np.ndarray, *,
                 threads: int, batch_size: int) -> dict:
    """Agreement of ``path`` run by ``runtime_name`` with ``reference_logits``, computed on the same ``images``
    (float32 NCHW, preprocessed) the reference saw."""
    session = get_runtime(runtime_name).load(path, threads=threads)
    comparison = _Comparison(session.output_quantization())
    for start in range(0, len(images), batch_size):
        comparison.add(session.run(images[start : start + batch_size]), reference_logits[start : start + batch_size])
    return comparison.summary()


def _batches(dataset: ImageSet, transform: BatchTransform, batch_size: int):
    """(index of the first image, float32 NCHW images, labels) in dataset order."""
    for start in range(0, len(dataset), batch_size):
        indices = torch.arange(start, min(start + batch_size, len(dataset)))
        yield start, transform(dataset.load(indices)).numpy(), dataset.labels[indices]


def run_reference(reference: Reference | torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Logits of the reference: a torch module gets a tensor (in eval mode, no grad); a callable the array."""
    if not isinstance(reference, torch.nn.Module):
        return np.asarray(reference(images), dtype=np.float32)
    device = next(reference.parameters(), torch.empty(0)).device
    with _eval_mode(reference), torch.no_grad():
        return reference(torch.from_numpy(images).to(device)).float().cpu().numpy()


@contextmanager
def _eval_mode(module: torch.nn.Module):
    was_training = module.training
    try:
        module.eval()
    except NotImplementedError:  # a torch.export / PT2E graph: its mode was fixed when it was exported
        yield
        return
    try:
        yield
    finally:
        module.train(was_training)


class _Comparison:
    """Running top-1 agreement and largest |difference| between a session's logits and the reference's."""

    def __init__(self, output_grid: Quantization | None):
        self.scale = output_grid[0] if output_grid else None
        self.samples = self.agreeing = 0
        self.max_abs_diff = 0.0

    def add(self, logits: np.ndarray, reference_logits: np.ndarray) -> None:
        if logits.shape != reference_logits.shape:
            raise UserInputError(f"reference gives logits of shape {reference_logits.shape}, "
                                 f"the model file {logits.shape}")
        self.samples += len(logits)
        self.agreeing += int((logits.argmax(1) == reference_logits.argmax(1)).sum())
        self.max_abs_diff = max(self.max_abs_diff, float(np.abs(logits - reference_logits).max(initial=0.0)))

    def summary(self) -> dict:
        in_steps = self.scale is not None
        return {"samples": self.samples, "top1_agreement": self.agreeing / max(1, self.samples),
                "max_diff": self.max_abs_diff / self.scale if in_steps else self.max_abs_diff,
                "unit": "LSB" if in_steps else "abs", "output_scale": self.scale}

