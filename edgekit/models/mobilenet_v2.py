"""MobileNet V2.

Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
https://arxiv.org/abs/1801.04381

Table 2 of the paper: a 3x3 stride-2 conv (32 channels), 17 bottleneck blocks in seven groups
``(t, c, n, s)`` (expansion factor, output channels, repeats, stride of the group's first block), a
1x1 conv to 1280 channels, a global average pool and a classifier. A bottleneck block is a 1x1
expansion conv to ``t * in`` channels + BN + ReLU6 (left out when ``t == 1``), a 3x3 depthwise conv +
BN + ReLU6, and a 1x1 projection conv + BN with no activation (the linear bottleneck). A block with
stride 1 and as many output channels as input channels adds its input to its output (the inverted
residual). The paper's classifier is a 1x1 conv with a bias on the pooled 1x1 map; here it is the
``nn.Linear`` it is equivalent to (same weights, same cost).

Width multiplier ``alpha`` as in the paper's code (TF-slim ``mobilenet_v2.py``): every channel count
``c`` of the stem and of the blocks becomes ``make_divisible(c * alpha)``, a multiple of 8 (round to
nearest, never below 8 nor more than 10% below ``c * alpha``); an expansion layer has ``t`` times its
(already rounded) input channels. The last conv keeps 1280 channels for ``alpha <= 1`` and becomes
``make_divisible(1280 * alpha)`` above 1: the paper's "we apply width multiplier to all layers except
the very last convolutional layer", which improves small models.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from edgekit.errors import UserInputError, suggest
from edgekit.models._registry import register_model
from edgekit.models.mobilenet_v1 import ACTIVATIONS, ConvBnAct, MobileNetV1, _init_weights, _is_number
from edgekit.recipe.schema import FiniteFloat, ModelOptions

__all__ = ["MobileNetV2", "InvertedResidual", "make_divisible", "BLOCK_SETTINGS"]

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
CHANNEL_DIVISOR = 8
# Table 2: (expansion factor t, output channels c, repeats n, stride s of the first repeat)
BLOCK_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """The paper's code's ``_make_divisible``: ``value`` rounded to the nearest multiple of ``divisor``
    (at least ``divisor``), one step up when rounding went more than 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """1x1 expansion + BN + act (absent for t = 1), 3x3 depthwise + BN + act, 1x1 linear projection + BN;
    the input is added to the output when the stride is 1 and the channel count unchanged (Figure 4b)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, expansion: int, *,
                 act_layer: type[nn.Module] = nn.ReLU6):
        super().__init__()
        mid_chs = in_chs * expansion
        self.has_residual = stride == 1 and in_chs == out_chs
        self.expand = ConvBnAct(in_chs, mid_chs, 1, act_layer=act_layer) if expansion != 1 else nn.Identity()
        self.dw = ConvBnAct(mid_chs, mid_chs, 3, stride, groups=mid_chs, act_layer=act_layer)
        self.project = ConvBnAct(mid_chs, out_chs, 1, act_layer=nn.Identity)  # linear bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.dw(self.expand(x)))
        return x + out if self.has_residual else out


class MobileNetV2(nn.Module):
    """MobileNet V2: stem conv, 17 inverted residual blocks, 1x1 head conv, global average pool, FC.

    Submodules: ``features.stem``, ``features.block1`` .. ``features.block17`` (each with ``expand``,
    ``dw`` and ``project``), ``features.head``, ``pool`` and ``classifier`` (an ``nn.Linear``). Any
    input resolution works: the pool is adaptive.
    """

    def __init__(self, *, alpha: float = 1.0, num_classes: int = 1000, in_chans: int = 3,
                 activation: str = "relu6", dropout: float = 0.0):
        super().__init__()
        _validate_args(alpha, num_classes, in_chans, activation, dropout)
        self.alpha = alpha
        self.num_classes = num_classes
        self.num_features = head_channels(alpha)
        self.features = _build_features(alpha, in_chans, ACTIVATIONS[activation])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(self.num_features, num_classes)
        _init_weights(self)

    # v1's head and forward: pool, reshape (not flatten: ONNX Flatten stops QDQ propagation), dropout, FC
    forward_features = MobileNetV1.forward_features
    forward_head = MobileNetV1.forward_head
    forward = MobileNetV1.forward

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the FC layer, e.g. to fine-tune ImageNet weights on another label set."""
        _check_num_classes(num_classes)
        MobileNetV1.reset_classifier(self, num_classes)


