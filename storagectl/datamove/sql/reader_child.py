"""The SQLite reader process itself (started by :class:`~storagectl.datamove.sql.reader_process.ReaderProcess`
as ``python -S -m`` this module): it reads chunks and sends their text COPY data back.

It is kept to a bare interpreter with SQLite, as each ``--parallel`` worker has one: no site
packages (``-S``), and at module level nothing but the standard library's sqlite3, socket, pickle and
ctypes (for the parent-death signal). Measured with the benchmark's tables: about 16 MiB RSS at
its peak, where importing the reader's modules of storagectl (canonical encodings, rows, specs:
json, decimal, uuid, dataclasses, inspect, multiprocessing) and site-packages made 27 MiB. A table
with an integer key comes as :class:`GroupedPieces` (SQL strings) and its text as bytes (never
decoded to str and encoded back); only a table without one (or a hashing reader) comes as a
:class:`SQLiteCopyReader` object, whose unpickling imports the canonical encodings then.

Messages use the framing of :class:`multiprocessing.connection.Connection` (4-byte signed big-endian
length, pickled objects), which storagectl reads with.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import sqlite3
import sys
from typing import Any  # noqa: F401 - annotations only (never evaluated)

from storagectl.datamove.sql.sqlite_pieces import GroupedPieces

END = b""  # after a chunk's pieces; then its outcome: (rows, hash_sum) or the error
CACHE_KIB = 512


class Channel:
    """The socket to storagectl, in :class:`multiprocessing.connection.Connection`'s framing."""

    def __init__(self, fd: int) -> None:
        self.socket = socket.socket(fileno=fd)
        self.incoming = self.socket.makefile("rb")

    def recv(self) -> Any:
        header = self.incoming.read(4)
        if len(header) < 4:
            raise EOFError
        size = int.from_bytes(header, "big", signed=True)
        if size == -1:  # Connection's framing of 2 GiB or more
            size = int.from_bytes(self.incoming.read(8), "big")
        payload = self.incoming.read(size)
        if len(payload) < size:
            raise EOFError
        return pickle.loads(payload)

    def send(self, message: Any) -> None:
        self.send_bytes(pickle.dumps(message))

    def send_bytes(self, *parts: bytes) -> None:
        """``parts`` as one message, gathered by the kernel (a piece is not copied to add its newline)."""
        size = sum(map(len, parts))
        header = size.to_bytes(4, "big", signed=True)
        sent = self.socket.sendmsg([header, *parts])
        if sent < size + 4:  # a signal cut the write short
            self.socket.sendall(b"".join([header, *parts])[sent:])


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
        return pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - an exception class that does not pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is storagectl's to handle: it ends this process
    from storagectl.child_processes import die_with

    die_with(int(argv[1]))
    channel = Channel(int(argv[0]))
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):  # storagectl went away mid-chunk
        serve(channel)
    os._exit(0)  # nothing to flush or clean up: skip the interpreter's teardown


if __name__ == "__main__":
    main(sys.argv[1:])
