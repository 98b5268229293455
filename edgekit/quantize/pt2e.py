"""PT2E backend: torch.export + torchao's prepare/convert with litert-torch's quantizer.

One converted graph feeds every format: litert-torch writes an all-int8 .tflite, the dynamo ONNX
exporter writes a QDQ .onnx that onnxruntime fuses to QLinearConv/QGemm (see toolchain-facts.md), and
ExecuTorch lowers it to XNNPACK (litert-torch's quantizer annotates like XNNPACKQuantizer: symmetric
per-channel int8 weights, per-tensor int8 activations, which XNNPACK's partitioner accepts).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from edgekit.quantize.base import QuantizationBackend, QuantScheme, calibrate

MAX_BATCH = 4096


def _patch_litert_conv_bn_annotator() -> None:
    """litert-torch 0.10.0 hands a bare function to torch.export when matching conv+BN for QAT
    ("Expected `mod` to be an instance of `torch.nn.Module`"); wrap it in torchao's WrapperModule."""
    from litert_torch.quantize import pt2e_quantizer_utils
    from torchao.quantization.pt2e.export_utils import WrapperModule

    original = pt2e_quantizer_utils._get_aten_graph_module_for_pattern
    if getattr(original, "_edgekit_patched", False):
        return

    def wrapped(pattern, *args, **kwargs):
        if not isinstance(pattern, nn.Module):
            pattern = WrapperModule(pattern)
        return original(pattern, *args, **kwargs)

    wrapped._edgekit_patched = True
    pt2e_quantizer_utils._get_aten_graph_module_for_pattern = wrapped


class PT2EBackend(QuantizationBackend):
    name = "pt2e"
    formats = ("tflite", "onnx", "executorch")

    def __init__(self):
        _patch_litert_conv_bn_annotator()
        self.quantizer = None
        self.kept_layers: tuple[str, ...] = ()

    def prepare(self, model: nn.Module, example: torch.Tensor, scheme: QuantScheme,
                calibration: list[torch.Tensor]) -> nn.Module:
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

        from edgekit.quantize.keep_float import folded_modules, resolve_keep_float

        config = get_symmetric_quantization_config(is_per_channel=scheme.per_channel_weights, is_qat=scheme.qat)
        self.kept_layers = resolve_keep_float(model, scheme.keep_float)
        kept = folded_modules(model, example, self.kept_layers)
        self.quantizer = _keep_float_quantizer(_residual_quantizer(PT2EQuantizer), kept)().set_global(config)
        # A dynamic batch dimension: QAT at batch > 1 otherwise fails a guard on x.size()[0] == 1.
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        exported = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},)).module()
        prepared = (prepare_qat_pt2e if scheme.qat else prepare_pt2e)(exported, self.quantizer)
        allow_exported_model_train_eval(prepared)
        calibrate(prepared, calibration)
        return prepared

    def freeze_bn(self, prepared: nn.Module) -> None:
        for node in prepared.graph.nodes:
            if node.target == torch.ops.aten.batch_norm.default and node.args[5] is True:
                args = list(node.args)
                args[5] = False  # training=False: use and keep the running statistics
                node.args = tuple(args)
        prepared.recompile()

    def freeze_observers(self, prepared: nn.Module) -> None:
        from torchao.quantization.pt2e.fake_quantize import disable_observer

        prepared.apply(disable_observer)

    def convert(self, prepared: nn.Module) -> nn.Module:
        from torchao.quantization.pt2e import allow_exported_model_train_eval, move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        # convert_pt2e rewrites its argument in place: convert a copy so the prepared model (and the
        # checkpoint saved from it) stays the trainable graph that reloads exactly.
        prepared_copy = copy.deepcopy(prepared)
        move_exported_model_to_eval(prepared_copy)
        # fold_quantize=True breaks litert-torch (stablehlo.uniform_dequantize on an i8 tensor).
        converted = convert_pt2e(prepared_copy, fold_quantize=False)
        allow_exported_model_train_eval(converted)
        converted.eval()
        for module in converted.modules():
            module.training = False  # else LiteRT warns that the model was converted in training mode
        return converted

    def export_options(self, converted: nn.Module, fmt: str) -> dict:
        if fmt == "tflite":
            from litert_torch.quantize.quant_config import QuantConfig

            # strict QDQ: the converter would otherwise re-quantize a kept float layer between DQ and Q
            return {"quant_config": QuantConfig(pt2e_quantizer=self.quantizer), "strict_qdq": bool(self.kept_layers)}
        if fmt == "executorch":
            return {}  # XNNPACK takes this quantizer's annotations as they are (docs/runtimes.md)
        return {"dynamo": True}  # the legacy exporter fails on quantize_per_channel


def _residual_quantizer(base: type) -> type:
    """``base`` that also quantizes residual adds and fuses ReLU6 into the conv before it.

    litert-torch 0.10.0 finds adds by ``source_fn_stack``, which torch.export no longer records: an add
    was left unannotated, a chain of two residual adds passed a float tensor between them, and onnxruntime
    ran every add in float. And it gives a ReLU6 (hardtanh) the range of the conv before it, negative
    half included, so onnxruntime keeps a float Clip between DequantizeLinear and QuantizeLinear; observed
    after the ReLU6 instead (as litert-torch does for ReLU), the Clip folds into the int8 conv."""

    class ResidualQuantizer(base):
        def annotate(self, model):
            _annotate_adds(model, self.global_config)
            model = super().annotate(model)
            _observe_after_relu6(model)
            return model

    return ResidualQuantizer


def _annotate_adds(model, config) -> None:
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in model.graph.nodes:
        if node.target not in (torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor):
            continue
        inputs = [arg for arg in node.args[:2] if isinstance(arg, torch.fx.Node)]
        if len(inputs) != 2 or "quantization_annotation" in node.meta:
            continue  # an add of a constant is no residual add
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={arg: get_input_act_qspec(config) for arg in inputs},
            output_qspec=get_output_act_qspec(config), _annotated=True)


RELU6 = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)


def _observe_after_relu6(model) -> None:
    """Move the output range of a conv (or conv + BN in QAT) from its own output to the ReLU6 after it."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in model.graph.nodes:
        if node.target not in RELU6 or tuple(node.args[1:3]) != (0.0, 6.0):
            continue
        producer = node.args[0]
        annotation = producer.meta.get("quantization_annotation")
        if annotation is None or annotation.output_qspec is None or len(producer.users) != 1:
            continue
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            output_qspec=annotation.output_qspec, _annotated=True)
        annotation.output_qspec = None


def _keep_float_quantizer(base: type, kept_modules: set[str]) -> type:
    """``base`` whose annotation skips the nodes of ``kept_modules`` (each kept conv/FC with its folded BN and
    activation), so they stay float between a DequantizeLinear and the next layer's QuantizeLinear.

    litert-torch's ``set_module_name`` refuses a None config and matches mangled names; the node's own
    ``nn_module_stack`` gives the exact module path."""
    if not kept_modules:
        return base

    class KeepFloatQuantizer(base):
        def annotate(self, model):
            model = super().annotate(model)
            for node in model.graph.nodes:
                stack = node.meta.get("nn_module_stack") or {}
                if stack and list(stack.values())[-1][0] in kept_modules:
                    node.meta.pop("quantization_annotation", None)
            return model

    return KeepFloatQuantizer
