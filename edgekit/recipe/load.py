"""Load a recipe: YAML (safe loader) + ``--set`` overrides, validated against the schema.

Every error is a one-line ``RecipeError`` naming the file, the line and the dotted key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgekit.errors import RecipeError, suggest
from edgekit.recipe.schema import Recipe


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override and validate a recipe; the recipe's name defaults to the file stem."""
    path = Path(path)
    data, lines = read_yaml(path)
    for override in overrides:
        key_path, value = parse_override(override)
        _set_dotted(data, key_path, value, override)
        lines[key_path] = f"--set {override}"
    recipe = validate(data, source=str(path), lines=lines)
    if recipe.name is None:
        recipe.name = path.stem
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
        raise RecipeError(f"--set {text}: expected KEY.PATH=VALUE, e.g. --set model.alpha=0.75")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else None
    except yaml.YAMLError:
        raise RecipeError(f"--set {text}: the value is not valid YAML") from None
    return key_path.strip(), value


def read_yaml(path: Path, what: str = "recipe", error: type[Exception] = RecipeError) -> tuple[dict, dict[str, int]]:
    """Safe-load a YAML mapping and the line of every dotted key path in it."""
    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise error(f"{where}: malformed YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a mapping of keys, got {type(data).__name__}")
    return data, _line_numbers(root)


def _line_numbers(node, prefix: str = "") -> dict[str, int]:
    """Map each dotted key path to the 1-based line where its key stands."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = f"{prefix}{key_node.value}"
            lines[key_path] = key_node.start_mark.line + 1
            lines.update(_line_numbers(value_node, key_path + "."))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[f"{prefix}{index}"] = item.start_mark.line + 1
            lines.update(_line_numbers(item, f"{prefix}{index}."))
    return lines


def _set_dotted(data: dict, key_path: str, value: Any, override: str) -> None:
    keys = key_path.split(".")
    schema: type[BaseModel] | None = Recipe
    node = data
    for depth, key in enumerate(keys):
        fields = schema.model_fields if schema else {}
        if schema is not None and key not in fields:
            where = ".".join(keys[:depth]) or "the recipe"
            raise RecipeError(
                f"--set {override}: unknown key '{key}' in {where}",
                hint=suggest(key, fields),
            )
        if depth == len(keys) - 1:
            node[key] = value
            return
        annotation = fields[key].annotation if schema else None
        schema = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if schema is None:
            raise RecipeError(f"--set {override}: '{'.'.join(keys[: depth + 1])}' is not a section")
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child


def _describe(error: dict, source: str, lines: dict[str, int | str], schema: type[BaseModel]) -> str:
    loc = [str(part) for part in error["loc"]]
    key_path = ".".join(loc)
    where = _where(source, lines, loc)
    if error["type"] == "extra_forbidden":
        parent = _schema_at(schema, loc[:-1])
        section = ".".join(loc[:-1]) or "the file"
        hint = suggest(loc[-1], parent.model_fields) if parent else None
        message = f"{where}: unknown key '{key_path}' in {section}"
        return message + (f" ({hint})" if hint else "")
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{where}: {key_path or 'recipe'}: {_clean(error['msg'])}{got_text}"


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
