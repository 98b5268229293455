"""Recipes: schema validation, error messages (file, line, dotted key), --set overrides, docs in sync,
hostile YAML, number ranges, build names, load-time path checks and per-family model options."""

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from pydantic import Field, ValidationError
from torch import nn

from edgekit.cli import main
from edgekit.errors import RecipeError
from edgekit.models import _registry, register_model
from edgekit.recipe import Recipe, load_recipe
from edgekit.recipe.docs import schema_markdown
from edgekit.recipe.schema import ModelOptions

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


@pytest.fixture(autouse=True)
def _at_the_repository(monkeypatch):
    """Relative recipe paths (the default devices/host.yaml, baselines/smoke.json) start at the working directory."""
    monkeypatch.chdir(REPO)


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
                         ["model.alpha=0.75", "model.shallow=true", "export.formats=[onnx]",
                          "gate.baseline=baselines/smoke.json"])
    assert recipe.model.alpha == 0.75 and recipe.model.shallow is True
    assert recipe.export.formats == ["onnx"] and recipe.gate.baseline == "baselines/smoke.json"
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
    # issue 16: the same ranges, finiteness and strict integers as in a file
    ("train.epochs=inf", r"--set train\.epochs=inf: train\.epochs: must be a finite number"),
    ("model.alpha=nan", r"--set model\.alpha=nan: model\.alpha: must be a finite number"),
    ("train.lr=1e300", r"--set train\.lr=1e300: train\.lr: .*less than or equal to 1000000\b"),
    ("model.num_classes=1e9", r"--set model\.num_classes=1e9: model\.num_classes: .*valid integer"),
    ("profile.threads=[true]", r"--set profile\.threads=\[true\]: profile\.threads\.0: .*valid integer"),
    ("evaluate.threads=1000000000", r"evaluate\.threads: .*less than or equal to 256"),
    ("data.mean=[*x]", r"--set data\.mean=\[\*x\]:1: malformed YAML: found undefined alias"),
])
def test_set_is_validated_like_the_file(override, pattern):
    with pytest.raises(RecipeError, match=pattern) as caught:
        load_recipe(REPO / "recipes/mobilenet_0.5_160.yaml", [override])
    assert "\n" not in str(caught.value)


def test_schema_defaults_validate_and_forbid_extras():
    assert Recipe().model.alpha == 1.0
    with pytest.raises(Exception):
        Recipe.model_validate({"model": {"nope": 1}})


def test_readme_schema_table_is_generated_from_the_schema():
    readme = (REPO / "README.md").read_text()
    table = schema_markdown()
    between_markers = readme.split("<!-- edgekit schema: begin -->\n")[1].split("\n<!-- edgekit schema: end -->")[0]
    assert between_markers == table, "README's recipe table is stale: paste the output of `edgekit schema`"
    assert (REPO / "docs/recipe.md").read_text().count(table) == 1
    for section in ("model", "data", "train", "quantize", "export", "evaluate", "profile", "gate"):
        assert f"`{section}." in table
    assert "Options of `model.arch: mobilenet_v1`" in table and "| `model.alpha` | float, 0 < x ≤ 4 |" in table


# --- reading YAML: bounded, unambiguous, one line per problem (issue 16) ------------------------------

BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9) if previous else ', '.join(['lol'] * 9)}]\n"
    for previous, name in zip([None, *"abcdefgh"], "abcdefghi")
)


def one_line_error(path, overrides=()) -> str:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, overrides)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_duplicate_key_names_both_lines(tmp_path):
    message = one_line_error(write(tmp_path, "model:\n  alpha: 0.5\n  resolution: 160\n  alpha: 0.75\n"))
    assert re.search(r"r\.yaml:4: duplicate key 'model\.alpha' \(first at line 2, again at line 4\)", message)


def test_duplicate_key_in_a_flow_mapping_and_in_a_set_value(tmp_path):
    assert "duplicate key 'model.alpha'" in one_line_error(write(tmp_path, "model: {alpha: 0.5, alpha: 1}\n"))
    message = one_line_error(write(tmp_path, "{}\n"), ["data.mean=[{a: 1, a: 2}]"])
    assert message.startswith("--set data.mean=[{a: 1, a: 2}]:1: duplicate key 'data.mean.0.a'")


def test_merge_keys_are_not_duplicates(tmp_path):
    text = "base: &base {lr: 0.1, epochs: 1}\n"
    recipe_data = yaml.safe_load(text + "train:\n  <<: *base\n  lr: 0.2\n")
    assert recipe_data["train"] == {"lr": 0.2, "epochs": 1}
    # the same merge inside a recipe's own section loads (and the override wins, as YAML says)
    recipe = load_recipe(write(tmp_path, "train:\n  <<: {lr: 0.1, epochs: 1}\n  lr: 0.2\n"))
    assert (recipe.train.lr, recipe.train.epochs) == (0.2, 1)


