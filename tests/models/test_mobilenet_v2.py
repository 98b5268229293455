"""MobileNet v2: the paper's Table 2, the width multiplier's rounding, the cost model against the published
figures, the registry and recipe options, and the v2 table in docs/model.md."""

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from edgekit.errors import UserInputError
from edgekit.models import create_model, list_models
from edgekit.models.cost import format_grid_table, profile_model
from edgekit.models.mobilenet_v2 import InvertedResidual, MobileNetV2, block_specs, head_channels, make_divisible
from edgekit.recipe import validate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "model.md"


def _on_meta(**kwargs) -> MobileNetV2:
    with torch.device("meta"):
        return create_model("mobilenet_v2", **kwargs)


def _blocks(model: MobileNetV2) -> list[InvertedResidual]:
    return [module for module in model.features if isinstance(module, InvertedResidual)]


# --- architecture --------------------------------------------------------------------------------------


# Table 2: input size of each row, the operator, (t, c, n, s).
TABLE_2 = [
    ((224, 224, 3), "conv2d", (None, 32, 1, 2)),
    ((112, 112, 32), "bottleneck", (1, 16, 1, 1)),
    ((112, 112, 16), "bottleneck", (6, 24, 2, 2)),
    ((56, 56, 24), "bottleneck", (6, 32, 3, 2)),
    ((28, 28, 32), "bottleneck", (6, 64, 4, 2)),
    ((14, 14, 64), "bottleneck", (6, 96, 3, 1)),
    ((14, 14, 96), "bottleneck", (6, 160, 3, 2)),
    ((7, 7, 160), "bottleneck", (6, 320, 1, 1)),
    ((7, 7, 320), "conv2d 1x1", (None, 1280, 1, 1)),
]


def test_table_2_rows_at_224():
    """Each Table 2 row's input size and each group's blocks, read off the traced convs."""
    cost = profile_model(_on_meta(), 224)
    convs = [layer for layer in cost.layers if layer["type"].startswith("Conv")]
    assert convs[0]["input_size"] == [224, 224, 3] and convs[0]["output_size"] == [112, 112, 32]
    assert convs[0]["stride"] == 2 and convs[0]["filter_shape"] == "3x3x3x32"
    blocks_in = {}
    for layer in convs:
        match = re.match(r"features\.block(\d+)\.", layer["name"])
        if match:
            blocks_in.setdefault(int(match.group(1)), layer["input_size"])
    first_block = 1
    for input_size, operator, (t, c, n, s) in TABLE_2[1:-1]:
        assert blocks_in[first_block] == list(input_size), (operator, t, c, n, s)
        first_block += n
    assert first_block - 1 == 17 == len(blocks_in)
    head = next(layer for layer in convs if layer["name"] == "features.head.conv")
    assert head["input_size"] == [7, 7, 320] and head["output_size"] == [7, 7, 1280] and head["filter_shape"] == "1x1x320x1280"
    pool = next(layer for layer in cost.layers if layer["type"] == "Avg Pool")
    assert pool["input_size"] == [7, 7, 1280]
    assert cost.layers[-1]["type"] == "Fully Connected" and cost.layers[-1]["filter_shape"] == "1280x1000"


def test_bottleneck_blocks():
    blocks = _blocks(_on_meta())
    # t = 1: no expansion layer; the depthwise conv runs on the stem's 32 channels
    assert isinstance(blocks[0].expand, nn.Identity) and blocks[0].dw.conv.in_channels == 32
    for block in blocks[1:]:
        expand = block.expand.conv
        assert expand.kernel_size == (1, 1) and expand.out_channels == 6 * expand.in_channels
        assert isinstance(block.expand.act, nn.ReLU6)
    for block in blocks:
        dw = block.dw.conv
        assert dw.kernel_size == (3, 3) and dw.groups == dw.in_channels == dw.out_channels
        assert isinstance(block.dw.act, nn.ReLU6)
        assert isinstance(block.project.act, nn.Identity)  # the linear bottleneck
        assert block.project.conv.kernel_size == (1, 1)
    # a residual add wherever the stride is 1 and the width unchanged: n - 1 per group
    assert [block.has_residual for block in blocks] == [
        False, False, True, False, True, True, False, True, True, True, False, True, True, False, True, True, False]


