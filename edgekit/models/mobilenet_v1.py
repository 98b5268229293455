"""MobileNet V1.

Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", https://arxiv.org/abs/1704.04861

The layer sequence follows the TF-slim reference code rather than Table 1 of the paper where the two
disagree: the code puts stride 2 on the 13th depthwise conv (14x14 -> 7x7) and stride 1 on the last
one (7x7x1024 stays 7x7); Table 1 prints "Conv dw / s2" on the 7x7x1024 row, a typo.

Width multiplier ``alpha``: every channel count ``c`` becomes ``max(1, int(c * alpha + 0.5))``, i.e.
round half up. The reference code calls ``round(c * alpha)`` under Python 2, which also rounds half
away from zero; Python 3's ``round`` rounds half to even and would give different widths for some
``alpha`` values.

Variants from the paper's ablations:
  * ``conv="standard"``: Table 4's "Conv MobileNet", each depthwise-separable block replaced by one
    full 3x3 conv + BN + activation with the same stride and output channels.
  * ``shallow=True``: Table 5's "Shallow MobileNet", the five 14x14x512 stride-1 blocks removed.

``padding`` only affects the stride-2 convs: "symmetric" is PyTorch's ``padding=1``; "same" zero-pads
(left 0, right 1, top 0, bottom 1) and then convolves with ``padding=0``, which is TensorFlow's SAME on
even input sizes: the 3x3 windows sit one pixel further right/down than with "symmetric". On an odd
size SAME would pad 1 on each side; this constant pad gives one output pixel less instead. The state
dicts are interchangeable, but a model trained with one padding is a different function under the other.
"""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from pydantic import Field

from edgekit.errors import UserInputError, suggest
from edgekit.models._registry import register_model
from edgekit.recipe.schema import FiniteFloat, ModelOptions

__all__ = ["MobileNetV1", "ConvBnAct", "DepthwiseSeparable", "Conv2dSame", "scale_channels"]

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}
CONV_TYPES = ("separable", "standard")
PADDINGS = ("symmetric", "same")

STEM_CHANNELS = 32
# (output channels, stride) of the 13 blocks after the stem, as in the TF-slim code.
BLOCK_SPECS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
SHALLOW_REMOVED = range(6, 11)  # indices in BLOCK_SPECS of the five 14x14x512 stride-1 blocks


def scale_channels(channels: int, alpha: float) -> int:
    """Channel count after the width multiplier: round half up, never below 1."""
    return max(1, int(channels * alpha + 0.5))