def test_alias_bomb_is_refused_at_once(tmp_path):
    path = write(tmp_path, BILLION_LAUGHS)
    started = time.monotonic()
    message = one_line_error(path)
    assert time.monotonic() - started < 1.0
    assert re.search(r"r\.yaml:\d+: aliases expand to more than 10000 nodes", message)


def test_alias_bomb_in_a_set_value_is_refused(tmp_path):
    inline = "[" + ", ".join(f"&{n} [{', '.join([f'*{p}'] * 9) if p else '1, 1'}]" for p, n in zip([None, *"abcdefg"], "abcdefgh")) + "]"
    started = time.monotonic()
    message = one_line_error(write(tmp_path, "{}\n"), [f"data.mean={inline}"])
    assert time.monotonic() - started < 1.0 and "aliases expand to more than" in message


def test_aliases_within_the_budget_still_work(tmp_path):
    recipe = load_recipe(write(tmp_path, "data:\n  mean: &m [0.4, 0.4, 0.4]\n  std: *m\n"))
    assert recipe.data.std == [0.4, 0.4, 0.4]


HOSTILE_YAML = [
    ("model: &a\n  x: [*a]\n", r"r\.yaml:1: an alias refers to the node that contains it"),
    ("[" * 5000 + "]" * 5000 + "\n", r"r\.yaml:1: nested deeper than 64 levels"),
    ("seed: " + "9" * 5000 + "\n", r"r\.yaml:1: a number of 5000 characters \(at most 100\)"),
    ("name: a\0b\n", r"r\.yaml:1: malformed YAML: character 0x0000 is not allowed"),
    ("a: 1\n" * 20_000, r"r\.yaml:\d+: more than 10000 values"),
]


def test_binary_file_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "photo.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "photo.yaml: not a UTF-8 text file (byte 0x89 at offset 0)" in err


def test_file_size_is_capped(tmp_path):
    path = write(tmp_path, "# padding\n" * 110_000)
    assert "r.yaml: the recipe file is larger than 1 MB" in one_line_error(path)


def test_a_folder_is_not_a_recipe(tmp_path):
    assert "not a regular file" in one_line_error(tmp_path)


def test_device_profiles_share_the_safe_reader(tmp_path):
    from edgekit.profile.devices import load_device_profile
    from edgekit.targets.base import DeviceProfileError

    binary, duplicate, bomb = tmp_path / "bin.yaml", tmp_path / "dup.yaml", tmp_path / "bomb.yaml"
    binary.write_bytes(b"\xff\xfe\x00name: x\n")
    duplicate.write_text("name: a\nkind: local\nname: b\n")
    bomb.write_text(BILLION_LAUGHS)
    for path, pattern in [(binary, r"bin\.yaml: not a UTF-8 text file"),
                          (duplicate, r"dup\.yaml:3: duplicate key 'name' \(first at line 1"),
                          (bomb, r"bomb\.yaml:\d+: aliases expand")]:
        with pytest.raises(DeviceProfileError, match=pattern):
            load_device_profile(path)


def test_echoed_values_are_cut_to_an_excerpt(tmp_path):
    message = one_line_error(write(tmp_path, f"model:\n  activation: {'x' * 100_000}\n"))
    assert "model.activation" in message and "(100002 characters)" in message and len(message) < 300
    override = "train.optimizer=" + "y" * 100_000
    message = one_line_error(write(tmp_path, "{}\n"), [override])
    assert message.startswith("--set train.optimizer=yyy") and len(message) < 400


# --- numbers: finite, bounded, strict integers -----------------------------------------------------

