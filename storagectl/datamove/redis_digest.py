"""The digest a Redis → Redis copy keeps of what it wrote, so the verify at the end of ``run`` reads
only the target: an order-independent sum of a 64-bit hash per key over (key, value, absolute expiry
on the target), and the key count.

The value is the DUMP payload's own CRC-64 (its last 8 bytes: the server computed it, so the client
never hashes a payload), except for a set or hash in hash-table encoding: its payload lists the
elements in table order, which a RESTORE does not keep, so its value is the sum of its elements'
hashes. The hash is computed in C (``storagectl._rowsum``, ~0.1 us a key) where it is built, else
by the same code in Python. The expiry is the one the copy gave RESTORE with ABSTTL, so the target's PEXPIRETIME returns
exactly it.

A key that expires between the copy and the end of the verify is gone from the target, rightly. So
keys expiring before ``horizon`` (an hour after the run began) are summed per second of their
expiry, and the verify leaves out the seconds that have begun by the time it ends; later and
persistent keys are summed together.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storagectl.backends.redis_wire import KeyFilter, RespSocket, dump_scan
from storagectl.datamove.redis_keys import hashtable_spans

HORIZON_MS = 3_600_000  # keys expiring within this of the run's start are summed per second
MASK = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15
_HASHTABLE_TYPES = (2, 4)  # RDB_TYPE_SET, RDB_TYPE_HASH: payload order is the hash table's
Sums = tuple[int, int, list[tuple[int, int]]]  # count, sum mod 2**64, (expiry second, hash) of keys before horizon


def _fmix64(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK
    return x ^ (x >> 33)


def hash64(data: bytes) -> int:
    """h = len * GOLDEN; per 8-byte little-endian word w (the last one zero-padded) h = fmix64(h ^ w);
    then fmix64(h ^ len): murmur3's finalizer chained over the words. As ``_rowsum.c`` computes it."""
    size = len(data)
    h = (size * GOLDEN) & MASK
    for start in range(0, size, 8):
        h = _fmix64(h ^ int.from_bytes(data[start:start + 8], "little"))
    return _fmix64(h ^ size)


def value_token(payload: bytes) -> bytes:
    """8 bytes that are equal for equal values of one server version: the payload's CRC-64; for a
    hash-table set or hash, whose payload lists the elements in table order, a hash of the type, the
    RDB version and the sum of the hashes of its members (of a hash: each field and value together)."""
    if payload[0] in _HASHTABLE_TYPES:
        try:
            spans = hashtable_spans(payload)
        except (IndexError, ValueError):
            return payload[-8:]
        total = sum(hash64(span) for span in spans) & MASK
        return hash64(payload[:1] + payload[-10:-8] + total.to_bytes(8, "little")).to_bytes(8, "little")
    return payload[-8:]


def key_hash(key: bytes, expire_at: int, payload: bytes) -> int:
    return hash64(value_token(payload) + expire_at.to_bytes(8, "little") + key)


