"""PostgreSQL large objects (``pg_largeobject``) in a backup: archive format 4.

pg_dump's schema sections are taken with ``--no-blobs`` and this module carries large objects
instead, because pg_dump's pre-data would create every one of them (``lo_create``, ``ALTER LARGE
OBJECT ... OWNER``, grants, comment) in the one transaction that restores pre-data, taking a lock
per object: a few thousand objects exhaust the lock table (``max_locks_per_transaction``). Here
they are created in transactions of :data:`CREATE_BATCH` objects, then their content is written,
part by part in parallel, in chunks of :data:`CHUNK_BYTES` (``lo_get``/``lo_put``): no large object
is ever held in memory whole. The order is pg_restore's (owner and ACL before the content), so
writing the content needs what pg_restore needs: superuser, or ``UPDATE`` through the owner role.

Archive objects, only when the database has large objects:

- ``large-objects/metadata.jsonl``: one JSON line per object in OID order,
  ``{"oid": 16401, "owner": "app", "acl": null, "comment": null}``; ``acl`` null is the default
  (the owner's privileges only), else ``[[privilege, grantee or null for PUBLIC, grantable], ...]``.
- ``large-objects/data.NNNN.lo``: :data:`RECORDS_MAGIC`, then records of :data:`RECORD` (OID,
  offset, length) and that many bytes of content, each object's chunks in order; empty objects have
  no records. A new part starts after ``archive.PART_BYTES``.

The content checksum (:class:`ContentChecksum`) is a per-object sum, independent of order.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, BinaryIO

from storagectl.archive.api import ArchiveReader, OwnershipOptions, read_exact
from storagectl.backends.postgres.jobs import Job
from storagectl.errors import IntegrityError

UNIT = "large objects"  # the content-summary unit (table units are always quoted: no clash)
METADATA = "large-objects/metadata.jsonl"
DATA_STEM = "large-objects/data"
DATA_SUFFIX = ".lo"
RECORDS_MAGIC = b"STCTLLO1"
RECORD = struct.Struct(">IQI")  # oid, offset, length of the bytes that follow
CHUNK_BYTES = 1 << 20  # lo_get/lo_put size; the checksum's chunking too (a format constant)
LIST_BATCH = 1000  # objects per listing query (first chunks included: the server streams the rows)
CREATE_BATCH = 500  # objects per creating transaction: each holds a lock per object until commit
PUT_BATCH_BYTES = 1 << 20  # chunks per lo_put query, by size
PUT_BATCH_RECORDS = 1000  # and by count
LO_PRIVILEGES = ("SELECT", "UPDATE")

COUNT_SQL = "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata"
# Each object's owner, ACL (null: the default), comment and first chunk, in OID order. lo_get
# reads as of the transaction's snapshot, and needs SELECT on the object, as pg_dump does.
LIST_SQL = """
SELECT m.oid, pg_catalog.pg_get_userbyid(m.lomowner),
       CASE WHEN m.lomacl IS NOT NULL THEN
           (SELECT coalesce(json_agg(json_build_array(a.privilege_type,
                                                      CASE WHEN a.grantee = 0 THEN NULL
                                                           ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
                                                      a.is_grantable)), '[]')
            FROM pg_catalog.aclexplode(m.lomacl) a) END,
       pg_catalog.obj_description(m.oid, 'pg_largeobject'),
       pg_catalog.lo_get(m.oid, 0, %(chunk)s)
FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid > %(after)s ORDER BY m.oid LIMIT %(limit)s
"""
GET_SQL = "SELECT pg_catalog.lo_get(%s, %s, %s)"
PUT_SQL = ("SELECT count(pg_catalog.lo_put(o, f, d)) "
           "FROM unnest(%s::oid[], %s::int8[], %b::bytea[]) AS t(o, f, d)")
UNLINK_SQL = ("SELECT count(pg_catalog.lo_unlink(oid)) FROM "
              "(SELECT oid FROM pg_catalog.pg_largeobject_metadata LIMIT %s) s")


@dataclass(frozen=True)
class LargeObjects:
    """What a backup recorded about the large objects (manifest metadata ``large_objects``)."""

    count: int
    bytes: int
    checksum: str  # ContentChecksum.value()
    metadata: str  # the METADATA object
    parts: list[str]  # the data parts, in order


@dataclass(frozen=True)
class ObjectInfo:
    oid: int
    owner: str
    acl: list[list[Any]] | None
    comment: str | None

    def to_line(self) -> bytes:
        return json.dumps({"oid": self.oid, "owner": self.owner, "acl": self.acl, "comment": self.comment},
                          separators=(",", ":")).encode("ascii") + b"\n"


@dataclass(frozen=True)
class Chunk:
    oid: int
    offset: int
    data: bytes


class ContentChecksum:
    """``lo:`` and 32 hex digits: the sum mod 2**128 of the first 16 bytes (big-endian) of SHA-256
    over each object's OID with the marker offset 2**64-1, and over each chunk's OID, offset and
    bytes (chunks of :data:`CHUNK_BYTES` at multiples of it). Independent of order; a missing, extra
    or changed object, or one byte changed anywhere, changes it (but with probability ~2**-128)."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, item: ObjectInfo | Chunk) -> None:
        if isinstance(item, ObjectInfo):
            self.count += 1
            self.total += self._term(item.oid, 2**64 - 1, b"")
        else:
            self.total += self._term(item.oid, item.offset, item.data)

    @staticmethod
    def _term(oid: int, offset: int, data: bytes) -> int:
        digest = hashlib.sha256(struct.pack(">IQ", oid, offset))
        digest.update(data)
        return int.from_bytes(digest.digest()[:16], "big")

    def value(self) -> str:
        return f"lo:{self.total % 2**128:032x}"


def count(conn: Any) -> int:
    return conn.execute(COUNT_SQL).fetchone()[0]


def read_objects(conn: Any) -> Iterator[ObjectInfo | Chunk]:
    """Every large object in the connection's snapshot, in OID order: its :class:`ObjectInfo`, then
    its chunks (none for an empty object). Holds at most one chunk and one batch's OIDs."""
    from psycopg.types.numeric import Oid

    after, listed = 0, LIST_BATCH  # OID 0 is never a large object's
    while listed == LIST_BATCH:
        listed, longer = 0, []
        rows = conn.cursor().stream(LIST_SQL, {"chunk": CHUNK_BYTES, "after": Oid(after), "limit": LIST_BATCH},
                                    binary=True)
        for oid, owner, acl, comment, data in rows:
            yield ObjectInfo(oid, owner, acl, comment)
            if data:
                yield Chunk(oid, 0, data)
            if len(data) == CHUNK_BYTES:
                longer.append(oid)
            after, listed = oid, listed + 1
        for oid in longer:  # after the stream: the connection serves one query at a time
            yield from _later_chunks(conn, oid)


def _later_chunks(conn: Any, oid: int) -> Iterator[Chunk]:
    from psycopg.types.numeric import Oid

    offset = CHUNK_BYTES
    while data := conn.execute(GET_SQL, [Oid(oid), offset, CHUNK_BYTES], binary=True).fetchone()[0]:
        yield Chunk(oid, offset, data)
        if len(data) < CHUNK_BYTES:
            return
        offset += CHUNK_BYTES


def summarize(conn: Any) -> tuple[int, str]:
    """(count, checksum) of the large objects in the connection's snapshot."""
    checksum = ContentChecksum()
    for item in read_objects(conn):
        checksum.add(item)
    return checksum.count, checksum.value()


@dataclass
class BackupStream:
    """Reads every large object once: :meth:`pieces` are the data parts' contents (``(bytes,
    records)``, about ``CHUNK_BYTES`` each); the metadata lines go to ``metadata`` as it goes."""

    conn: Any
    metadata: Any  # an ObjectSink
    checksum: ContentChecksum = field(default_factory=ContentChecksum)
    bytes: int = 0

    def pieces(self) -> Iterator[tuple[bytes, int]]:
        records: list[bytes] = []
        lines: list[bytes] = []
        size = 0
        for item in read_objects(self.conn):
            self.checksum.add(item)
            if isinstance(item, ObjectInfo):
                lines.append(item.to_line())
                if len(lines) >= LIST_BATCH:
                    self._write_lines(lines)
                continue
            records += (RECORD.pack(item.oid, item.offset, len(item.data)), item.data)
            size += RECORD.size + len(item.data)
            self.bytes += len(item.data)
            if size >= CHUNK_BYTES:
                yield b"".join(records), len(records) // 2
                records, size = [], 0
        self._write_lines(lines)
        if records:
            yield b"".join(records), len(records) // 2

    def _write_lines(self, lines: list[bytes]) -> None:
        self.metadata.write(b"".join(lines))
        lines.clear()
        self.metadata.counts = {"objects": self.checksum.count}

    def result(self, parts: list[str]) -> LargeObjects:
        return LargeObjects(self.checksum.count, self.bytes, self.checksum.value(), METADATA, parts)