NUMBERS = [
    ("train:\n  epochs: .inf\n", r"r\.yaml:2: train\.epochs: must be a finite number \(got inf\)"),
    ("model:\n  alpha: .nan\n", r"r\.yaml:2: model\.alpha: must be a finite number \(got nan\)"),
    ("train:\n  lr: 1e400\n", r"r\.yaml:2: train\.lr: must be a finite number"),
    ("train:\n  lr: 1e300\n", r"r\.yaml:2: train\.lr: .*less than or equal to 1000000 \(got '1e300'\)"),
    ("train:\n  epochs: 1.0e+300\n", r"train\.epochs: .*less than or equal to 1000"),
    ("gate:\n  max_size_increase: -.inf\n", r"gate\.max_size_increase: must be a finite number"),
    ("data:\n  std: [0.5, .nan, 0.5]\n", r"data\.std\.1: must be a finite number"),
    ("model:\n  num_classes: 1000000000\n", r"model\.num_classes: .*less than or equal to 100000"),
    ("model:\n  num_classes: 1e9\n", r"model\.num_classes: .*valid integer \(got '1e9'\)"),
    ("model:\n  num_classes: 10.0\n", r"model\.num_classes: .*valid integer \(got 10\.0\)"),
    ("profile:\n  threads: [true]\n", r"r\.yaml:2: profile\.threads\.0: .*valid integer \(got True\)"),
    ("profile:\n  threads: [1000000000]\n", r"profile\.threads\.0: .*less than or equal to 256"),
    ("profile:\n  threads: []\n", r"profile\.threads: .*at least 1 item"),
    ("evaluate:\n  threads: true\n", r"evaluate\.threads: .*valid integer"),
    ("train:\n  threads: 0\n", r"train\.threads: .*greater than or equal to 1"),
    ("train:\n  batch_size: 1000000\n", r"train\.batch_size: .*less than or equal to 4096"),
    ("model:\n  alpha: true\n", r"model\.alpha: must be a number, not true/false"),
    ("seed: -1\n", r"seed: .*greater than or equal to 0"),
]


def test_in_range_numbers_load(tmp_path):
    recipe = load_recipe(write(tmp_path, "train:\n  lr: 1e-3\n  epochs: 0.5\n  threads: 256\nprofile:\n  threads: [1, 4]\n"))
    assert (recipe.train.lr, recipe.train.epochs, recipe.train.threads, recipe.profile.threads) == (0.001, 0.5, 256, [1, 4])


# --- the build name ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "x..y", ".hidden", "-rf", "a\0b", "", "a b", "x" * 101])
def test_name_must_be_plain(tmp_path, name):
    message = one_line_error(write(tmp_path, "{}\n"), [f"name={json.dumps(name)}"])
    assert re.search(r"--set name=.*: name: must be a plain name", message)


@pytest.mark.parametrize("name", ["mobilenet_0.5_160", "smoke", "run-1+qat", "Größe"])
def test_plain_names_load(tmp_path, name):
    assert load_recipe(write(tmp_path, f"name: {name}\n")).name == name


def test_a_hidden_file_stem_is_not_a_name(tmp_path):
    path = tmp_path / ".hidden.yaml"
    path.write_text("{}\n")
    assert re.search(r"\.hidden\.yaml: name: must be a plain name.*\(got '\.hidden'\)", one_line_error(path))


def test_cli_refuses_a_path_name_before_any_build(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "profile:\n  devices: []\n")
    assert main(["build", str(path), "--set", "name=../../escaped"]) == 2
    assert "name: must be a plain name" in capsys.readouterr().err
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "builds").exists()


# --- files the recipe names are checked when it loads (issue 10) ------------------------------------

MISSING_PATHS = [
    ("profile:\n  devices: [devices/host.yaml, nope/dev.yaml]\n",
     r"r\.yaml:2: profile\.devices\.1: device profile file not found: nope/dev\.yaml \(a relative path starts at the working directory"),
    ("profile:\n  devices:\n    - devices\n", r"r\.yaml:3: profile\.devices\.0: device profile file not found: devices"),
    ("model:\n  weights: missing.pt\n", r"r\.yaml:2: model\.weights: weights file not found: missing\.pt"),
    ("data:\n  root: /no/such/folder\n", r"r\.yaml:2: data\.root: dataset folder not found: /no/such/folder"),
    ("gate:\n  baseline: baselines/nope.json\n", r"r\.yaml:2: gate\.baseline: baseline file not found"),
]


@pytest.mark.parametrize("text, pattern", HOSTILE_YAML + NUMBERS + MISSING_PATHS)
def test_hostile_yaml_bad_numbers_and_missing_paths_are_one_line(tmp_path, text, pattern):
    """Hostile YAML (issue 16), numbers out of range or not finite (issue 16), paths missing at load (issue 10)."""
    assert re.search(pattern, one_line_error(write(tmp_path, text)))


def test_missing_path_from_set_names_the_override(tmp_path):
    message = one_line_error(write(tmp_path, "{}\n"), ["profile.devices=[devices/nope.yaml]"])
    assert message.startswith("--set profile.devices=[devices/nope.yaml]: profile.devices.0: device profile file not found")


def test_existing_paths_load(tmp_path):
    import torch

    from edgekit.stages import model_from_recipe

    weights, baseline = tmp_path / "w.pt", tmp_path / "b.json"
    # the weights file is loaded into the recipe's (default) model when the recipe loads: it must fit
    torch.save(model_from_recipe(Recipe()).state_dict(), weights)
    baseline.write_text("{}")
    recipe = load_recipe(write(tmp_path, f"model:\n  weights: {weights}\ndata:\n  root: {tmp_path}\n"
                                         f"gate:\n  baseline: {baseline}\nprofile:\n  devices: [devices/host.yaml]\n"))
    assert recipe.model.weights == str(weights)


