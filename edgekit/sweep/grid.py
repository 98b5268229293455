"""The grid of a sweep: ``--grid KEY=[v1,v2,...]`` axes, and the points of their product, each validated
as a full recipe (the recipe file + every ``--set`` + the point's values) before any point runs."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import RecipeError, excerpt
from edgekit.recipe import Recipe, load_recipe, parse_override
from edgekit.recipe.safe_yaml import parse_yaml

GRID_EXAMPLE = "e.g. --grid model.alpha=[0.25,0.5]"
UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple


@dataclass(frozen=True)
class Point:
    id: str
    overrides: dict[str, Any]  # axis key -> value
    set_args: tuple[str, ...]  # every --set of the point's build: the sweep's own, then the axes'
    recipe: Recipe


def parse_axis(text: str) -> Axis:
    """``model.alpha=[0.25,0.5]`` -> Axis("model.alpha", (0.25, 0.5)); the list is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise RecipeError(f"--grid {excerpt(text)}: expected KEY.PATH=[VALUE,...], {GRID_EXAMPLE}")
    values, _root = parse_yaml(raw, f"--grid {excerpt(text)}", key_prefix=key + ".")
    if not isinstance(values, list) or not values:
        raise RecipeError(f"--grid {excerpt(text)}: the values must be a non-empty list, {GRID_EXAMPLE}")
    for index, value in enumerate(values):
        if value in values[:index]:
            raise RecipeError(f"--grid {excerpt(text)}: the value {excerpt(_value_text(value))} appears twice")
    return Axis(key, tuple(values))


def plan_points(recipe_path: Path, grid: list[str], set_args: list[str]) -> tuple[list[Axis], list[Point]]:
    """The axes, and every point of their product in order (the last axis varies fastest), each a
    validated recipe: any bad axis or value is a RecipeError before a point runs."""
    axes = [parse_axis(text) for text in grid]
    if not axes:
        raise RecipeError(f"a sweep needs at least one --grid axis, {GRID_EXAMPLE}")
    _check_no_overlap(axes, set_args)
    names = _axis_names(axes)
    points, ids = [], set()
    for values in itertools.product(*(axis.values for axis in axes)):
        overrides = {axis.key: value for axis, value in zip(axes, values)}
        point_id = _unique(",".join(f"{name}={_id_text(value)}" for name, value in zip(names, values)), ids)
        point_args = tuple(set_args) + tuple(f"{key}={json.dumps(value)}" for key, value in overrides.items())
        recipe = _load_point(recipe_path, set_args, overrides)
        points.append(Point(point_id, overrides, point_args, recipe))
    return axes, points


def _check_no_overlap(axes: list[Axis], set_args: list[str]) -> None:
    """An axis is given once, and never also with --set (nor inside a section a --set replaces)."""
    seen: list[str] = []
    for axis in axes:
        if axis.key in seen:
            raise RecipeError(f"--grid {excerpt(axis.key)}: the axis is given twice; list all its values in one --grid")
        seen.append(axis.key)
    for text in set_args:
        set_key, _value = parse_override(text)
        for axis in axes:
            if _overlaps(set_key, axis.key):
                raise RecipeError(f"--set {excerpt(text)}: {excerpt(axis.key)} is also a --grid axis; "
                                  f"give it one way only")


def _overlaps(key: str, other: str) -> bool:
    return key == other or key.startswith(other + ".") or other.startswith(key + ".")


def _load_point(recipe_path: Path, set_args: list[str], overrides: dict[str, Any]) -> Recipe:
    """The point's recipe, validated like ``build --set``; an error names the --grid value at fault."""
    axis_args = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    try:
        return load_recipe(recipe_path, [*set_args, *axis_args])
    except RecipeError as exc:
        message = str(exc)
        for arg in axis_args:  # load_recipe names the override "--set KEY=VALUE": this one came from --grid
            message = message.replace(f"--set {excerpt(arg)}", f"--grid {excerpt(arg)}")
        raise RecipeError(message) from None


def _axis_names(axes: list[Axis]) -> list[str]:
    """Each axis's last key part (``alpha``), or the whole key where two axes share a last part."""
    last = [axis.key.rsplit(".", 1)[-1] for axis in axes]
    return [name if last.count(name) == 1 else axis.key for name, axis in zip(last, axes)]


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_value_text(item) for item in value)
    return json.dumps(value) if not isinstance(value, str) else value


def _id_text(value: Any) -> str:
    return UNSAFE_ID_CHARS.sub("-", _value_text(value))[:40]


def _unique(point_id: str, taken: set[str]) -> str:
    candidate, suffix = point_id, 2
    while candidate in taken:
        candidate, suffix = f"{point_id}~{suffix}", suffix + 1
    taken.add(candidate)
    return candidate


def axis_label(key: str) -> str:
    """Short column name of an axis: α and ρ for the paper's two, else the key's last part."""
    return {"model.alpha": "α", "model.resolution": "ρ"}.get(key, key.rsplit(".", 1)[-1])