def head_channels(alpha: float) -> int:
    """The last conv's width: 1280, scaled only when ``alpha`` > 1 (as in the paper's code)."""
    return make_divisible(HEAD_CHANNELS * alpha) if alpha > 1.0 else HEAD_CHANNELS


def block_specs(alpha: float) -> list[tuple[int, int, int, int]]:
    """(input channels, output channels, stride, expansion) of the 17 blocks at width ``alpha``."""
    specs = []
    in_chs = make_divisible(STEM_CHANNELS * alpha)
    for expansion, channels, repeats, first_stride in BLOCK_SETTINGS:
        out_chs = make_divisible(channels * alpha)
        for repeat in range(repeats):
            specs.append((in_chs, out_chs, first_stride if repeat == 0 else 1, expansion))
            in_chs = out_chs
    return specs


def _build_features(alpha: float, in_chans: int, act_layer: type[nn.Module]) -> nn.Sequential:
    specs = block_specs(alpha)
    layers = OrderedDict(stem=ConvBnAct(in_chans, specs[0][0], 3, 2, act_layer=act_layer))
    for number, (in_chs, out_chs, stride, expansion) in enumerate(specs, start=1):
        layers[f"block{number}"] = InvertedResidual(in_chs, out_chs, stride, expansion, act_layer=act_layer)
    layers["head"] = ConvBnAct(specs[-1][1], head_channels(alpha), 1, act_layer=act_layer)
    return nn.Sequential(layers)


def _check_num_classes(num_classes) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise UserInputError(f"mobilenet_v2: num_classes must be an integer >= 1, got {num_classes!r}")


def _validate_args(alpha, num_classes, in_chans, activation, dropout) -> None:
    if not _is_number(alpha) or alpha <= 0:
        raise UserInputError(f"mobilenet_v2: alpha (width multiplier) must be a number > 0, got {alpha!r}")
    _check_num_classes(num_classes)
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise UserInputError(f"mobilenet_v2: in_chans must be an integer >= 1, got {in_chans!r}")
    if activation not in ACTIVATIONS:
        raise UserInputError(f"mobilenet_v2: activation must be one of {', '.join(map(repr, ACTIVATIONS))}, "
                             f"got {activation!r}", hint=suggest(str(activation), ACTIVATIONS))
    if not _is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise UserInputError(f"mobilenet_v2: dropout must be a number in [0, 1), got {dropout!r}")


class MobileNetV2Options(ModelOptions):
    """The recipe's ``model.*`` keys that only MobileNet v2 has (checked when ``model.arch`` is mobilenet_v2)."""

    default_activation: ClassVar[str] = "relu6"  # the paper's; model.activation overrides it

    alpha: FiniteFloat = Field(1.0, gt=0, le=4, description="Width multiplier α: channels scaled by it and rounded to multiples of 8 (the paper's code); the last conv's 1280 only scaled when α > 1.")


@register_model(options=MobileNetV2Options)
def mobilenet_v2(**kwargs) -> MobileNetV2:
    """MobileNet V2 with width multiplier ``alpha`` (ReLU6 unless ``activation`` says otherwise)."""
    accepted = [name for name in inspect.signature(MobileNetV2.__init__).parameters if name != "self"]
    for key in kwargs:
        if key not in accepted:
            raise UserInputError(f"mobilenet_v2: unknown option '{key}'", hint=suggest(key, accepted))
    return MobileNetV2(**kwargs)
