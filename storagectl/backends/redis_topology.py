"""Redis Cluster topology and the fan-out over its primaries, shared by every command that touches a
cluster's keys or nodes (backup, restore, diag, `inspect`, `cache`; on one server `cache` visits it as a
one-node topology). No command writes its own loop over nodes.

- :func:`read_topology` reads ``CLUSTER NODES`` from the first seed that answers: every node, its
  role, flags (``fail``, ``fail?``), link state, slot ranges and slots in migration.
- :func:`fan_out` visits nodes with bounded concurrency and returns one outcome per node, errors
  included, so diag can show a down node as a row while backup raises on it.
- :class:`SlotOwnership` deduplicates: a key counts only on the primary that owned its slot in the
  topology read at the start, so a key seen on two nodes (moved by a reshard between their SCANs)
  is counted once, in memory that does not grow with the keyspace. :func:`fan_in` streams what every node's visit
  emits to one consumer; :func:`scan_primaries` combines them for commands that stream key names.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from binascii import crc_hqx
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

from storagectl import interrupts

SLOTS = 16384
T = TypeVar("T")


def key_slot(key: bytes) -> int:
    """The slot of a key: CRC16 of its hash tag (the first non-empty ``{...}``) or of the whole key."""
    if b"{" in key:  # most keys have no tag: one C call for them
        start = key.find(b"{")
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc_hqx(key, 0) % SLOTS


@dataclass(frozen=True)
class ClusterNode:
    node_id: str
    host: str
    port: int
    flags: frozenset[str]
    primary_id: str | None  # the primary a replica follows
    link_state: str  # connected / disconnected, as the node that was asked sees it
    slots: tuple[tuple[int, int], ...] = ()  # inclusive ranges
    migrating: tuple[str, ...] = ()  # "[slot->-id]" / "[slot-<-id]" entries: slots moving right now

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> str | None:
        """``fail`` (agreed by the majority), ``fail?`` (PFAIL: suspected by the node asked) or None."""
        return "fail" if "fail" in self.flags else "fail?" if "fail?" in self.flags else None

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)


@dataclass(frozen=True)
class ClusterTopology:
    nodes: tuple[ClusterNode, ...]
    source: str = ""  # the seed the map was read from

    def primaries(self) -> list[ClusterNode]:
        """Primaries that serve slots (an empty primary has no keys to visit)."""
        return [node for node in self.nodes if node.is_primary and node.slots]

    @cached_property
    def owners(self) -> list[str | None]:
        """Node id per slot (None: no node serves it)."""
        owners: list[str | None] = [None] * SLOTS
        for node in self.nodes:
            if node.is_primary:
                for start, end in node.slots:
                    owners[start:end + 1] = [node.node_id] * (end - start + 1)
        return owners

    @property
    def slots_covered(self) -> int:
        return sum(owner is not None for owner in self.owners)

    def assignment(self) -> dict[str, tuple[tuple[int, int], ...]]:
        """Slot ranges per primary: equal assignments mean no slot moved between two reads."""
        return {node.node_id: node.slots for node in self.nodes if node.is_primary and node.slots}

    def migrating_slots(self) -> list[str]:
        return [entry for node in self.nodes for entry in node.migrating]

    def reader_of(self, primary: ClusterNode, from_replicas: bool) -> ClusterNode:
        """The node to read ``primary``'s slots from: with ``from_replicas``, its first replica that is
        connected and not failing (the primary itself when it has none)."""
        if from_replicas:
            for node in self.nodes:
                if node.primary_id == primary.node_id and not node.failing and node.link_state == "connected":
                    return node
        return primary


def parse_cluster_nodes(text: str, source: str = "") -> ClusterTopology:
    """A ``CLUSTER NODES`` reply (one line per node) as a :class:`ClusterTopology`."""
    nodes = [_parse_node_line(line) for line in text.splitlines() if line.strip()]
    return ClusterTopology(tuple(nodes), source)


def _parse_node_line(line: str) -> ClusterNode:
    node_id, address, flags, primary, _ping, _pong, _epoch, link, *slot_fields = line.split()
    host_port = address.partition("@")[0]
    host, _, port = host_port.rpartition(":")
    ranges, migrating = [], []
    for entry in slot_fields:
        if entry.startswith("["):
            migrating.append(entry)
            continue
        start, _, end = entry.partition("-")
        ranges.append((int(start), int(end or start)))
    return ClusterNode(node_id, host.strip("[]"), int(port or 0), frozenset(flags.split(",")),
                       None if primary == "-" else primary, link, tuple(ranges), tuple(migrating))


def read_topology(seeds: Sequence[tuple[str, int]], connect: Callable[[str, int], Any]) -> ClusterTopology:
    """The topology as the first answering seed reports it; raises the last seed's error if none does."""
    error: Exception | None = None
    for host, port in seeds:
        client = connect(host, port)
        try:
            reply = client.execute_command("CLUSTER", "NODES")
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
            return parse_cluster_nodes(text, f"{host}:{port}")
        except Exception as exc:  # noqa: BLE001 - try the next seed, re-raise the last failure
            error = exc
        finally:
            client.close()
    assert error is not None, "read_topology needs at least one seed"
    raise error


@dataclass
class NodeOutcome(Generic[T]):
    node: ClusterNode
    value: T | None = None
    error: Exception | None = None


