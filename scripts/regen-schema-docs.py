"""Rewrite the recipe table in README.md (between the `edgekit schema` markers) and in docs/recipe.md.

Run after changing the recipe schema: .venv/bin/python scripts/regen-schema-docs.py
docs/recipe.md holds the same table without markers; it is found as the README's previous table.
"""

from pathlib import Path

from edgekit.recipe.docs import schema_markdown

BEGIN, END = "<!-- edgekit schema: begin -->\n", "\n<!-- edgekit schema: end -->"
REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    readme, recipe_doc = REPO / "README.md", REPO / "docs/recipe.md"
    table = schema_markdown()
    text = readme.read_text()
    head, rest = text.split(BEGIN, 1)
    old_table, tail = rest.split(END, 1)
    if old_table not in recipe_doc.read_text():
        raise SystemExit("docs/recipe.md does not hold README's current table; fix it by hand once")
    readme.write_text(head + BEGIN + table + END + tail)
    recipe_doc.write_text(recipe_doc.read_text().replace(old_table, table))


if __name__ == "__main__":
    main()
