"""Float training with exact resume, and top-1/top-5 evaluation.

Determinism is by construction: the shuffle of epoch ``e`` and the augmentation and dropout of global
step ``s`` draw from generators seeded by (seed, e) and (seed, s), and the learning rate is a pure
function of ``s``. So a build resumed from the checkpoint of step ``s`` takes exactly the steps an
uninterrupted build would have taken.

Under torchrun (``edgekit.train.distributed``) the same loop trains with DistributedDataParallel:
``batch_size`` stays the global batch, each of the W ranks takes its share of the same shuffle, draws its
augmentation and dropout from (seed, step, rank), and rank 0 alone checkpoints and shows progress.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgekit.artifacts import save_torch
from edgekit.data import BatchTransform, ImageSet
from edgekit.errors import RecipeError, TrainingDiverged
from edgekit.recipe.schema import TrainSection
from edgekit.train.progress import progress_bar

StepHook = Callable[[int], None]


@dataclass
class TrainResult:
    steps: int
    seconds: float
    resumed_from_step: int
    history: list[dict] = field(default_factory=list)
    processes: dict = field(default_factory=dict)  # world size, backend, per-process batch (distributed.summary)


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RecipeError("train.device: cuda was asked for but no CUDA device is available",
                          hint="set train.device to auto or cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def configure_torch(threads: int | None) -> None:
    # Denormals made early QAT/training steps 10x slower on x86 CPUs.
    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)


def steps_per_epoch(dataset_size: int, batch_size: int) -> int:
    return max(1, dataset_size // batch_size)


def learning_rate(config: TrainSection, step: int, total_steps: int) -> float:
    warmup = int(config.warmup_fraction * total_steps)
    if config.schedule == "constant":
        return config.lr
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    floor = 0.0 if config.schedule == "cosine" else config.lr * 1e-3
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: TrainSection,
                   exempt: Iterable[nn.Parameter] = ()) -> torch.optim.Optimizer:
    """Weight decay on conv and linear weights only: not on biases, BN, or the ``exempt`` parameters
    (a QAT backend's learnable quantizer ranges, which decay would pull towards zero)."""
    exempt_ids = {id(param) for param in exempt}
    head_ids = {id(param) for param in head_parameters(model)} if config.head_lr_multiplier != 1 else set()
    groups = []
    for in_head, lr_scale in ((False, 1.0), (True, config.head_lr_multiplier)):
        decay, no_decay = [], []
        for param in model.parameters():
            if (id(param) in head_ids) == in_head:
                (decay if param.ndim > 1 and id(param) not in exempt_ids else no_decay).append(param)
        if in_head and not decay + no_decay:
            continue
        groups += [{"params": decay, "weight_decay": config.weight_decay, "lr_scale": lr_scale},
                   {"params": no_decay, "weight_decay": 0.0, "lr_scale": lr_scale}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The classifier's parameters (every edgekit family names its last layer ``classifier``)."""
    classifier = getattr(model, "classifier", None)
    return list(classifier.parameters()) if isinstance(classifier, nn.Module) else []


def backbone_frozen(config: TrainSection, step: int, total_steps: int) -> bool:
    """Whether step ``step`` trains the classifier only (a pure function of the step: resume stays exact)."""
    if config.freeze == "backbone":
        return True
    return config.freeze == "backbone_then_all" and step < int(config.unfreeze_after * total_steps)


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or thaw) every parameter outside the classifier; frozen batch norms keep their statistics."""
    head_ids = {id(param) for param in head_parameters(model)}
    if frozen and not head_ids:
        raise RecipeError("train.freeze: this model has no `classifier` module to train alone")
    for param in model.parameters():
        if id(param) not in head_ids:
            param.requires_grad_(not frozen)
    classifier = getattr(model, "classifier", None)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not _inside(module, classifier):
            module.train(model.training and not frozen)


def _inside(module: nn.Module, parent: nn.Module | None) -> bool:
    return parent is not None and any(module is child for child in parent.modules())


def train(
    model: nn.Module,
    dataset: ImageSet,
    transform: BatchTransform,
    config: TrainSection,
    *,
    seed: int,
    checkpoint_path: Path,
    checkpoint_key: str,
    on_step: StepHook | None = None,
    before_step: StepHook | None = None,
    description: str = "train",
    no_weight_decay: Iterable[nn.Parameter] = (),
    log_every_steps: int | None = None,
) -> TrainResult:
    """Train ``model`` in place; checkpoints at every epoch end and every ``checkpoint_every_steps``.
    The loss history gets a point at each checkpoint and, when given, every ``log_every_steps``."""
    device = next(model.parameters()).device
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    from edgekit.train import distributed  # not at the top: `python -m edgekit.train.distributed` runs it

    processes, this_rank = distributed.world_size(), distributed.rank()
    batch_size = distributed.per_process_batch(config.batch_size, processes)
    per_epoch = steps_per_epoch(len(dataset), config.batch_size)
    total_steps = int(round(config.epochs * per_epoch))
    optimizer = make_optimizer(model, config, no_weight_decay)
    history: list[dict] = []
    start_step = _resume(checkpoint_path, checkpoint_key, model, optimizer, history)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    model.train()
    trained = None
    autocast, scaler = _mixed_precision(config, device)
    frozen = None
    started = time.perf_counter()
    window = _Window()
    images_seen = 0
    with progress_bar(total=total_steps, initial=start_step, desc=description, unit="step") as bar:
        for step in range(start_step, total_steps):
            if before_step is not None:
                before_step(step)
            if config.freeze != "none" and backbone_frozen(config, step, total_steps) != frozen:
                frozen = backbone_frozen(config, step, total_steps)
                set_backbone_frozen(model, frozen)
                # DistributedDataParallel reduces the parameters that trained when it was built: rebuild it
                trained = None
                gc.collect()  # the old wrapper's gradient hooks go with it, before the new one adds its own
            if trained is None:
                trained = _compiled(distributed.wrap(model), config)
            epoch, index_in_epoch = divmod(step, per_epoch)
            images, labels = _batch(dataset, transform, seed, epoch, index_in_epoch, batch_size, step)
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            labels = labels.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step, total_steps) * group.get("lr_scale", 1.0)
            torch.manual_seed(_mix(seed, _rank_counter(step), 2))  # dropout
            with autocast:
                logits = trained(images)
                loss = loss_fn(logits, labels)
            _check_loss(loss, step, epoch, config, checkpoint_path)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            window.add(loss.item(), (logits.argmax(1) == labels).sum().item(), len(labels))
            images_seen += len(labels) * processes
            bar.update(1)
            bar.set_postfix(epoch=f"{epoch + 1}", loss=f"{window.loss:.3f}", acc=f"{window.accuracy:.3f}",
                            img_s=f"{images_seen / max(1e-9, time.perf_counter() - started):.0f}", refresh=False)
            done = step + 1
            checkpoint = done % config.checkpoint_every_steps == 0 or done % per_epoch == 0 or done == total_steps
            if checkpoint or (log_every_steps and done % log_every_steps == 0):
                window = window.over_all_ranks()
                history.append({"step": done, "epoch": done / per_epoch, "loss": window.loss,
                                "accuracy": window.accuracy, "lr": optimizer.param_groups[0]["lr"]})
                window = _Window()
            if checkpoint and this_rank == 0:
                _save(checkpoint_path, checkpoint_key, done, model, optimizer, history)
            if on_step is not None:
                on_step(done)
    if frozen:
        set_backbone_frozen(model, False)  # hand back a model whose parameters all train, as it came
    distributed.check_in_sync(model)
    return TrainResult(total_steps, time.perf_counter() - started, start_step, history,
                       distributed.summary(batch_size, device))


def _compiled(model: nn.Module, config: TrainSection) -> nn.Module:
    return torch.compile(model) if config.compile else model


def _mixed_precision(config: TrainSection, device: torch.device):
    """The autocast context of ``train.amp`` and its gradient scaler (which only fp16 needs)."""
    if config.amp == "fp16" and device.type != "cuda":
        raise RecipeError(f"train.amp: fp16 needs a CUDA device (training runs on {device.type})",
                          hint="use train.amp: bf16, or off")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    return autocast, torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")


@torch.no_grad()
def evaluate(model: nn.Module, dataset: ImageSet, transform: BatchTransform, batch_size: int,
             description: str = "evaluate") -> dict:
    """Top-1 and top-5 accuracy (percent) on every sample of ``dataset``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    top1 = top5 = 0
    with progress_bar(total=len(dataset), desc=description, unit="img") as bar:
        for start in range(0, len(dataset), batch_size):
            indices = torch.arange(start, min(start + batch_size, len(dataset)))
            logits = model(transform(dataset.load(indices)).to(device))
            labels = dataset.labels[indices].to(device)
            top1_hits, top5_hits = topk_hits(logits, labels)
            top1, top5 = top1 + top1_hits, top5 + top5_hits
            bar.update(len(indices))
    model.train(was_training)
    samples = len(dataset)
    return {"top1": 100.0 * top1 / samples, "top5": 100.0 * top5 / samples, "samples": samples}


def topk_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    k = min(5, logits.shape[1])
    best = logits.topk(k, dim=1).indices
    return int((best[:, 0] == labels).sum()), int((best == labels[:, None]).any(1).sum())


def _batch(dataset, transform, seed, epoch, index_in_epoch, batch_size, step):
    """This rank's ``batch_size`` images of global batch ``index_in_epoch``, augmented."""
    from edgekit.train import distributed

    order = distributed.rank_indices(len(dataset), _mix(seed, epoch, 0))
    indices = order[index_in_epoch * batch_size : (index_in_epoch + 1) * batch_size]
    augment_rng = torch.Generator().manual_seed(_mix(seed, _rank_counter(step), 1))
    return transform(dataset.load(indices), augment_rng), dataset.labels[indices]


def _rank_counter(step: int) -> int:
    """A random-stream counter per (step, rank); ``step`` itself with one process."""
    from edgekit.train import distributed

    return step * distributed.world_size() + distributed.rank()


def _mix(seed: int, counter: int, stream: int) -> int:
    return (seed * 1_000_003 + counter * 7919 + stream * 104_729) % (2**63)


def _check_loss(loss, step, epoch, config, checkpoint_path):
    value = loss.item()
    if not math.isfinite(value) or value > config.max_loss:
        kept = f"; the last good checkpoint is kept at {checkpoint_path}" if checkpoint_path.exists() else ""
        raise TrainingDiverged(
            f"training diverged: loss {value:.4g} at step {step + 1} (epoch {epoch + 1}) with train.lr={config.lr:g}{kept}",
            hint="lower train.lr or raise train.max_loss",
        )


def _save(path: Path, key: str, step: int, model, optimizer, history) -> None:
    save_torch(path, {"key": key, "step": step, "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "history": history})


def _resume(path: Path, key: str, model, optimizer, history: list) -> int:
    if not path.exists():
        return 0
    try:
        state = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    except Exception:  # a corrupt checkpoint is recomputed, never trusted
        path.unlink(missing_ok=True)
        return 0
    if state.get("key") != key:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    history.extend(state["history"])
    return int(state["step"])


class _Window:
    """Running loss/accuracy since the last history entry."""

    def __init__(self):
        self.loss_sum = 0.0
        self.hits = self.images = self.batches = 0

    def add(self, loss: float, hits: int, images: int) -> None:
        self.loss_sum += loss
        self.batches += 1
        self.hits += hits
        self.images += images

    def over_all_ranks(self) -> "_Window":
        from edgekit.train import distributed

        if distributed.world_size() == 1:
            return self
        merged = _Window()
        merged.loss_sum, batches, hits, images = distributed.all_sum(
            [self.loss_sum, self.batches, self.hits, self.images])
        merged.batches, merged.hits, merged.images = int(batches), int(hits), int(images)
        return merged

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.batches)

    @property
    def accuracy(self) -> float:
        return self.hits / max(1, self.images)