def fan_out(nodes: Sequence[ClusterNode], visit: Callable[[ClusterNode], T], concurrency: int,
            stop: threading.Event | None = None) -> list[NodeOutcome[T]]:
    """``visit(node)`` for every node, at most ``concurrency`` at a time; one outcome per node in the
    order given. A visit's exception is kept in its outcome (the others still run to their end).
    When the caller is interrupted (Ctrl-C) while it waits, ``stop`` is set before the running visits
    are waited for, so visits that check it end early."""

    def run(node: ClusterNode) -> NodeOutcome[T]:
        try:
            return NodeOutcome(node, visit(node))
        except Exception as exc:  # noqa: BLE001 - kept for the caller: diag shows it, backup raises it
            return NodeOutcome(node, error=exc)

    if not nodes:
        return []
    pool = ThreadPoolExecutor(max(1, min(concurrency, len(nodes))), thread_name_prefix="redis-node")
    try:
        return interrupts.map_results(pool, run, nodes)
    except BaseException:
        if stop is not None:
            stop.set()
        raise
    finally:  # on Ctrl-C the visits not yet started are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def values_or_raise(outcomes: Sequence[NodeOutcome[T]]) -> list[T]:
    """The visits' values, or the first node's error (the caller translates it)."""
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return [outcome.value for outcome in outcomes]  # type: ignore[misc]


@dataclass
class SlotOwnership:
    """Keeps the keys of a batch scanned on ``node`` whose slot ``node`` owned in ``topology``."""

    topology: ClusterTopology
    node: ClusterNode
    dropped: int = field(default=0)  # keys seen on a node that did not own their slot (mid-reshard)

    def __call__(self, keys: list[bytes]) -> list[bytes]:
        owners, node_id = self.topology.owners, self.node.node_id
        kept = [key for key in keys if owners[key_slot(key)] == node_id]
        self.dropped += len(keys) - len(kept)
        return kept


class FanInClosed(Exception):
    """Raised by ``emit`` in a producer of :func:`fan_in` once its consumer has stopped reading."""


def fan_in(nodes: Sequence[ClusterNode], produce: Callable[[ClusterNode, Callable[[Any], None]], None], *,
           concurrency: int = 4, buffered: int = 16) -> Iterator[Any]:
    """The items ``produce(node, emit)`` emits, for every node in parallel (at most ``concurrency`` at a
    time), as they come (at most ``buffered`` waiting). A node's error is raised here as soon as it
    happens, after the items that node emitted before it, with the node as its ``redis_node``
    attribute. Closing the iterator early (a consumer's break, Ctrl-C, an error) makes every producer's
    next ``emit`` raise :class:`FanInClosed`, so each ends after its current step; the close returns
    once all have ended."""
    items: queue.Queue[Any] = queue.Queue(buffered)
    stop = threading.Event()

    def emit(item: Any) -> None:
        if stop.is_set():
            raise FanInClosed
        items.put((True, item))

    def visit(node: ClusterNode) -> None:
        try:
            produce(node, emit)
        except FanInClosed:
            raise
        except Exception as exc:  # at once, not when every node is done: a watch never is
            exc.redis_node = node  # type: ignore[attr-defined] - which node failed
            items.put((False, exc))
            raise

    def visit_all() -> None:
        try:
            outcomes = fan_out(nodes, visit, concurrency)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            items.put((False, exc))
            return
        if all(outcome.error is None for outcome in outcomes):
            items.put(None)

    worker = threading.Thread(target=visit_all, name="redis-fan-in", daemon=True)
    worker.start()
    try:
        while (entry := _get(items)) is not None:
            is_item, item = entry
            if not is_item:
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock producers waiting on a full queue
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.05)


def _get(items: queue.Queue[Any]) -> Any:
    """The next entry, waited for in slices: Ctrl-C taken by a producer thread still ends the wait
    (see :mod:`storagectl.interrupts`)."""
    while True:
        try:
            return items.get(timeout=interrupts.SLICE)
        except queue.Empty:
            continue


def scan_primaries(topology: ClusterTopology, connect: Callable[[ClusterNode], Any], *,
                   match: str | bytes | None = None, count: int = 1000, type_: str | None = None, concurrency: int = 4,
                   buffered: int = 16, ownership: Callable[[ClusterTopology, ClusterNode], Any] = SlotOwnership,
                   ) -> Iterator[tuple[ClusterNode, list[bytes]]]:
    """(node, key batch) from a SCAN of every primary, in parallel, deduplicated by slot ownership
    (``ownership(topology, node)`` makes a node's filter; one returning None keeps every key: one server).
    Batches arrive as the nodes produce them (at most ``buffered`` waiting); a node's error is raised
    here after the batches before it. Closing the iterator early stops the scans."""

    def visit(node: ClusterNode, emit: Callable[[Any], None]) -> None:
        keep = ownership(topology, node)
        client = connect(node)
        try:
            cursor: Any = 0
            while True:
                cursor, keys = client.scan(cursor, match=match, count=count, _type=type_)
                if kept := (keys if keep is None else keep(keys)):
                    emit((node, kept))
                if int(cursor) == 0:
                    return
        finally:
            client.close()

    yield from fan_in(topology.primaries(), visit, concurrency=concurrency, buffered=buffered)
