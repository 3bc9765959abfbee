"""What a selective backup or restore takes: ``--table/--schema/--exclude-table`` (SQL),
``--pattern/--type`` (Redis), ``--label`` (Neo4j).

A :class:`Selection` is plain data shared by the CLI, the job YAML (``select:``), the manifest and
the backends. Each backend kind names the fields it understands (``Backend.selection_fields``); a
field given to a kind that does not take it is a usage error naming the option and the kind.
Matching is by glob: ``*``, ``?`` and ``[...]`` (:func:`glob_regex`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from storagectl.errors import UsageError

# field -> (CLI option, what one value is, for help and messages)
OPTIONS: dict[str, tuple[str, str]] = {
    "tables": ("--table", "TABLE"),
    "schemas": ("--schema", "SCHEMA"),
    "exclude_tables": ("--exclude-table", "TABLE"),
    "patterns": ("--pattern", "GLOB"),
    "types": ("--type", "TYPE"),
    "labels": ("--label", "LABEL"),
}
REDIS_TYPES = ("string", "list", "set", "zset", "hash", "stream")


@dataclass(frozen=True)
class Selection:
    """Empty means everything (a full backup / restore)."""

    tables: tuple[str, ...] = ()
    schemas: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in OPTIONS:
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))
        unknown = [kind for kind in self.types if kind not in REDIS_TYPES]
        if unknown:
            raise UsageError(f"--type {unknown[0]!r} is not a Redis type; valid: {', '.join(REDIS_TYPES)}")

    @property
    def empty(self) -> bool:
        return not any(getattr(self, name) for name in OPTIONS)

    def used(self) -> list[str]:
        """The fields given, in OPTIONS order."""
        return [name for name in OPTIONS if getattr(self, name)]

    def options(self) -> list[str]:
        """The CLI options given (``--table``, ...)."""
        return [OPTIONS[name][0] for name in self.used()]

    def to_dict(self) -> dict[str, list[str]]:
        """The fields given, as the manifest and ``-o json`` show them (the YAML's keys)."""
        return {name: list(getattr(self, name)) for name in self.used()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Selection:
        data = data or {}
        return cls(**{f.name: tuple(data.get(f.name) or ()) for f in fields(cls)})

    def describe(self) -> str:
        """``--table public.users, --exclude-table audit*`` (empty: ``everything``)."""
        parts = [f"{OPTIONS[name][0]} {value}" for name in self.used() for value in getattr(self, name)]
        return ", ".join(parts) or "everything"

    def command_words(self) -> str:
        """The options as a shell command line takes them (``--table 'app.*' ``), for hints."""
        import shlex

        return "".join(f"{OPTIONS[name][0]} {shlex.quote(value)} " for name in self.used()
                       for value in getattr(self, name))

    def require_fields(self, allowed: Iterable[str], what: str) -> None:
        """A usage error naming the first option ``what`` (e.g. "backend 'cache' (redis)") does not take."""
        allowed = list(allowed)
        for name in self.used():
            if name not in allowed:
                takes = ", ".join(OPTIONS[field][0] for field in allowed)
                raise UsageError(f"{OPTIONS[name][0]} does not apply to {what}"
                                 + (f"; it selects with {takes}" if takes else "; it cannot back up or restore a "
                                    "selection"), hint=f"Try: leave {OPTIONS[name][0]} out")

    def narrowed_by(self, other: Selection) -> Selection:
        """A restore's selection within a selective backup's: the restore's fields where given."""
        return Selection(**{name: getattr(other, name) or getattr(self, name) for name in OPTIONS})


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Redis/shell glob: ``*``, ``?``, ``[abc]``, ``[^a]``/``[!a]``, ``[a-z]``, ``\\x`` escapes."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            negate = body[:1] in ("^", "!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(glob_regex(pattern).fullmatch(name) for pattern in patterns)
