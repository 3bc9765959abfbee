"""What a Redis keyspace holds, tallied key by key (pure: no I/O). One :class:`NodeCensus` per
server scanned; figures of a census stopped early are extrapolated to the node's DBSIZE with an
error bound, and the censuses of several nodes (a cluster's primaries) add up in :func:`merge`."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from storagectl.inspect.model import Figure, Provenance, extrapolate

TTL_BUCKETS = (("<1m", 60_000), ("<1h", 3_600_000), ("<1d", 86_400_000), ("<7d", 604_800_000))
MAX_PREFIXES = 10_000  # per node; deeper prefixes of further keys are counted in their parent only
PARTIAL = "partial scan with --pattern: a lower bound (keys visited but not matched are unknown)"


def ttl_bucket(pttl_ms: int) -> str:
    if pttl_ms < 0:
        return "none"
    return next((name for name, limit in TTL_BUCKETS if pttl_ms < limit), ">=7d")


@dataclass(slots=True)
class PrefixTally:
    keys: int = 0
    bytes: int = 0
    bytes_squares: int = 0
    no_ttl: int = 0
    types: dict[str, int] = field(default_factory=dict)
    ttl: dict[str, int] = field(default_factory=dict)

    def add(self, type_name: str, bucket: str, size: int) -> None:
        self.keys += 1
        self.bytes += size
        self.bytes_squares += size * size
        self.no_ttl += bucket == "none"
        self.types[type_name] = self.types.get(type_name, 0) + 1
        self.ttl[bucket] = self.ttl.get(bucket, 0) + 1

    def merge(self, other: PrefixTally) -> None:
        self.keys += other.keys
        self.bytes += other.bytes
        self.bytes_squares += other.bytes_squares
        self.no_ttl += other.no_ttl
        for mine, theirs in ((self.types, other.types), (self.ttl, other.ttl)):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count


@dataclass
class KeyFacts:
    key: str
    type: str
    pttl_ms: int
    bytes: int
    elements: int | None
    raw: bytes = b""


class NodeCensus:
    """The keys of one server seen so far, by prefix (``delimiter``, ``depth`` levels; "" is all).

    Each key is tallied once, under its deepest prefix; every figure is a sum (of counts, bytes and
    squares of bytes), so the levels above are added up only when the report is made."""

    def __init__(self, node: str, delimiter: str, depth: int, top: int) -> None:
        self.node, self.delimiter, self.depth, self.top = node, delimiter, depth, top
        self.leaves: dict[str, PrefixTally] = {"": PrefixTally()}
        self.known: set[str] = {""}  # the leaves and every prefix above them
        self.by_bytes: list[tuple[int, str, str]] = []
        self.by_elements: list[tuple[int, str, str]] = []
        self.seen: set[int] = set()
        self.sampled = 0
        self.capped = False
        self.complete = False
        self.population = 0  # DBSIZE when the scan started
        self._rolled_up: dict[str, PrefixTally] | None = None

    def is_new(self, key: bytes) -> bool:
        """SCAN may return a key twice (while the table rehashes): count each once. A 64-bit hash per key
        keeps the memory at ~60 bytes per key instead of the key itself."""
        digest = hash(key)
        if digest in self.seen:
            return False
        self.seen.add(digest)
        return True

    def add(self, facts: KeyFacts) -> None:
        self.sampled += 1
        self._rolled_up = None
        self.leaves[self.leaf_of(facts.key)].add(facts.type, ttl_bucket(facts.pttl_ms), facts.bytes)
        _keep_top(self.by_bytes, (facts.bytes, facts.key, facts.type), self.top)
        if facts.elements is not None:
            _keep_top(self.by_elements, (facts.elements, facts.key, facts.type), self.top)

    def leaf_of(self, key: str) -> str:
        """The deepest prefix of ``key`` (up to ``depth`` levels) that is or may become a tallied prefix."""
        start = 0
        for _ in range(self.depth):
            end = key.find(self.delimiter, start)
            if end < 0:
                break
            start = end + len(self.delimiter)
        prefix = key[:start]
        if prefix in self.leaves:
            return prefix
        chain = self.prefixes_of(prefix)
        new = set(chain) - self.known
        if len(self.known) + len(new) <= MAX_PREFIXES:
            self.known.update(new)
        else:  # counted under its deepest prefix already shown, so every shown total stays whole
            self.capped = True
            prefix = next(p for p in reversed(chain) if p in self.known)
        self.leaves.setdefault(prefix, PrefixTally())
        return prefix

    def prefixes_of(self, key: str) -> list[str]:
        """``key``'s prefixes from "" down to its deepest one."""
        found, start = [""], 0
        for _ in range(self.depth):
            end = key.find(self.delimiter, start)
            if end < 0:
                break
            start = end + len(self.delimiter)
            found.append(key[:start])
        return found

    @property
    def prefixes(self) -> dict[str, PrefixTally]:
        """Every prefix with the tallies of all keys under it."""
        if self._rolled_up is None:
            rolled: dict[str, PrefixTally] = {}
            for leaf, tally in self.leaves.items():
                for prefix in self.prefixes_of(leaf):
                    rolled.setdefault(prefix, PrefixTally()).merge(tally)
            self._rolled_up = rolled
        return self._rolled_up

    def estimates(self, prefix: str, matched_only: bool) -> dict[str, tuple[float, float, bool]]:
        """Per figure of ``prefix``: (value, error bound, exact) extrapolated to this node's DBSIZE."""
        tally = self.prefixes.get(prefix, PrefixTally())
        if self.complete or matched_only:
            exact = self.complete
            return {name: (value, 0.0, exact) for name, value in
                    (("keys", tally.keys), ("bytes", tally.bytes), ("no_ttl", tally.no_ttl))}
        n, population = self.sampled, max(self.population, self.sampled)
        return {
            "keys": (*extrapolate(tally.keys, tally.keys, n, population), False),
            "bytes": (*extrapolate(tally.bytes, tally.bytes_squares, n, population), False),
            "no_ttl": (*extrapolate(tally.no_ttl, tally.no_ttl, n, population), False),
        }