def test_residual_add_is_in_the_forward():
    torch.manual_seed(0)
    block = InvertedResidual(8, 8, 1, 6).eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.project(block.dw(block.expand(x))))
        strided = InvertedResidual(8, 8, 2, 6).eval()
        assert not strided.has_residual and strided(x).shape == (1, 8, 3, 3)


@pytest.mark.parametrize("resolution", [32, 100, 225])
def test_any_resolution(resolution):
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", alpha=0.35, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, resolution, resolution))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_relu6_is_the_default_and_relu_can_be_chosen():
    assert all(isinstance(m, nn.ReLU6) for m in _on_meta().modules() if isinstance(m, (nn.ReLU, nn.ReLU6)))
    assert not any(isinstance(m, nn.ReLU6) for m in _on_meta(activation="relu").modules())


# --- width multiplier ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, rounded", [
    (11.2, 16),   # 0.35 x 32: the nearest multiple of 8 is 8, more than 10% below, so one step up
    (5.6, 8),     # 0.35 x 16: never below 8
    (8.4, 8), (12.0, 16), (19.2, 24), (22.4, 24), (33.6, 32), (56.0, 56), (112.0, 112), (1792.0, 1792),
    (36.0, 40),   # a tie rounds up
    (100.0, 104),
])
def test_make_divisible(value, rounded):
    assert make_divisible(value) == rounded
    assert make_divisible(value) % 8 == 0 and make_divisible(value) >= 0.9 * value


@pytest.mark.parametrize("alpha", [0.35, 0.5, 0.75, 1.0, 1.3, 1.4])
def test_every_width_is_a_multiple_of_8(alpha):
    model = _on_meta(alpha=alpha)
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    assert all(conv.out_channels % 8 == 0 for conv in convs)
    assert model.features.stem.conv.out_channels == make_divisible(32 * alpha)


def test_widths_at_0_35():
    specs = block_specs(0.35)
    assert specs[0][0] == 16  # stem
    assert [spec[1] for spec in specs] == [8, 8, 8, 16, 16, 16, 24, 24, 24, 24, 32, 32, 32, 56, 56, 56, 112]


@pytest.mark.parametrize("alpha, channels", [(0.35, 1280), (0.5, 1280), (1.0, 1280), (1.3, 1664), (1.4, 1792)])
def test_last_conv_scales_only_above_1(alpha, channels):
    assert head_channels(alpha) == channels
    model = _on_meta(alpha=alpha, num_classes=10)
    assert model.features.head.conv.out_channels == channels == model.classifier.in_features


# --- cost model: the paper and the paper's code ---------------------------------------------------------


def test_paper_1_0_224_mult_adds_and_exact_params():
    cost = profile_model(_on_meta(), 224)
    assert cost.macs == 300_774_272 and cost.macs / 1e6 == pytest.approx(300, rel=0.01)
    # conv weights + FC weight and bias (BN folds into the convs): the paper prints 3.4 M
    assert cost.params == 3_470_760 and math.floor(cost.params / 1e5) / 10 == 3.4
    # ~3.5 M: what frameworks count with BN's scale and shift (and, in Keras' total, its running statistics)
    assert cost.bn_params == 34_112 and cost.params + cost.bn_params == 3_504_872
    assert cost.params + 2 * cost.bn_params == 3_538_984


def test_paper_1_4_224():
    # Table 4: 585 M mult-adds; 6.9 M params there, 6.06 M in the paper's code's table (and here)
    cost = profile_model(_on_meta(alpha=1.4), 224)
    assert cost.macs / 1e6 == pytest.approx(585, rel=0.01)
    assert round(cost.params / 1e6, 2) == 6.06


# The reference code's published table (TF-slim nets/mobilenet/README.md, 1001 classes): million MACs as
# printed (cut, not rounded: every computed value lies in [printed, printed + 1)), million params.
PUBLISHED = {
    (1.4, 224): (582, 6.06), (1.0, 224): (300, 3.47), (1.0, 192): (221, 3.47), (1.0, 160): (154, 3.47),
    (1.0, 128): (99, 3.47), (1.0, 96): (56, 3.47), (0.75, 224): (209, 2.61), (0.75, 192): (153, 2.61),
    (0.75, 160): (107, 2.61), (0.75, 128): (69, 2.61), (0.75, 96): (39, 2.61), (0.5, 224): (97, 1.95),
    (0.5, 192): (71, 1.95), (0.5, 160): (50, 1.95), (0.5, 128): (32, 1.95), (0.5, 96): (18, 1.95),
    (0.35, 224): (59, 1.66), (0.35, 192): (43, 1.66), (0.35, 160): (30, 1.66), (0.35, 128): (20, 1.66),
    (0.35, 96): (11, 1.66),
}


