"""The config file's YAML as plain data, with the line of every key path and ``${VAR}`` interpolated.

Any input, however malformed or hostile, ends here as a :class:`ConfigError` naming ``file:line``:
nesting is limited to :data:`MAX_DEPTH` levels and the expanded document to :data:`MAX_VALUES`
values, so anchors and aliases ("billion laughs") cannot make the work or memory grow without end.
Values taken from the environment are remembered, so no message ever echoes them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from storagectl.config.source import MAX_FILE_BYTES, VARIABLE, config_error
from storagectl.redact import MASK

Loc = tuple[str | int, ...]

MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences; real configs use fewer than 10 levels."""
MAX_VALUES = 50_000
"""Most values (scalars, mappings, sequences) after expanding aliases and merge keys."""
__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_VALUES", "Loc", "YamlDocument"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_COLLECTIONS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Rejected(yaml.MarkedYAMLError):
    """Input this loader refuses (too deep, too large, unreadable scalar); reported like a YAML error."""


class _TooLarge(Exception):
    """The expanded document exceeds the budget; the message names the entry that expands it."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose scanner and recursive composer refuse to nest deeper than :data:`MAX_DEPTH`."""

    depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # Stopped in the scanner already: for every open bracket it keeps a possible key and looks
        # up to 1024 characters ahead, so "[[[[..." costs far more to scan than to compose.
        if self.flow_level >= MAX_DEPTH:
            raise _Rejected(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.depth >= MAX_DEPTH:
            raise _Rejected(problem=f"nested deeper than {MAX_DEPTH} levels",
                            problem_mark=self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class YamlDocument:
    """YAML parsed into plain data, remembering the line of every key path."""

    def __init__(self, text: str, path: Path, environ: Any) -> None:
        self.path = path
        self.environ = environ
        self.lines: dict[Loc, int] = {}
        self.problems: list[str] = []
        self.from_environment: dict[Loc, list[str]] = {}  # loc -> names of the variables in its value
        self._environment_values: set[str] = set()
        self._values = 0
        self.data = self._parse(text)

    def _parse(self, text: str) -> Any:
        loader = None
        try:
            loader = _BoundedLoader(text)
            node = loader.get_single_node()
            return self._convert(node, (), loader, 0) if node is not None else None
        except _TooLarge as exc:
            raise config_error(str(exc)) from None
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            raise config_error(f"{self.path}:{line} invalid YAML: control character #x{exc.character:04x} is not "
                                "allowed; remove it, or write it as an escape in a double-quoted string") from None
        except yaml.MarkedYAMLError as exc:
            raise config_error(self._yaml_problem(exc)) from None
        except yaml.YAMLError as exc:
            raise config_error(f"{self.path}:1 invalid YAML: {type(exc).__name__}") from None
        finally:
            if loader is not None:
                loader.dispose()

    def _yaml_problem(self, exc: yaml.MarkedYAMLError) -> str:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        context = ""
        if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
            context = f"{exc.context} (line {exc.context_mark.line + 1}): "
        return f"{self.path}:{line} invalid YAML: {context}{exc.problem or exc.context}"

    def line_of(self, loc: Loc) -> int:
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def where(self, loc: Loc) -> str:
        dotted = ".".join(str(part) for part in loc)
        return f"{self.path}:{self.line_of(loc)} {dotted}" if dotted else f"{self.path}:{self.line_of(loc)}"

    def environment_names(self, loc: Loc) -> list[str]:
        """The variables whose values went into ``loc`` or anything below it."""
        return sorted({name for where, names in self.from_environment.items()
                       if where[:len(loc)] == loc for name in names})

    def scrub(self, message: str) -> str:
        """``message`` with every value taken from the environment masked, however a validator quoted it."""
        for value in sorted(filter(None, self._environment_values), key=len, reverse=True):
            for form in {value, repr(value)[1:-1]}:
                if len(form) >= 3:
                    message = message.replace(form, MASK)
                else:  # a very short value is masked only where it stands alone, not inside words
                    message = re.sub(rf"(?<![\w.]){re.escape(form)}(?![\w.])", MASK, message)
        return message

    # -- conversion --------------------------------------------------------------------------------
    def _convert(self, node: yaml.Node, loc: Loc, loader: yaml.SafeLoader, depth: int) -> Any:
        """Plain data from ``node``."""
        self._spend(loc, depth)
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_COLLECTIONS:
            raise _Rejected(problem=f"tag {_short_tag(node.tag)} is not supported here; remove it",
                            problem_mark=node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._convert_mapping(node, loc, loader, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, (*loc, i), loader, depth + 1) for i, item in enumerate(node.value)]
        value = _construct_scalar(node, loader)
        return self._interpolate(value, loc) if isinstance(value, str) else value

    def _convert_mapping(self, node: yaml.MappingNode, loc: Loc, loader: yaml.SafeLoader,
                         depth: int, merging: bool = False) -> dict[str, Any]:
        """Keys written here win over merged ones (``<<: *defaults``); of several merged
        mappings the first wins, as the YAML merge-key spec says."""
        if merging:  # merged mappings are walked here directly, and must be paid for too
            self._spend(loc, depth)
        own: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in reversed(_merge_sources(value_node)):
                    merged.update(self._convert_mapping(source, loc, loader, depth + 1, merging=True))
                continue
            key = self._key(key_node, loader)
            child = (*loc, key)
            line = key_node.start_mark.line + 1
            if key in own:
                dotted = ".".join(str(part) for part in child)
                self.problems.append(f"{self.path}:{line} {dotted}: duplicate key "
                                     f"(line {self.lines[child]} sets it too)")
                continue
            if merging:  # the line of a key written in the mapping itself wins
                self.lines.setdefault(child, line)
            else:
                self.lines[child] = line
            own[key] = self._convert(value_node, child, loader, depth + 1)
        return {**merged, **own}

    def _spend(self, loc: Loc, depth: int) -> None:
        """Count one value against the budget, so aliases and merges re-walked many times (or
        through each other) stop at :data:`MAX_VALUES` / :data:`MAX_DEPTH` instead of growing
        without end."""
        self._values += 1
        if self._values <= MAX_VALUES and depth <= MAX_DEPTH:
            return
        limit = (f"more than {MAX_VALUES} values once aliases are expanded" if depth <= MAX_DEPTH
                 else f"nested deeper than {MAX_DEPTH} levels once aliases are expanded")
        # A shared node's own line is its anchor's; the entry that expands it is the useful place.
        entry = loc[:2]
        while entry and not isinstance(entry[-1], str):
            entry = entry[:-1]
        raise _TooLarge(f"{self.where(entry)}: {limit}; use fewer aliases")

    def _key(self, node: yaml.Node, loader: yaml.SafeLoader) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise _Rejected(problem="a key must be a plain value, not a mapping or list",
                            problem_mark=node.start_mark)
        self._values += 1
        key = _construct_scalar(node, loader)
        if key is None:  # `~:` or `null:` would become a backend named "None"
            raise _Rejected(problem=f"a key must be a name, not {node.value or 'an empty value'!r}",
                            problem_mark=node.start_mark)
        return node.value if isinstance(key, bool) else str(key)  # `on:` is the name "on", not "True"

    def _interpolate(self, value: str, loc: Loc) -> str:
        def substitute(match: re.Match[str]) -> str:
            if match[0] == "$$":
                return "$"
            name, default = match["name"], match["default"]
            if name in self.environ:
                self.from_environment.setdefault(loc, []).append(name)
                self._environment_values.add(self.environ[name])
                return self.environ[name]
            if default is not None:
                return default
            self.problems.append(
                f"{self.where(loc)}: environment variable {name} is not set "
                f"(export {name}=..., or write ${{{name}:-default}})"
            )
            return ""

        return VARIABLE.sub(substitute, value)


def _merge_sources(node: yaml.Node) -> list[yaml.MappingNode]:
    """The mappings a ``<<`` key merges: one mapping or a list of them."""
    sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for source in sources:
        if not isinstance(source, yaml.MappingNode):
            raise _Rejected(problem="<< (merge key) needs a mapping or a list of mappings, such as *defaults",
                            problem_mark=source.start_mark)
    return sources


def _construct_scalar(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    """The scalar's value. PyYAML's constructors fail on some bad scalars with whatever Python raised
    (ValueError for ``!!int x``, a 5000-digit integer or ``2024-13-45``, KeyError for ``!!bool maybe``,
    AttributeError for ``!!timestamp x``); their messages may quote the value, so none is kept."""
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of one scalar's constructor, reported with its line
        kind = _short_tag(node.tag).lstrip("!")
        reason = "has too many digits" if "digits" in str(exc) else f"is not a valid {kind}"
        raise _Rejected(problem=f"value {reason}", problem_mark=node.start_mark) from None


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")