def _keep_top(heap: list[tuple[int, str, str]], item: tuple[int, str, str], size: int) -> None:
    if len(heap) < size:
        heapq.heappush(heap, item)
    elif item > heap[0]:
        heapq.heapreplace(heap, item)


def merge(censuses: list[NodeCensus], prefix: str, matched_only: bool, unit_of: dict[str, str]) -> dict[str, Figure]:
    """The figures of ``prefix`` over every node: sums of the nodes' values, error bounds added in
    quadrature (the nodes are sampled independently)."""
    figures: dict[str, Figure] = {}
    sampled = sum(c.sampled for c in censuses)
    for name in ("keys", "bytes", "no_ttl"):
        parts = [c.estimates(prefix, matched_only)[name] for c in censuses]
        value = sum(p[0] for p in parts)
        unit = unit_of.get(name, "")
        if all(p[2] for p in parts):
            figures[name] = Figure(int(value), Provenance.EXACT, unit=unit)
        elif any(not c.complete and c.sampled == 0 and c.population for c in censuses):
            figures[name] = Figure(None, Provenance.SAMPLED, n=sampled, unit=unit)  # a node not reached
        elif matched_only:
            figures[name] = Figure(int(value), Provenance.ESTIMATE, source=PARTIAL, unit=unit)
        else:
            bound = math.sqrt(sum(p[1] ** 2 for p in parts))
            figures[name] = Figure(round(value), Provenance.SAMPLED, n=sampled, error_bound=round(bound, 1),
                                   unit=unit)
    return figures


def prefix_rows(censuses: list[NodeCensus], matched_only: bool, top: int) -> list[dict[str, Any]]:
    """The ``top`` prefixes by (estimated) bytes, each with keys, bytes, keys without TTL, TTL histogram
    and types as seen in the scanned keys."""
    names = {p for c in censuses for p in c.prefixes if p}
    rows = []
    for prefix in names:
        figures = merge(censuses, prefix, matched_only, {"bytes": "bytes"})
        types, ttl = Counter(), Counter()
        for census in censuses:
            tally = census.prefixes.get(prefix)
            if tally:
                types.update(tally.types)
                ttl.update(tally.ttl)
        rows.append({"prefix": prefix, "depth": prefix.count(censuses[0].delimiter), "keys": figures["keys"],
                     "memory_bytes": figures["bytes"], "keys_without_ttl": figures["no_ttl"],
                     "types": dict(types.most_common()), "ttl_histogram": _histogram(ttl)})
    rows.sort(key=lambda r: (-(r["memory_bytes"].value or 0), r["prefix"]))
    return rows[:top]


def _histogram(ttl: Counter) -> dict[str, int]:
    return {name: ttl.get(name, 0) for name in ("none", *(b for b, _ in TTL_BUCKETS), ">=7d")}


def biggest(censuses: list[NodeCensus], attribute: str, top: int, unit: str) -> list[dict[str, Any]]:
    merged = heapq.nlargest(top, (item for c in censuses for item in getattr(c, attribute)))
    label = "memory_bytes" if unit == "bytes" else "elements"
    return [{"key": key, "type": type_name, label: Figure(value, Provenance.EXACT, unit=unit)}
            for value, key, type_name in merged]