@pytest.mark.parametrize("alpha, resolution", list(PUBLISHED), ids=[f"{a}-{r}" for a, r in PUBLISHED])
def test_published_grid(alpha, resolution):
    macs_m, params_m = PUBLISHED[alpha, resolution]
    cost = profile_model(_on_meta(alpha=alpha, num_classes=1001), resolution)
    assert math.floor(cost.macs / 1e6) == macs_m
    assert round(cost.params / 1e6, 2) == params_m


def test_docs_table_is_the_codes():
    """docs/model.md's v2 grid is what format_grid_table computes now."""
    text = DOCS.read_text()
    begin, end = "<!-- mobilenet_v2 grid: begin -->\n", "<!-- mobilenet_v2 grid: end -->"
    assert begin in text and end in text
    documented = text.split(begin, 1)[1].split(end, 1)[0]
    expected = format_grid_table("mobilenet_v2", [0.35, 0.5, 0.75, 1.0, 1.4], [96, 128, 160, 192, 224])
    assert documented == expected, "regenerate the table with edgekit.models.cost.format_grid_table"


# --- registry, options, recipes --------------------------------------------------------------------------


def test_registered_with_its_own_options():
    from edgekit.models import model_options

    assert "mobilenet_v2" in list_models()
    options = model_options("mobilenet_v2")
    assert set(options.model_fields) == {"alpha"} and options.default_activation == "relu6"


def test_recipe_defaults_to_relu6_and_keeps_an_explicit_activation():
    recipe = validate({"model": {"arch": "mobilenet_v2", "alpha": 0.35}}, source="<test>")
    assert recipe.model.activation == "relu6" and recipe.model.options == {"alpha": 0.35}
    assert validate({"model": {"arch": "mobilenet_v2", "activation": "relu"}}, source="<test>").model.activation == "relu"
    assert validate({"model": {"alpha": 0.5}}, source="<test>").model.activation == "relu"  # v1 unchanged


def test_v1_only_option_is_refused_for_v2():
    from edgekit.errors import RecipeError

    with pytest.raises(RecipeError, match="shallow") as caught:
        validate({"model": {"arch": "mobilenet_v2", "shallow": True}}, source="<test>")
    assert "mobilenet_v1" in str(caught.value)


def test_shipped_recipe_builds_the_model():
    from edgekit.recipe import load_recipe
    from edgekit.stages import model_from_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "mobilenet_v2_0.35_96.yaml")
    model = model_from_recipe(recipe)
    assert isinstance(model, MobileNetV2) and model.alpha == 0.35 and model.num_classes == 10
    assert isinstance(model.features.stem.act, nn.ReLU6)


@pytest.mark.parametrize("kwargs, argument", [
    ({"alpha": 0}, "alpha"), ({"alpha": True}, "alpha"), ({"num_classes": 0}, "num_classes"),
    ({"in_chans": 0}, "in_chans"), ({"activation": "gelu"}, "activation"), ({"dropout": 1.0}, "dropout"),
])
def test_bad_arguments_are_user_errors(kwargs, argument):
    with pytest.raises(UserInputError, match=f"mobilenet_v2: {argument}"):
        create_model("mobilenet_v2", **kwargs)


def test_unknown_option_is_user_error_with_hint():
    with pytest.raises(UserInputError, match="unknown option 'alpah'") as caught:
        create_model("mobilenet_v2", alpah=0.5)
    assert caught.value.hint == "did you mean 'alpha'?"


def test_reset_classifier():
    model = create_model("mobilenet_v2", alpha=0.35, num_classes=1000)
    model.reset_classifier(10)
    assert model.classifier.out_features == 10 and model.num_classes == 10
    with pytest.raises(UserInputError, match="num_classes"):
        model.reset_classifier(0)
