"""What one table move is: source relation, target table, columns with their mapping, the chunking key,
and the schema built after the data (primary key, indexes, foreign keys, identity)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storagectl.datamove.sql.canonical import VERBATIM


@dataclass
class ColumnSpec:
    name: str  # on the target
    source: str  # SQL on the source: a quoted column or an expression
    source_type: str
    target_type: str
    kind: str  # canonical kind of the target type (storagectl.datamove.sql.canonical)
    not_null: bool = False
    note: str = ""
    source_column: str | None = None  # the plain source column it comes from (None: an expression)
    # SQLite → SQLite without a cast or expression, into a column of the same affinity: each value
    # copied as stored (storage class and bytes), neither converted nor rejected
    verbatim: bool = False


@dataclass(frozen=True)
class IndexSpec:
    name: str
    columns: tuple[str, ...]  # target column names
    unique: bool = False


@dataclass(frozen=True)
class ForeignKeySpec:
    """``columns`` are target names; the referenced table and columns are named as on the source
    until :func:`~storagectl.datamove.sql.engine.select_specs` renames them as that table moves."""

    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"
    on_update: str = "NO ACTION"

    def references_sql(self, ref_sql: str, quote: Any) -> str:
        actions = "".join(f" ON {event} {action}" for event, action in (("DELETE", self.on_delete),
                                                                      ("UPDATE", self.on_update))
                          if action != "NO ACTION")
        return (f"FOREIGN KEY ({', '.join(map(quote, self.columns))}) REFERENCES {ref_sql} "
                f"({', '.join(map(quote, self.ref_columns))}){actions}")


@dataclass
class TableSpec:
    source: str  # as shown ("orders", "public.orders")
    source_sql: str  # the quoted relation on the source
    target: str  # as shown and as stored in the state table
    target_sql: str  # the quoted relation on the target
    columns: list[ColumnSpec]
    key: str | None = None  # source SQL of the integer chunking key; None: one chunk
    key_column: str | None = None  # target column holding the key; None: verified as one group
    key_label: str = ""  # how row keys are named in messages ("id", "rowid")
    primary_key: tuple[str, ...] = ()
    identity: str | None = None  # target column made an identity, values kept
    indexes: list[IndexSpec] = field(default_factory=list)
    foreign_keys: list[ForeignKeySpec] = field(default_factory=list)
    time_column: str | None = None  # TimescaleDB: hypertable on this column
    row_estimate: int | None = None
    problems: list[str] = field(default_factory=list)
    transformed: bool = False

    @property
    def kinds(self) -> list[str]:
        """How each column's values are converted and hashed: its kind, or :data:`VERBATIM`."""
        return [VERBATIM if column.verbatim else column.kind for column in self.columns]

    def chunking(self, batch_rows: int, chunks: int | None = None) -> str:
        if self.key is None:
            return "one chunk (no integer key)"
        count = "chunks" if chunks is None else "1 chunk" if chunks == 1 else f"{chunks} chunks"
        return f"{count} of ≤{batch_rows} rows by {self.key_label}"


@dataclass(frozen=True)
class Chunk:
    """Rows with lower ≤ key < upper (None: unbounded on that side)."""

    index: int
    lower: int | None
    upper: int | None

    def where(self, key: str | None, param: str) -> tuple[str, list[int]]:
        if key is None:
            return "", []
        parts, args = [], []
        if self.lower is not None:
            parts.append(f"{key} >= {param}")
            args.append(self.lower)
        if self.upper is not None:
            parts.append(f"{key} < {param}")
            args.append(self.upper)
        return (" WHERE " + " AND ".join(parts)) if parts else "", args


def chunks_from_bounds(bounds: list[int]) -> list[Chunk]:
    """``bounds``: the first key of every chunk after the first; the first and last are open."""
    edges: list[int | None] = [None, *bounds, None]
    return [Chunk(i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def chunk_index(bounds: list[int], key: int) -> int:
    from bisect import bisect_right

    return bisect_right(bounds, key)
