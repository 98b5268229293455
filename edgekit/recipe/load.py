"""Load a recipe: YAML (safe and bounded, see ``safe_yaml``) + ``--set`` overrides, validated against the schema.

Every error is a one-line ``RecipeError`` naming the file, the line and the dotted key path. Relative
paths in a recipe (``profile.devices``, ``model.weights``, ``data.root``, ``gate.baseline``) are taken
from the working directory, as every later stage opens them; each is checked here, when the recipe loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from edgekit.errors import RecipeError, excerpt, suggest
from edgekit.recipe.safe_yaml import line_numbers, parse_yaml, read_yaml
from edgekit.recipe.schema import Recipe

__all__ = ["load_recipe", "validate", "validate_against", "parse_override", "read_yaml", "line_numbers"]

#: error types whose pydantic message is replaced by ours
_MESSAGES = {"finite_number": "must be a finite number"}


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override, validate a recipe and check the files it names; the name defaults to the file stem."""
    path = Path(path)
    data, lines = read_yaml(path)
    for override in overrides:
        key_path, value = parse_override(override)
        _set_dotted(data, key_path, value, override)
        _point_lines_at_override(lines, key_path, f"--set {excerpt(override)}")
    if data.get("name") is None:
        data["name"] = path.stem
    recipe = validate(data, source=str(path), lines=lines)
    check_paths(recipe, source=str(path), lines=lines)
    check_weights_file(recipe, source=str(path), lines=lines)
    return recipe


def validate(data: dict, *, source: str, lines: dict[str, int | str] | None = None) -> Recipe:
    return validate_against(Recipe, data, source=source, lines=lines)


def validate_against(schema: type[BaseModel], data: dict, *, source: str,
                     lines: dict[str, int | str] | None = None, error: type[Exception] = RecipeError):
    """Validate ``data`` against any schema class; errors name ``source``, the line and the dotted key."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise error(_describe(exc.errors()[0], source, lines or {}, schema)) from None


def parse_override(text: str) -> tuple[str, Any]:
    """``model.alpha=0.75`` -> ("model.alpha", 0.75); the value is parsed as a YAML scalar or list."""
    key_path, sep, raw_value = text.partition("=")
    if not sep or not key_path.strip():
        raise RecipeError(f"--set {excerpt(text)}: expected KEY.PATH=VALUE, e.g. --set model.alpha=0.75")
    key_path = key_path.strip()
    if not raw_value.strip():
        return key_path, None
    value, _root = parse_yaml(raw_value, f"--set {excerpt(text)}", key_prefix=key_path + ".")
    return key_path, value


def check_paths(recipe: Recipe, *, source: str, lines: dict[str, int | str]) -> None:
    """Every file and folder the recipe names exists now, not only when a late stage opens it."""
    for key_path, value, what, exists in _named_paths(recipe):
        if not exists(Path(value)):
            where = _where(source, lines, key_path.split("."))
            raise RecipeError(f"{where}: {key_path}: {what} not found: {excerpt(value)} "
                              f"(a relative path starts at the working directory, {Path.cwd()})")


def check_weights_file(recipe: Recipe, *, source: str, lines: dict[str, int | str]) -> None:
    """``model.weights`` is a file of a format edgekit reads and fits the recipe's model (loaded into it once
    here, so that a wrong file fails before the build starts; the train stage loads it again)."""
    from edgekit.errors import WeightsError
    from edgekit.stages import model_from_recipe
    from edgekit.train.weights import load_weights

    section = recipe.model
    if section.weights is None:
        return
    try:
        load_weights(model_from_recipe(recipe), section.weights, section.weights_format, arch=section.arch,
                     options={"activation": section.activation, **section.options}, say=lambda line: None)
    except WeightsError as exc:
        raise RecipeError(f"{_where(source, lines, ['model', 'weights'])}: {exc}") from None


def _named_paths(recipe: Recipe) -> list[tuple[str, str, str, Callable[[Path], bool]]]:
    paths = [(f"profile.devices.{index}", device, "device profile file", _readable_file)
             for index, device in enumerate(recipe.profile.devices)]
    optional = [("model.weights", recipe.model.weights, "weights file", _readable_file),
                ("data.root", recipe.data.root, "dataset folder", Path.is_dir),
                ("gate.baseline", recipe.gate.baseline, "baseline file", _readable_file)]
    return paths + [entry for entry in optional if entry[1] is not None]


def _readable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def _set_dotted(data: dict, key_path: str, value: Any, override: str) -> None:
    keys = key_path.split(".")
    schema: type[BaseModel] | None = Recipe
    node = data
    shown = excerpt(override)
    for depth, key in enumerate(keys):
        known = _known_keys(schema)
        if schema is not None and key not in known:
            where = ".".join(keys[:depth]) or "the recipe"
            raise RecipeError(f"--set {shown}: unknown key '{excerpt(key)}' in {excerpt(where)}",
                              hint=suggest(key, known))
        if depth == len(keys) - 1:
            node[key] = value
            return
        field = schema.model_fields.get(key) if schema else None
        annotation = field.annotation if field else None
        schema = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if schema is None:
            raise RecipeError(f"--set {shown}: '{excerpt('.'.join(keys[: depth + 1]))}' is not a section")
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child


def _point_lines_at_override(lines: dict[str, int | str], key_path: str, where: str) -> None:
    """Errors in the overridden value (and anything below it) name the ``--set``, not the file's old lines."""
    for stale in [key for key in lines if key.startswith(key_path + ".")]:
        del lines[stale]
    lines[key_path] = where


def _known_keys(schema: type[BaseModel] | None) -> list[str]:
    """The keys a section accepts: its fields, plus what it declares beyond them (the model families' options)."""
    if schema is None:
        return []
    extra = getattr(schema, "extra_keys", None)
    return list(schema.model_fields) + (list(extra()) if extra else [])


def _describe(error: dict, source: str, lines: dict[str, int | str], schema: type[BaseModel]) -> str:
    loc = [str(part) for part in error["loc"]]
    key_path = excerpt(".".join(loc))
    where = _where(source, lines, loc)
    if error["type"] in ("extra_forbidden", "unknown_option"):
        section = excerpt(".".join(loc[:-1])) or "the file"
        if error["type"] == "unknown_option":
            hint = error["msg"]
        else:
            hint = suggest(loc[-1], _known_keys(_schema_at(schema, loc[:-1])))
        message = f"{where}: unknown key '{key_path}' in {section}"
        return message + (f" ({hint})" if hint else "")
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {excerpt(repr(got) if isinstance(got, str) else got)})"
    problem = _MESSAGES.get(error["type"]) or _clean(error["msg"])
    return f"{where}: {key_path or 'recipe'}: {problem}{got_text}"


def _where(source: str, lines: dict[str, int | str], loc: list[str]) -> str:
    for depth in range(len(loc), 0, -1):
        line = lines.get(".".join(loc[:depth]))
        if isinstance(line, int):
            return f"{source}:{line}"
        if isinstance(line, str):
            return line
    return source


def _schema_at(schema: Any, loc: list[str]) -> type[BaseModel] | None:
    for key in loc:
        field = schema.model_fields.get(key) if schema else None
        schema = field.annotation if field else None
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            return None
    return schema


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ")
