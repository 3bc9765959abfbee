"""The digest a Redis → Redis copy keeps of what it wrote, so the verify at the end of ``run`` reads
only the target: an order-independent sum of a 64-bit hash per key over (key, value, absolute expiry
on the target), and the key count.

The value is the DUMP payload's own CRC-64 (its last 8 bytes: the server computed it, so the client
never hashes a payload), except for a set or hash in hash-table encoding: its payload lists the
elements in table order, which a RESTORE does not keep, so its value is a hash of its elements
sorted. The expiry is the one the copy gave RESTORE with ABSTTL, so the target's PEXPIRETIME returns
exactly it.

A key that expires between the copy and the end of the verify is gone from the target, rightly. So
keys expiring before ``horizon`` (an hour after the run began) are summed per second of their
expiry, and the verify leaves out the seconds that have begun by the time it ends; later and
persistent keys are summed together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

from storagectl.backends.redis_wire import KeyFilter, RespSocket, dump_scan
from storagectl.datamove.redis_keys import hashtable_elements

HORIZON_MS = 3_600_000  # keys expiring within this of the run's start are summed per second
MASK = 2**64 - 1
_HASHTABLE_TYPES = (2, 4)  # RDB_TYPE_SET, RDB_TYPE_HASH: payload order is the hash table's


def value_token(payload: bytes) -> bytes:
    """8 bytes that are equal for equal values of one server version: the payload's CRC-64, or for a
    hash-table set or hash a hash of its sorted elements (with the type and RDB version bytes)."""
    if payload[0] in _HASHTABLE_TYPES:
        try:
            elements = hashtable_elements(payload)
        except (IndexError, ValueError):
            return payload[-8:]
        return blake2b(b"".join([payload[:1], payload[-10:-8], *elements]), digest_size=8).digest()
    return payload[-8:]


@dataclass
class KeyDigest:
    """Count and sum of key hashes: ``rest`` for keys without expiry or expiring at or after
    ``horizon`` (target ms), ``soon`` per second of expiry before it."""

    horizon: int
    count: int = 0
    total: int = 0
    soon: dict[int, list[int]] = field(default_factory=dict)  # expiry second -> [count, sum]

    def add(self, records: Iterable[tuple[bytes, int, bytes]]) -> None:
        """Add (key, absolute expiry in target ms or 0, DUMP payload) records."""
        horizon, soon = self.horizon, self.soon
        total, count = self.total, self.count
        for key, expire_at, payload in records:
            token = payload[-8:] if payload[0] not in _HASHTABLE_TYPES else value_token(payload)
            value = int.from_bytes(blake2b(token + expire_at.to_bytes(8, "little") + key, digest_size=8).digest(),
                                   "little")
            if 0 < expire_at < horizon:
                bucket = soon.setdefault(expire_at // 1000, [0, 0])
                bucket[0] += 1
                bucket[1] = (bucket[1] + value) & MASK
            else:
                count += 1
                total += value
        self.count, self.total = count, total & MASK

    def add_dumped(self, keys: list[bytes], reply: list[Any]) -> None:
        """Add a DUMP batch read with absolute expiries (reply {TIME, payload, PEXPIRETIME, ...});
        keys gone meanwhile (nil payload) are left out."""
        self.add((key, 0 if expire_at == -1 else expire_at, payload)
                 for key, payload, expire_at in zip(keys, reply[1::2], reply[2::2], strict=True)
                 if payload is not None and expire_at != -2)

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
