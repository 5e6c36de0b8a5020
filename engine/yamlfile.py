"""YAML loading that remembers line numbers, so every config/rules/profile problem names file:line.

Two flavours:

* the default loader (config, profiles) resolves plain scalars the YAML 1.1 way: ``2575`` is a number,
  ``true`` a boolean;
* ``load_yaml(..., text_scalars=True)`` (the routing rules) keeps every plain scalar as the text that was
  written, except ``true``/``false`` and ``null``/``~``/empty.  HL7 values are text: a facility code
  ``0123`` must not become the octal number 83, a country code ``NO`` must not become ``False`` and
  a version ``2.50`` must not become ``2.5``.

Both support anchors, aliases and ``<<`` merge keys; a key written twice in one mapping is an error.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlProblem(Exception):
    """One problem in a YAML file, printed as ``file:line: reason`` (``path: reason`` when line is 0:
    the problem is the file or folder itself, e.g. a missing rules folder)."""

    def __init__(self, file: str, line: int, reason: str):
        super().__init__(f"{file}:{line}: {reason}" if line > 0 else f"{file}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


class LineDict(dict):
    """A mapping from YAML with the line of the mapping and of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence from YAML with the line of the sequence and of each item (1-based)."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        own = sum(1 for key_node, _ in node.value if key_node.tag != MERGE_TAG)
        self.flatten_mapping(node)  # ``<<: *anchor`` entries first, then the mapping's own keys
        merged = len(node.value) - own
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        own_keys: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value",
                                                        key_node.start_mark)
            if index < merged:
                if key in mapping:  # of several merged mappings, the first one wins (YAML merge spec)
                    continue
            else:
                if key in own_keys:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                            key_node.start_mark)
                own_keys.add(key)  # a key of the mapping itself overrides a merged one
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[str(key)] = key_node.start_mark.line + 1
        return mapping

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:  # type: ignore[override]
        items = LineList(self.construct_object(child, deep=True) for child in node.value)
        items.line = node.start_mark.line + 1
        items.item_lines = [child.start_mark.line + 1 for child in node.value]
        return items


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_sequence)


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_environment(text: str) -> str:
    """``${NAME}`` / ``${NAME:-default}`` -> the environment's value (empty, or the default, when unset)."""
    return _ENV_REFERENCE.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), text)


def environment_names(text: str) -> list[str]:
    """The variables a value names (``${SWF_RIS_ADDRESS}`` -> ``["SWF_RIS_ADDRESS"]``)."""
    return [match.group(1) for match in _ENV_REFERENCE.finditer(text)]


class ExpandedText(str):
    """A value after ``${NAME}`` expansion that keeps what was written (``written``), so a message about an
    empty value can name the variable to set."""

    written: str

    def __new__(cls, value: str, written: str = "") -> "ExpandedText":  # default: copy/pickle rebuild
        text = super().__new__(cls, value)
        text.written = written
        return text


class _TextLoader(_LineLoader):
    """Plain scalars stay text; only true/false, null and the ``<<`` merge key are resolved.

    String values may name environment variables (``${NAME}``, ``${NAME:-default}``), so one rules set
    serves test and production.
    """

    yaml_implicit_resolvers: dict = {}

    def construct_scalar(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
        value = super().construct_scalar(node)
        return ExpandedText(expand_environment(value), value) if isinstance(value, str) and "${" in value else value


_TextLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))
_TextLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                                  ["~", "n", "N", ""])
_TextLoader.add_implicit_resolver(MERGE_TAG, re.compile(r"^(?:<<)$"), ["<"])


# PyYAML's context of a syntax error: the construct it was reading when it noticed the problem.
_CONTEXT = re.compile(r"^while (?:parsing|scanning) (?:an? |the )?(.+)$")
_UNCLOSED = {"flow mapping": "flow mapping '{'", "flow sequence": "flow sequence '['",
             "quoted scalar": "quoted string"}
_FOUND = re.compile(r"(?:but )?(?:got|found) (.+)$")


def syntax_reason(exc: yaml.MarkedYAMLError) -> str:
    """A syntax error with both of PyYAML's marks: where the construct began and where the problem showed.

    PyYAML notices an unclosed ``{`` only lines later, at the next ``:``; the line that needs the fix is
    the one that opened it, so both are named ("flow mapping '{' opened at :12 is not closed, found ':'
    at :15").
    """
    problem = exc.problem or ""
    at = f" at :{exc.problem_mark.line + 1}" if exc.problem_mark else ""
    context = _CONTEXT.match(exc.context or "")
    if not context or exc.context_mark is None:
        return problem or exc.context or "invalid YAML"
    construct, opened = context.group(1), exc.context_mark.line + 1
    found = _FOUND.search(problem)
    found_text = found.group(1) if found else problem
    if found_text in ("unexpected end of stream", "'<stream end>'"):
        found_text = "the end of the file"
    if construct in _UNCLOSED:
        return f"{_UNCLOSED[construct]} opened at :{opened} is not closed, found {found_text}{at}"
    if construct.startswith("block") and problem.startswith("expected <block end>"):
        return f"the line{at} does not continue the {construct} that starts at :{opened} (check its indentation)"
    return f"{construct} that starts at :{opened}: {problem}{at}"


def load_yaml(path: Path | str, text: str | None = None, *, text_scalars: bool = False) -> Any:
    """Parse one YAML file; syntax errors become ``YamlProblem`` with the file and line."""
    path = Path(path)
    try:
        source = text if text is not None else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlProblem(str(path), 1, f"cannot read: {exc}") from None
    loader = _TextLoader if text_scalars else _LineLoader
    try:
        return yaml.load(source, Loader=loader)  # noqa: S506 - SafeLoader subclasses
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlProblem(str(path), line, f"YAML syntax: {syntax_reason(exc)}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(str(path), 1, f"YAML syntax: {exc}") from None


def line_of(node: Any, key: str | int | None = None, default: int = 1) -> int:
    """Line of ``key`` in a LineDict / index in a LineList, else of the node, else ``default``."""
    if isinstance(node, LineDict):
        return node.line_of(str(key)) if key is not None else node.line
    if isinstance(node, LineList):
        return node.line_of(int(key)) if isinstance(key, int) else node.line
    return default
