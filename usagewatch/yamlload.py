"""Safe YAML loading that remembers where every value came from.

Config and rule files share it, so every validation error can say ``path:line:col``. The document
is loaded with ``SafeLoader`` (no arbitrary objects) and, alongside, a map from each value's path
(``("sources", 0, "format")``, the same shape as pydantic's error ``loc``) to its 1-based line and
column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from usagewatch.errors import ConfigError, Problem

Loc = tuple[int | str, ...]


@dataclass
class Located:
    """A loaded YAML document plus the line/column of every value in it."""

    path: str
    data: Any
    marks: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def where(self, loc: Loc) -> tuple[int | None, int | None]:
        """Line and column of ``loc``, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while True:
            if loc in self.marks:
                return self.marks[loc]
            if not loc:
                return (None, None)
            loc = loc[:-1]

    def problem(self, loc: Loc, message: str, at_key: bool = False) -> Problem:
        """A Problem located at ``loc``'s value, or at its key when ``at_key`` (unknown keys)."""
        line, col = (self.key_marks.get(tuple(loc)) or self.where(loc)) if at_key else self.where(loc)
        return Problem(self.path, line, col, message)


def _walk(node: yaml.Node, loc: Loc, marks: dict[Loc, tuple[int, int]],
          key_marks: dict[Loc, tuple[int, int]]) -> None:
    marks[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        # a block scalar's text starts on the line after its indicator: line N of the text is N here
        marks[loc] = (node.start_mark.line + 2, 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            # the key's own position is the most useful place to point at for "unknown key" errors
            key_marks[loc + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, loc + (key,), marks, key_marks)
            if not isinstance(value_node, yaml.ScalarNode):
                # for a nested block point at the key line, which is where the reader looks
                marks[loc + (key,)] = key_marks[loc + (key,)]
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, loc + (i,), marks, key_marks)


def load_text(text: str, path: str) -> Located:
    """Parse YAML text; a syntax error becomes a ConfigError naming the line and column."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Located(path, None, {})
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        msg = exc.problem or str(exc)
        if exc.context:
            msg = f"{msg} ({exc.context})"
        raise ConfigError(Problem(path, line, col, f"invalid YAML: {msg}")) from None
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(path, None, None, f"invalid YAML: {exc}")) from None
    finally:
        loader.dispose()
    marks: dict[Loc, tuple[int, int]] = {}
    key_marks: dict[Loc, tuple[int, int]] = {}
    _walk(node, (), marks, key_marks)
    return Located(path, data, marks, key_marks)


def load_file(path: str | Path) -> Located:
    """Read and parse a YAML file; unreadable files become a ConfigError naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(Problem(str(p), None, None, f"cannot read file: {exc.strerror or exc}")) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(Problem(str(p), None, None, f"not UTF-8 text: {exc}")) from None
    return load_text(text, str(p))
