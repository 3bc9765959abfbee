"""SQLite → PostgreSQL chunks read in worker processes, not threads.

Debian's libsqlite3 is built without the lookaside allocator, so every string SQLite builds takes
its global allocator mutex: two threads stepping SQLite in one process spend more time on that lock
than reading (measured: 2 readers 4.2 s in one process, 2.3 s in two). Each ``--parallel`` worker
therefore has a reader process of its own that runs :meth:`SQLiteCopyReader.pieces` on its own
SQLite connection and sends the text COPY data as UTF-8 bytes over a socket; the worker thread in
storagectl writes them into its COPY and commits the chunk with its state row, as before, so a
resume stays exact and a chunk the server refuses is redone carefully in storagectl itself.

The reader process (:mod:`reader_child`) is a bare interpreter with SQLite (``python -S``, no
psycopg, no config, none of storagectl's modules for a table with an integer key), and dies with
storagectl (:func:`storagectl.child_processes.die_with`). Its errors come back pickled and are
raised in storagectl as if read there; a reader that dies is an :class:`OperationFailed`.
A reader is started, not forked from storagectl: a fork would copy storagectl's whole heap
(psycopg, pydantic, the config) into every reader's page tables and share it only until the
interpreter's reference counts write to it (and every shared page counts again in each reader's
RSS), and it would fork a process whose other threads (the workers, psycopg's) may hold locks
that the child then inherits held, with nobody left to release them.

Started (vfork and exec), a reader shares storagectl's memory until its exec, and in that moment a
tool that sums the RSS of the process tree (the benchmark, issue 12) counts storagectl twice. So a
run starts its readers first thing (:meth:`SQLiteSide.readers_started`), while storagectl holds about
27 MiB (no PostgreSQL driver, no connections yet), not when the copy begins (48 MiB), and hands them
their tables then (:meth:`ReaderProcess.serve`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storagectl.errors import OperationFailed

CHILD = "storagectl.datamove.sql.reader_child"

if TYPE_CHECKING:
    from storagectl.datamove.sql.rows import ChunkTally
    from storagectl.datamove.sql.spec import Chunk
    from storagectl.datamove.sql.sqlite_copy import SQLiteCopyReader


class ReaderProcess:
    """One reader process, serving one worker thread: chunks of the tables it is given (by index)."""

    def __init__(self, label: str, database: Path, busy_timeout: float) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[3])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                           os.environ.get("PYTHONPATH")]))}
        with ours, theirs:
            self.process = subprocess.Popen(
                # -P: -m would put the working directory first on sys.path, where a storagectl (another
                # checkout) or a sqlite3.py would be imported instead of ours
                [sys.executable, "-S", "-P", "-m", CHILD, str(theirs.fileno()), str(os.getpid())],
                pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)
            self.channel = Connection(os.dup(ours.fileno()))
        self.label, self.database, self.busy_timeout = label, database, busy_timeout
        self.readers: list[SQLiteCopyReader] = []
        self.busy = False  # a chunk's pieces not all received (its COPY failed): skipped before the next

    def serve(self, readers: list[SQLiteCopyReader]) -> None:
        """The tables this reader reads chunks of, ``readers``' (by index): the SQL of its grouped
        pieces alone where a table has a key."""
        self.readers = readers
        self._send((str(self.database), self.busy_timeout, [reader.for_process() for reader in readers]))

    def pieces(self, table: int, chunk: Chunk, tally: ChunkTally) -> Iterator[bytes]:
        """The chunk's text COPY data as :meth:`SQLiteCopyReader.pieces` gives it, counted and hashed
        into ``tally`` once all is read."""
        self._skip_rest()
        self._send((table, chunk.index, chunk.lower, chunk.upper), table, chunk)
        self.busy = True
        while piece := self._receive(table, chunk):
            yield piece
        outcome = self._outcome(table, chunk)
        if isinstance(outcome, BaseException):
            raise outcome
        tally.rows, tally.hash_sum = tally.rows + outcome[0], tally.hash_sum + outcome[1]

    def close(self) -> None:
        """An idle reader ends on EOF; one still reading a chunk (the copy failed or was interrupted) is
        killed."""
        self.channel.close()
        try:
            self.process.wait(0 if self.busy else 2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _skip_rest(self) -> None:
        if self.busy:
            while self.channel.recv_bytes():
                pass
            self.channel.recv()
            self.busy = False

    def _send(self, message: Any, table: int | None = None, chunk: Chunk | None = None) -> None:
        try:
            self.channel.send(message)
        except OSError:
            raise self._died(table, chunk) from None

    def _receive(self, table: int, chunk: Chunk) -> bytes:
        try:
            return self.channel.recv_bytes()
        except (EOFError, OSError):
            raise self._died(table, chunk) from None

    def _outcome(self, table: int, chunk: Chunk) -> Any:
        try:
            outcome = self.channel.recv()
        except (EOFError, OSError):
            raise self._died(table, chunk) from None
        self.busy = False
        return outcome

    def _died(self, table: int | None, chunk: Chunk | None) -> OperationFailed:
        code = self.process.wait()
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        where = (f" while reading {self.readers[table].spec.source} chunk {chunk.index + 1}; the chunk was rolled back"
                 if table is not None and chunk is not None else "")
        return OperationFailed(f"{self.label}: its reader process ended ({how}){where}",
                               hint="Try: the same command with --resume")
