"""Float training and evaluation."""

from edgekit.train.loop import TrainResult, configure_torch, evaluate, pick_device, topk_hits, train
from edgekit.train.weights import load_weights

__all__ = ["TrainResult", "configure_torch", "evaluate", "load_weights", "pick_device", "topk_hits", "train"]
