"""Redis backups as the server's own RDB snapshot, read over the replication protocol as
``redis-cli --rdb`` reads it, and restored key by key from it.

Backup (:func:`receive_rdb`): ``REPLCONF rdb-only 1`` (Redis >= 7.0: the server closes the link after
the snapshot instead of streaming writes to us), ``REPLCONF capa eof``, ``SYNC``; the server forks, and
sends newlines while it prepares, then the snapshot as ``$<length>`` and that many bytes, or (diskless)
``$EOF:<40-byte mark>`` and bytes up to that mark. The bytes go to the archive as they arrive; only
the start of the snapshot is parsed, up to each backed-up db's ``RESIZEDB`` (its key count at the fork).

Restore (:func:`rdb_records`): the snapshot parsed key by key; a key's value bytes are exactly its
``DUMP`` payload less the footer (2-byte RDB version, 8-byte CRC-64/Redis of the rest, both
little-endian), so each key of the restored db goes back with ``RESTORE`` as a DUMP archive's would.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from storagectl.backends.redis_wire import receive, send_all
from storagectl.errors import IntegrityError, OperationFailed

RDB_OBJECT = "server.rdb"
KNOWN_RDB_VERSION = 11  # Redis 7.2; 12 (7.4) adds hash field expiry types unknown here
READ_SIZE = 1 << 20
REPLCONF_RDB_ONLY = b"REPLCONF rdb-only 1\r\n"  # Redis >= 7.0: the link ends with the snapshot
REPLCONF_CAPA_EOF = b"REPLCONF capa eof\r\n"  # a diskless snapshot may come, ended by a mark

# opcodes (rdb.h)
_SLOT_INFO, _FUNCTION2, _FUNCTION_PRE_GA, _MODULE_AUX = 0xF4, 0xF5, 0xF6, 0xF7
_IDLE, _FREQ, _AUX, _RESIZEDB, _EXPIRETIME_MS, _EXPIRETIME, _SELECTDB, _EOF = range(0xF8, 0x100)
# value types whose serialization is one string (a blob: listpack, ziplist, intset, zipmap) or plain
_ONE_STRING = frozenset({0, 9, 10, 11, 12, 13, 16, 17, 20})
_STREAMS = frozenset({15, 19, 21})
_MODULES = frozenset({6, 7})

Record = tuple[bytes, bytes, int]  # key, DUMP payload, absolute expiry ms (0: none)


class RdbRefused(OperationFailed):
    """The server would not send its snapshot (SYNC denied, unknown command, a replica not in sync)."""


class _Unsupported(IntegrityError):
    """The snapshot holds what this parser cannot read (a module type, a newer RDB version)."""


OTHER_DBS_SHARE = 0.1  # auto: the snapshot carries every db; rdb only while the others hold at most this share


def rdb_obstacle(version: str, config: dict[str, str] | None, keys: dict[int, int], databases: list[int],
                 modules: bool = False, max_wait: float = 0) -> str | None:
    """Why ``backup_method: auto`` takes DUMPs rather than the snapshot (None: it takes the snapshot), from
    the server's ``redis_version``, its ``repl-diskless-sync*`` settings (None: CONFIG GET denied), its
    keys per db and whether it has modules loaded (INFO modules); a wait of up to ``max_wait`` seconds
    before the server sends the snapshot is no obstacle."""
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    if major_minor < (7, 0):
        return f"Redis {version} predates REPLCONF rdb-only"
    if major_minor > (7, 2):
        return f"Redis {version} may write an RDB version newer than {KNOWN_RDB_VERSION}"
    if modules:
        return "modules are loaded: a snapshot's module values cannot be restored key by key"
    if config is None:
        return "CONFIG GET is not allowed, so the snapshot's delay is unknown"
    if (wait := _snapshot_wait(config)) and diskless_delay(config) > max_wait:
        return wait
    others, total = _other_keys(keys, databases)
    if others > OTHER_DBS_SHARE * total:
        return f"other dbs hold {others} of the instance's {total} keys, which the snapshot would carry too"
    return None


def rdb_costs(config: dict[str, str] | None, keys: dict[int, int], databases: list[int]) -> str | None:
    """What an explicit ``backup_method: rdb`` costs beyond the backed-up dbs (None: nothing known): the
    server's wait before it sends the snapshot, and other dbs' keys, which the snapshot carries too."""
    others, total = _other_keys(keys, databases)
    costs = [_snapshot_wait(config or {}),
             f"other dbs hold {others} of the instance's {total} keys, which the snapshot carries too" if others
             else None]
    return "; ".join(cost for cost in costs if cost) or None


def _snapshot_wait(config: dict[str, str]) -> str | None:
    if delay := diskless_delay(config):
        return f"repl-diskless-sync-delay is {delay}: the server waits {delay} s before sending its snapshot"
    return None


def diskless_delay(config: dict[str, str]) -> int:
    """Seconds the server waits for more replicas before it forks for a diskless snapshot."""
    return int(config.get("repl-diskless-sync-delay") or 0) if config.get("repl-diskless-sync") == "yes" else 0


# INFO persistence: a child the server must see end before it can fork for a snapshot
_FORK_CHILDREN = ("rdb_bgsave_in_progress", "aof_rewrite_in_progress", "module_fork_in_progress")


def disk_snapshot_obstacle(save: str | None, persistence: dict[str, Any] | None) -> str | None:
    """Why not to ask for the snapshot without ``capa eof`` (None: ask): the server then BGSAVEs to its
    own RDB file at once, with no diskless delay. Harmless only where it saves that file anyway (``save``
    rules set; None: CONFIG GET save denied), and at once only with no other fork child running
    (``persistence``: INFO persistence; None: denied)."""
    if save is None or persistence is None:
        return "whether the server saves RDB snapshots itself is unknown"
    if not save.strip():
        return 'the server saves no RDB snapshots (save ""): a BGSAVE would leave a file'
    if busy := [field for field in _FORK_CHILDREN if str(persistence.get(field, 0)) != "0"]:
        return f"{busy[0]}: the BGSAVE would wait for that child"
    if persistence.get("rdb_last_bgsave_status", "ok") != "ok":
        return "the server's last BGSAVE failed"
    return None


def _other_keys(keys: dict[int, int], databases: list[int]) -> tuple[int, int]:
    """Keys of the dbs not in ``databases``, and of the whole instance."""
    total = sum(keys.values())
    return total - sum(keys.get(db, 0) for db in databases), total


# -- receiving --------------------------------------------------------------------------------
def start_sync(connection: Any, diskless: bool = True) -> ReplicaSync:
    """The snapshot of the server of a redis-py ``connection`` (connected, authenticated, for this use
    alone: it is a replication link afterwards), its transfer started (see :meth:`ReplicaSync.start`)."""
    connection.connect()
    sync = ReplicaSync(connection._sock)  # redis-py has no public accessor
    sync.start(diskless)
    return sync


class ReplicaSync:
    """The server's snapshot as a stream: :meth:`read` returns its bytes, b"" at its end. Socket
    failures are raised as redis-py's ConnectionError / TimeoutError."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""  # received, not yet handed out
        self.received: deque[bytes] = deque()  # read ahead by another thread, after ``pending``
        self.remaining: int | None = None  # $<length> transfer: bytes still to come
        self.mark: bytes | None = None  # diskless transfer: the end mark
        self.done = False

    def start(self, diskless: bool = True) -> None:
        """The handshake, up to the first byte of the snapshot; RdbRefused if the server declines.
        ``diskless=False``: no ``capa eof``, so the server writes the snapshot to its RDB file first."""
        self._send(REPLCONF_RDB_ONLY)
        self._line()  # an error here is a server before 7.0: it still sends the snapshot, then writes
        if diskless:
            self._send(REPLCONF_CAPA_EOF)
            self._line()
        self.request()
        self.await_snapshot()

    def request(self) -> None:
        """SYNC, once the REPLCONFs' replies are read: the server refuses it while replies are pending."""
        self._send(b"SYNC\r\n")

    def await_snapshot(self) -> None:
        """The server's reply to SYNC, up to the first byte of the snapshot; RdbRefused if it declines."""
        while (line := self._line()) == b"":  # newlines: the server is still preparing the snapshot
            pass
        if line.startswith(b"-"):
            raise RdbRefused(f"the server refused SYNC: {line[1:].decode('utf-8', 'replace')}")
        if line.startswith(b"$EOF:") and len(line) == 45:
            self.mark = line[5:]
        elif line.startswith(b"$") and line[1:].isdigit():
            self.remaining = int(line[1:])
        else:
            raise RdbRefused(f"unexpected reply to SYNC: {line[:60]!r}")

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\n" not in self.pending:
            self.pending += self._receive()
        line, _, self.pending = self.pending.partition(b"\n")
        return line.rstrip(b"\r")

    def _send(self, request: bytes) -> None:
        send_all(self.sock, request)

    def read_ahead(self, pieces: Iterable[bytes]) -> None:
        """``pieces`` received from the socket by another thread (in order, before anything still in
        it): handed out as they are, so megabytes read ahead are never joined into one copy."""
        self.received.extend(pieces)

    def _receive(self) -> bytes:
        if self.received:
            return self.received.popleft()
        return receive(self.sock, READ_SIZE)

    def read(self) -> bytes:
        """The next bytes of the snapshot (b"": the end)."""
        if self.done:
            return b""
        data, self.pending = self.pending or self._receive(), b""
        if self.remaining is not None:
            data, self.pending = data[:self.remaining], data[self.remaining:]
            self.remaining -= len(data)
            self.done = self.remaining == 0
            return data
        assert self.mark is not None
        while (end := data.find(self.mark)) < 0 and len(data) < len(self.mark):
            data += self._receive()  # the mark may arrive split across reads
        if end >= 0:
            self.done = True
            return data[:end]
        keep = len(self.mark) - 1  # a mark split by this read starts in these bytes
        self.pending = data[-keep:]
        return data[:-keep]


