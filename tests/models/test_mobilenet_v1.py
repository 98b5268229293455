import pytest
import torch
from torch import nn

from edgekit.errors import UserInputError
from edgekit.models import _registry, create_model, list_models, register_model
from edgekit.models.mobilenet_v1 import Conv2dSame, DepthwiseSeparable, MobileNetV1, scale_channels


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny CPU forwards are faster on one thread, and two threads stall when another process holds a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _on_meta(**kwargs) -> MobileNetV1:
    with torch.device("meta"):
        return create_model("mobilenet_v1", **kwargs)


def _features_out(model: nn.Module, resolution: int) -> torch.Size:
    with torch.no_grad():
        return model.eval().forward_features(torch.empty(1, 3, resolution, resolution, device="meta")).shape


# --- registry ----------------------------------------------------------------------------------------


def test_list_models_has_builtin():
    assert "mobilenet_v1" in list_models()
    assert list_models() == sorted(list_models())


def test_unknown_model_suggests_close_name():
    with pytest.raises(UserInputError, match="unknown model 'mobilenet_v11'") as err:
        create_model("mobilenet_v11")
    assert err.value.hint == "did you mean 'mobilenet_v1'?"


def test_none_kwargs_keep_model_defaults():
    model = _on_meta(alpha=None, num_classes=None, activation=None)
    assert model.alpha == 1.0
    assert model.classifier.out_features == 1000
    assert isinstance(model.features.stem.act, nn.ReLU)


def test_unknown_option_is_user_error_with_hint():
    with pytest.raises(UserInputError, match="unknown option 'alpah'") as err:
        create_model("mobilenet_v1", alpah=0.5)
    assert err.value.hint == "did you mean 'alpha'?"


def test_register_model_warns_on_clash(monkeypatch):
    monkeypatch.setattr(_registry, "_model_entrypoints", dict(_registry._model_entrypoints))

    def tiny_net(**kwargs):
        return nn.Linear(2, kwargs.get("num_classes", 2))

    register_model(tiny_net)
    assert "tiny_net" in list_models()
    assert create_model("tiny_net", num_classes=3).out_features == 3
    with pytest.warns(UserWarning, match="registered twice"):
        register_model(tiny_net)


# --- arguments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"alpha": 0}, "alpha"),
        ({"alpha": -0.5}, "alpha"),
        ({"num_classes": 0}, "num_classes"),
        ({"in_chans": 0}, "in_chans"),
        ({"activation": "gelu"}, "activation"),
        ({"conv": "depthwise"}, "conv"),
        ({"padding": "valid"}, "padding"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(UserInputError, match=argument):
        MobileNetV1(**kwargs)


def test_channel_rounding_is_half_up():
    assert scale_channels(5, 0.5) == 3  # Python 3's round(2.5) would give 2
    assert scale_channels(1, 0.5) == 1
    assert scale_channels(32, 0.01) == 1
    assert scale_channels(1024, 0.75) == 768
    assert _on_meta(alpha=0.078125).features.stem.conv.out_channels == 3  # 32 * alpha = 2.5


# --- forward -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alpha, size, num_classes",
    [(0.25, (64, 64), 10), (0.5, (96, 96), 1000), (0.25, (33, 33), 3), (0.25, (64, 96), 7)],
)
def test_forward_shapes(alpha, size, num_classes):
    model = create_model("mobilenet_v1", alpha=alpha, num_classes=num_classes).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *size))
    assert logits.shape == (2, num_classes)
    assert model.num_features == scale_channels(1024, alpha)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs(name):
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_spatial_size_follows_resolution():
    model = _on_meta()
    assert _features_out(model, 224) == (1, 1024, 7, 7)
    assert _features_out(model, 160) == (1, 1024, 5, 5)


def test_in_chans_reaches_first_conv():
    model = create_model("mobilenet_v1", alpha=0.25, in_chans=1, num_classes=4).eval()
    first_conv = model.features.stem.conv
    assert first_conv.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 4)


@pytest.mark.parametrize("activation, act_type", [("relu", nn.ReLU), ("relu6", nn.ReLU6)])
def test_activation_choice(activation, act_type):
    model = create_model("mobilenet_v1", alpha=0.25, activation=activation).eval()
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert acts and all(type(m) is act_type for m in acts)
    with torch.no_grad():
        features = model.forward_features(1e4 * torch.randn(1, 3, 32, 32))
    assert (features.max() <= 6.0) == (activation == "relu6")


def test_blocks_are_depthwise_separable():
    model = _on_meta()
    blocks = [module for name, module in model.features.named_children() if name.startswith("block")]
    assert len(blocks) == 13 and all(isinstance(block, DepthwiseSeparable) for block in blocks)
    assert [block.dw.conv.stride[0] for block in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    for block in blocks:
        assert block.dw.conv.groups == block.dw.conv.in_channels
        assert block.pw.conv.kernel_size == (1, 1) and block.pw.conv.bias is None


def test_standard_conv_variant_has_no_depthwise_convs():
    model = _on_meta(conv="standard")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 14
    assert all(conv.groups == 1 and conv.kernel_size == (3, 3) for conv in convs)
    assert _features_out(model, 224) == (1, 1024, 7, 7)


def test_shallow_variant_drops_five_512_blocks():
    model = _on_meta(shallow=True)
    blocks = [name for name, _ in model.features.named_children() if name.startswith("block")]
    assert len(blocks) == 8
    assert model.features.block7.dw.conv.in_channels == 512
    assert model.features.block7.pw.conv.out_channels == 1024
    assert _features_out(model, 224) == (1, 1024, 7, 7)


def test_dropout_and_reset_classifier():
    model = create_model("mobilenet_v1", alpha=0.25, dropout=0.2)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.2
    model.reset_classifier(3)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert model.num_classes == 3


def test_head_reshapes_instead_of_flatten():
    graph = torch.fx.symbolic_trace(create_model("mobilenet_v1", alpha=0.25)).graph
    targets = {str(node.target) for node in graph.nodes}
    assert not any("flatten" in target.lower() for target in targets)
    assert "reshape" in targets


# --- padding -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [224, 192, 160, 128, 96])
def test_padding_modes_give_same_shapes(resolution):
    assert _features_out(_on_meta(padding="same"), resolution) == _features_out(_on_meta(), resolution)


def test_same_padding_is_a_different_function_with_the_same_weights():
    same = create_model("mobilenet_v1", alpha=0.25, padding="same").eval()
    symmetric = create_model("mobilenet_v1", alpha=0.25).eval()
    symmetric.load_state_dict(same.state_dict())
    assert isinstance(same.features.stem.conv, Conv2dSame)
    assert not isinstance(symmetric.features.stem.conv, Conv2dSame)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = same.forward_features(x), symmetric.forward_features(x)
    assert a.shape == b.shape
    assert b.abs().max() > 1e-2  # activations must not vanish through the 13 blocks (depthwise init)
    assert not torch.allclose(a, b)
