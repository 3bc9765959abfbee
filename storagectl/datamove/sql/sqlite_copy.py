"""SQLite → PostgreSQL without Python per value: SQLite builds every row's text COPY line, and the
part of its canonical encoding that SQL can compute, in one SELECT; Python only joins lines and hashes.
Without hashing (the copy: its verify sums the lines sent instead, :mod:`copy_sums`) SQLite also
joins the lines of a piece (``group_concat``), so Python handles one string per piece, not one row
at a time: no interpreter work per row, and the GIL is not taken back after every row (workers
would hand it to each other row by row).

Every field is chosen by the value's own storage class (``typeof``) in SQL, never by a profile
of the table taken earlier: a row written since cannot slip unescaped text into the COPY.

A value the target cannot hold makes the server refuse the chunk's COPY (the expressions turn
junk into text PostgreSQL rejects rather than into NULL), and the chunk is redone carefully in
Python (:mod:`storagectl.datamove.sql.rows`), which finds and reports the row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from storagectl.datamove.sql import canonical
from storagectl.datamove.sql.spec import Chunk, ColumnSpec, TableSpec, chunks_from_bounds
from storagectl.datamove.sql.sqlite_pieces import GroupedPieces

FETCH_ROWS = 5000
# An aggregated piece holds about PIECE_BYTES of the source's values, PIECE_ROWS rows at most. A piece
# is in memory two or three times over in its reader process (SQLite's growing aggregate, the bytes
# sent) and in storagectl (received, handed to the COPY): half the size of before (256 KiB, 5000 rows)
# took 4 MiB off the peak RSS of the process tree of the benchmark's copy (78 -> 74 MiB, 2 workers), in
# the same time (4.9 s, medians of 3 alternating runs).
PIECE_BYTES = 1 << 17
PIECE_ROWS = 2500
NULL = r"'\N'"
TRUE_WORDS = "('1', 't', 'true', 'y', 'yes', 'on', '1.0')"
FALSE_WORDS = "('0', 'f', 'false', 'n', 'no', 'off', '0.0')"
EXACT_FLOATS = "1e-90 AND 1e90"
JULIAN = f"BETWEEN {canonical.JULIAN_MIN} AND {canonical.JULIAN_MAX}"
INT64_REAL = "9223372036854775808.0"  # 2^63 as a REAL: the whole REALs below it (and from -2^63) are integers
# an integer column's field SQL leaves to Python (text such as '012' or ' 7', which Python reads as
# integers); the verify's SQL hashes of a table holding it give way to Python's (canonical.to_int)
NOT_AN_INTEGER = "not a plain integer"


# A GLOB matching text that holds a character text COPY escapes (backslash, tab, newline, carriage
# return: in a bracket expression the backslash is an ordinary character)
NEEDS_ESCAPING = "'*[\\\t\n\r]*'"


def escaped(expr: str) -> str:
    """A value as a text COPY field: backslash, newline, carriage return and tab escaped. The
    replacements only run on text that holds one of them (each allocates a copy of the text, under
    SQLite's global allocator lock)."""
    text = f"CAST({expr} AS TEXT)"
    return (f"CASE WHEN {text} GLOB {NEEDS_ESCAPING} THEN replace(replace(replace(replace({text}, '\\', '\\\\'), "
            f"char(10), '\\n'), char(13), '\\r'), char(9), '\\t') ELSE {text} END")


def copy_field(column: ColumnSpec) -> str:
    """A column's text COPY field. Every branch is taken by the value's own storage class (``typeof``),
    not by what a profile of the table found, so a row written after the profile cannot slip an
    unescaped text (``\\N``, a tab) into the COPY."""
    c, kind = column.source, column.kind
    if kind == "int":  # also the canonical field: a spelling other than the plain integer goes through Python
        # a whole REAL (`price * 100` cast to bigint) is the integer it holds, as canonical.to_int has it
        return (f"CASE WHEN typeof({c}) = 'integer' THEN {c} WHEN {c} IS NULL THEN NULL "
                f"WHEN CAST(CAST({c} AS INTEGER) AS TEXT) = {c} THEN CAST({c} AS TEXT) "
                f"WHEN typeof({c}) = 'real' AND {c} >= -{INT64_REAL} AND {c} < {INT64_REAL} "
                f"AND {c} = CAST({c} AS INTEGER) THEN CAST(CAST({c} AS INTEGER) AS TEXT) "
                f"ELSE '{NOT_AN_INTEGER}' END")
    if kind == "float":
        # SQLite's printf is exact to 17 digits only between 1e-90 and 1e90 (measured): a REAL beyond
        # goes as text the server refuses, and its chunk through Python, which writes every digit
        return (f"CASE WHEN typeof({c}) <> 'real' THEN {escaped(c)} WHEN {c} = 0 OR abs({c}) BETWEEN {EXACT_FLOATS} "
                f"THEN printf('%!.17g', {c}) ELSE 'float beyond exact printf' END")
    if kind == "bytes":
        return f"CASE WHEN {c} IS NOT NULL THEN '\\\\x' || hex({c}) END"  # hex(NULL) is ''
    if kind == "bool":
        word = f"lower(trim(CAST({c} AS TEXT)))"
        return (f"CASE {c} WHEN 1 THEN 't' WHEN 0 THEN 'f' WHEN 't' THEN 't' WHEN 'f' THEN 'f' "
                f"ELSE CASE WHEN {c} IS NULL THEN NULL "
                f"WHEN {word} IN {TRUE_WORDS} THEN 't' WHEN {word} IN {FALSE_WORDS} THEN 'f' "
                "ELSE 'not a boolean' END END")
    if kind in ("timestamptz", "timestamp", "date"):
        return _moment_field(c, kind)
    if kind == "numeric" and (bounds := canonical.numeric_bounds(column.target_type)):
        return _bounded_numeric_field(c, *bounds)
    if kind == "numeric":
        return f"CASE WHEN typeof({c}) IN ('integer', 'real') THEN {c} ELSE {escaped(c)} END"
    return escaped(c)


def _bounded_numeric_field(c: str, precision: int, scale: int) -> str:
    """``numeric(p,s)`` rounds a value with more decimals without a word: a number it holds exactly
    goes as it is; any other (or text, which SQL cannot judge) as text the server refuses, so its
    chunk is redone in Python, which rejects exactly the rows it would round or cannot hold."""
    exact = f"typeof({c}) = 'integer' OR (typeof({c}) = 'real' AND round({c}, {scale}) = {c})" if scale >= 0 \
        else "0"
    return (f"CASE WHEN {c} IS NULL THEN NULL WHEN ({exact}) AND abs({c}) < 1e{precision - scale} THEN {c} "
            f"ELSE 'not exactly numeric({precision},{scale})' END")


def _moment_field(c: str, kind: str) -> str:
    """Unix INTEGER seconds, Julian-day or Unix REALs (to the millisecond) as ISO text; text as it is
    (the server parses it); 0 and out-of-range numbers as text the server refuses."""
    if kind == "date":
        seconds, julian, epoch = f"date({c}, 'unixepoch')", f"date({c})", f"date({c}, 'unixepoch')"
    else:
        seconds = f"strftime('%Y-%m-%d %H:%M:%S', {c}, 'unixepoch')"
        julian = f"strftime('%Y-%m-%d %H:%M:%f', {c})"
        epoch = f"strftime('%Y-%m-%d %H:%M:%f', {c}, 'unixepoch')"
    return (f"CASE typeof({c}) WHEN 'integer' THEN CASE WHEN {c} = 0 THEN 'junk date 0' ELSE coalesce({seconds}, "
            f"'date out of range') END WHEN 'real' THEN coalesce(CASE WHEN {c} {JULIAN} THEN {julian} ELSE {epoch} "
            f"END, 'date out of range') ELSE {escaped(c)} END")


GLOB_DATE = "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]"
GLOB_SECONDS = GLOB_DATE + " [0-2][0-9]:[0-5][0-9]:[0-5][0-9]"
GLOB_MICROSECONDS = GLOB_SECONDS + ".[0-9][0-9][0-9][0-9][0-9][0-9]"  # what a SQLite target holds


def fallback_field(column: ColumnSpec) -> str:
    """A date or time's canonical field in SQL for the common spellings (numbers, ``YYYY-MM-DD``,
    ``YYYY-MM-DD HH:MM:SS``); NULL for any other, which Python then encodes."""
    c = column.source
    if column.kind == "date":
        return (f"CASE typeof({c}) WHEN 'text' THEN CASE WHEN {c} GLOB '{GLOB_DATE}' THEN {c} END "
                f"WHEN 'integer' THEN date({c}, 'unixepoch') WHEN 'real' THEN CASE WHEN {c} {JULIAN} THEN date({c}) "
                f"ELSE date({c}, 'unixepoch') END END")
    return (f"CASE typeof({c}) WHEN 'text' THEN CASE WHEN {c} GLOB '{GLOB_SECONDS}' THEN {c} || '.000000' "
            f"WHEN {c} GLOB '{GLOB_MICROSECONDS}' THEN {c} END "
            f"WHEN 'integer' THEN strftime('%Y-%m-%d %H:%M:%S', {c}, 'unixepoch') || '.000000' "
            f"WHEN 'real' THEN CASE WHEN {c} {JULIAN} THEN strftime('%Y-%m-%d %H:%M:%f', {c}) "
            f"ELSE strftime('%Y-%m-%d %H:%M:%f', {c}, 'unixepoch') END || '000' END")


class SQLiteCopyReader:
    """One table's chunks as text COPY data, with their row count and checksum.

    The SELECT returns the COPY fields of the date, time, float and numeric columns as one
    tab-joined text and of the other columns as another (which is also their canonical encoding);
    then the canonical fields of the date and time columns joined (NULL when one needs Python),
    their values, and the values of the float and numeric columns (always encoded in Python). The
    COPY column list follows the canonical order, so the second text serves both. :meth:`hashes`
    runs the same SELECT without the first text, to checksum a table."""

    def __init__(self, spec: TableSpec, *, hashing: bool = True, row_bytes: int = 0) -> None:
        self.spec = spec
        # rows per aggregated piece: wide rows in fewer, so a piece stays near PIECE_BYTES
        self.piece_rows = max(1, min(PIECE_ROWS, PIECE_BYTES // max(row_bytes, 1)))
        self.hashing = hashing  # False (the copy): the COPY text alone; True: hashed row by row as read
        kinds = spec.kinds
        self.order = canonical.canonical_order(kinds)
        in_sql = [i for i in self.order if kinds[i] not in canonical.FALLBACK_KINDS + canonical.PYTHON_KINDS]
        rest = [i for i in self.order if i not in in_sql]
        self.fallback = [i for i in rest if kinds[i] in canonical.FALLBACK_KINDS]
        self.in_python = [i for i in rest if kinds[i] in canonical.PYTHON_KINDS]

        def line(indices: list[int]) -> str:
            fields = " || char(9) || ".join(f"coalesce({copy_field(spec.columns[i])}, {NULL})"
                                            for i in indices)
            return f"CAST({fields} AS TEXT)" if fields else "''"  # one integer column alone stays an integer

        fallback = " || char(9) || ".join(
            f"CASE WHEN {spec.columns[i].source} IS NULL THEN {NULL} ELSE {fallback_field(spec.columns[i])} END"
            for i in self.fallback) or "''"
        extra = "".join(f", {spec.columns[i].source}" for i in self.fallback + self.in_python)
        self.has_sql = bool(in_sql)
        self.hash_select = f"{line(in_sql)}, {fallback}{extra} FROM {spec.source_sql}"
        self.select = (f"SELECT {line(rest)}, {self.hash_select}" if hashing
                       else f"SELECT {line(rest)}, {line(in_sql)} FROM {spec.source_sql}")
        self.has_rest = bool(rest)
        self.whole_line = line(self.order)

    @property
    def copy_columns(self) -> list[str]:
        return [self.spec.columns[i].name for i in self.order]

    def row_hasher(self, start: int) -> Any:
        """``row_hash(row)``: the hash of a row of the SELECT whose canonical part begins at ``start``."""
        import hashlib
        import struct

        md5, from_bytes = hashlib.md5, int.from_bytes
        kinds = self.spec.kinds
        has_int = any(kinds[i] == "int" for i in self.order if i not in self.fallback + self.in_python)
        if not self.fallback and not self.in_python:  # every field built in SQL: one text to hash
            if has_int:
                return lambda row: from_bytes(md5(_integers_read(row[start]).encode()).digest()[:8], "big",
                                              signed=True)
            return lambda row: from_bytes(md5(row[start].encode()).digest()[:8], "big", signed=True)
        fallback = [(canonical.converter(kinds[i]), canonical.CANON[kinds[i]]) for i in self.fallback]
        pack = struct.Struct(">d").pack
        python = [(kinds[i] == "float", canonical.converter(kinds[i]), canonical.CANON[kinds[i]])
                  for i in self.in_python]
        null, has_sql, n_fallback = canonical.NULL_FIELD, self.has_sql, len(fallback)

        def row_hash(row: Any) -> int:
            fields = [_integers_read(row[start]) if has_int else row[start]] if has_sql else []
            if n_fallback:
                joined = row[start + 1]
                if joined is None:  # a spelling SQL does not encode: all of them in Python
                    values = row[start + 2:start + 2 + n_fallback]
                    joined = "\t".join(null if v is None else encode(convert(v))
                                        for (convert, encode), v in zip(fallback, values, strict=True))
                fields.append(joined)
            at = start + 2 + n_fallback
            for double, convert, encode in python:
                value = row[at]
                at += 1
                if value is None:
                    fields.append(null)
                elif double and type(value) is float:
                    fields.append(pack(value or 0.0).hex())  # a REAL: canonical._canon_float without the calls
                else:
                    fields.append(encode(convert(value)))
            text = fields[0] if len(fields) == 1 else "\t".join(fields)
            return from_bytes(md5(text.encode()).digest()[:8], "big", signed=True)

        return row_hash

    def pieces(self, conn: Any, chunk: Chunk, tally: Any) -> Iterator[str]:
        """The chunk's COPY text in pieces of up to FETCH_ROWS lines, counted and hashed into ``tally``
        (``rows``, ``hash_sum``); raises :class:`canonical.Rejected` for a value Python cannot encode."""
        if not self.hashing and self.spec.key is not None:
            yield from self._grouped_pieces(conn, chunk, tally)
            return
        where, args = chunk.where(self.spec.key, "?")
        row_hash, has_sql, has_rest = self.row_hasher(1), self.has_sql, self.has_rest
        cursor = conn.execute(self.select + where, args)
        while rows := cursor.fetchmany(FETCH_ROWS):
            if not has_rest:
                lines = [row[1] for row in rows]
            elif has_sql:
                lines = [f"{row[1]}\t{row[0]}" for row in rows]
            else:
                lines = [row[0] for row in rows]
            tally.rows += len(rows)
            if self.hashing:
                tally.hash_sum += sum(map(row_hash, rows))
            lines.append("")
            yield "\n".join(lines)

    def _grouped_pieces(self, conn: Any, chunk: Chunk, tally: Any) -> Iterator[str]:
        """Pieces of up to ``piece_rows`` lines joined by SQLite (:class:`GroupedPieces`)."""
        for rows, text in self.grouped().pieces(conn, chunk.lower, chunk.upper):
            tally.rows += rows
            yield text + "\n"

    def for_process(self) -> GroupedPieces | SQLiteCopyReader:
        """What a reader process (:mod:`reader_child`) is given for this table: without hashing the
        SQL of its grouped pieces, which it runs without importing storagectl's encodings."""
        return self.grouped() if not self.hashing and self.spec.key is not None else self

    def grouped(self) -> GroupedPieces:
        """What a reader process needs of this table without hashing (the key is unique)."""
        assert self.spec.key is not None
        return GroupedPieces(self.spec.source_sql, self.spec.key, self.whole_line, self.piece_rows)

    def hashes(self, conn: Any, key: str | None) -> Iterator[tuple[Any, int]]:
        """(key, row hash) of every row; ``key``: SQL of the key (None: NULL)."""
        row_hash = self.row_hasher(1)
        cursor = conn.execute(f"SELECT {key or 'NULL'}, {self.hash_select}")
        while rows := cursor.fetchmany(FETCH_ROWS):
            for row in rows:
                yield row[0], row_hash(row)

    def chunk_sums(self, conn: Any, bounds: list[int], only: set[int] | None = None) -> dict[int, tuple[int, int]]:
        """{chunk: (rows, checksum)} of the chunks that hold rows (``only``: of these alone), each read as
        a range of the key (a rowid or its alias, never NULL) and hashed a batch at a time: no Python
        per row but the hash."""
        row_hash = self.row_hasher(0)
        sums = {}
        for chunk in chunks_from_bounds(bounds):
            if only is not None and chunk.index not in only:
                continue
            where, args = chunk.where(self.spec.key, "?")
            rows = total = 0
            cursor = conn.execute(f"SELECT {self.hash_select}{where}", args)
            while batch := cursor.fetchmany(FETCH_ROWS):
                rows += len(batch)
                total += sum(map(row_hash, batch))
            if rows:
                sums[chunk.index] = (rows, total % 2**64)
        return sums


def _integers_read(text: str) -> str:
    """The SQL-built fields of a row, unless an integer column's field was left to Python: then the
    table is hashed value by value in Python instead (the caller falls back on Rejected), so a value
    such as ``'012'`` or ``' 7'`` hashes as the integer the copy sent."""
    if NOT_AN_INTEGER in text:
        raise canonical.Rejected(NOT_AN_INTEGER)
    return text