# -- restore -----------------------------------------------------------------------------------------
def recorded(archive: ArchiveReader) -> LargeObjects | None:
    """What the backup recorded about large objects (format 4; None when it has none), checked."""
    entry = archive.metadata.get("large_objects")
    if not entry:
        return None
    try:
        objects = LargeObjects(**entry)
    except TypeError as exc:  # written by a development build
        raise IntegrityError(f"the archive's large-object entry is not format 4 ({exc})",
                             hint="Try: restore with the storagectl version that wrote this backup") from None
    present = set(archive.names())
    missing = [name for name in (objects.metadata, *objects.parts) if name not in present]
    if missing:
        raise IntegrityError(f"archive object {missing[0]} is missing ({len(missing)} in all)",
                             hint="Try: storagectl backup verify ID")
    return objects


@dataclass(frozen=True)
class LargeObjectLoad:
    """Creating the large objects (``metadata``) or writing one data part's chunks into them."""

    object: str
    expected: int  # objects created / chunks written, as recorded
    metadata: bool = False
    ownership: OwnershipOptions = field(default_factory=OwnershipOptions)  # what creating keeps of owner/ACL


def restore_jobs(archive: ArchiveReader, ownership: OwnershipOptions | None = None) -> tuple[list[Job], list[Job]]:
    """The job creating every large object, and the data parts' jobs, which wait for it."""
    objects = recorded(archive)
    if objects is None:
        return [], []
    create = Job(LargeObjectLoad(objects.metadata, objects.count, metadata=True,
                                 ownership=ownership or OwnershipOptions()), provides=UNIT)
    parts = [Job(LargeObjectLoad(name, archive.counts(name).get("chunks", 0)), after={UNIT})
             for name in objects.parts]
    return [create], parts


def create_objects(conn: Any, stream: BinaryIO, name: str, roles: OwnershipOptions | None = None) -> int:
    """Create every object listed in the metadata ``stream`` with its OID, owner, ACL and comment
    (owner and ACL as ``roles`` keep them), :data:`CREATE_BATCH` per transaction; returns how many."""
    from psycopg import sql

    created = 0
    entries = (_parse_line(line, name) for line in _lines(stream, name))
    while batch := list(islice(entries, CREATE_BATCH)):
        statements = [statement for entry in batch
                      for statement in create_statements(entry, roles or OwnershipOptions())]
        with conn.transaction():  # no parameters: one simple-protocol multi-statement query
            conn.execute(sql.SQL(";\n").join(statements))
        created += len(batch)
    return created


def create_statements(entry: ObjectInfo, roles: OwnershipOptions) -> list[Any]:
    """As pg_dump writes them; a non-default ACL is replaced whole (grantors become the owner)."""
    from psycopg import sql

    oid = sql.SQL(str(entry.oid))
    owner = sql.Identifier(entry.owner)
    statements = [sql.SQL("SELECT pg_catalog.lo_create({})").format(sql.Literal(str(entry.oid)))]
    if roles.keeps_owners:
        statements.append(sql.SQL("ALTER LARGE OBJECT {} OWNER TO {}").format(oid, owner))
    if entry.acl is not None and roles.privileges:
        statements += [sql.SQL("REVOKE ALL ON LARGE OBJECT {} FROM PUBLIC").format(oid),
                       sql.SQL("REVOKE ALL ON LARGE OBJECT {} FROM {}").format(oid, owner)]
        statements += [sql.SQL("GRANT {} ON LARGE OBJECT {} TO {}{}").format(
            sql.SQL(privilege), oid, sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee),
            sql.SQL(" WITH GRANT OPTION" if grantable else "")) for privilege, grantee, grantable in entry.acl]
    if entry.comment is not None:
        statements.append(sql.SQL("COMMENT ON LARGE OBJECT {} IS {}").format(oid, sql.Literal(entry.comment)))
    return statements


