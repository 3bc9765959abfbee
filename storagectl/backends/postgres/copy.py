"""``COPY ... TO STDOUT`` in ~1 MiB pieces of whole rows: from ``psql`` in blocks (:class:`PsqlCopyOut`,
large text tables), or straight from libpq (:class:`CopyOut`, binary and small tables).

libpq hands over one row per call, so :class:`CopyOut` costs Python work per row (about 1 µs, most of
a backup of narrow rows). ``psql`` runs that loop in C and writes the rows to a pipe;
:class:`PsqlCopyOut` reads the pipe in blocks and cuts them after their last newline. Pieces of text
rows are checksummed in one pass (:func:`storagectl.rowsum.line_crc32_sum`: C, no Python object per
row, the GIL released meanwhile; without the C accelerator ``bytes.splitlines`` and
``map(zlib.crc32, ...)``, about 14x slower), binary ones tuple by tuple. Both readers compute the same
:func:`row_checksum`.

psycopg's ``Copy.read()`` runs a wait generator per row: about 2.3 µs of Python per row, which on a
1.5 M-row database costs more CPU than compressing the data. Here the rows are taken from
``PGconn.get_copy_data`` in a tight loop and joined into pieces; the process waits for the socket
only when libpq holds no complete row. Measured on the benchmark's ``orders`` table (1 M rows,
172 MB): 2.4 CPU seconds with ``Copy.read()``, 1.2 with this loop (before checksumming).

Uses only the public low-level API (:mod:`psycopg.pq`); the connection must not be used by another
thread meanwhile and is idle again when the generator is exhausted. A failure leaves it mid-COPY:
the caller closes it (every caller does, on error).
"""

from __future__ import annotations

import selectors
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from storagectl.rowsum import line_crc32_sum

# (lines, sum of a hash of each line) of a piece of text rows: line_crc32_sum for row_checksum, or
# another hash (storagectl.datamove.sql.copy_sums: XXH64, doubles read, of a SQLite → PostgreSQL copy)
LineSums = Callable[[bytes], tuple[int, int]]
PIECE_BYTES = 1 << 20  # rows are joined into pieces of about this size

# Binary COPY framing (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4): an
# 11-byte signature, int32 flags, int32 length of a header extension; a trailer of int16 -1.
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
BINARY_HEADER = BINARY_SIGNATURE + bytes(8)  # no flags, no extension: what servers send
BINARY_TRAILER = b"\xff\xff"


def row_checksum(rows_crc32_sum: int, copy_format: str = "text", *, format_2: bool = False) -> str:
    """A table's content checksum as stored in the manifest: ``<copy format>:<16 hex digits>``, the
    sum mod 2**64 of the crc32 of every COPY row (text: the line, newline included; binary: the
    tuple, without the stream's header and trailer), so it does not depend on row order: a table
    loaded in parallel parts holds its rows in another physical order than the backup read them in.
    Archive format 2 recorded the digits alone (text, read with the server's default search_path);
    ``format_2`` writes them so, for comparison with such a backup."""
    digits = f"{rows_crc32_sum % 2**64:016x}"
    return digits if format_2 else f"{copy_format}:{digits}"


def checksum_format(checksum: str) -> str:
    """How a :func:`row_checksum` was computed: ``binary``, ``text`` or ``format-2`` (text)."""
    copy_format, colon, _digits = checksum.partition(":")
    return copy_format if colon else "format-2"


