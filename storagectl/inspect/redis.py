"""`inspect` for Redis: overview from INFO, and ``keys``: SCAN (never KEYS) with a large COUNT, each
batch measured in one pipeline (TYPE, PTTL, MEMORY USAGE) plus one for element counts, an optional
sleep between batches, stopped by ``--budget``, ``--max-keys`` or Ctrl-C with what was seen so far
extrapolated (marked sampled, with an error bound).

The scan is a function over one part of the keyspace (:meth:`RedisInspector.scan_part`); the backend
decides what the parts are (``RedisBackend.visit_keyspace``): the server itself, or every primary of a
Redis Cluster through the shared fan-out, each with a client of its own and the slot-ownership filter
that counts a key once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

from storagectl.inspect.base import Inspector
from storagectl.inspect.keyspace import KeyFacts, NodeCensus, biggest, merge, prefix_rows
from storagectl.inspect.model import Figure, Provenance, Report, exact, in_bytes

SCAN_COUNT = 1000
NODES_AT_ONCE = 4  # cluster primaries scanned at the same time
LENGTH_COMMANDS = {"list": b"LLEN", "set": b"SCARD", "zset": b"ZCARD", "hash": b"HLEN", "stream": b"XLEN"}


class ScanStopped(Exception):
    """Raised in a node's scan when the command was interrupted while scanning other nodes."""


