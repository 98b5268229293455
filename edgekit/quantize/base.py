"""The quantization backend interface (NNCF style: one algorithm surface, one module per backend).

A backend turns a float torch model into a fake-quantized one (``prepare``), lets the shared algorithm
calibrate and fine-tune it, freezes BN statistics and quantizer ranges on request, converts it to a
quantized graph and writes that graph as int8 files. The framework is imported inside the backend
module only, when a model of that kind arrives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
import torch
import torch.nn as nn


@dataclass(frozen=True)
class QuantScheme:
    """What gets quantized how: int8 symmetric weights, int8 per-tensor activations."""

    per_channel_weights: bool = True
    qat: bool = True
    keep_float: tuple[str, ...] = ()  # conv/FC layer names or globs left in float (``quantize.keep_float``)


class QuantizationBackend(ABC):
    name: str = ""
    #: export formats this backend writes int8 files for
    formats: tuple[str, ...] = ()

    @abstractmethod
    def prepare(self, model: nn.Module, example: torch.Tensor, scheme: QuantScheme,
                calibration: list[torch.Tensor]) -> nn.Module:
        """Insert observers / fake quantizers and calibrate their ranges on ``calibration`` batches;
        the result trains like a torch module."""

    @abstractmethod
    def freeze_bn(self, prepared: nn.Module) -> None:
        """Stop updating BN running statistics (and use them) from now on."""

    @abstractmethod
    def freeze_observers(self, prepared: nn.Module) -> None:
        """Stop updating quantizer ranges from now on."""

    @abstractmethod
    def convert(self, prepared: nn.Module) -> nn.Module:
        """The quantized graph (quantize/dequantize around int8 weights), ready for export."""

    @abstractmethod
    def export_options(self, converted: nn.Module, fmt: str) -> dict:
        """Keyword options the export stage needs to write ``converted`` as an int8 ``fmt`` file."""

    def state_dict(self, prepared: nn.Module) -> dict:
        return prepared.state_dict()

    def no_weight_decay(self, prepared: nn.Module) -> list[nn.Parameter]:
        """Trainable parameters that are not weights (learnable quantizer ranges): QAT does not decay them."""
        return []

    def load_state_dict(self, prepared: nn.Module, state: dict) -> None:
        prepared.load_state_dict(state)

    def restore(self, model: nn.Module, example: torch.Tensor, scheme: QuantScheme, state: dict,
                calibration: list[torch.Tensor]) -> nn.Module:
        """A finished prepared model rebuilt from ``state_dict`` output and the float architecture, so that
        ``convert`` gives the graph the build evaluated. Every value comes from ``state``; one calibration
        batch only gives the observers their shapes. A QAT model is frozen, as QAT leaves it."""
        prepared = self.prepare(model, example, scheme, calibration[:1])
        self.load_state_dict(prepared, state)
        if scheme.qat:
            self.freeze_bn(prepared)
            self.freeze_observers(prepared)
        return prepared


@torch.no_grad()
def calibrate(prepared: nn.Module, batches: list[torch.Tensor]) -> None:
    """Run the calibration batches through a prepared model in eval mode (BN uses its statistics)."""
    from edgekit.train.progress import progress_bar

    prepared.eval()
    with progress_bar(total=len(batches), desc="calibrate", unit="batch") as bar:
        for batch in batches:
            prepared(batch)
            bar.update(1)