def python_key_digest(records: Sequence[tuple[bytes, int, bytes]], offset: int, horizon: int) -> Sums:
    """What ``_rowsum.key_digest`` computes, in Python (~10x slower): the records' count and sum of
    :func:`key_hash` with ``offset`` added to each expiry, keys expiring before ``horizon`` apart."""
    count, total, soon = 0, 0, []
    for key, expire_at, payload in records:
        expire_at = expire_at + offset if expire_at else 0
        value = key_hash(key, expire_at, payload)
        if 0 < expire_at < horizon:
            soon.append((expire_at // 1000, value))
        else:
            count, total = count + 1, total + value
    return count, total & MASK, soon


def python_dumped_digest(keys: list[bytes], reply: list[Any], horizon: int) -> Sums:
    """What ``_rowsum.dumped_digest`` computes: :func:`python_key_digest` of a DUMP + PEXPIRETIME reply."""
    return python_key_digest([(key, 0 if expire_at == -1 else expire_at, payload)
                              for key, payload, expire_at in zip(keys, reply[1::2], reply[2::2], strict=True)
                              if payload is not None and expire_at != -2], 0, horizon)


def _accelerated() -> tuple[Callable[..., Sums], Callable[..., Sums], Callable[..., Any] | None]:
    from storagectl import rowsum

    if rowsum.EXTENSION != "built":
        return python_key_digest, python_dumped_digest, None
    from storagectl._rowsum import dumped_digest, key_digest, rdb_digest

    return key_digest, dumped_digest, rdb_digest


key_digest, dumped_digest, rdb_digest = _accelerated()
_NEED_MORE = 1  # rdb_digest stopped before an incomplete record (else: before one left to Python)


@dataclass
class KeyDigest:
    """Count and sum of key hashes: ``rest`` for keys without expiry or expiring at or after
    ``horizon`` (target ms), ``soon`` per second of expiry before it."""

    horizon: int
    count: int = 0
    total: int = 0
    soon: dict[int, list[int]] = field(default_factory=dict)  # expiry second -> [count, sum]

    def add(self, records: Sequence[tuple[bytes, int, bytes]], offset: int = 0) -> None:
        """Add (key, absolute expiry in source ms or 0, DUMP payload) records, ``offset`` (the target's
        clock less the source's) added to each expiry."""
        self._add(key_digest(records, offset, self.horizon))

    def add_dumped(self, keys: list[bytes], reply: list[Any]) -> None:
        """Add a DUMP batch read with absolute expiries (reply {TIME, payload, PEXPIRETIME, ...});
        keys gone meanwhile (nil payload) are left out."""
        self._add(dumped_digest(keys, reply, self.horizon))

    def _add(self, sums: Sums) -> None:
        count, total, soon = sums
        self.count += count
        self.total = (self.total + total) & MASK
        for second, value in soon:
            bucket = self.soon.setdefault(second, [0, 0])
            bucket[0] += 1
            bucket[1] = (bucket[1] + value) & MASK

    def merge(self, other: KeyDigest) -> None:
        self.count += other.count
        self.total = (self.total + other.total) & MASK
        for second, (count, total) in other.soon.items():
            bucket = self.soon.setdefault(second, [0, 0])
            bucket[0] += count
            bucket[1] = (bucket[1] + total) & MASK

    def equal_to(self, target: KeyDigest, ended_ms: int) -> tuple[bool, int]:
        """(whether the target's digest equals this one, the keys of this one left unchecked): seconds
        of expiry that had begun by ``ended_ms`` (the target's clock when its pass ended) are left out,
        their keys may be gone."""
        equal = (self.count, self.total) == (target.count, target.total)
        unchecked = 0
        for second in self.soon.keys() | target.soon.keys():
            ours = self.soon.get(second, [0, 0])
            if second * 1000 <= ended_ms:
                unchecked += ours[0]
            elif ours != target.soon.get(second, [0, 0]):
                equal = False
        return equal, unchecked

    @property
    def keys(self) -> int:
        return self.count + sum(count for count, _total in self.soon.values())

    def state(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "count": self.count, "sum": f"{self.total:016x}",
                "soon": {str(second): list(bucket) for second, bucket in self.soon.items()}}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> KeyDigest:
        return cls(int(data["horizon"]), int(data["count"]), int(data["sum"], 16),
                   {int(second): [int(count), int(total)] for second, (count, total) in data["soon"].items()})


def target_digest(client: Any, horizon: int, dumper: Any, keep: KeyFilter | None, match: bytes | None,
                  type_: bytes | None) -> KeyDigest:
    """The digest of a target server's keys of the selection (``client``: single-connection, of the
    db; ``dumper`` must read absolute expiries), one pipelined SCAN + DUMP pass."""
    digest = KeyDigest(horizon)
    for _cursor, keys, reply in dump_scan(RespSocket(client.connection), keep=keep, dumper=dumper, match=match,
                                          type_=type_):
        digest.add_dumped(keys, reply)
    return digest


def snapshot_digest(read: Callable[[int], bytes], name: str, db: int, horizon: int) -> KeyDigest:
    """The digest of ``db``'s keys in an RDB snapshot (``read(size)``: its next bytes). The records
    are summed in C where it is built (the parser's buffer handed over as it fills), the rest --
    opcodes, streams, keys not stored as short strings -- read one at a time by the RDB parser."""
    from storagectl.backends.redis_rdb import RdbParser

    parser = RdbParser(read, name)
    digest = KeyDigest(horizon)
    if rdb_digest is None:
        records = parser.records(db)
        while batch := [(key, expire_at, value) for key, value, expire_at in itertools.islice(records, 2000)]:
            digest.add(batch)
        return digest
    parser.header()
    version = parser.version.to_bytes(2, "little")
    while True:
        position, count, total, soon, why = rdb_digest(parser.buf, parser.pos, parser.db == db, version, horizon)
        parser.pos = position
        digest._add((count, total, soon))
        if why == _NEED_MORE:
            parser.more()
            continue
        going_on, record = parser.one_record(db)
        if record is not None:
            key, payload, expire_at = record
            digest.add([(key, expire_at, payload)])
        if not going_on:
            return digest
