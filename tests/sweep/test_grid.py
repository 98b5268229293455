"""Grid parsing and validation: every bad axis is one line, exit 2, before any point runs."""

from __future__ import annotations

import pytest

from edgekit.cli import main
from edgekit.errors import RecipeError
from edgekit.sweep.grid import parse_axis, plan_points

from .handmade import IDS, write_recipe


def test_points_are_the_product_of_the_axes_each_a_validated_recipe(tmp_path):
    axes, points = plan_points(write_recipe(tmp_path), ["model.alpha=[0.25,0.5]", "model.resolution=[32,64]"],
                               ["train.epochs=2"])
    assert [axis.key for axis in axes] == ["model.alpha", "model.resolution"]
    assert [point.id for point in points] == IDS
    assert [(point.recipe.model.alpha, point.recipe.model.resolution) for point in points] == [
        (0.25, 32), (0.25, 64), (0.5, 32), (0.5, 64)]
    assert all(point.recipe.train.epochs == 2 for point in points)
    assert points[1].set_args == ("train.epochs=2", "model.alpha=0.25", "model.resolution=64")


def test_list_and_string_values_and_shared_last_key_parts(tmp_path):
    _axes, points = plan_points(write_recipe(tmp_path), ["export.formats=[[onnx],[onnx,tflite]]",
                                                         "train.epochs=[1]", "quantize.epochs=[0.5]"], [])
    assert [point.id for point in points] == ["formats=onnx,train.epochs=1,quantize.epochs=0.5",
                                              "formats=onnx+tflite,train.epochs=1,quantize.epochs=0.5"]
    assert points[1].recipe.export.formats == ["onnx", "tflite"]


@pytest.mark.parametrize("grid, sets, message", [
    (["model.alpah=[0.25]"], [], "--grid model.alpah=0.25: unknown key 'alpah' in model (did you mean 'alpha'?)"),
    (["modl.alpha=[0.25]"], [], "unknown key 'modl' in the recipe (did you mean 'model'?)"),
    (["model.alpha=[0.25,9]"], [], "--grid model.alpha=9: model.alpha: Input should be less than or equal to 4"),
    (["model.resolution=[32,33]"], [], "--grid model.resolution=33: model.resolution:"),
    (["quantize.method=[ptq,qta]"], [], "--grid quantize.method=\"qta\""),
    (["model.alpha=0.25"], [], "the values must be a non-empty list"),
    (["model.alpha=[]"], [], "the values must be a non-empty list"),
    (["model.alpha"], [], "expected KEY.PATH=[VALUE,...]"),
    (["model.alpha=[0.25,0.25]"], [], "the value 0.25 appears twice"),
    (["model.alpha=[0.25]", "model.alpha=[0.5]"], [], "the axis is given twice"),
    (["model.alpha=[0.25]"], ["model.alpha=1.0"], "--set model.alpha=1.0: model.alpha is also a --grid axis"),
    (["model.alpha=[0.25]"], ["model={alpha: 1.0}"], "model.alpha is also a --grid axis"),
])
def test_bad_axis_is_one_line_and_exit_2_before_any_point_runs(tmp_path, capsys, grid, sets, message):
    recipe = write_recipe(tmp_path)
    with pytest.raises(RecipeError, match=None) as raised:
        plan_points(recipe, grid, sets)
    assert message in str(raised.value)
    args = ["sweep", str(recipe), "--out", str(tmp_path / "sweep")]
    for text in grid:
        args += ["--grid", text]
    for text in sets:
        args += ["--set", text]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgekit: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "sweep").exists()  # nothing ran, nothing was created


def test_parse_axis_keeps_yaml_types():
    assert parse_axis("model.alpha=[0.25, 1]").values == (0.25, 1)
    assert parse_axis("data.augment=[true,false]").values == (True, False)