def receive_rdb(sync: ReplicaSync, put: Callable[[bytes], Any], databases: list[int]) -> tuple[dict[int, int], int]:
    """The snapshot to ``put`` in pieces of about READ_SIZE; returns each of ``databases``' key count
    (its ``RESIZEDB``), read from the start of the snapshot on the way, and the RDB version."""
    tee = _Tee(sync.read, put)
    parser = RdbParser(tee.read, RDB_OBJECT)
    counts = parser.db_sizes(databases)
    tee.copy_rest()
    return counts, parser.version


class _Tee:
    """Reads of the snapshot handed to ``put`` as well, batched."""

    def __init__(self, read: Callable[[], bytes], put: Callable[[bytes], Any]) -> None:
        self.source, self.put = read, put
        self.batch: list[bytes] = []
        self.batched = 0

    def read(self, _size: int) -> bytes:
        data = self.source()
        self._keep(data)
        return data

    def _keep(self, data: bytes) -> None:
        self.batch.append(data)
        self.batched += len(data)
        if self.batched >= READ_SIZE or not data:
            self.put(b"".join(self.batch))
            self.batch, self.batched = [], 0

    def copy_rest(self) -> None:
        while data := self.source():
            self._keep(data)
        self._keep(b"")


# -- parsing ----------------------------------------------------------------------------------
class RdbParser:
    """A pull parser over an RDB stream (``read(size)``: up to ``size`` bytes, b"" at its end)."""

    def __init__(self, read: Callable[[int], bytes], name: str) -> None:
        self.source, self.name = read, name
        self.buf, self.pos = b"", 0
        self.keep = -1  # position from which bytes must stay in the buffer (a value being read)
        self.kept: list[bytes] = []  # the value's bytes before ``keep`` that earlier fills moved out
        self.version = 0
        self.db = 0
        self.resized = (0, 0)  # the last RESIZEDB: keys, keys with an expiry

    # primitives
    def _fill(self, size: int) -> None:
        """At least ``size`` bytes from ``pos`` in the buffer. The part of a value being read that is
        already consumed moves to ``kept`` (joined once, by :meth:`_kept_value`), so a value of many
        elements costs its size once, not once per read."""
        if self.keep >= 0:
            self.kept.append(self.buf[self.keep:self.pos])
            self.keep = 0
        parts, have = [self.buf[self.pos:]], len(self.buf) - self.pos
        while have < size:
            data = self.source(max(READ_SIZE, size - have))
            if not data:
                raise IntegrityError(f"{self.name}: the RDB snapshot ends in the middle (truncated)")
            parts.append(data)
            have += len(data)
        self.buf = b"".join(parts)
        self.pos = 0

    def _kept_value(self) -> bytes:
        """The bytes from where ``keep`` was set to ``pos``; stops keeping."""
        value = b"".join([*self.kept, self.buf[self.keep:self.pos]])
        self.kept, self.keep = [], -1
        return value

    def _take(self, size: int) -> bytes:
        if self.pos + size > len(self.buf):
            self._fill(size)
        start = self.pos
        self.pos += size
        return self.buf[start:self.pos]

    def _byte(self) -> int:
        if self.pos >= len(self.buf):
            self._fill(1)
        self.pos += 1
        return self.buf[self.pos - 1]

    def _length(self) -> int:
        first = self._byte()
        kind = first >> 6
        if kind == 0:
            return first
        if kind == 1:
            return (first & 0x3F) << 8 | self._byte()
        if first == 0x80:
            return int.from_bytes(self._take(4), "big")
        if first == 0x81:
            return int.from_bytes(self._take(8), "big")
        raise self._corrupt(f"length byte {first:#x}")

    def _string(self) -> bytes:
        buf, pos = self.buf, self.pos
        if pos < len(buf) and (first := buf[pos]) < 0x40 and pos + 1 + first <= len(buf):  # hot: a short string
            self.pos = pos + 1 + first
            return buf[pos + 1:self.pos]
        first = self._byte()
        if first < 0xC0:
            self.pos -= 1
            return self._take(self._length())
        encoding = first & 0x3F
        if encoding < 3:
            return b"%d" % int.from_bytes(self._take(1 << encoding), "little", signed=True)
        if encoding == 3:
            compressed, size = self._length(), self._length()
            return lzf_decompress(self._take(compressed), size, self.name)
        raise self._corrupt(f"string encoding {encoding}")

    def _skip_string(self) -> None:
        buf, pos = self.buf, self.pos
        if pos < len(buf) and (first := buf[pos]) < 0x40 and pos + 1 + first <= len(buf):  # hot: a short string
            self.pos = pos + 1 + first
            return
        first = self._byte()
        if first < 0x40:
            size = first
        elif first < 0xC0:
            self.pos -= 1
            size = self._length()
        elif (encoding := first & 0x3F) < 3:
            size = 1 << encoding
        elif encoding == 3:
            size = self._length()
            self._length()
        else:
            raise self._corrupt(f"string encoding {encoding}")
        if self.pos + size > len(self.buf):
            self._fill(size)
        self.pos += size

    def _corrupt(self, what: str) -> IntegrityError:
        return IntegrityError(f"{self.name}: not a readable RDB snapshot ({what} at byte {self.pos})")

    # structure
    def header(self) -> None:
        magic = self._take(9)
        if magic[:5] != b"REDIS" or not magic[5:].isdigit():
            raise self._corrupt("no REDIS header")
        self.version = int(magic[5:])
        if self.version > KNOWN_RDB_VERSION:
            raise _Unsupported(f"{self.name}: RDB version {self.version} is newer than this storagectl reads "
                               f"(up to {KNOWN_RDB_VERSION}, Redis 7.2)",
                               hint="Try: a newer storagectl, or back up with backup_method: dump")

    def _skip_value(self, kind: int) -> None:
        if kind in _ONE_STRING:
            self._skip_string()
        elif kind in (1, 2, 14):
            for _ in range(self._length()):
                self._skip_string()
        elif kind == 4:
            for _ in range(2 * self._length()):
                self._skip_string()
        elif kind == 3:
            for _ in range(self._length()):
                self._skip_string()
                if (size := self._byte()) < 253:
                    self._take(size)
        elif kind == 5:
            for _ in range(self._length()):
                self._skip_string()
                self._take(8)
        elif kind == 18:
            for _ in range(self._length()):
                self._length()
                self._skip_string()
        elif kind in _STREAMS:
            self._skip_stream(kind)
        elif kind in _MODULES:
            raise _Unsupported(f"{self.name}: a key of a module type (RDB type {kind}): module values cannot "
                               "be restored from an RDB snapshot by storagectl",
                               hint="Try: back up with backup_method: dump")
        else:
            raise _Unsupported(f"{self.name}: RDB value type {kind} is unknown to this storagectl",
                               hint="Try: a newer storagectl, or back up with backup_method: dump")

    def _skip_stream(self, kind: int) -> None:
        for _ in range(2 * self._length()):  # listpacks: master ID, listpack
            self._skip_string()
        for _ in range(3 if kind == 15 else 8):  # length, last ID (, first ID, max deleted ID, entries added)
            self._length()
        for _ in range(self._length()):  # consumer groups
            self._skip_string()
            for _ in range(2 if kind == 15 else 3):  # last ID (, entries read)
                self._length()
            for _ in range(self._length()):  # pending entries: ID, delivery time, delivery count
                self._take(24)
                self._length()
            for _ in range(self._length()):  # consumers: name, seen time (, active time), pending IDs
                self._skip_string()
                self._take(8 if kind != 21 else 16)
                self._take(16 * self._length())

    def _opcode(self, code: int) -> int:
        """Handle a non-key opcode; returns its absolute expiry for the next key (else -1)."""
        if code == _EXPIRETIME_MS:
            return max(1, int.from_bytes(self._take(8), "little"))  # 0 would read as "no expiry"
        if code == _EXPIRETIME:
            return max(1, 1000 * int.from_bytes(self._take(4), "little"))
        if code == _SELECTDB:
            self.db = self._length()
        elif code == _RESIZEDB:
            self.resized = (self._length(), self._length())
        elif code == _AUX:
            self._skip_string()
            self._skip_string()
        elif code == _IDLE:
            self._length()
        elif code == _FREQ:
            self._byte()
        elif code == _FUNCTION2:
            self._skip_string()
        elif code == _SLOT_INFO:
            for _ in range(3):
                self._length()
        else:
            raise _Unsupported(f"{self.name}: RDB opcode {code:#x} (module data or a function library of a "
                               "pre-release Redis) is unknown to this storagectl",
                               hint="Try: back up with backup_method: dump")
        return -1

    def db_sizes(self, databases: list[int]) -> dict[int, int]:
        """Each of ``databases``' key count from its ``RESIZEDB``, parsing only as far as needed (a db
        the snapshot lacks is empty: Redis writes no empty db)."""
        self.header()
        sizes = dict.fromkeys(databases, 0)
        wanted, last = set(databases), max(databases)
        while wanted:
            code = self._byte()
            if code == _EOF:
                break
            if code < _SLOT_INFO:
                self._string()
                self._skip_value(code)
                continue
            self._opcode(code)
            if code == _SELECTDB and self.db > last:
                break
            if code == _RESIZEDB and self.db in wanted:
                sizes[self.db] = self.resized[0]
                wanted.discard(self.db)
        return sizes

    def records(self, db: int) -> Iterator[Record]:
        """Every key of ``db`` as (key, DUMP payload, absolute expiry ms); the keys of other dbs are
        skipped. Checks their number against the db's RESIZEDB."""
        from anycrc import Model

        crc = Model("CRC64-REDIS").calc
        self.header()
        footer_version = self.version.to_bytes(2, "little")
        expire_at, count, announced = 0, 0, None
        skip_value, one_string, skip_string, string = self._skip_value, _ONE_STRING, self._skip_string, self._string
        while (code := self._byte()) != _EOF:
            if code >= _SLOT_INFO:
                expiry = self._opcode(code)
                if expiry >= 0:
                    expire_at = expiry
                elif code == _SELECTDB and self.db > db:
                    break  # dbs come in ascending order, each once: db is complete
                elif code == _RESIZEDB and self.db == db:
                    announced = self.resized[0]
                continue
            key = string()
            if self.db != db:
                skip_value(code)
            else:
                self.keep = self.pos
                skip_string() if code in one_string else skip_value(code)
                value = b"%c%b%b" % (code, self._kept_value(), footer_version)
                count += 1
                yield key, value + crc(value).to_bytes(8, "little"), expire_at
            expire_at = 0
        if announced is not None and announced != count:
            raise IntegrityError(f"{self.name}: db {db} holds {count} keys, its RESIZEDB says {announced}")


    def more(self) -> None:
        """At least one byte more in the buffer from ``pos`` (a caller parsing ``buf`` itself found
        its last record incomplete)."""
        self._fill(len(self.buf) - self.pos + 1)

    def one_record(self, db: int) -> tuple[bool, Record | None]:
        """One record (after its expiry and LRU/LFU opcodes) or one other opcode: whether ``db`` may
        have more keys after it (False after its last key, or the snapshot's), and the record if it
        is one of ``db``'s (its payload's CRC-64 computed as for :meth:`records`)."""
        from anycrc import Model

        expire_at = 0
        while (code := self._byte()) >= _SLOT_INFO:
            if code == _EOF:
                return False, None
            found = self._opcode(code)
            if code in (_EXPIRETIME_MS, _EXPIRETIME):
                expire_at = found
            elif code not in (_IDLE, _FREQ):
                return not (code == _SELECTDB and self.db > db), None
        key = self._string()
        if self.db != db:
            self._skip_value(code)
            return True, None
        self.keep = self.pos
        self._skip_string() if code in _ONE_STRING else self._skip_value(code)
        value = b"%c%b%b" % (code, self._kept_value(), self.version.to_bytes(2, "little"))
        return True, (key, value + Model("CRC64-REDIS").calc(value).to_bytes(8, "little"), expire_at)


def rdb_records(stream: Any, db: int, name: str) -> Iterator[Record]:
    """The records of ``db`` in an archived snapshot; the rest of the stream is read too (which
    checks the object's size and SHA-256 at its end)."""
    yield from RdbParser(stream.read, name).records(db)
    while stream.read(READ_SIZE):
        pass


def lzf_decompress(data: bytes, size: int, name: str) -> bytes:
    """LZF (liblzf's format, as Redis compresses long strings); only keys are decompressed."""
    out, i = bytearray(), 0
    try:
        while i < len(data):
            control = data[i]
            i += 1
            if control < 32:
                out += data[i:i + control + 1]
                i += control + 1
                continue
            length = control >> 5
            if length == 7:
                length += data[i]
                i += 1
            start = len(out) - ((control & 0x1F) << 8) - data[i] - 1
            i += 1
            for offset in range(length + 2):  # may overlap what it copies: byte by byte
                out.append(out[start + offset])
    except IndexError:
        pass
    if len(out) != size:
        raise IntegrityError(f"{name}: an LZF-compressed string does not decompress to its length")
    return bytes(out)
