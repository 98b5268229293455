"""Per-layer cost of a model (MobileNet paper Tables 1 and 2), measured from the real modules.

``profile_model`` runs one forward pass (batch 1, eval mode, no grad) with forward hooks on every
``nn.Conv2d``, ``nn.Linear`` and average pool, and reads each layer's shapes at run time. The pass
runs on a meta-device copy of the model, so no arithmetic is done and the caller's model is untouched.

What is counted:
  * mult-adds: ``k_h * k_w * (in_ch / groups) * out_ch * out_h * out_w`` for a conv, ``in * out`` for
    a fully connected layer, 0 for pooling. Bias additions, BN and activations are not counted.
  * params: conv weights (and biases, if any), FC weight + bias. BatchNorm's scale and shift are not
    in the rows because at deployment BN folds into the preceding conv's weight and bias; their total
    is reported separately as ``bn_params``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from edgekit.errors import UserInputError

__all__ = ["ModelCost", "profile_model", "format_table", "format_grid_table"]

POOL_TYPES = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)


@dataclass
class LayerCost:
    """One row of Table 1. ``input_size``/``output_size`` are [H, W, C] like the paper's table."""

    name: str
    type: str
    stride: int
    filter_shape: str
    input_size: list[int]
    output_size: list[int]
    macs: int
    params: int


@dataclass
class ModelCost:
    macs: int
    params: int
    bn_params: int
    layers: list[dict] = field(default_factory=list)
    by_type: dict[str, dict] = field(default_factory=dict)
    blocks: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "macs": self.macs,
            "params": self.params,
            "layers": self.layers,
            "by_type": self.by_type,
            "blocks": self.blocks,
            "bn_params": self.bn_params,
        }


def profile_model(model: nn.Module, resolution: int | tuple[int, int], in_chans: int = 3) -> ModelCost:
    """Measure ``model`` on one ``in_chans x H x W`` input; ``resolution`` is ``H`` (square) or ``(H, W)``."""
    height, width = _check_resolution(resolution)
    if not _is_positive_int(in_chans):
        raise UserInputError(f"in_chans must be an integer >= 1, got {in_chans!r}")
    layers = _trace_layers(model, (1, in_chans, height, width))
    bn_params = sum(
        param.numel()
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for param in module.parameters(recurse=False)
    )
    return ModelCost(
        macs=sum(layer.macs for layer in layers),
        params=sum(layer.params for layer in layers),
        bn_params=bn_params,
        layers=[asdict(layer) for layer in layers],
        by_type=_shares_by_type(layers),
        blocks=_separable_blocks(model, layers),
    )


