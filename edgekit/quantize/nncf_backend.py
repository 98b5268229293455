"""NNCF backend: BatchNorm folded into the convs, ``nncf.quantize`` with the MIXED preset, QDQ ONNX.

The settings are the ones that make onnxruntime run every conv as QLinearConv and the FC as QGemm
(toolchain-facts.md, "NNCF 3.4 QAT -> int8 ONNX QDQ"); NNCF's defaults leave DQ -> Conv -> BN in
float and run ~4x slower than the float model:

* BN is folded into the convs first (``fuse_conv_bn_eval``), so QAT trains the folded convs;
* MIXED preset: symmetric int8 weights, asymmetric uint8 activations, per-tensor activations, the
  model output quantized too;
* export: every quantizer in ONNX QuantizeLinear/DequantizeLinear mode, legacy exporter
  (``dynamo=False``; the dynamo exporter fails on NNCF's quantizers).

NNCF inserts its quantizers as hooks into the model and calibrates them inside ``nncf.quantize``; the
ranges are then trainable parameters that QAT learns with the weights (there are no observers).
"""

from __future__ import annotations

import contextlib
import copy
import enum
import importlib
import io
import os

import torch
import torch.nn as nn

from edgekit.errors import UserInputError
from edgekit.quantize.base import QuantizationBackend, QuantScheme


class NNCFBackend(QuantizationBackend):
    name = "nncf"
    formats = ("onnx",)

    def __init__(self):
        self.example = None  # convert traces the model once to find which quantizer guards which weight

    def prepare(self, model: nn.Module, example: torch.Tensor, scheme: QuantScheme,
                calibration: list[torch.Tensor]) -> nn.Module:
        """Fold BN, then quantize and calibrate on every calibration batch (PTQ and QAT alike)."""
        import nncf

        from edgekit.quantize.keep_float import resolve_keep_float

        self.example = example[:1].clone()
        folded = fold_batch_norms(model)
        float_biases = {name: folded.get_submodule(name).bias.detach().clone()
                        for name in resolve_keep_float(model, scheme.keep_float)}
        with _quiet_progress():
            # NNCF counts dataset items, not images: each item here is one calibration batch.
            prepared = nncf.quantize(folded, nncf.Dataset(calibration), preset=nncf.QuantizationPreset.MIXED,
                                     subset_size=len(calibration), advanced_parameters=_advanced_parameters(scheme))
        keep_weights_float(prepared, float_biases)
        _pin_zero_lower_bounds(prepared)
        return prepared

    def freeze_bn(self, prepared: nn.Module) -> None:
        """Nothing to freeze: ``prepare`` folded every BN into its conv, QAT trains the folded convs."""

    def freeze_observers(self, prepared: nn.Module) -> None:
        """NNCF's ranges are parameters learned by gradient descent: freezing stops their gradients,
        so the optimizer skips them (their ``grad`` stays None) from the next step on."""
        for quantizer in quantizers(prepared):
            quantizer.disable_gradients()

    def convert(self, prepared: nn.Module) -> nn.Module:
        """An eval copy with its weights on their int8 grids and its quantizers in ONNX QDQ export mode.

        The export mode only changes what tracing records; eager outputs are the fake-quant model's.
        ``prepared`` is left as it was: its state is what a checkpoint saves."""
        from nncf.torch.quantization.layers import QuantizerExportMode

        converted = copy.deepcopy(prepared).eval()
        _bake_quantized_weights(converted, self.example)
        for quantizer in quantizers(converted):
            quantizer.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
        return converted

    def export_options(self, converted: nn.Module, fmt: str) -> dict:
        if fmt != "onnx":
            raise UserInputError(f"quantize.backend: nncf exports ONNX only; use pt2e for {fmt}")
        return {"dynamo": False}  # torch.export stops on a data-dependent guard in NNCF's quantizers

    def no_weight_decay(self, prepared: nn.Module) -> list[nn.Parameter]:
        """The quantizers' learnable ranges (per-channel scales are 4-D, so shape alone does not tell)."""
        return [param for quantizer in quantizers(prepared) for param in quantizer.parameters()]

    def state_dict(self, prepared: nn.Module) -> dict:
        """NNCF models do not pickle: save where the quantizers sit (plain data) and every tensor."""
        from nncf.torch import get_config

        return {"nncf_config": _plain(get_config(prepared)), "state": prepared.state_dict()}

    def load_state_dict(self, prepared: nn.Module, state: dict) -> None:
        """Load into a model this backend prepared with the same scheme (e.g. to resume)."""
        from nncf.torch import get_config

        if _plain(get_config(prepared)) != state["nncf_config"]:
            raise UserInputError("quantize: the saved NNCF state places its quantizers differently from this "
                                 "model (another architecture or quantize.weights?)")
        prepared.load_state_dict(state["state"])

    def restore(self, model: nn.Module, example: torch.Tensor, scheme: QuantScheme, state: dict,
                calibration: list[torch.Tensor] = ()) -> nn.Module:
        """Rebuild a prepared model from ``state_dict`` output and the float architecture, without
        calibrating: ``model`` gives the structure only, every value (and the scheme) comes from ``state``."""
        from nncf.torch import load_from_config

        self.example = example[:1].clone()
        prepared = load_from_config(fold_batch_norms(model), _typed(state["nncf_config"]))
        prepared.load_state_dict(state["state"])
        _pin_zero_lower_bounds(prepared)
        return prepared


