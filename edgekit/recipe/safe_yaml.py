"""Read YAML that a user wrote (recipes, ``--set`` values, device profiles) without trusting it.

``yaml.SafeLoader`` constructs only plain data, but it still accepts input that hurts later: a binary
file (a UnicodeDecodeError), a key given twice (the last value silently wins), an alias bomb (a few
hundred bytes that expand to a billion nodes once anything walks them), nesting deep enough to exhaust
Python's stack, and integers too long to convert. Each is refused here with a one-line error that
names the file and, where there is one, the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.reader import ReaderError

from edgekit.errors import RecipeError, excerpt

MAX_FILE_BYTES = 1_000_000
#: nodes after expanding every alias; a recipe has about a hundred
MAX_NODES = 10_000
#: mappings and lists inside each other, aliases expanded; a recipe needs 3
MAX_DEPTH = 64
#: digits of a number; more is a typo, and Python refuses to convert over 4300
MAX_NUMBER_CHARS = 100

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class Refused(yaml.YAMLError):
    """Input that is valid YAML but over a limit (or ambiguous); ``mark`` is where it starts."""

    def __init__(self, problem: str, mark=None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that stops composing past MAX_DEPTH levels (before Python's stack runs out) or MAX_NODES nodes."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = self._nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            if self._nodes > MAX_NODES:
                raise Refused(f"more than {MAX_NODES} values", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml(path: str | Path, what: str = "recipe",
              error: type[Exception] = RecipeError) -> tuple[dict, dict[str, int]]:
    """Safe-load a YAML mapping from a file and the line of every dotted key path in it."""
    path = Path(path)
    data, root = parse_yaml(_read_text(path, what, error), str(path), error)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a mapping of keys, got {type(data).__name__}")
    return data, line_numbers(root)


def parse_yaml(text: str, source: str, error: type[Exception] = RecipeError,
               key_prefix: str = "") -> tuple[Any, yaml.Node | None]:
    """Compose ``text`` within the limits, check it, then construct it; returns (data, root node).

    ``key_prefix``: the dotted path the text stands at (a ``--set`` value), for messages.
    """
    loader = None
    try:
        loader = _BoundedLoader(text)
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_size(root, {}, set(), 1)
        _check_keys(root, key_prefix, set())
        return loader.construct_document(root), root
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise error(f"{source}:{line}: malformed YAML: character {exc.character:#06x} is not allowed") from None
    except yaml.YAMLError as exc:
        raise error(_yaml_problem(exc, source)) from None
    except ValueError as exc:  # int() of an over-long number that slipped past the checks
        raise error(f"{source}: malformed YAML: {excerpt(str(exc))}") from None
    finally:
        if loader is not None:
            loader.dispose()


def line_numbers(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Map each dotted key path to the 1-based line where its key stands."""
    lines: dict[str, int] = {}
    for key_path, key_node, value_node in _children(node, prefix):
        lines[key_path] = key_node.start_mark.line + 1
        lines.update(line_numbers(value_node, key_path + "."))
    return lines


def _read_text(path: Path, what: str, error: type[Exception]) -> str:
    if not path.exists():
        raise error(f"{path}: {what} file not found")
    if not path.is_file():
        raise error(f"{path}: not a regular file (a {what} is a YAML file)")
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise error(f"{path}: the {what} file is larger than {MAX_FILE_BYTES // 1_000_000} MB; a {what} is a short YAML file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                    f"a {what} is YAML text") from None


def _check_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int], depth: int) -> int:
    """Count the nodes ``node`` stands for with every alias expanded; refuse past the limits at once.

    An alias is the same node object as its anchor, so each node is counted once (``sizes``) and a
    billion-laughs input is refused after a few hundred steps rather than walked.
    """
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise Refused("an alias refers to the node that contains it (a recursive structure)", node.start_mark)
    if depth > MAX_DEPTH:
        raise Refused(f"nested deeper than {MAX_DEPTH} levels once aliases are expanded", node.start_mark)
    if isinstance(node, yaml.ScalarNode) and node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
        raise Refused(f"a number of {len(node.value)} characters (at most {MAX_NUMBER_CHARS})", node.start_mark)
    open_nodes.add(key)
    size = 1 + sum(_check_size(child, sizes, open_nodes, depth + 1) for child in _child_nodes(node))
    open_nodes.discard(key)
    if size > MAX_NODES:
        raise Refused(f"aliases expand to more than {MAX_NODES} nodes (an alias bomb?)", node.start_mark)
    sizes[key] = size
    return size


def _check_keys(node: yaml.Node, prefix: str, checked: set[int]) -> None:
    """Refuse a key given twice in one mapping (YAML says keys are unique; PyYAML keeps the last)."""
    if id(node) in checked:
        return
    checked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_lines: dict[tuple[str, str], int] = {}
        for key_node, _value in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            identity, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if identity in first_lines:
                raise Refused(f"duplicate key '{excerpt(prefix + key_node.value)}' (first at line "
                              f"{first_lines[identity]}, again at line {line}); a key may appear once", key_node.start_mark)
            first_lines[identity] = line
    for key_path, _key, child in _children(node, prefix):
        _check_keys(child, key_path + ".", checked)


def _child_nodes(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _children(node: yaml.Node | None, prefix: str):
    """(dotted key path, node that marks its line, value node) of each entry of a mapping or list."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield f"{prefix}{key_node.value}", key_node, value_node
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield f"{prefix}{index}", item, item


def _yaml_problem(exc: yaml.YAMLError, source: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark else source
    problem = getattr(exc, "problem", None) or "malformed YAML"
    if isinstance(exc, Refused):
        return f"{where}: {problem}"
    return f"{where}: malformed YAML: {excerpt(problem)}"
