"""`inspect` for Redis: overview from INFO, and ``keys``: SCAN (never KEYS) with a large COUNT, each
batch measured in one pipeline (TYPE, PTTL, MEMORY USAGE) plus one for element counts, an optional
sleep between batches, stopped by ``--budget``, ``--max-keys`` or Ctrl-C with what was seen so far
extrapolated (marked sampled, with an error bound).

The scan is a function over one node's client (:func:`scan_node`); which nodes make up the keyspace
is decided in one place (:func:`keyspace_nodes`), the seam where the Redis Cluster fan-out over
every primary plugs in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

from storagectl.inspect.base import Inspector
from storagectl.inspect.keyspace import KeyFacts, NodeCensus, biggest, merge, prefix_rows
from storagectl.inspect.model import Figure, Provenance, Report, exact, in_bytes

SCAN_COUNT = 1000
LENGTH_COMMANDS = {"list": b"LLEN", "set": b"SCARD", "zset": b"ZCARD", "hash": b"HLEN", "stream": b"XLEN"}


def keyspace_nodes(backend: Any, connection: Any) -> Iterator[tuple[str, Any]]:
    """(name, client) of every server holding part of the keyspace: the server itself, or every primary
    of a Redis Cluster (``RedisBackend.keyspace_nodes``)."""
    yield from backend.keyspace_nodes(connection)


class RedisInspector(Inspector):
    views: ClassVar[tuple[str, ...]] = ("overview", "keys")

    def overview(self, connection: Any, report: Report) -> None:
        keys = expiring = used = dataset = 0
        for _, client in keyspace_nodes(self.backend, connection):  # sums over a cluster's primaries
            memory = client.info("memory")
            keys += client.dbsize()
            expiring += client.info("keyspace").get(f"db{client.connection_pool.connection_kwargs.get('db', 0)}",
                                                    {}).get("expires", 0)
            used += memory["used_memory"]
            dataset += memory.get("used_memory_dataset") or 0
        report.summary.update(keys=exact(keys, source="DBSIZE"), keys_with_ttl=exact(expiring, source="INFO keyspace"),
                              used_memory_bytes=in_bytes(used, source="INFO memory"),
                              dataset_bytes=in_bytes(dataset, source="INFO memory"))
        report.notes.append("biggest keys: storagectl inspect keys -b " + self.backend.name)

    def keys(self, connection: Any, report: Report) -> None:
        """Every node is scanned in turn, ``--max-keys`` split evenly between them: each node's figures
        are extrapolated to its own DBSIZE, so the sums stay unbiased."""
        nodes = list(keyspace_nodes(self.backend, connection))
        censuses = [NodeCensus(name, self.options.delimiter, self.options.depth, self.options.top)
                    for name, _ in nodes]
        limit = None if self.options.max_keys is None else -(-self.options.max_keys // len(nodes))
        try:
            for (_, client), census in zip(nodes, censuses, strict=True):
                census.population = client.dbsize()
            for (_, client), census in zip(nodes, censuses, strict=True):
                if not self.scan_node(client, census, limit):
                    report.stopped = "max-keys"
        finally:  # budget, Ctrl-C or an error: what was seen is still reported
            self.fill(report, censuses)

    def scan_node(self, client: Any, census: NodeCensus, limit: int | None) -> bool:
        """Tally one node's keys into ``census``; True when SCAN went all the way round, False when
        ``limit`` keys were tallied first. The budget raises BudgetExhausted between batches. Replies
        are parsed by hiredis on a connection of its own (redis-py's per-reply Python would cost more
        than the server's work); the connection is dropped afterwards, whatever state it is in."""
        from storagectl.backends.redis import _RespSocket

        connection = client.connection_pool.get_connection()
        try:
            return self._scan(_RespSocket(connection), census, limit)
        finally:
            connection.disconnect()
            client.connection_pool.release(connection)

    def _scan(self, commands: Any, census: NodeCensus, limit: int | None) -> bool:
        for facts in self.measured_batches(commands, census, limit):
            for one in facts:
                census.add(one)
        return census.complete

    def measured_batches(self, commands: Any, census: NodeCensus, limit: int | None) -> Iterator[list[KeyFacts]]:
        """The measured keys of each SCAN batch. Without ``-i``, batch k+1 is scanned and its
        measuring sent before batch k is handed over, so the server works while the caller tallies."""
        taken = 0

        def next_keys(cursor: bytes) -> tuple[bytes, list[bytes]]:
            nonlocal taken
            self.budget.check()
            commands.send(scan_request(cursor, self.options.pattern))
            cursor, batch = commands.reply()
            fresh = [key for key in batch if census.is_new(key)]
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