class CopyOut:
    """Iterate over the pieces of one ``COPY ... TO STDOUT``.

    Counts the rows read so far (``rows_read``) and sums their crc32 (``row_sum``, see
    :func:`row_checksum`: binary tuples as libpq hands them over, text rows a piece at a time, or
    another hash of each line with ``line_sums``);
    ``rows`` is the server's row count, set when the COPY is done. With ``binary`` the statement is
    a ``(FORMAT binary)`` COPY and the pieces hold its tuples only: the header and trailer are
    checked and left out (see :data:`BINARY_HEADER`). With ``checksum=False`` no crc32 is computed
    (``row_sum`` stays 0): for a reader that passes the rows on to another COPY, which counts them.
    """

    def __init__(self, conn: Any, statement: str, *, binary: bool = False, checksum: bool = True,
                 line_sums: LineSums = line_crc32_sum) -> None:
        self.conn = conn
        self.line_sums = line_sums
        self.pgconn = conn.pgconn
        self.statement = statement
        self.binary = binary
        self.checksum = checksum
        self.rows = -1
        self.rows_read = 0
        self.row_sum = 0
        self.selector = selectors.DefaultSelector()

    def __iter__(self) -> Iterator[bytes]:
        from psycopg import pq

        try:
            self.selector.register(self.pgconn.socket, selectors.EVENT_READ)
            self.pgconn.send_query(self.statement.encode("utf-8"))
            self._flush()
            self._expect(self._next_result(), pq.ExecStatus.COPY_OUT)
            yield from self._pieces()
            self.rows = self._finish()
        finally:
            self.selector.close()

    def _pieces(self) -> Iterator[bytes]:
        get_copy_data = self.pgconn.get_copy_data
        rows: list[Any] = []
        size = 0
        if self.binary:
            first = self._after_header()
            if first is None:
                return  # over before it began: _finish() raises the server's error
            if first:  # else the header came alone
                rows.append(first)
                size = len(first)
        trailer = BINARY_TRAILER if self.binary else None  # a text row never equals None
        while True:
            nbytes, row = get_copy_data(1)  # 1: never block while holding the GIL
            if nbytes > 2 or (nbytes > 0 and row != trailer):
                rows.append(row)
                size += nbytes
                if size >= PIECE_BYTES:
                    yield self._piece(rows)
                    rows.clear()
                    size = 0
            elif nbytes == 0:
                self._wait_readable()
            elif nbytes < 0:
                break  # -1: the COPY is over; -2 cannot happen in COPY_OUT state
            # else: the binary trailer; the end of the COPY follows
        if rows:
            yield self._piece(rows)

    def _after_header(self) -> bytes | None:
        """The first message of a binary COPY without the header it starts with (None: the COPY
        ended without data, e.g. on an error in its first row)."""
        import psycopg

        while (first := self.pgconn.get_copy_data(1))[0] == 0:
            self._wait_readable()
        nbytes, data = first
        if nbytes < 0:
            return None
        data = bytes(data)
        flags, extension = int.from_bytes(data[11:15], "big"), int.from_bytes(data[15:19], "big")
        # Flag bits 16-31 mark changes a reader must not ignore; bits 0-15 compatible ones.
        if not data.startswith(BINARY_SIGNATURE) or len(data) < 19 + extension or flags >> 16:
            raise psycopg.DataError(f"{self.statement!r} did not start with a binary COPY header this "
                                    "version of storagectl reads")
        rest = data[19 + extension:]
        return b"" if rest == BINARY_TRAILER else rest  # an empty table: header and trailer at once

    def _piece(self, rows: list[Any]) -> bytes:
        self.rows_read += len(rows)
        piece = b"".join(rows)
        if self.checksum and self.binary:
            self.row_sum += sum(map(zlib.crc32, rows))
        elif self.checksum:  # each text row one line: summed per byte, as PsqlCopyOut sums them
            self.row_sum += self.line_sums(piece)[1]
        return piece

    def _finish(self) -> int:
        import psycopg
        from psycopg import pq

        result = self._next_result()
        self._expect(result, pq.ExecStatus.COMMAND_OK)
        extra = 0
        while self._next_result() is not None:  # the end of the query
            extra += 1
        if extra:
            raise psycopg.ProgrammingError(f"{self.statement!r} is more than one COPY statement")
        return int(result.command_tuples or 0)

    def _flush(self) -> None:
        """psycopg connections are non-blocking: libpq may hold back part of the query until flushed."""
        while self.pgconn.flush():
            self.selector.modify(self.pgconn.socket, selectors.EVENT_READ | selectors.EVENT_WRITE)
            for _key, events in self.selector.select():
                if events & selectors.EVENT_READ:
                    self.pgconn.consume_input()
        self.selector.modify(self.pgconn.socket, selectors.EVENT_READ)

    def _next_result(self) -> Any:
        while self.pgconn.is_busy():
            self._wait_readable()
        return self.pgconn.get_result()

    def _wait_readable(self) -> None:
        self.selector.select()
        self.pgconn.consume_input()  # raises psycopg.OperationalError when the connection is lost

    def _expect(self, result: Any, status: Any) -> None:
        import psycopg
        from psycopg import errors

        if result is not None and result.status == status:
            return
        if result is None:
            raise psycopg.OperationalError(f"no result for {self.statement!r}")
        while self._next_result() is not None:  # leave the connection idle for the caller
            pass
        raise errors.error_from_result(result, encoding=self.conn.info.encoding)


class PsqlCopyOut:
    """Iterate over the pieces of one text ``COPY ... TO STDOUT`` that ``command`` (a ``psql`` run
    printing that COPY's data and nothing else) writes, with :class:`CopyOut`'s ``rows``,
    ``rows_read`` and ``row_sum``.

    A text COPY row ends with the only unescaped newline in it, so a block of psql's output cut after
    its last newline holds whole rows. ``failed(exit code, stderr)`` makes the error raised when psql
    fails (its stderr may name the connection: the caller redacts it); abandoning the iteration kills
    psql.
    """

    def __init__(self, command: list[str], env: dict[str, str], failed: Callable[[int, str], Exception], *,
                 line_sums: LineSums = line_crc32_sum) -> None:
        self.command = command
        self.line_sums = line_sums
        self.env = env
        self.failed = failed
        self.rows = -1
        self.rows_read = 0
        self.row_sum = 0

    def __iter__(self) -> Iterator[bytes]:
        from storagectl.backends.postgres.tools import spawn

        # stderr to a file: a pipe nobody drains would block psql after 64 KiB of messages
        with tempfile.TemporaryFile() as stderr, spawn(self.command, stdout=subprocess.PIPE, stderr=stderr,
                                                       env=self.env) as process:
            try:
                rest = yield from self._pieces(process.stdout)
            except BaseException:
                process.kill()  # and the context waits for it
                raise
            code = process.wait()
            stderr.seek(0)
            if code != 0 or rest:
                raise self.failed(code, stderr.read().decode(errors="replace").strip() or
                                  f"the output ended inside a row ({len(rest)} bytes)")
        self.rows = self.rows_read

    def _pieces(self, stdout: Any) -> Iterator[bytes]:
        """Whole-row pieces; returns what followed the last newline (nothing, unless psql failed)."""
        pending: list[bytes] = []  # blocks of a row longer than a block, joined once it ends
        while block := stdout.read(PIECE_BYTES):  # buffered: a whole block (a pipe holds 64 KiB)
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                pending.append(block)
                continue
            piece = b"".join([*pending, block[:cut]]) if pending else block if cut == len(block) else block[:cut]
            pending = [block[cut:]] if cut < len(block) else []
            self._count(piece)
            yield piece
        return b"".join(pending)

    def _count(self, piece: bytes) -> None:
        # Lines with their newline, as CopyOut sums them: a text COPY row ends at its only unescaped
        # newline, and the piece ends after one.
        rows, row_sum = self.line_sums(piece)
        self.rows_read += rows
        self.row_sum += row_sum
