"""Keras' ``MobileNet`` (``keras.applications``): ``.h5`` and ``.weights.h5``, read with h5py (no Keras needed).

Two layouts:
  * ``.h5``: Keras 2's ``save_weights`` (the files Keras publishes for each α and resolution) and the
    legacy ``model.save`` (the same under ``model_weights/``). The root lists ``layer_names``; each layer's
    group lists its ``weight_names`` (``conv_dw_1/depthwise_kernel:0`` ...).
  * ``.weights.h5`` (Keras 3): ``layers/<class>[_N]/vars/<i>``; the layer's name is only the ``name``
    attribute of its ``vars`` group, and the variables are in creation order (a conv: kernel[, bias]; a
    batch norm: gamma, beta, moving mean, moving variance).

Keras' MobileNet v1 is the paper's network computed the TensorFlow way: ReLU6, stride-2 convs padded
bottom/right only (``ZeroPadding2D((0, 1), (0, 1))``, or ``padding="same"`` on the stem), batch-norm eps
1e-3 and a 1x1 conv (``conv_preds``, with bias) as its classifier. edgekit's ``mobilenet_v1`` computes
the same function with ``activation: relu6`` and ``padding: same``; the eps difference is exact to fold
into the moving variance (``var + 1e-3 == (var + 1e-3 - 1e-5) + 1e-5``). Kernels are HWIO (depthwise:
H, W, C, multiplier) and become PyTorch's OIHW. A ``depth_multiplier`` other than 1 and convs with a
bias are refused by the shape check: edgekit's model has no place for them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from edgekit.models.import_weights import KERAS_TF_MODE, ImportedWeights, require_module, weights_error

KERAS_BN_EPS = 1e-3
TORCH_BN_EPS = 1e-5
REQUIRES = {"activation": "relu6", "padding": "same"}
#: variable order of a Keras 3 layer, by the layer class in its ``layers/<class>[_N]`` group name
VARIABLE_ROLES = {
    "conv2d": ("kernel", "bias"),
    "depthwise_conv2d": ("kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "dense": ("kernel", "bias"),
}
BN_ROLES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
LAYER_NAME = re.compile(r"conv1(_bn)?|conv_(dw|pw)_(\d+)(_bn)?|conv_preds")


def read_keras(path: Path) -> ImportedWeights:
    h5py = require_module("h5py", "Keras", path)
    try:
        with h5py.File(path, "r") as handle:
            layers, layout = _read_layers(handle, path)
            eps = _bn_epsilon(handle)
    except OSError as exc:
        raise weights_error(path, f"not a readable HDF5 file ({str(exc).splitlines()[0][:120]})") from None
    if not layers:
        raise weights_error(path, "an HDF5 file without Keras weights (neither layers/<class>/vars groups nor a "
                                  "layer_names attribute)")
    mapped, sources = {}, {}
    for layer, variables in layers.items():
        for role, array in variables.items():
            key, tensor = _edgekit_tensor(layer, role, array, eps, path)
            mapped[key], sources[key] = tensor, f"{layer} {role} {tuple(array.shape)}"
    classifier = layers.get("conv_preds", {}).get("kernel")
    num_classes = int(classifier.shape[-1]) if classifier is not None else None
    return ImportedWeights("keras", f"a Keras MobileNet ({layout})", mapped, sources, "mobilenet_v1",
                           dict(REQUIRES), num_classes, KERAS_TF_MODE)


def _read_layers(handle, path: Path) -> tuple[dict[str, dict[str, np.ndarray]], str]:
    """{layer name: {role: array}} from either layout; layers without weights are left out."""
    if "layers" in handle and "layer_names" not in handle.attrs:
        return _keras3_layers(handle["layers"], path), ".weights.h5"
    root = handle["model_weights"] if "model_weights" in handle else handle
    if "layer_names" in root.attrs:
        return _legacy_layers(root), ".h5"
    return {}, ""


def _keras3_layers(group, path: Path) -> dict:
    layers = {}
    for class_and_number, layer_group in group.items():
        variables = layer_group.get("vars")
        if variables is None or not len(variables):
            if "layers" in layer_group:  # a nested model (a MobileNet inside the user's model)
                layers.update(_keras3_layers(layer_group["layers"], path))
            continue
        name = _text(variables.attrs.get("name", class_and_number))
        layer_class = re.sub(r"_\d+$", "", class_and_number)
        roles = VARIABLE_ROLES.get(layer_class)
        if roles is None or len(variables) > len(roles):
            raise weights_error(path, f"Keras layer {name} ({layer_class}, {len(variables)} variables) has no place "
                                      f"in edgekit's mobilenet_v1")
        layers[name] = {roles[int(index)]: np.asarray(variables[index]) for index in sorted(variables, key=int)}
    return layers


def _legacy_layers(root) -> dict:
    layers = {}
    for layer_name in map(_text, root.attrs["layer_names"]):
        group = root[layer_name]
        for weight_name in map(_text, group.attrs.get("weight_names", [])):
            *_, layer, role = weight_name.split("/")
            role = role.split(":")[0].replace("depthwise_kernel", "kernel")
            layers.setdefault(layer, {})[role] = np.asarray(group[weight_name])
    return layers


def _bn_epsilon(handle) -> float:
    """The batch norms' eps from a legacy ``model.save`` file's config; Keras' MobileNet uses 1e-3."""
    import json

    config = handle.attrs.get("model_config")
    if config is None:
        return KERAS_BN_EPS
    try:
        layers = json.loads(_text(config))["config"]["layers"]
        values = {layer["config"]["epsilon"] for layer in layers if layer.get("class_name") == "BatchNormalization"}
    except (ValueError, KeyError, TypeError):
        return KERAS_BN_EPS
    return values.pop() if len(values) == 1 else KERAS_BN_EPS


