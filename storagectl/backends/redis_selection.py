"""Selective Redis backups and restores: ``--pattern`` (glob, as SCAN MATCH) and ``--type``.

A backup SCANs with ``MATCH`` when one pattern is given and ``TYPE`` when one type is (the server
filters); every key is checked here as well, so several patterns or types work alike. A restore of a
selection reads the backup's records and keeps those whose key matches and whose DUMP payload is of
a selected type (its first byte is the RDB object type). Matching is byte-exact: patterns and keys
are compared as bytes, as Redis does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from storagectl.selection import Selection, glob_regex

# RDB object type (first byte of a DUMP payload) -> the TYPE command's name (rdb.h, Redis 2.x to 8.x).
RDB_TYPES = {0: "string", 1: "list", 2: "set", 3: "zset", 4: "hash", 5: "zset", 9: "hash", 10: "list", 11: "set",
             12: "zset", 13: "hash", 14: "list", 15: "stream", 16: "hash", 17: "zset", 18: "list", 19: "stream",
             20: "set", 21: "stream", 22: "hash", 23: "hash", 24: "hash", 25: "hash"}


@dataclass(frozen=True)
class KeySelection:
    patterns: tuple[bytes, ...]
    types: tuple[str, ...]

    @classmethod
    def of(cls, selection: Selection) -> KeySelection | None:
        """None for an empty selection (every key)."""
        if selection.empty:
            return None
        return cls(tuple(p.encode("utf-8") for p in selection.patterns), selection.types)

    @property
    def _regexes(self) -> list[re.Pattern[str]]:
        return [glob_regex(p.decode("latin-1")) for p in self.patterns]

    def scan_filter(self) -> tuple[bytes | None, bytes | None]:
        """SCAN's MATCH and TYPE, each when the server can do all of that filtering (one pattern, one type)."""
        return (self.patterns[0] if len(self.patterns) == 1 else None,
                self.types[0].encode() if len(self.types) == 1 else None)

    def key_filter(self) -> Any:
        """keys -> the keys whose name matches (types are checked on the payloads)."""
        if not self.patterns:
            return lambda keys: keys
        regexes = self._regexes
        return lambda keys: [key for key in keys if any(r.fullmatch(key.decode("latin-1")) for r in regexes)]

    def keeps_payload(self, payload: bytes) -> bool:
        return not self.types or (bool(payload) and RDB_TYPES.get(payload[0]) in self.types)

    def records(self, records: Iterable[tuple[bytes, bytes, int]]) -> Iterator[tuple[bytes, bytes, int]]:
        """The backup's records this selection keeps."""
        regexes = self._regexes
        for record in records:
            key, payload, _ = record
            if (not regexes or any(r.fullmatch(key.decode("latin-1")) for r in regexes)) and \
                    self.keeps_payload(payload):
                yield record

    def matching_keys(self, client: Any, batch: int = 1000) -> Iterator[list[bytes]]:
        """Batches of the keys of ``client``'s db this selection names (SCAN, then TYPE per key if needed)."""
        match = self.patterns[0] if len(self.patterns) == 1 else None
        kind = self.types[0] if len(self.types) == 1 else None
        keep = self.key_filter()
        keys: list[bytes] = []
        for key in client.scan_iter(match=match, count=batch, _type=kind):
            keys.append(key)
            if len(keys) >= batch:
                yield self._of_types(client, keep(keys))
                keys = []
        if keys:
            yield self._of_types(client, keep(keys))

    def _of_types(self, client: Any, keys: list[bytes]) -> list[bytes]:
        if len(self.types) <= 1 or not keys:
            return keys
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        kinds = pipe.execute()
        return [key for key, kind in zip(keys, kinds, strict=True)
                if (kind.decode() if isinstance(kind, bytes) else kind) in self.types]


def count_matching(client: Any, selection: KeySelection) -> int:
    return sum(len(keys) for keys in selection.matching_keys(client))


def holds_any(client: Any, selection: KeySelection) -> bool:
    return any(keys for keys in selection.matching_keys(client))


def delete_matching(client: Any, selection: KeySelection) -> int:
    """Remove the keys of ``client``'s db the selection names (a selective restore's --yes): one UNLINK per
    key, pipelined per batch (a cluster node refuses a multi-key UNLINK across slots)."""
    removed = 0
    for keys in selection.matching_keys(client):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        removed += sum(pipe.execute()) if keys else 0
    return removed
