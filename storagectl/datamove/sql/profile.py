"""What a SQLite table really holds, for the plan: storage classes per column (``typeof``), longest
values, NULs, invalid UTF-8, date formats, boolean spellings, and the rows the target would reject
(counted with the same checks the run applies, a sample of each)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from storagectl.datamove.model import ColumnPlan, ItemPlan, RejectSample
from storagectl.datamove.sql import canonical
from storagectl.datamove.sql.rows import ChunkTally, Reject, RowMapper
from storagectl.datamove.sql.spec import TableSpec, chunks_from_bounds

SAMPLES = 5


def profile_table(source: Any, conn: Any, spec: TableSpec, item: ItemPlan, *, to_postgres: bool) -> None:
    storage = [_storage(conn, spec, column.source) for column in spec.columns]
    formats: list[Counter[str]] = [Counter() for _ in spec.columns]
    rejects: list[Reject] = []
    pg_types = [column.target_type for column in spec.columns] if to_postgres else None
    mapper = RowMapper(spec.kinds, [], hash_rows=False, pg_types=pg_types)  # the server's range checks too
    watched = [i for i, kind in enumerate(spec.kinds) if kind in ("timestamptz", "timestamp", "date", "bool")]
    rows = _watch(source.read(conn, spec, chunks_from_bounds([])[0], with_key=True, careful=True), watched,
                  spec.kinds, formats)
    for _row in mapper.careful(rows, ChunkTally(), rejects, spec.source):
        pass
    item.rejected_rows = len(rejects)
    item.reject_samples = [RejectSample(str(r.key), spec.columns[r.column_index].name if r.column_index is not None
                                        else "", r.reason) for r in rejects[:SAMPLES]]
    by_column = Counter(r.column_index for r in rejects)
    losses: dict[int, Counter[str]] = {}
    for reject in rejects:
        if reject.loss and reject.column_index is not None:
            losses.setdefault(reject.column_index, Counter())[reject.loss] += 1
    if to_postgres and spec.foreign_keys:
        item.problems += _broken_foreign_keys(conn, spec)
    item.columns = [ColumnPlan(column.name, column.source_type, column.target_type,
                               _note(column.note, storage[i], formats[i], by_column.get(i, 0), spec.kinds[i],
                                     losses.get(i, Counter())), dict(losses.get(i, {})))
                    for i, column in enumerate(spec.columns)]


def _broken_foreign_keys(conn: Any, spec: TableSpec) -> list[str]:
    """Rows breaking a foreign key (SQLite enforces them only under ``PRAGMA foreign_keys``): the run
    copies them, then stops when PostgreSQL validates the key."""
    import sqlite3

    broken: dict[str, list[int]] = {}
    try:
        for _table, rowid, parent, _key in conn.execute(f"PRAGMA foreign_key_check({spec.source_sql})"):
            broken.setdefault(parent, []).append(rowid)
    except sqlite3.DatabaseError:  # "foreign key mismatch": a parent without a unique key to check against
        return []
    return [f"{len(rowids)} row(s) break the foreign key to {parent} (rowid {', '.join(map(str, rowids[:SAMPLES]))}"
            f"{', ...' if len(rowids) > SAMPLES else ''}): a run copies them, then stops with the key NOT VALID"
            for parent, rowids in broken.items()]


def _storage(conn: Any, spec: TableSpec, expression: str) -> dict[str, Any]:
    rows = conn.execute(f"SELECT typeof({expression}), count(*), max(length({expression})), "
                        f"sum(typeof({expression}) = 'text' AND instr({expression}, char(0)) > 0) "
                        f"FROM {spec.source_sql} GROUP BY 1").fetchall()
    return {"classes": {name: count for name, count, _, _ in rows if name != "null"},
            "max_length": max((length or 0 for name, _, length, _ in rows if name in ("text", "blob")), default=0),
            "nul": sum(nul or 0 for *_, nul in rows)}


def _watch(rows: Any, watched: list[int], kinds: list[str], formats: list[Counter[str]]) -> Any:
    for row in rows:
        for i in watched:
            value = row[i + 1]
            if value is not None:
                formats[i][_spelling(kinds[i], value)] += 1
        yield row


def _spelling(kind: str, value: Any) -> str:
    if kind == "bool":
        return repr(value)
    return canonical.date_format(value)


def _note(base: str, storage: dict[str, Any], formats: Counter[str], rejected: int, kind: str,
          losses: Counter[str]) -> str:
    parts = [base] if base else []
    classes = storage["classes"]
    if len(classes) > 1 or (classes and not _expected(kind, set(classes))):
        parts.append("typeof " + ", ".join(f"{name} {count}" for name, count in sorted(classes.items())))
    if storage["max_length"]:
        parts.append(f"max length {storage['max_length']}")
    if storage["nul"]:
        parts.append(f"{storage['nul']} with NUL")
    if formats and kind == "bool":
        parts.append("booleans as " + ", ".join(sorted(formats)))
    elif formats:
        parts.append("dates: " + ", ".join(f"{name} {count}" for name, count in formats.most_common()))
    if rejected:
        lost = ", ".join(f"{count} {'would be rounded' if loss == 'rounded' else 'overflow'}"
                         for loss, count in sorted(losses.items(), key=lambda pair: pair[0] != "rounded"))
        parts.append(f"{rejected} rejected" + (f" ({lost})" if lost else ""))
    return "; ".join(parts)


def _expected(kind: str, classes: set[str]) -> bool:
    from storagectl.datamove.sql.rows import NATIVE

    return classes <= NATIVE.get(kind, classes)
