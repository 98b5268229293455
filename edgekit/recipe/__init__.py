"""Recipes: the schema (one place for every option) and the loader."""

from edgekit.recipe.load import load_recipe, parse_override, validate
from edgekit.recipe.schema import Recipe

__all__ = ["Recipe", "load_recipe", "parse_override", "validate"]
