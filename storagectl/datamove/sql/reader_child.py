"""The SQLite reader process itself (started by :class:`~storagectl.datamove.sql.reader_process.ReaderProcess`
as ``python -S -m`` this module): it reads chunks and sends their text COPY data back.

It is kept to a bare interpreter with SQLite, as each ``--parallel`` worker has one: no site
packages (``-S``), and at module level nothing but the standard library's sqlite3, the C parts of
pickle and signal (``_pickle``, ``_signal``: pickle.py and signal.py import re and enum) and ctypes
(for the parent-death signal); the socket is read and written as a plain file descriptor (socket.py
imports selectors and enum). Measured with the benchmark's tables: about 15 MiB RSS at its peak,
where pickle.py, socket.py, signal.py, typing and contextlib made 17 MiB, and importing the reader's
modules of storagectl (canonical encodings, rows, specs: json, decimal, uuid, dataclasses, inspect,
multiprocessing) and site-packages made 27 MiB. A table with an integer key comes as
:class:`GroupedPieces` (SQL strings) and its text as bytes (never decoded to str and encoded back);
only a table without one (or a hashing reader) comes as a :class:`SQLiteCopyReader` object, whose
unpickling imports the canonical encodings then.

Messages use the framing of :class:`multiprocessing.connection.Connection` (4-byte signed big-endian
length, pickled objects), which storagectl reads with.
"""

from __future__ import annotations

import os
import sqlite3
import sys

try:
    from _pickle import dumps, loads
except ImportError:  # a Python without the C accelerator
    from pickle import dumps, loads
try:
    from _signal import SIG_IGN, SIGINT, signal
except ImportError:
    from signal import SIG_IGN, SIGINT, signal

from storagectl.datamove.sql.sqlite_pieces import GroupedPieces

TYPE_CHECKING = False  # typing's, without importing typing
if TYPE_CHECKING:
    from typing import Any

END = b""  # after a chunk's pieces; then its outcome: (rows, hash_sum) or the error
CACHE_KIB = 512


class Channel:
    """The socket to storagectl, in :class:`multiprocessing.connection.Connection`'s framing, read and
    written as a file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def recv(self) -> Any:
        size = int.from_bytes(self._read(4), "big", signed=True)
        if size == -1:  # Connection's framing of 2 GiB or more
            size = int.from_bytes(self._read(8), "big")
        return loads(self._read(size))

    def send(self, message: Any) -> None:
        self.send_bytes(dumps(message))

    def send_bytes(self, *parts: bytes) -> None:
        """``parts`` as one message, gathered by the kernel (a piece is not copied to add its newline)."""
        size = sum(map(len, parts))
        header = size.to_bytes(4, "big", signed=True)
        sent = os.writev(self.fd, [header, *parts])
        if sent < size + 4:  # a signal cut the write short
            rest = memoryview(b"".join([header, *parts]))[sent:]
            while rest:
                rest = rest[os.write(self.fd, rest):]

    def _read(self, size: int) -> bytes:
        data = os.read(self.fd, size)
        while len(data) < size:
            more = os.read(self.fd, size - len(data))
            if not more:
                raise EOFError
            data += more
        return data


def serve(channel: Channel) -> None:
    database, busy_timeout, readers = channel.recv()
    conn = sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=busy_timeout, isolation_level=None)
    # a piece's pages are read twice (its end stepped to, then its lines joined), never again: SQLite's
    # default 2 MiB page cache only adds to the reader's RSS (measured: 1.5 MiB less, same CPU)
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    while True:
        try:
            table, index, lower, upper = channel.recv()
        except EOFError:  # storagectl is done with this reader
            return
        reader = readers[table]
        try:
            if isinstance(reader, GroupedPieces):
                outcome: Any = (_send_grouped(channel, conn, reader, lower, upper), 0)
            else:
                outcome = _send_hashed(channel, conn, reader, index, lower, upper)
        except Exception as exc:  # noqa: BLE001 - raised again in storagectl, as if read there
            outcome = _portable(exc)
        channel.send_bytes(END)
        channel.send(outcome)


def _send_grouped(channel: Channel, conn: sqlite3.Connection, reader: GroupedPieces, lower: int | None,
                  upper: int | None) -> int:
    """The chunk's lines as SQLite joined them, as UTF-8 bytes straight from SQLite: text that is not
    UTF-8 goes as it is and the server refuses the chunk's COPY, which storagectl then redoes carefully
    (as it does when the server refuses a value)."""
    conn.text_factory = bytes
    rows = 0
    for count, text in reader.pieces(conn, lower, upper):
        channel.send_bytes(text, b"\n")
        rows += count
    return rows


def _send_hashed(channel: Channel, conn: sqlite3.Connection, reader: Any, index: int, lower: int | None,
                 upper: int | None) -> tuple[int, int]:
    from storagectl.datamove.sql.rows import ChunkTally
    from storagectl.datamove.sql.spec import Chunk

    conn.text_factory = str
    tally = ChunkTally(hashed=reader.hashing)
    for piece in reader.pieces(conn, Chunk(index, lower, upper), tally):
        channel.send_bytes(piece.encode())
    return tally.rows, tally.hash_sum


def _portable(exc: Exception) -> BaseException:
    """``exc`` as storagectl can unpickle it (same class: the same one-line error and exit code), with
    the reader's traceback as a note for ``--debug``."""
    import traceback

    exc.add_note("in the SQLite reader process:\n" + "".join(traceback.format_exception(exc)))
    try:
        return loads(dumps(exc))
    except Exception:  # noqa: BLE001 - an exception class that does not pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def main(argv: list[str]) -> None:
    signal(SIGINT, SIG_IGN)  # Ctrl-C is storagectl's to handle: it ends this process
    from storagectl.child_processes import die_with

    die_with(int(argv[1]))
    try:  # noqa: SIM105 - no contextlib here (it imports typing's share of the reader's RSS)
        serve(Channel(int(argv[0])))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # storagectl went away mid-chunk
    os._exit(0)  # nothing to flush or clean up: skip the interpreter's teardown


if __name__ == "__main__":
    main(sys.argv[1:])