def _parse_line(line: bytes, name: str) -> ObjectInfo:
    """One metadata line, checked: its values go into SQL (identifiers and literals quoted, the
    OID and privileges only from the allowed forms)."""
    try:
        entry = json.loads(line)
        info = ObjectInfo(int(entry["oid"]), str(entry["owner"]), entry["acl"], entry["comment"])
        if not 0 < info.oid < 2**32 or not isinstance(info.comment, str | None):
            raise ValueError(f"bad oid or comment in {line[:80]!r}")
        for privilege, grantee, grantable in info.acl or []:
            if privilege not in LO_PRIVILEGES or not isinstance(grantee, str | None) or not isinstance(grantable, bool):
                raise ValueError(f"bad ACL entry in {line[:80]!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{name}: not a large-object entry ({exc})",
                             hint="Try: storagectl backup verify ID") from None
    return info


def roles_named(archive: ArchiveReader, ownership: OwnershipOptions) -> set[str]:
    """The owners and grantees of the backup's large objects that a restore with ``ownership`` sets
    (for ``restore --dry-run``); the metadata is streamed, one line per object."""
    objects = recorded(archive)
    if objects is None or not (ownership.keeps_owners or ownership.privileges):
        return set()
    named: set[str] = set()
    with archive.open(objects.metadata) as stream:
        for line in _lines(stream, objects.metadata):
            entry = _parse_line(line, objects.metadata)
            if ownership.keeps_owners:
                named.add(entry.owner)
            if ownership.privileges:
                named |= {grantee for _privilege, grantee, _grantable in entry.acl or [] if grantee is not None}
    return named


def _lines(stream: BinaryIO, name: str) -> Iterator[bytes]:
    rest = b""
    while piece := stream.read(CHUNK_BYTES):
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        raise IntegrityError(f"{name}: ends in the middle of a line", hint="Try: storagectl backup verify ID")


def write_contents(conn: Any, stream: BinaryIO, name: str) -> int:
    """Write every chunk of one data part into its (already created) object; returns the records
    written. The caller runs it in one transaction."""
    from psycopg.types.numeric import Oid

    written = 0
    for batch in _put_batches(records(stream, name)):
        oids, offsets, datas = zip(*batch, strict=True)
        written += conn.execute(PUT_SQL, [[Oid(oid) for oid in oids], list(offsets), list(datas)]).fetchone()[0]
    return written


def _put_batches(chunks: Iterable[Chunk]) -> Iterator[list[tuple[int, int, bytes]]]:
    batch: list[tuple[int, int, bytes]] = []
    size = 0
    for chunk in chunks:
        batch.append((chunk.oid, chunk.offset, chunk.data))
        size += len(chunk.data)
        if size >= PUT_BATCH_BYTES or len(batch) >= PUT_BATCH_RECORDS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def records(stream: BinaryIO, name: str) -> Iterator[Chunk]:
    if read_exact(stream, len(RECORDS_MAGIC)) != RECORDS_MAGIC:
        raise IntegrityError(f"{name}: not a large-object data part", hint="Try: storagectl backup verify ID")
    while header := read_exact(stream, RECORD.size):
        if len(header) < RECORD.size:
            raise IntegrityError(f"{name}: truncated record header", hint="Try: storagectl backup verify ID")
        oid, offset, length = RECORD.unpack(header)
        data = read_exact(stream, length)
        if len(data) < length or length > CHUNK_BYTES:
            raise IntegrityError(f"{name}: truncated or oversized record of large object {oid}",
                                 hint="Try: storagectl backup verify ID")
        yield Chunk(oid, offset, data)


def unlink_all(conn: Any, batch: int = CREATE_BATCH) -> None:
    """Remove every large object, ``batch`` per transaction (``lo_unlink`` locks each object until
    commit). ``conn`` must be in autocommit mode, outside a transaction."""
    while conn.execute(UNLINK_SQL, [batch]).fetchone()[0]:
        pass