def test_runtimes_must_cover_every_format_when_int8_kernels_are_required(tmp_path):
    text = "export:\n  formats: [tflite, onnx]\nevaluate:\n  runtimes: [onnxruntime]\n"
    message = one_line_error(write(tmp_path, text))
    assert re.search(r"r\.yaml:4: evaluate\.runtimes: export\.formats has tflite, which only litert loads", message)
    assert "export.require_int8_kernels" in message
    relaxed = load_recipe(write(tmp_path, text.replace("onnx]\n", "onnx]\n  require_int8_kernels: false\n", 1)))
    assert relaxed.evaluate.runtimes == ["onnxruntime"]
    assert load_recipe(write(tmp_path, "export:\n  formats: [onnx]\nevaluate:\n  runtimes: [onnxruntime]\n"))


# --- per-family model options (issue 10 item 5) ----------------------------------------------------

class TinyNetOptions(ModelOptions):
    depth: int = Field(2, ge=1, le=8, description="Hidden layers.")


@pytest.fixture
def second_family(monkeypatch):
    """A second model family registered beside mobilenet_v1, with its own options and no recipe edits."""
    monkeypatch.setattr(_registry, "_model_entrypoints", dict(_registry._model_entrypoints))

    @register_model(options=TinyNetOptions)
    def tiny_net(num_classes=10, depth=2, **common):
        return nn.Sequential(*[nn.Identity() for _ in range(depth)], nn.LazyLinear(num_classes))

    return tiny_net


def test_family_options_are_validated_against_the_chosen_family(tmp_path, second_family):
    recipe = load_recipe(write(tmp_path, "model:\n  arch: tiny_net\n  depth: 3\n"))
    assert recipe.model.options == {"depth": 3} and recipe.model.depth == 3
    assert not hasattr(recipe.model, "alpha")
    message = one_line_error(write(tmp_path, "model:\n  arch: tiny_net\n  alpha: 0.5\n"))
    assert re.search(r"r\.yaml:3: unknown key 'model\.alpha' in model "
                     r"\(an option of mobilenet_v1, mobilenet_v2, not of tiny_net\)", message)
    message = one_line_error(write(tmp_path, "model:\n  depth: 3\n"))
    assert "unknown key 'model.depth' in model (an option of tiny_net, not of mobilenet_v1)" in message
    assert re.search(r"r\.yaml:3: model\.depth: .*less than or equal to 8",
                     one_line_error(write(tmp_path, "model:\n  arch: tiny_net\n  depth: 80\n")))
    table = schema_markdown()
    assert "Options of `model.arch: tiny_net`" in table and "| `model.depth` | int, 1 ≤ x ≤ 8 | `2` | Hidden layers. |" in table


def test_set_reaches_a_family_option(tmp_path, second_family):
    recipe = load_recipe(write(tmp_path, "model:\n  arch: tiny_net\n"), ["model.depth=4"])
    assert recipe.model.depth == 4


def test_mobilenet_options_keep_their_recipe_keys_and_defaults():
    model = Recipe().model
    assert model.options == {"alpha": 1.0, "conv": "separable", "shallow": False, "padding": "symmetric"}
    assert (model.alpha, model.conv, model.shallow, model.padding) == (1.0, "separable", False, "symmetric")
    model.alpha = 0.75
    assert model.alpha == 0.75
    with pytest.raises(ValidationError):
        model.alpha = float("nan")
    assert model.alpha == 0.75


def test_family_options_are_the_entrypoints_keyword_arguments(tmp_path):
    from edgekit.models import create_model

    section = load_recipe(write(tmp_path, "model:\n  alpha: 0.25\n  shallow: true\n  num_classes: 10\n")).model
    model = create_model(section.arch, num_classes=section.num_classes, activation=section.activation,
                         dropout=section.dropout, **section.options)
    assert model.features.stem.conv.out_channels == 8 and len(model.features) == 1 + 13 - 5


def test_unknown_family_and_unknown_option(tmp_path):
    assert re.search(r"r\.yaml:2: model\.arch: unknown model family \(registered: mobilenet_v1, mobilenet_v2\); "
                     r"did you mean 'mobilenet_v1'\?", one_line_error(write(tmp_path, "model:\n  arch: mobilenet_v1x\n")))
    assert re.search(r"unknown key 'model\.expand_ratio' in model \(mobilenet_v1 options: alpha, conv, shallow, padding\)",
                     one_line_error(write(tmp_path, "model:\n  expand_ratio: 6\n")))
    assert "unknown key 'model.alpah' in model (did you mean 'alpha'?)" in one_line_error(write(tmp_path, "model:\n  alpah: 1\n"))
