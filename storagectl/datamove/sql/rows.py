"""Turning source rows into target rows chunk by chunk: the fast path (no Python per value unless a
column needs converting) and the careful path that finds the rows a target cannot hold."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storagectl.datamove.sql import canonical
from storagectl.datamove.sql.spec import TableSpec

# Storage classes (SQLite typeof) a column of this kind takes as they are, with no Python per value
NATIVE = {"int": {"integer"}, "float": {"real", "integer"}, "float4": {"real", "integer"}, "text": {"text"},
          "bytes": {"blob"}, "other": {"text"}, canonical.VERBATIM: {"integer", "real", "text", "blob"}}


@dataclass
class RowMapper:
    """How one table's source rows become target rows (and, for sources whose checksum is computed in
    Python, their row hashes)."""

    kinds: list[str]
    convert_columns: list[int]  # the columns converted on the fast path
    hash_rows: bool
    pg_types: list[str | None] | None = None  # PostgreSQL target types: the careful path checks their ranges too

    @classmethod
    def for_sqlite(cls, spec: TableSpec, storage_classes: list[set[str]] | None, *, to_postgres: bool = False
                   ) -> RowMapper:
        """``storage_classes`` per column (None: unknown, every column converted on the fast path).
        ``to_postgres``: the careful path also rejects what a ``numeric(p,s)`` column would round
        (the server would store it rounded, not refuse it); the server's own refusals (ranges) are
        found by loading the chunk row by row."""
        classes = storage_classes or [{"unknown"} for _ in spec.columns]
        convert = [i for i, (kind, found) in enumerate(zip(spec.kinds, classes, strict=True))
                   if not (found - {"null"}) <= NATIVE.get(kind, set())]
        lossy = [c.target_type if c.kind == "numeric" and canonical.numeric_bounds(c.target_type) else None
                 for c in spec.columns] if to_postgres else []
        return cls(spec.kinds, convert, hash_rows=True, pg_types=lossy if any(lossy) else None)

    @classmethod
    def passthrough(cls, spec: TableSpec) -> RowMapper:
        return cls(spec.kinds, [], hash_rows=False)

    def fast(self, rows: Iterator[Sequence[Any]], tally: ChunkTally) -> Iterator[Sequence[Any]]:
        """Rows as the target takes them; a value that does not convert raises :class:`canonical.Rejected`."""
        converters = [(i, canonical.converter(self.kinds[i])) for i in self.convert_columns]
        hasher = canonical.row_hasher(self.kinds) if self.hash_rows else None
        for row in rows:
            if converters:
                row = list(row)
                for i, convert in converters:
                    if row[i] is not None:
                        row[i] = convert(row[i])
            tally.add(row, hasher)
            yield row

    def careful(self, keyed_rows: Iterator[Sequence[Any]], tally: ChunkTally, rejects: list[Reject],
                table: str) -> Iterator[tuple[Any, list[Any]]]:
        """``(key, row)`` with every value checked (UTF-8, NUL, conversion); rows that fail go to
        ``rejects``, not on."""
        types = self.pg_types or [None] * len(self.kinds)
        converters = [canonical.pg_converter(kind, pg_type) if pg_type else canonical.converter(kind)
                      for kind, pg_type in zip(self.kinds, types, strict=True)]
        hasher = canonical.row_hasher(self.kinds) if self.hash_rows else None
        for key, *values in keyed_rows:
            try:
                row = check_row(converters, values)
            except _ColumnRejected as exc:
                rejects.append(Reject(table, key, exc.column_index, str(exc.reason), values,
                                      getattr(exc.reason, "loss", None)))
                continue
            tally.add(row, hasher)
            yield key, row


class _ColumnRejected(Exception):
    def __init__(self, column_index: int, reason: canonical.Rejected) -> None:
        self.column_index, self.reason = column_index, reason


def _checked(convert: Callable[[Any], Any], value: Any) -> Any:
    if isinstance(value, str) and convert is not canonical.keep_stored:  # a verbatim text goes as its bytes
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "surrogateescape")
            raise canonical.Rejected(f"invalid UTF-8: {raw[:30]!r}") from None
    return convert(value)


def check_row(converters: list[Callable[[Any], Any]], values: Sequence[Any]) -> list[Any]:
    row = []
    for index, (convert, value) in enumerate(zip(converters, values, strict=True)):
        try:
            row.append(None if value is None else _checked(convert, value))
        except canonical.Rejected as exc:
            raise _ColumnRejected(index, exc) from None
    return row


@dataclass
class ChunkTally:
    rows: int = 0
    hash_sum: int = 0
    hashed: bool = True  # False: rows counted, not hashed (SQLite → PostgreSQL as COPY text, run --no-verify)
    copy_sum: int | None = None  # the XXH64 sum of the text COPY lines sent (copy_sums.summed), mod 2**64

    def add(self, row: Sequence[Any], hasher: Callable[[Sequence[Any]], int] | None) -> None:
        self.rows += 1
        if hasher is not None:
            self.hash_sum += hasher(row)

    @property
    def checksum(self) -> int:
        return self.hash_sum % 2**64


@dataclass
class Reject:
    table: str
    key: Any
    column_index: int | None
    reason: str
    values: Sequence[Any] = ()
    loss: str | None = None  # a number numeric(p,s) would round ("rounded") or cannot hold ("overflow")


@dataclass
class RejectsFile:
    """``--on-error skip``: one JSON line per rejected row (table, key, column, reason, values)."""

    path: Path
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check_writable(self) -> None:
        """Before any row moves (and before ``--yes`` empties a table): a rejects file that could not be
        written would stop the run at its first rejected row."""
        from storagectl.errors import UsageError

        folder = self.path.parent
        if self.path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK) or \
                (self.path.exists() and not os.access(self.path, os.W_OK)):
            why = ("is a directory" if self.path.is_dir() else
                   f"its directory {folder} does not exist" if not folder.is_dir() else "is not writable")
            raise UsageError(f"cannot write the rejects file {self.path}: {why}",
                             hint="Try: --rejects FILE in a writable directory")

    def write(self, rejects: list[Reject], spec: TableSpec) -> None:
        if not rejects:
            return
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            for reject in rejects:
                column = spec.columns[reject.column_index].name if reject.column_index is not None else None
                out.write(json.dumps({"table": spec.source, "key": _printable(reject.key), "column": column,
                                      "reason": reject.reason, "values": [_printable(v) for v in reject.values]})
                          + "\n")
            self.count += len(rejects)


def _printable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value if isinstance(value, int | float | None) else str(value)