@torch.no_grad()
def keep_weights_float(prepared: nn.Module, float_biases: dict[str, torch.Tensor]) -> None:
    """``quantize.keep_float`` for NNCF: drop the weight quantizer of each kept layer and give it back the
    bias it had before NNCF's bias correction (which corrected for the rounding of weights that now stay
    float). The layer's input quantizer stays, as in the PT2E backend, so its neighbours remain int8 and the
    exported layer is a float Conv/Gemm between them. (NNCF's own ``ignored_scope`` drops the input
    quantizer too, which leaves the previous layer's output, and so that layer, in float.)"""
    from nncf.torch.function_hook.wrapper import get_hook_storage

    weight_quantizers = get_hook_storage(prepared).pre_hooks
    for name, bias in float_biases.items():
        module = prepared.get_submodule(name)
        op = f"{name.replace('.', '/')}/{'linear' if isinstance(module, nn.Linear) else 'conv2d'}/0"
        key = f"{op}__1"  # the weight is input 1 of conv2d and linear
        if key not in weight_quantizers:
            raise UserInputError(f"quantize.keep_float: NNCF placed no weight quantizer on {name} ({op})")
        del weight_quantizers[key]
        module.bias.copy_(bias)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """An eval copy of ``model`` with every ``conv`` + ``bn`` pair (ConvBnAct) fused into one conv."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(getattr(module, "conv", None), nn.Conv2d) and isinstance(getattr(module, "bn", None), nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
    left = [name for name, module in folded.named_modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise UserInputError(f"quantize.backend nncf folds BatchNorm into the conv before it, but {left[0]} "
                             "is not the `bn` of a conv block; use quantize.backend: pt2e for this model")
    return folded


def quantizers(prepared: nn.Module) -> list[nn.Module]:
    from nncf.torch.quantization.layers import BaseQuantizer

    return [module for module in prepared.modules() if isinstance(module, BaseQuantizer)]


@torch.no_grad()
def _bake_quantized_weights(model: nn.Module, example: torch.Tensor) -> None:
    """Replace every quantized weight by its fake-quantized value, as ``nncf.strip`` does.

    NNCF's fake quantizer rounds ``(w - low) / scale``; ONNX QuantizeLinear rounds ``w / scale``. For the
    rare weight within float32 error of a rounding tie the two pick different int8 values, and the
    difference grows layer by layer (tiny model: 16 output steps apart, 97% top-1 agreement between
    onnxruntime and torch). Weights already on the grid quantize identically in both."""
    from nncf.torch.function_hook.hook_storage import decode_hook_name
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.model_graph_manager import get_const_node, get_module_by_name, split_const_name
    from nncf.torch.quantization.layers import BaseQuantizer

    graph = build_nncf_graph(model, example)
    for hook_name, quantizer in get_hook_storage(model).named_hooks():
        hook_type, op_name, port = decode_hook_name(hook_name)
        if hook_type != "pre_hooks" or not isinstance(quantizer, BaseQuantizer):
            continue
        constant = get_const_node(graph.get_node_by_name(op_name), port, graph)
        if constant is None:  # an activation quantizer before an op
            continue
        module_name, attribute = split_const_name(constant.layer_attributes.name)
        weight = getattr(get_module_by_name(module_name, model), attribute)
        weight.copy_(quantizer(weight))


def _advanced_parameters(scheme: QuantScheme):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    return AdvancedQuantizationParameters(
        activations_quantization_params=QuantizationParameters(per_channel=False),
        weights_quantization_params=QuantizationParameters(per_channel=scheme.per_channel_weights),
        quantize_outputs=True,
        # Min/max of each calibration batch, averaged over the batches. Per-image statistics (what NNCF
        # does with a batched DataLoader) clip more: PTQ lost 4.8 points instead of 1.0 on MobileNet 0.5
        # at res 160 trained at 96 (docs/quantization.md).
        batchwise_statistics=False,
    )


def _pin_zero_lower_bounds(prepared: nn.Module) -> None:
    """Keep the lower bound of post-ReLU activation ranges at exactly 0 during QAT.

    With a lower bound learned slightly below 0 the zero point becomes 1 or 2, the ReLU before it can
    no longer be folded into the int8 kernel, and onnxruntime runs that conv in float (200 QAT steps with
    the ranges never frozen: 2 of 28 kernels at lr 1e-3, 16 at lr 1e-2). Only their upper end is trained."""
    from nncf.torch.quantization.layers import AsymmetricQuantizer

    for quantizer in quantizers(prepared):
        if isinstance(quantizer, AsymmetricQuantizer) and bool((quantizer.input_low == 0).all()):
            quantizer.input_low.requires_grad_(False)


@contextlib.contextmanager
def _quiet_progress():
    """NNCF draws its own progress bars on stdout; follow edgekit's EDGEKIT_NO_PROGRESS."""
    if os.environ.get("EDGEKIT_NO_PROGRESS") != "1":
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# NNCF's config holds enum members (QuantizationScheme); written as tagged plain data, a saved state
# loads with torch.load(weights_only=True) like every other edgekit artifact.
_ENUM_TAG = "__enum__"


def _plain(value):
    if isinstance(value, enum.Enum):
        cls = type(value)
        return {_ENUM_TAG: f"{cls.__module__}:{cls.__qualname__}", "value": value.value}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def _typed(value):
    if isinstance(value, dict) and _ENUM_TAG in value:
        module_name, class_name = value[_ENUM_TAG].split(":")
        if not module_name.startswith("nncf."):
            raise UserInputError(f"quantize: the saved NNCF state names an enum outside nncf: {value[_ENUM_TAG]}")
        return getattr(importlib.import_module(module_name), class_name)(value["value"])
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_typed(item) for item in value)
    return value
