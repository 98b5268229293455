"""Recipes: schema validation, error messages (file, line, dotted key), --set overrides, docs in sync."""

import re
from pathlib import Path

import pytest

from edgekit.cli import main
from edgekit.errors import RecipeError
from edgekit.recipe import Recipe, load_recipe
from edgekit.recipe.docs import schema_markdown

from conftest import REPO

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem


def test_default_recipe_is_the_papers_0_5_160():
    recipe = load_recipe(REPO / "recipes/mobilenet_0.5_160.yaml")
    assert (recipe.model.alpha, recipe.model.resolution, recipe.model.num_classes) == (0.5, 160, 10)
    assert load_recipe(REPO / "recipes/mobilenet_1.0_224.yaml").model.alpha == 1.0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BAD_RECIPES = {
    "unknown key": ("model:\n  alpha: 0.5\n  alpah: 0.5\n", r"r\.yaml:3: unknown key 'model\.alpah' in model \(did you mean 'alpha'\?\)"),
    "unknown section": ("modle:\n  alpha: 0.5\n", r"r\.yaml:1: unknown key 'modle' in the file \(did you mean 'model'\?\)"),
    "wrong type": ("model:\n  alpha: big\n", r"r\.yaml:2: model\.alpha: .*number.*'big'"),
    "alpha <= 0": ("model:\n  alpha: 0\n", r"r\.yaml:2: model\.alpha: .*greater than 0"),
    "resolution not /32": ("model:\n  resolution: 100\n", r"r\.yaml:2: model\.resolution: resolution 100 is not a multiple of 32"),
    "bad choice": ("quantize:\n  backend: tensorrt\n", r"r\.yaml:2: quantize\.backend: .*'nncf'.*'tensorrt'"),
    "bad list item": ("export:\n  formats: [onnx, coreml]\n", r"r\.yaml:2: export\.formats\.1: .*'coreml'"),
    "malformed yaml": ("model:\n  alpha: [0.5\n", r"r\.yaml:\d+: malformed YAML"),
    "not a mapping": ("- model\n", r"r\.yaml: a recipe must be a mapping"),
}


@pytest.mark.parametrize("name", BAD_RECIPES)
def test_bad_recipe_gives_one_line_error_with_location(tmp_path, name):
    text, pattern = BAD_RECIPES[name]
    with pytest.raises(RecipeError) as caught:
        load_recipe(write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(pattern, message), message


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match=r"nope\.yaml: recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_any_resolution_when_explicitly_allowed(tmp_path):
    recipe = load_recipe(write(tmp_path, "model:\n  resolution: 100\n  allow_any_resolution: true\n"))
    assert recipe.model.resolution == 100


@pytest.mark.parametrize("name", BAD_RECIPES)
def test_cli_exits_2_without_traceback(tmp_path, capsys, name):
    path = write(tmp_path, BAD_RECIPES[name][0])
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgekit: error: ") and "Traceback" not in err and err.count("\n") == 1


def test_cli_missing_file_exits_2(tmp_path, capsys):
    assert main(["build", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: recipe file not found" in capsys.readouterr().err


def test_set_overrides_fields_with_yaml_values():
    recipe = load_recipe(REPO / "recipes/mobilenet_0.5_160.yaml",
                         ["model.alpha=0.75", "model.shallow=true", "export.formats=[onnx]", "gate.baseline=b.json"])
    assert recipe.model.alpha == 0.75 and recipe.model.shallow is True
    assert recipe.export.formats == ["onnx"] and recipe.gate.baseline == "b.json"
    assert recipe.model.resolution == 160  # untouched


def test_set_creates_a_section_the_file_lacks(tmp_path):
    recipe = load_recipe(write(tmp_path, "model:\n  alpha: 0.5\n"), ["train.lr=0.1"])
    assert recipe.train.lr == 0.1


@pytest.mark.parametrize("override, pattern", [
    ("model.alpah=1", r"--set model\.alpah=1: unknown key 'alpah' in model \(did you mean 'alpha'\?\)"),
    ("model.alpha=-1", r"--set model\.alpha=-1: model\.alpha: .*greater than 0"),
    ("model.resolution=100", r"--set model\.resolution=100: model\.resolution: resolution 100 is not a multiple of 32"),
    ("model.alpha.x=1", r"'model\.alpha' is not a section"),
    ("model.alpha", r"expected KEY\.PATH=VALUE"),
])
def test_set_is_validated_like_the_file(override, pattern):
    with pytest.raises(RecipeError, match=pattern):
        load_recipe(REPO / "recipes/mobilenet_0.5_160.yaml", [override])


def test_schema_defaults_validate_and_forbid_extras():
    assert Recipe().model.alpha == 1.0
    with pytest.raises(Exception):
        Recipe.model_validate({"model": {"nope": 1}})


def test_readme_schema_table_is_generated_from_the_schema():
    readme = (REPO / "README.md").read_text()
    table = schema_markdown()
    assert table in readme, "README's recipe table is stale: paste the output of `edgekit schema`"
    assert (REPO / "docs/recipe.md").read_text().count(table) == 1
    for section in ("model", "data", "train", "quantize", "export", "evaluate", "profile", "gate"):
        assert f"`{section}." in table
