"""timm's MobileNet v1 checkpoints (.safetensors, .pth) in edgekit's mobilenet_v1: the same logits as timm's model.

What this is tested against: timm's own model code (timm 1.0.31, ``timm.create_model("mobilenetv1_100")``),
installed without its dependencies. ``import timm`` imports torchvision at module level, and the only
torchvision for torch 2.13 is a CUDA build whose ops do not register beside CPU torch. So the subprocess
that runs timm puts a stand-in ``torchvision`` first on the import path: every attribute is an inert class
and calling one raises, so were timm's model construction or forward to use torchvision, the subprocess
would fail. timm's MobileNet code itself (EfficientNet builder, blocks, BatchNormAct2d, ReLU6) runs as
published. No network: ``pretrained=False``.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgekit.errors import WeightsError
from edgekit.models import create_model
from edgekit.models.import_weights import TIMM_MOBILENETV1, detect, read_weights
from edgekit.train import load_weights

TIMM_OPTIONS = {"activation": "relu6", "padding": "symmetric"}
TOLERANCE = 1e-4

MAKE = r"""
import importlib.abc, importlib.machinery, json, os, sys, types


class _Inert(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(f"{cls.__name__}.{name}", (), {})

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"the torchvision stand-in {cls.__name__} was called")


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def attribute(name, prefix=spec.name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Inert(f"{prefix}.{name}", (), {})

        module.__getattr__ = attribute
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _StandInFinder())
import safetensors.torch, timm, torch

folder, seed = sys.argv[1], int(sys.argv[2])
torch.manual_seed(seed)
made = {"timm": timm.__version__}
for variant in ("mobilenetv1_100", "mobilenetv1_100h"):
    model = timm.create_model(variant, pretrained=False, num_classes=10).eval()
    for module in model.modules():  # statistics and affine terms away from 0/1, so that every one matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.2)
    safetensors.torch.save_file(model.state_dict(), os.path.join(folder, f"{variant}.safetensors"))
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, os.path.join(folder, f"{variant}.pth"))
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(inputs)
    torch.save({"inputs": inputs, "logits": logits}, os.path.join(folder, f"{variant}.reference.pt"))
    made[variant] = {"params": sum(p.numel() for p in model.parameters()),
                     "eps": sorted({m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)})}
cfg = timm.models.get_pretrained_cfg("mobilenetv1_100.ra4_e3600_r224_in1k")
made["pretrained_cfg"] = {"mean": list(cfg.mean), "std": list(cfg.std)}
json.dump(made, open(os.path.join(folder, "made.json"), "w"))
"""


@pytest.fixture(scope="module")
def timm_files(tmp_path_factory):
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (scripts/setup.sh --dev installs it without its dependencies)")
    folder = tmp_path_factory.mktemp("timm")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MAKE, str(folder), "0"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, json.loads((folder / "made.json").read_text())


def edgekit_model(num_classes=10, **options):
    return create_model("mobilenet_v1", alpha=1.0, num_classes=num_classes, **{**TIMM_OPTIONS, **options}).eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_checkpoints_give_timms_logits(timm_files, suffix):
    folder, made = timm_files
    path = folder / f"mobilenetv1_100{suffix}"
    assert detect(path) == "timm"
    model = edgekit_model()
    imported = load_weights(model, path, arch="mobilenet_v1", options=TIMM_OPTIONS)
    assert imported.num_classes == 10
    assert made["mobilenetv1_100"]["eps"] == [1e-5]  # PyTorch's default, as edgekit's
    assert made["mobilenetv1_100"]["params"] == sum(p.numel() for p in model.parameters())
    reference = torch.load(folder / "mobilenetv1_100.reference.pt", weights_only=True)
    with torch.no_grad():
        difference = (model(reference["inputs"]) - reference["logits"]).abs().max().item()
    assert difference < TOLERANCE, f"{suffix}: max |logit difference| {difference:.2e}"
    assert reference["logits"].abs().max() > 0.5


def test_the_recorded_preprocessing_is_timms_pretrained_cfg(timm_files):
    folder, made = timm_files
    imported = read_weights(folder / "mobilenetv1_100.safetensors")
    assert list(imported.preprocessing.mean) == made["pretrained_cfg"]["mean"]
    assert list(imported.preprocessing.std) == made["pretrained_cfg"]["std"]
    assert imported.preprocessing == TIMM_MOBILENETV1
    (folder / "config.json").write_text(json.dumps({"architecture": "mobilenetv1_100", "pretrained_cfg": {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}))  # a hub download's config beside it
    try:
        assert read_weights(folder / "mobilenetv1_100.safetensors").preprocessing.mean == (0.485, 0.456, 0.406)
    finally:
        (folder / "config.json").unlink()


def test_the_head_conv_variant_is_refused_by_its_first_tensor(timm_files):
    folder, _ = timm_files
    with pytest.raises(WeightsError, match=r"mobilenetv1_100h\.safetensors: tensor conv_head\.weight "
                                           r"\(1024, 1024, 1, 1\) of this timm checkpoint has no place in edgekit.s mobilenet_v1 \(and 5 more\)"):
        read_weights(folder / "mobilenetv1_100h.safetensors")


def test_timm_weights_need_relu6_and_fit_by_shape(timm_files, capsys):
    folder, _ = timm_files
    path = folder / "mobilenetv1_100.safetensors"
    with pytest.raises(WeightsError, match=r"model\.activation: relu6; the recipe has relu"):
        load_weights(edgekit_model(activation="relu"), path, options={"activation": "relu", "padding": "symmetric"})
    with pytest.raises(WeightsError, match=r"conv_stem\.weight does not fit features\.stem\.conv\.weight "
                                           r"\(24, 3, 3, 3\) \(the file's stem has 32 channels: α 1\)"):
        load_weights(create_model("mobilenet_v1", alpha=0.75, num_classes=10, activation="relu6"), path)
    model = edgekit_model(num_classes=4)
    load_weights(model, path, options=TIMM_OPTIONS)
    assert "has 10 classes, model.num_classes is 4: loaded the backbone" in capsys.readouterr().err
    assert model.classifier.weight.shape == (4, 1024)
