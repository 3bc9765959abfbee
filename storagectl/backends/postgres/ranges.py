"""A large table copied as several ctid ranges side by side, in the same snapshot.

One ``COPY`` is one server process: on a table that dominates the database, the server's single
COPY bounds the whole backup (``pg_dump -Fd -j`` has the same limit). PostgreSQL 14+ reads
``WHERE ctid >= '(p,0)' AND ctid < '(q,0)'`` with a TID range scan (only those pages), so a table
of ``pages`` heap pages is cut into page ranges, each its own ``COPY (SELECT <columns> ...)`` on
its own worker. Every range writes its own archive parts (each a complete COPY stream, as parts
always were), so the archive is the same format: a table with more parts. The first range has no
lower bound and the last no upper one, so rows on pages added after the size was read (never
visible in the snapshot, but harmless) cannot be missed. The content checksum is a sum over rows
(:func:`~storagectl.backends.postgres.copy.row_checksum`), so the ranges' sums add up to the
table's.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from storagectl.backends.postgres.schema import Table

# A range is at least this size on disk: below it a second COPY costs more to start (a connection,
# a psql) than it saves, and a text range stays large enough to be read through psql
# (archive.PSQL_MIN_BYTES) rather than row by row.
RANGE_MIN_BYTES = 16 << 20
SPLIT_MIN_BYTES = 2 * RANGE_MIN_BYTES  # tables from this size on (on disk) are split
RANGE_MAX_BYTES = 128 << 20  # more ranges than workers for a huge table: they balance with the others
TID_RANGE_SCAN_VERSION = 140000  # older servers would read the whole table for every range
# Each range keeps about two cores busy (the server's COPY, psql and our checksum and compression):
# on 2 cores two ranges only competed (bench/bench_pg_backup.py --shape int-pairs-1.25m: 1.86 s
# with 2 ranges against 1.27 s with one COPY), so a table is split for at most cores / 2 workers.
CORES_PER_RANGE = 2

RANGE_FACTS_SQL = """
SELECT pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::bigint,
       array(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
             AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum)
FROM pg_catalog.pg_class c WHERE c.oid = %s::pg_catalog.regclass
"""


def range_count(size: int, workers: int) -> int:
    """How many ranges a table of ``size`` bytes is copied in by ``workers`` (1: not split): a
    multiple of the workers, so they finish together, with ranges of at most RANGE_MAX_BYTES, but
    none smaller than RANGE_MIN_BYTES."""
    if workers < 2 or size < SPLIT_MIN_BYTES:
        return 1
    return max(1, min(workers * math.ceil(size / (workers * RANGE_MAX_BYTES)), size // RANGE_MIN_BYTES))


def page_bounds(pages: int, count: int) -> list[tuple[int | None, int | None]]:
    """``count`` page ranges ``[start, end)`` covering every page (None: unbounded)."""
    cuts = [pages * index // count for index in range(1, count)]
    return list(zip([None, *cuts], [*cuts, None], strict=True))


def split_tables(conn: Any, tables: list[Table], workers: int, server_version: int) -> list[Table]:
    """``tables`` with each large one replaced by its ranges (``Table.page_range`` set; ``size`` its
    share). Extension configuration tables (copied with a filter) and tables without columns stay
    whole."""
    workers = min(workers, (os.cpu_count() or 1) // CORES_PER_RANGE)
    if server_version < TID_RANGE_SCAN_VERSION or workers < 2:
        return tables
    result: list[Table] = []
    for table in tables:
        count = range_count(table.size, workers) if table.condition is None else 1
        if count > 1:
            pages, columns = conn.execute(RANGE_FACTS_SQL, [table.unit]).fetchone()
            count = min(count, pages)
            if count > 1 and columns:
                result += [replace(table, size=table.size // count, page_range=bounds, columns=tuple(columns))
                           for bounds in page_bounds(pages, count)]
                continue
        result.append(table)
    return result


@dataclass
class RangeResults:
    """The ranges' results gathered per table, from several worker threads: parts, rows, crc32 sums."""

    done: dict[tuple[str, str], list[tuple[int | None, list[str], int, int]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    numbers: dict[tuple[str, str], Iterator[int]] = field(default_factory=dict)

    def part_numbers(self, table: Table) -> Iterator[int]:
        """One numbering of the archive parts for all ranges of a table (so their names differ)."""
        with self.lock:
            return self.numbers.setdefault((table.schema, table.name), itertools.count(1))

    def add(self, table: Table, names: list[str], rows: int, crc32_sum: int) -> None:
        start = table.page_range[0] if table.page_range else None
        with self.lock:
            self.done.setdefault((table.schema, table.name), []).append((start, names, rows, crc32_sum))

    def table(self, schema: str, name: str) -> tuple[list[str], int, int]:
        """(parts in page order, rows, crc32 sum) of a table."""
        ranges = sorted(self.done[(schema, name)], key=lambda done: -1 if done[0] is None else done[0])
        return ([part for _start, names, _rows, _sum in ranges for part in names],
                sum(done[2] for done in ranges), sum(done[3] for done in ranges))