def _edgekit_tensor(layer: str, role: str, array: np.ndarray, eps: float, path: Path) -> tuple[str, torch.Tensor]:
    match = LAYER_NAME.fullmatch(layer)
    if match is None:
        raise weights_error(path, f"Keras layer {layer} ({role} {tuple(array.shape)}) has no place in edgekit's "
                                  f"mobilenet_v1 (only keras.applications.MobileNet's layer names map)")
    module = _module_of(match)
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if layer.endswith("_bn"):
        if role not in BN_ROLES:
            raise weights_error(path, f"Keras layer {layer} has an unexpected variable {role}")
        if role == "moving_variance":
            tensor = tensor + (eps - TORCH_BN_EPS)
        return f"{module}.bn.{BN_ROLES[role]}", tensor
    if layer == "conv_preds":
        return f"classifier.{'weight' if role == 'kernel' else role}", _linear(tensor) if role == "kernel" else tensor
    if role != "kernel":  # edgekit's convs before a batch norm have no bias
        return f"{module}.conv.{role}", tensor
    return f"{module}.conv.weight", _conv_kernel(tensor, depthwise=match[2] == "dw")


def _module_of(match: re.Match) -> str:
    if match[0].startswith("conv1"):
        return "features.stem"
    if match[0] == "conv_preds":
        return "classifier"
    return f"features.block{int(match[3])}.{match[2]}"


def _conv_kernel(kernel: torch.Tensor, depthwise: bool) -> torch.Tensor:
    if kernel.ndim != 4:
        return kernel  # the shape check names it
    if depthwise:  # (H, W, C, multiplier) -> (C * multiplier, 1, H, W)
        height, width, channels, multiplier = kernel.shape
        return kernel.permute(2, 3, 0, 1).reshape(channels * multiplier, 1, height, width).contiguous()
    return kernel.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW


def _linear(kernel: torch.Tensor) -> torch.Tensor:
    """``conv_preds``'s (1, 1, in, out) kernel (or a Dense's (in, out)) as a Linear's (out, in)."""
    return kernel.reshape(-1, kernel.shape[-1]).t().contiguous()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
