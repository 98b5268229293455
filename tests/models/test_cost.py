import json

import pytest
import torch
from torch import nn

from edgekit.errors import UserInputError
from edgekit.models import create_model
from edgekit.models.cost import ModelCost, format_table, profile_model


def _meta_model(**kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model("mobilenet_v1", **kwargs)


def _profile(resolution: int = 224, **kwargs) -> ModelCost:
    return profile_model(_meta_model(**kwargs), resolution)


@pytest.fixture(scope="module")
def baseline() -> ModelCost:
    """1.0 MobileNet-224, ImageNet head."""
    return _profile()


# (label, model kwargs, resolution, paper million mult-adds, paper million params as printed)
PAPER = [
    ("1.0-224", {}, 224, 569, "4.2"),
    ("0.75-224", {"alpha": 0.75}, 224, 325, "2.6"),
    ("0.5-224", {"alpha": 0.5}, 224, 149, "1.3"),
    ("0.25-224", {"alpha": 0.25}, 224, 41, "0.5"),
    ("1.0-192", {}, 192, 418, "4.2"),
    ("1.0-160", {}, 160, 290, "4.2"),
    ("1.0-128", {}, 128, 186, "4.2"),
    ("0.5-160", {"alpha": 0.5}, 160, 76, "1.32"),
    ("conv-mobilenet", {"conv": "standard"}, 224, 4866, "29.3"),
    ("shallow", {"shallow": True}, 224, 307, "2.9"),
]


@pytest.mark.parametrize("label, kwargs, resolution, paper_macs, paper_params", PAPER, ids=[row[0] for row in PAPER])
def test_paper_configurations(label, kwargs, resolution, paper_macs, paper_params):
    cost = _profile(resolution, num_classes=1000, **kwargs)
    assert cost.macs / 1e6 == pytest.approx(paper_macs, rel=0.01)
    # The paper prints params to 1-2 decimals (0.25 MobileNet: 0.465 M prints as 0.5), so compare at that precision.
    decimals = len(paper_params.split(".")[1])
    assert round(cost.params / 1e6, decimals) == pytest.approx(float(paper_params))


# Table 1 (type / stride, filter shape, input size), with the last depthwise conv at stride 1 as in the code.
TABLE_1 = [
    ("Conv 3x3", 2, "3x3x3x32", [224, 224, 3]),
    ("Conv DW 3x3", 1, "3x3x32 dw", [112, 112, 32]),
    ("Conv 1x1", 1, "1x1x32x64", [112, 112, 32]),
    ("Conv DW 3x3", 2, "3x3x64 dw", [112, 112, 64]),
    ("Conv 1x1", 1, "1x1x64x128", [56, 56, 64]),
    ("Conv DW 3x3", 1, "3x3x128 dw", [56, 56, 128]),
    ("Conv 1x1", 1, "1x1x128x128", [56, 56, 128]),
    ("Conv DW 3x3", 2, "3x3x128 dw", [56, 56, 128]),
    ("Conv 1x1", 1, "1x1x128x256", [28, 28, 128]),
    ("Conv DW 3x3", 1, "3x3x256 dw", [28, 28, 256]),
    ("Conv 1x1", 1, "1x1x256x256", [28, 28, 256]),
    ("Conv DW 3x3", 2, "3x3x256 dw", [28, 28, 256]),
    ("Conv 1x1", 1, "1x1x256x512", [14, 14, 256]),
    *[("Conv DW 3x3", 1, "3x3x512 dw", [14, 14, 512]), ("Conv 1x1", 1, "1x1x512x512", [14, 14, 512])] * 5,
    ("Conv DW 3x3", 2, "3x3x512 dw", [14, 14, 512]),
    ("Conv 1x1", 1, "1x1x512x1024", [7, 7, 512]),
    ("Conv DW 3x3", 1, "3x3x1024 dw", [7, 7, 1024]),  # Table 1 prints "s2" here: a typo
    ("Conv 1x1", 1, "1x1x1024x1024", [7, 7, 1024]),
    ("Avg Pool", 1, "Pool 7x7", [7, 7, 1024]),
    ("Fully Connected", 1, "1024x1000", [1, 1, 1024]),
]


def test_layers_match_table_1(baseline):
    rows = [(layer["type"], layer["stride"], layer["filter_shape"], layer["input_size"]) for layer in baseline.layers]
    assert rows == TABLE_1
    assert baseline.layers[0]["name"] == "features.stem.conv"
    assert baseline.layers[-1]["output_size"] == [1, 1, 1000]
    assert baseline.layers[-2]["macs"] == baseline.layers[-2]["params"] == 0


# Table 2 percentages; the paper's Conv 3x3 mult-adds (1.19%) is checked separately below.
TABLE_2 = {
    "Conv 1x1": (94.86, 74.59),
    "Conv DW 3x3": (3.06, 1.06),
    "Conv 3x3": (None, 0.02),
    "Fully Connected": (0.18, 24.33),
}


@pytest.mark.parametrize("layer_type", TABLE_2)
def test_shares_match_table_2(baseline, layer_type):
    macs_pct, params_pct = TABLE_2[layer_type]
    entry = baseline.by_type[layer_type]
    if macs_pct is not None:
        assert 100 * entry["macs_share"] == pytest.approx(macs_pct, abs=0.1)
    assert 100 * entry["params_share"] == pytest.approx(params_pct, abs=0.1)


def test_conv3x3_share_is_1_91_not_the_papers_1_19(baseline):
    # 3*3*3*32 * 112*112 = 10.84 M of 568.7 M. With 1.91 the four Table 2 rows sum to 100%; with 1.19 to 99.29%.
    assert baseline.by_type["Conv 3x3"]["macs"] == 10_838_016
    assert 100 * baseline.by_type["Conv 3x3"]["macs_share"] == pytest.approx(1.906, abs=0.005)
    assert sum(entry["macs_share"] for entry in baseline.by_type.values()) == pytest.approx(1.0)


def test_block_ratio_equals_formula(baseline):
    assert len(baseline.blocks) == 13
    for block in baseline.blocks:
        assert block["ratio"] == pytest.approx(block["formula"], rel=1e-9)
        assert block["macs"] < block["standard_conv_macs"]
    last = baseline.blocks[-1]
    assert (last["dw"], last["pw"]) == ("features.block13.dw.conv", "features.block13.pw.conv")
    assert last["formula"] == pytest.approx(1 / 1024 + 1 / 9)  # the paper's worked example, ~0.112


def test_standard_conv_model_has_no_separable_blocks():
    assert _profile(conv="standard").blocks == []


def test_counts_come_from_the_model(baseline):
    ten_classes = _profile(num_classes=10)
    fc = ten_classes.layers[-1]
    assert fc["params"] == 1024 * 10 + 10 and fc["macs"] == 1024 * 10
    assert baseline.params - ten_classes.params == (1000 - 10) * (1024 + 1)
    assert baseline.macs - ten_classes.macs == (1000 - 10) * 1024
    assert _profile(alpha=0.5).layers[0]["filter_shape"] == "3x3x3x16"


def test_bn_params_reported_separately(baseline):
    convs = [layer for layer in baseline.layers if layer["type"].startswith("Conv")]
    channels = sum(layer["output_size"][2] for layer in convs)
    assert baseline.bn_params == 2 * channels == 21_888


def test_non_square_resolution_and_in_chans():
    cost = profile_model(_meta_model(in_chans=1), (160, 224), in_chans=1)
    assert cost.layers[0]["input_size"] == [160, 224, 1]
    assert cost.layers[-2]["filter_shape"] == "Pool 5x7"


@pytest.mark.parametrize("resolution", [0, -224, (224,), "224", 1.5])
def test_bad_resolution_is_user_error(resolution):
    with pytest.raises(UserInputError, match="resolution"):
        profile_model(_meta_model(), resolution)


def test_generic_conv_labels():
    model = nn.Sequential(nn.Conv2d(4, 8, 5, stride=1, padding=2, groups=2), nn.Conv2d(8, 8, 3, groups=8))
    first, second = profile_model(model, 10, in_chans=4).layers
    assert (first["type"], first["filter_shape"], first["macs"]) == ("Conv 5x5", "5x5x2x8", 5 * 5 * 2 * 8 * 10 * 10)
    assert (second["type"], second["filter_shape"], second["output_size"]) == ("Conv DW 3x3", "3x3x8 dw", [8, 8, 8])


def test_profiling_leaves_the_model_untouched():
    model = create_model("mobilenet_v1", alpha=0.25).train()
    profile_model(model, 64)
    assert model.training
    assert model.classifier.weight.device.type == "cpu"
    assert all(not module._forward_hooks for module in model.modules())


def test_json_round_trip(baseline):
    data = json.loads(json.dumps(baseline.to_json()))
    assert set(data) == {"macs", "params", "layers", "by_type", "blocks", "bn_params"}
    assert data["macs"] == baseline.macs == sum(layer["macs"] for layer in data["layers"])
    assert set(data["layers"][0]) == {
        "name", "type", "stride", "filter_shape", "input_size", "output_size", "macs", "params",
    }


def test_format_table(baseline):
    text = format_table(baseline)
    for expected in ("Type / Stride", "Filter Shape", "Mult-Adds", "Conv DW 3x3 / s2", "1x1x1024x1024", "224x224x3"):
        assert expected in text
    assert "1.91%" in text and "94.86%" in text
    assert f"{baseline.macs:,}" in text and "568.7 M" in text
    assert "0.1121" in text  # block 13: 1/1024 + 1/9
    assert all(layer["name"] in text for layer in baseline.layers)
