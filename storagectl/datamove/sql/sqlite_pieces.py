"""A chunk's text COPY lines joined by SQLite, a piece of at most ``piece_rows`` rows at a time (the
copy of a table with an integer key). It imports nothing but :mod:`sqlite3`: the SQLite reader
process (:mod:`reader_child`) runs it without the rest of storagectl, so each reader stays a bare
interpreter with SQLite.

Each piece is one range of the table's unique integer key (the rowid or its alias) and one aggregate
over it: its end is found first by stepping over ``piece_rows`` keys in the key's b-tree (no row
decoded), then ``group_concat`` joins the lines of exactly that range. A ``LIMIT`` subquery under the
aggregate would do it in one statement, but SQLite copies every line once more out of the subquery
(measured: a fifth more reader CPU on the benchmark's tables).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (see reader_child)
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator


class GroupedPieces:
    """``line``: the SQL of a row's whole text COPY line; ``key``: SQL of the unique integer key."""

    def __init__(self, source_sql: str, key: str, line: str, piece_rows: int) -> None:
        self.key, self.piece_rows = key, piece_rows
        self.step = f"SELECT {key} FROM {source_sql}{{}} ORDER BY {key} LIMIT 1 OFFSET {piece_rows}"
        self.joined = f"SELECT count(*), group_concat({line}, char(10)) FROM {source_sql}{{}}"

    def pieces(self, conn: sqlite3.Connection, lower: int | None, upper: int | None
               ) -> Iterator[tuple[int, str | bytes]]:
        """(rows, text) of each piece holding rows of the chunk ``lower`` ≤ key < ``upper`` (None: open), in
        key order; the text (str or bytes, as the connection's ``text_factory`` makes it) without the
        last line's newline."""
        while True:
            found = conn.execute(*self._where(self.step, lower, None)).fetchone()
            last = found is None or (upper is not None and found[0] >= upper)
            end = upper if last else found[0]
            rows, text = conn.execute(*self._where(self.joined, lower, end)).fetchone()
            if rows:
                yield rows, text
            if last:
                return
            lower = end

    def _where(self, sql: str, lower: int | None, upper: int | None) -> tuple[str, list[int]]:
        """``sql`` limited to lower ≤ key < upper: one range on the key, never two (SQLite would seek by
        one and test every row of it against the other)."""
        parts, args = [], []
        if lower is not None:
            parts.append(f"{self.key} >= ?")
            args.append(lower)
        if upper is not None:
            parts.append(f"{self.key} < ?")
            args.append(upper)
        return sql.format(" WHERE " + " AND ".join(parts) if parts else ""), args
