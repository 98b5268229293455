"""Render the recipe schema as Markdown, straight from the pydantic classes (so docs cannot drift)."""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from edgekit.recipe.schema import Recipe, family_options

HEADER = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]


def schema_markdown() -> str:
    """The table of every recipe key, then one table per model family with that family's own ``model.*`` keys."""
    from edgekit.models import list_models

    parts = ["\n".join(HEADER + [_row(key_path, field) for key_path, field in _fields(Recipe)])]
    for arch in list_models():
        options = family_options(arch).model_fields
        rows = [_row(f"model.{name}", field) for name, field in options.items()] or ["| | | | (no options) |"]
        parts.append(f"Options of `model.arch: {arch}` (keys of the `model` section, accepted only with this family):\n\n"
                     + "\n".join(HEADER + rows))
    return "\n\n".join(parts)


def _row(key_path: str, field) -> str:
    return f"| `{key_path}` | {_type_name(field.annotation, field.metadata)} | {_default(field)} | {field.description or ''} |"


def _fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def _type_name(annotation, metadata: list | None = None) -> str:
    """The type in words; with ``metadata`` (a field's constraints) numbers also show their range."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        inner_metadata = None if metadata is None else [*metadata, *annotation.__metadata__]
        return _type_name(args[0], inner_metadata)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in args)
    if origin is typing.Union:
        names = [_type_name(arg, metadata) for arg in args if arg is not type(None)]
        return " \\| ".join(names) + " or null"
    if origin is list:
        return f"list of {_type_name(args[0], None if metadata is None else [])}"
    name = getattr(annotation, "__name__", str(annotation))
    return name + _range(metadata or [])


def _range(metadata: list) -> str:
    """``, 1 ≤ x ≤ 256`` from a field's ge/gt/le/lt constraints (empty when it has none)."""
    bounds = {}
    for item in metadata:
        for constraint in item.metadata if isinstance(item, FieldInfo) else [item]:
            for name in ("gt", "ge", "lt", "le"):
                if getattr(constraint, name, None) is not None:
                    bounds[name] = getattr(constraint, name)
    lower = f"{_number(bounds['ge'])} ≤ " if "ge" in bounds else f"{_number(bounds['gt'])} < " if "gt" in bounds else ""
    upper = f" ≤ {_number(bounds['le'])}" if "le" in bounds else f" < {_number(bounds['lt'])}" if "lt" in bounds else ""
    return f", {lower}x{upper}" if lower or upper else ""


def _number(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ") if abs(value) >= 100_000 else str(value)
    return f"{value:g}"


def _default(field) -> str:
    value = field.get_default(call_default_factory=True)
    return f"`{json.dumps(value)}`"