def _check_resolution(resolution) -> tuple[int, int]:
    size = (resolution, resolution) if isinstance(resolution, int) else resolution
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_positive_int(side) for side in size)):
        raise UserInputError(f"resolution must be a positive integer or (height, width), got {resolution!r}")
    return tuple(size)


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _trace_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerCost]:
    """Run one forward pass with hooks and return a row per conv, linear and average pool, in call order."""
    meta_model = copy.deepcopy(model).to("meta").eval()
    layers: list[LayerCost] = []
    handles = [
        module.register_forward_hook(_make_hook(name, layers))
        for name, module in meta_model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear) + POOL_TYPES)
    ]
    try:
        with torch.no_grad():
            meta_model(torch.empty(input_shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return layers


def _make_hook(name: str, layers: list[LayerCost]):
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        layers.append(_describe(name, module, inputs[0].shape, output.shape))

    return hook


def _hwc(shape: torch.Size) -> list[int]:
    """[H, W, C] of an NCHW shape; an (N, F) vector is [1, 1, F] as in Table 1."""
    if len(shape) == 4:
        return [shape[2], shape[3], shape[1]]
    return [1, 1, shape[-1]]


def _own_params(module: nn.Module) -> int:
    return sum(param.numel() for param in module.parameters(recurse=False))


def _describe(name: str, module: nn.Module, in_shape: torch.Size, out_shape: torch.Size) -> LayerCost:
    input_size, output_size = _hwc(in_shape), _hwc(out_shape)
    if isinstance(module, nn.Conv2d):
        return _describe_conv(name, module, input_size, output_size)
    if isinstance(module, nn.Linear):
        filter_shape = f"{module.in_features}x{module.out_features}"
        macs = module.in_features * module.out_features
        return LayerCost(name, "Fully Connected", 1, filter_shape, input_size, output_size, macs, _own_params(module))
    filter_shape = f"Pool {input_size[0]}x{input_size[1]}"  # a global pool; Table 1 writes "Pool 7x7"
    return LayerCost(name, "Avg Pool", 1, filter_shape, input_size, output_size, 0, 0)


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def _describe_conv(name: str, conv: nn.Conv2d, input_size: list[int], output_size: list[int]) -> LayerCost:
    k_h, k_w = conv.kernel_size
    in_per_group = conv.in_channels // conv.groups
    if _is_depthwise(conv):
        layer_type, filter_shape = f"Conv DW {k_h}x{k_w}", f"{k_h}x{k_w}x{conv.in_channels} dw"
    else:
        layer_type, filter_shape = f"Conv {k_h}x{k_w}", f"{k_h}x{k_w}x{in_per_group}x{conv.out_channels}"
    out_h, out_w = output_size[:2]
    macs = k_h * k_w * in_per_group * conv.out_channels * out_h * out_w
    return LayerCost(name, layer_type, conv.stride[0], filter_shape, input_size, output_size, macs, _own_params(conv))


def _shares_by_type(layers: list[LayerCost]) -> dict[str, dict]:
    """Table 2: mult-adds and params per layer type, with their share of the total (a fraction, 0..1)."""
    total_macs = sum(layer.macs for layer in layers) or 1
    total_params = sum(layer.params for layer in layers) or 1
    by_type: dict[str, dict] = {}
    for layer in layers:
        entry = by_type.setdefault(layer.type, {"macs": 0, "params": 0})
        entry["macs"] += layer.macs
        entry["params"] += layer.params
    for entry in by_type.values():
        entry["macs_share"] = entry["macs"] / total_macs
        entry["params_share"] = entry["params"] / total_params
    return dict(sorted(by_type.items(), key=lambda item: (-item[1]["macs"], -item[1]["params"])))


def _separable_blocks(model: nn.Module, layers: list[LayerCost]) -> list[dict]:
    """Each depthwise conv directly followed by a 1x1 conv on its output is one depthwise-separable block.

    ``standard_conv_macs`` is what one full ``D_K x D_K`` conv with the same input channels M, output
    channels N and stride would cost; the measured ratio should equal the paper's ``1/N + 1/D_K**2``.
    """
    convs = {name: module for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}
    blocks = []
    for dw, pw in zip(layers, layers[1:]):
        if not (dw.name in convs and pw.name in convs and _is_depthwise(convs[dw.name])):
            continue
        pointwise = convs[pw.name]
        if pointwise.kernel_size != (1, 1) or pointwise.groups != 1 or pw.input_size != dw.output_size:
            continue
        k_h, k_w = convs[dw.name].kernel_size
        out_h, out_w, in_chs = dw.output_size
        standard_macs = k_h * k_w * in_chs * pointwise.out_channels * out_h * out_w
        blocks.append(
            {
                "block": len(blocks) + 1,
                "dw": dw.name,
                "pw": pw.name,
                "macs": dw.macs + pw.macs,
                "standard_conv_macs": standard_macs,
                "ratio": (dw.macs + pw.macs) / standard_macs,
                "formula": 1 / pointwise.out_channels + 1 / (k_h * k_w),
            }
        )
    return blocks


# --- text report -------------------------------------------------------------------------------------


def _align(header: list[str], rows: list[list[str]], right_from: int) -> list[str]:
    """Columns padded to their widest cell; columns from index ``right_from`` on are right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [cell.rjust(w) if i >= right_from else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths))]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [line(header), rule, *(line(row) for row in rows)]


def _size(hwc: list[int]) -> str:
    return "x".join(str(side) for side in hwc)


def _layer_lines(cost: ModelCost) -> list[str]:
    header = ["Layer", "Type / Stride", "Filter Shape", "Input Size", "Output Size", "Mult-Adds", "Params"]
    rows = [
        [
            layer["name"],
            f"{layer['type']} / s{layer['stride']}",
            layer["filter_shape"],
            _size(layer["input_size"]),
            _size(layer["output_size"]),
            f"{layer['macs']:,}",
            f"{layer['params']:,}",
        ]
        for layer in cost.layers
    ]
    rows.append(["Total", "", "", "", "", f"{cost.macs:,}", f"{cost.params:,}"])
    return _align(header, rows, right_from=5)


def _type_lines(cost: ModelCost) -> list[str]:
    header = ["Type", "Mult-Adds", "Mult-Adds %", "Params", "Params %"]
    rows = [
        [
            name,
            f"{entry['macs']:,}",
            f"{100 * entry['macs_share']:.2f}%",
            f"{entry['params']:,}",
            f"{100 * entry['params_share']:.2f}%",
        ]
        for name, entry in cost.by_type.items()
    ]
    return _align(header, rows, right_from=1)


def _block_lines(cost: ModelCost) -> list[str]:
    header = ["Block", "Depthwise", "Pointwise", "Mult-Adds", "Standard Conv", "Ratio", "1/N + 1/D_K^2"]
    rows = [
        [
            str(block["block"]),
            block["dw"],
            block["pw"],
            f"{block['macs']:,}",
            f"{block['standard_conv_macs']:,}",
            f"{block['ratio']:.4f}",
            f"{block['formula']:.4f}",
        ]
        for block in cost.blocks
    ]
    return _align(header, rows, right_from=3)


def format_table(cost: ModelCost) -> str:
    """Plain-text report: per-layer table (Table 1), per-type shares (Table 2), totals, block ratios."""
    lines = _layer_lines(cost)
    lines += ["", "Per layer type", *_type_lines(cost)]
    macs_m, params_m, bn_m = cost.macs / 1e6, cost.params / 1e6, cost.bn_params / 1e6
    lines += [
        "",
        f"Total: {cost.macs:,} mult-adds ({macs_m:.1f} M), {cost.params:,} params ({params_m:.2f} M)",
        f"BatchNorm: {cost.bn_params:,} params ({bn_m:.3f} M), not in the rows: BN folds into the convs",
    ]
    if cost.blocks:
        lines += ["", "Depthwise-separable blocks vs a standard conv", *_block_lines(cost)]
    return "\n".join(lines) + "\n"


def format_grid_table(arch: str, alphas: list[float], resolutions: list[int], num_classes: int = 1000) -> str:
    """Markdown table of a family with a width multiplier ``alpha``: million mult-adds per width (rows) and
    resolution (columns), and the exact parameter count (which the resolution does not change)."""
    from edgekit.models import create_model

    header = ["α", *(f"{resolution} px" for resolution in resolutions), "params"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for alpha in alphas:
        with torch.device("meta"):
            model = create_model(arch, alpha=alpha, num_classes=num_classes)
        costs = [profile_model(model, resolution) for resolution in resolutions]
        cells = [f"{alpha:g}", *(f"{cost.macs / 1e6:.1f} M" for cost in costs), f"{costs[0].params:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