class RedisInspector(Inspector):
    views: ClassVar[tuple[str, ...]] = ("overview", "keys")

    def overview(self, connection: Any, report: Report) -> None:
        rows = self.backend.visit_keyspace(connection, _info_facts, 8)  # summed over a cluster's primaries
        keys, expiring, used, dataset = (sum(column) for column in zip(*rows, strict=True))
        report.summary.update(keys=exact(keys, source="DBSIZE"), keys_with_ttl=exact(expiring, source="INFO keyspace"),
                              used_memory_bytes=in_bytes(used, source="INFO memory"),
                              dataset_bytes=in_bytes(dataset, source="INFO memory"))
        report.notes.append("biggest keys: storagectl inspect keys -b " + self.backend.name)

    def keys(self, connection: Any, report: Report) -> None:
        """Every part of the keyspace is scanned (a cluster's primaries ``NODES_AT_ONCE`` at a time),
        ``--max-keys`` split evenly between them: each part's figures are extrapolated to its own
        DBSIZE, read for every part before any is scanned, so the sums stay unbiased."""
        options = self.options
        sizes = dict(self.backend.visit_keyspace(connection, lambda part: (part.name, part.client.dbsize()), 8))
        censuses = {name: NodeCensus(name, options.delimiter, options.depth, options.top) for name in sizes}
        for name, census in censuses.items():
            census.population = sizes[name]
        stop = threading.Event()

        def scan(part: Any) -> None:
            limit = None if options.max_keys is None else -(-options.max_keys // part.parts)
            if not self.scan_part(part, censuses[part.name], limit, stop):
                report.stopped = "max-keys"

        try:
            self.backend.visit_keyspace(connection, scan, NODES_AT_ONCE, stop)
        finally:  # budget, Ctrl-C or an error: what was seen is still reported
            self.fill(report, list(censuses.values()))

    def scan_part(self, part: Any, census: NodeCensus, limit: int | None, stop: threading.Event | None = None) -> bool:
        """Tally one part's keys into ``census``; True when SCAN went all the way round, False when
        ``limit`` keys were tallied first. The budget raises BudgetExhausted between batches. Replies
        are parsed by hiredis on a connection of its own (redis-py's per-reply Python would cost more
        than the server's work); the connection is dropped afterwards, whatever state it is in."""
        from storagectl.backends.redis_wire import RespSocket

        pool = part.client.connection_pool
        connection = pool.get_connection()
        try:
            for facts in self.measured_batches(RespSocket(connection), census, limit, part.keep, stop):
                for one in facts:
                    census.add(one)
            return census.complete
        finally:
            connection.disconnect()
            pool.release(connection)

    def measured_batches(self, commands: Any, census: NodeCensus, limit: int | None, keep: Any = None,
                         stop: threading.Event | None = None) -> Iterator[list[KeyFacts]]:
        """The measured keys of each SCAN batch (those ``keep`` keeps). Without ``-i``, batch k+1 is
        scanned and its measuring sent before batch k is handed over, so the server works while the
        caller tallies."""
        taken = 0

        def next_keys(cursor: bytes) -> tuple[bytes, list[bytes]]:
            nonlocal taken
            self.budget.check()
            if stop is not None and stop.is_set():
                raise ScanStopped
            commands.send(scan_request(cursor, self.options.pattern))
            cursor, batch = commands.reply()
            fresh = [key for key in (batch if keep is None else keep(batch)) if census.is_new(key)]
            fresh = fresh if limit is None else fresh[: max(0, limit - taken)]
            taken += len(fresh)
            commands.send(measure_request(fresh, self.options.samples))
            return cursor, fresh

        cursor, keys = next_keys(b"0")
        while True:
            facts = read_measured(commands, keys)
            more = cursor != b"0" and (limit is None or taken < limit)
            count_elements(commands, facts)
            if more and not self.options.pause:
                cursor, keys = next_keys(cursor)
            yield facts
            if not more:
                census.complete = cursor == b"0"
                return
            if self.options.pause:
                time.sleep(self.budget.bounded(self.options.pause))
                cursor, keys = next_keys(cursor)

    def fill(self, report: Report, censuses: list[NodeCensus]) -> None:
        if not censuses:
            return
        matched_only = self.options.pattern is not None
        totals = merge(censuses, "", matched_only, {"bytes": "bytes"})
        source = f"MEMORY USAGE SAMPLES {self.options.samples if self.options.samples is not None else 5}"
        totals["bytes"] = replace(totals["bytes"], source=source)
        population = sum(c.population for c in censuses)
        scanned = sum(c.sampled for c in censuses)
        report.summary.update(
            keys=totals["keys"], memory_bytes=totals["bytes"], keys_without_ttl=totals["no_ttl"],
            scanned_keys=exact(scanned), dbsize=exact(population, source="DBSIZE at the start"),
            coverage_pct=coverage(censuses, matched_only))
        report.sections["prefixes"] = prefix_rows(censuses, matched_only, self.options.top)
        report.sections["biggest_keys_by_bytes"] = biggest(censuses, "by_bytes", self.options.top, "bytes")
        report.sections["biggest_keys_by_elements"] = biggest(censuses, "by_elements", self.options.top, "")
        if not all(c.complete for c in censuses):
            report.notes.append("biggest keys, types and TTL histograms are those of the scanned keys")
        if any(c.capped for c in censuses):
            report.notes.append("more than 10,000 prefixes: further prefixes are counted in their parent only")


def _info_facts(part: Any) -> tuple[int, int, int, int]:
    """DBSIZE, keys with a TTL, used memory and dataset memory of one server."""
    client = part.client
    memory = client.info("memory")
    db = client.connection_pool.connection_kwargs.get("db", 0)
    expiring = client.info("keyspace").get(f"db{db}", {}).get("expires", 0)
    return client.dbsize(), expiring, memory["used_memory"], memory.get("used_memory_dataset") or 0


def coverage(censuses: list[NodeCensus], matched_only: bool) -> Figure:
    if all(c.complete for c in censuses):
        return exact(100.0)
    population = sum(c.population for c in censuses)
    if matched_only or not population:
        return Figure(None, Provenance.ESTIMATE, source="unknown with --pattern")
    return Figure(round(100.0 * sum(c.sampled for c in censuses) / population, 2), Provenance.ESTIMATE,
                  source="scanned keys / DBSIZE at the start")


def command(*parts: bytes) -> bytes:
    """One command in RESP."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def scan_request(cursor: bytes, pattern: str | None) -> bytes:
    match = (b"MATCH", pattern.encode()) if pattern else ()
    return command(b"SCAN", cursor, *match, b"COUNT", b"%d" % SCAN_COUNT)


_TYPE_PTTL = b"*2\r\n$4\r\nTYPE\r\n$%d\r\n%s\r\n*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n"
_USAGE = b"*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$%d\r\n%s\r\n"


def measure_request(keys: list[bytes], samples: int | None) -> bytes:
    if samples is not None:
        usage = [command(b"MEMORY", b"USAGE", key, b"SAMPLES", b"%d" % samples) for key in keys]
    else:
        usage = [_USAGE % (len(key), key) for key in keys]
    return b"".join(_TYPE_PTTL % (len(key), key, len(key), key) + tail for key, tail in zip(keys, usage, strict=True))


def replies(commands: Any, count: int) -> list[Any]:
    """``count`` replies, errors included as values (a key's command cannot fail but for a bug)."""
    gets, found = commands.reader.gets, []
    while len(found) < count:
        reply = gets()
        if reply is False:
            commands._receive()
        else:
            found.append(reply)
    return found


def read_measured(commands: Any, keys: list[bytes]) -> list[KeyFacts]:
    """The replies to :func:`measure_request`; keys deleted since SCAN returned them are left out."""
    answers = replies(commands, 3 * len(keys))
    found = []
    for index, key in enumerate(keys):
        type_name, pttl, size = answers[3 * index: 3 * index + 3]
        if not isinstance(size, int) or type_name == b"none":
            continue
        found.append(KeyFacts(key.decode("utf-8", "backslashreplace"), type_name.decode(), pttl, size, None, key))
    return found


def count_elements(commands: Any, found: list[KeyFacts]) -> None:
    """Element counts of the aggregates (LLEN, HLEN, ...), in one pipelined request."""
    aggregates = [facts for facts in found if facts.type in LENGTH_COMMANDS]
    if not aggregates:
        return
    commands.send(b"".join(command(LENGTH_COMMANDS[facts.type], facts.raw) for facts in aggregates))
    for facts, count in zip(aggregates, replies(commands, len(aggregates)), strict=True):
        facts.elements = count if isinstance(count, int) else None
