"""Render the recipe schema as Markdown, straight from the pydantic classes (so docs cannot drift)."""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel

from edgekit.recipe.schema import Recipe


def schema_markdown() -> str:
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key_path, field in _fields(Recipe):
        lines.append(f"| `{key_path}` | {_type_name(field.annotation)} | {_default(field)} | {field.description or ''} |")
    return "\n".join(lines)


def _fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def _type_name(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in args)
    if origin is typing.Union:
        names = [_type_name(arg) for arg in args if arg is not type(None)]
        return " \\| ".join(names) + " or null"
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    value = field.get_default(call_default_factory=True)
    return f"`{json.dumps(value)}`"
