"""``cache stats``: what the cache does *now*: the difference of two ``INFO`` reads ``interval`` apart
on every primary (hit ratio, evictions, expirations, ops/s), memory at the end of the window, and per
command latency percentiles from ``INFO latencystats`` (Redis >= 7; those are since the server
started: percentiles cannot be differenced). ``--by-prefix`` samples keys with RANDOMKEY, each node
in proportion to its DBSIZE, and reports per prefix estimates marked with their sample size.
The sleep and clock are injected, so a test can make hits and misses inside the window."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storagectl.backends.redis_topology import ClusterNode, fan_out
from storagectl.cache.invalidate import STANDALONE
from storagectl.cache.keyfmt import escape
from storagectl.cache.nodes import first_error, topology

COUNTERS = ("keyspace_hits", "keyspace_misses", "evicted_keys", "expired_keys", "total_commands_processed")
LATENCY_PREFIX = "latency_percentiles_usec_"


@dataclass(frozen=True)
class StatsOptions:
    interval: float = 10.0
    by_prefix: bool = False
    delimiter: bytes = b":"
    sample: int = 1000


def cache_stats(backend: Any, options: StatsOptions, sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    nodes = topology(backend, "stats").primaries()
    before, started = _read_all(backend, nodes), clock()
    sleep(options.interval)
    after, window = _read_all(backend, nodes), max(clock() - started, 1e-9)
    rows = [_node_row(node, first, last, window) for node, first, last in zip(nodes, before, after, strict=True)]
    report: dict[str, Any] = {"window_seconds": round(window, 3), **_totals(rows), "nodes": rows}
    if options.by_prefix:
        report["prefixes"] = _by_prefix(backend, nodes, [row["keys"] for row in rows], options)
    return report


def _read_all(backend: Any, nodes: list[ClusterNode]) -> list[dict[str, Any]]:
    def read(node: ClusterNode) -> dict[str, Any]:
        client = backend.node_client(node)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.info("stats")
            pipe.info("memory")
            pipe.info("latencystats")
            pipe.dbsize()
            stats, memory, latency, keys = pipe.execute(raise_on_error=False)
            if isinstance(stats, Exception):
                raise stats
            latency = {} if isinstance(latency, Exception) else latency  # Redis < 7: no latencystats
            return {**stats, **memory, "latency": latency, "keys": keys}
        finally:
            client.close()

    return first_error(backend, "stats", fan_out(nodes, read, len(nodes)))


def _node_row(node: ClusterNode, first: dict[str, Any], last: dict[str, Any], window: float) -> dict[str, Any]:
    delta = {name: int(last.get(name, 0)) - int(first.get(name, 0)) for name in COUNTERS}
    return {"node": None if node.node_id == STANDALONE else node.address,
            "hits": delta["keyspace_hits"], "misses": delta["keyspace_misses"],
            "hit_ratio": _ratio(delta["keyspace_hits"], delta["keyspace_misses"]),
            "evicted_keys": delta["evicted_keys"], "expired_keys": delta["expired_keys"],
            "ops_per_second": round(delta["total_commands_processed"] / window, 1),
            "keys": int(last.get("keys", 0)), "used_memory": int(last.get("used_memory", 0)),
            "maxmemory": int(last.get("maxmemory", 0)),
            "fragmentation_ratio": last.get("mem_fragmentation_ratio"),
            "latency_usec_since_start": {name.removeprefix(LATENCY_PREFIX): value
                                         for name, value in sorted(last["latency"].items())}}


def _ratio(hits: int, misses: int) -> float | None:
    return None if hits + misses == 0 else round(hits / (hits + misses), 4)


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = {name: sum(row[name] for row in rows) for name in
             ("hits", "misses", "evicted_keys", "expired_keys", "keys", "used_memory", "maxmemory")}
    total["ops_per_second"] = round(sum(row["ops_per_second"] for row in rows), 1)
    total["hit_ratio"] = _ratio(total["hits"], total["misses"])
    fragmentation = [row["fragmentation_ratio"] for row in rows if row["fragmentation_ratio"] is not None]
    total["fragmentation_ratio"] = max(fragmentation) if fragmentation else None  # the worst node
    return total


def _by_prefix(backend: Any, nodes: list[ClusterNode], sizes: list[int], options: StatsOptions) -> dict[str, Any]:
    everything = sum(sizes)
    shares = [round(options.sample * size / everything) if everything else 0 for size in sizes]

    def sample(pair: tuple[ClusterNode, int]) -> list[tuple[bytes, Any, Any, Any]]:
        node, count = pair
        client = backend.node_client(node)
        try:
            pipe = client.pipeline(transaction=False)
            for _ in range(count):
                pipe.randomkey()
            keys = [key for key in pipe.execute() if key is not None]
            for key in keys:
                pipe.memory_usage(key)
                pipe.pttl(key)
                pipe.object("idletime", key)
            facts = pipe.execute(raise_on_error=False)  # OBJECT IDLETIME fails under an LFU policy
            return list(zip(keys, facts[::3], facts[1::3], facts[2::3], strict=True))
        finally:
            client.close()

    samples = [row for rows in first_error(backend, "stats", fan_out(list(zip(nodes, shares, strict=True)), sample,
                                                                     len(nodes))) for row in rows]
    return {"estimate": True, "sample_size": len(samples), "population": everything,
            "rows": _prefix_rows(samples, everything, options.delimiter)}


def _prefix_rows(samples: list[tuple[bytes, Any, Any, Any]], population: int, delimiter: bytes) -> list[dict]:
    groups: dict[bytes, list[tuple[bytes, Any, Any, Any]]] = defaultdict(list)
    for row in samples:
        key = row[0]
        groups[key.split(delimiter, 1)[0] + delimiter if delimiter in key else b""].append(row)
    rows = []
    for prefix, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        memory = [m for _, m, _, _ in members if isinstance(m, int)]
        ttls = [t / 1000 for _, _, t, _ in members if isinstance(t, int) and t >= 0]
        idle = [i for _, _, _, i in members if isinstance(i, int)]
        keys = population * len(members) / len(samples)
        rows.append({"prefix": escape(prefix) if prefix else "(no delimiter)", "sampled": len(members),
                     "keys": round(keys), "memory_bytes": round(keys * statistics.fmean(memory)) if memory else None,
                     "with_ttl": round(len(ttls) / len(members), 3),
                     "ttl_seconds": _spread(ttls), "idle_seconds": _spread(idle)})
    return rows


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": round(min(values), 1), "median": round(statistics.median(values), 1), "max": round(max(values), 1)}