class Conv2dSame(nn.Conv2d):
    """A stride-2 conv padded like TensorFlow SAME on even sizes: zero pad (0, 1, 0, 1), then ``padding=0``.

    The pad is a constant rather than computed from the input shape (as timm's Conv2dSame does), so an
    exported graph holds no shape arithmetic; the dynamo ONNX exporter folds it into the Conv's pads.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (0, 1, 0, 1)))


def _make_conv(in_chs: int, out_chs: int, kernel_size: int, stride: int, groups: int, padding: str) -> nn.Conv2d:
    if stride == 2 and padding == "same":
        return Conv2dSame(in_chs, out_chs, kernel_size, stride, padding=0, groups=groups, bias=False)
    return nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False)


class ConvBnAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> activation."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        act_layer: type[nn.Module] = nn.ReLU,
        padding: str = "symmetric",
    ):
        super().__init__()
        self.conv = _make_conv(in_chs, out_chs, kernel_size, stride, groups, padding)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = act_layer(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + act, then 1x1 pointwise conv + BN + act (Figure 3, right)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        *,
        act_layer: type[nn.Module] = nn.ReLU,
        padding: str = "symmetric",
    ):
        super().__init__()
        self.dw = ConvBnAct(in_chs, in_chs, 3, stride, groups=in_chs, act_layer=act_layer, padding=padding)
        self.pw = ConvBnAct(in_chs, out_chs, 1, 1, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    """MobileNet V1: a 3x3 stem conv, 13 depthwise-separable blocks, global average pool, one FC layer.

    Submodules: ``features.stem`` (a ``ConvBnAct``), ``features.block1`` .. ``features.blockN``,
    ``pool`` and ``classifier`` (an ``nn.Linear``). Any input resolution works: the pool is adaptive.
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: str = "relu",
        conv: str = "separable",
        shallow: bool = False,
        dropout: float = 0.0,
        padding: str = "symmetric",
    ):
        super().__init__()
        _validate_args(alpha, num_classes, in_chans, activation, conv, dropout, padding)
        self.alpha = alpha
        self.num_classes = num_classes

        self.features = _build_features(alpha, in_chans, ACTIVATIONS[activation], conv, shallow, padding)
        self.num_features = _last_out_channels(self.features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(self.num_features, num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        # reshape, not flatten: an ONNX Flatten stops int8 QDQ propagation and Qualcomm QNN rejects it.
        x = x.reshape(x.shape[0], -1)
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the FC layer, e.g. to fine-tune ImageNet weights on another label set."""
        _check_num_classes(num_classes)
        self.num_classes = num_classes
        device = self.classifier.weight.device
        self.classifier = nn.Linear(self.num_features, num_classes, device=device)
        _init_linear(self.classifier)


def _build_features(
    alpha: float, in_chans: int, act_layer: type[nn.Module], conv: str, shallow: bool, padding: str
) -> nn.Sequential:
    stem_chs = scale_channels(STEM_CHANNELS, alpha)
    layers = OrderedDict(stem=ConvBnAct(in_chans, stem_chs, 3, 2, act_layer=act_layer, padding=padding))
    specs = [spec for i, spec in enumerate(BLOCK_SPECS) if not (shallow and i in SHALLOW_REMOVED)]
    in_chs = stem_chs
    for number, (channels, stride) in enumerate(specs, start=1):
        out_chs = scale_channels(channels, alpha)
        if conv == "standard":
            block = ConvBnAct(in_chs, out_chs, 3, stride, act_layer=act_layer, padding=padding)
        else:
            block = DepthwiseSeparable(in_chs, out_chs, stride, act_layer=act_layer, padding=padding)
        layers[f"block{number}"] = block
        in_chs = out_chs
    return nn.Sequential(layers)


def _last_out_channels(features: nn.Sequential) -> int:
    convs = [module for module in features.modules() if isinstance(module, nn.Conv2d)]
    return convs[-1].out_channels


def _init_linear(linear: nn.Linear) -> None:
    nn.init.normal_(linear.weight, 0.0, 0.01)
    nn.init.zeros_(linear.bias)


def _init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # He init over fan-out per group; kaiming_normal_ would count a depthwise conv's fan-out as
            # 9 * channels instead of 9 and shrink activations by sqrt(channels) at every block.
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            _init_linear(module)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_choice(arg: str, value, choices) -> None:
    if value not in choices:
        raise UserInputError(
            f"mobilenet_v1: {arg} must be one of {', '.join(map(repr, choices))}, got {value!r}",
            hint=suggest(str(value), choices),
        )


def _check_num_classes(num_classes) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise UserInputError(f"mobilenet_v1: num_classes must be an integer >= 1, got {num_classes!r}")


def _validate_args(alpha, num_classes, in_chans, activation, conv, dropout, padding) -> None:
    if not _is_number(alpha) or alpha <= 0:
        raise UserInputError(f"mobilenet_v1: alpha (width multiplier) must be a number > 0, got {alpha!r}")
    _check_num_classes(num_classes)
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise UserInputError(f"mobilenet_v1: in_chans must be an integer >= 1, got {in_chans!r}")
    _check_choice("activation", activation, tuple(ACTIVATIONS))
    _check_choice("conv", conv, CONV_TYPES)
    _check_choice("padding", padding, PADDINGS)
    if not _is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise UserInputError(f"mobilenet_v1: dropout must be a number in [0, 1), got {dropout!r}")


def _create_mobilenet_v1(variant: str, **kwargs) -> MobileNetV1:
    accepted = [name for name in inspect.signature(MobileNetV1.__init__).parameters if name != "self"]
    for key in kwargs:
        if key not in accepted:
            raise UserInputError(f"{variant}: unknown option '{key}'", hint=suggest(key, accepted))
    return MobileNetV1(**kwargs)


class MobileNetV1Options(ModelOptions):
    """The recipe's ``model.*`` keys that only MobileNet v1 has (checked when ``model.arch`` is mobilenet_v1)."""

    alpha: FiniteFloat = Field(1.0, gt=0, le=4, description="Width multiplier α: every layer's channel count is scaled by it.")
    conv: Literal[CONV_TYPES] = Field("separable", description="`separable`: depthwise-separable blocks; `standard`: full 3×3 convs (the paper's Conv MobileNet, Table 4).")
    shallow: bool = Field(False, description="Remove the five 14×14×512 blocks (the paper's shallow MobileNet, Table 5).")
    padding: Literal[PADDINGS] = Field("symmetric", description="Stride-2 padding: `symmetric` (PyTorch, 1 pixel each side) or `same` (TensorFlow SAME: bottom/right only).")


@register_model(options=MobileNetV1Options)
def mobilenet_v1(**kwargs) -> MobileNetV1:
    """MobileNet V1; ``alpha`` (width), ``conv``, ``shallow`` etc. select the paper's variants."""
    return _create_mobilenet_v1("mobilenet_v1", **kwargs)
