"""Redis Cluster topology and the fan-out over its primaries, shared by every command that touches a
cluster's keys or nodes (backup, restore, diag, `inspect`, `cache`; on one server `cache` visits it as a
one-node topology). No command writes its own loop over nodes.

- :func:`read_topology` reads the map from the first seed that answers: ``CLUSTER SHARDS`` (Redis 7+;
  ``CLUSTER SLOTS`` where it is unknown or refused), then ``CLUSTER NODES`` where allowed for what only
  it tells (``fail?``, link state, slots in migration); announced addresses are translated to
  reachable ones (a backend's ``nat_map``).
- :func:`fan_out` visits nodes with bounded concurrency and returns one outcome per node, errors
  included, so diag can show a down node as a row while backup raises on it.
- :func:`backend_topology` / :func:`node_values`: the same on one server (a one-node topology) and a
  cluster, errors as ours: what `cache` and `bench` visit.
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
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
    announced: str | None = None  # the address the cluster announces, when a nat_map translated it

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

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


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


Address = tuple[str, int]
AddressMap = Callable[[str, int], Address]  # announced (host, port) -> the one to connect to


@dataclass(frozen=True)
class ClusterTopology:
    nodes: tuple[ClusterNode, ...]
    source: str = ""  # the seed the map was read from
    via: str = "CLUSTER NODES"  # the command the slot map came from
    migrations_known: bool = True  # False when CLUSTER NODES was refused: slots in migration unseen

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


def parse_cluster_shards(reply: Any, source: str = "", tls: bool = False) -> ClusterTopology:
    """A ``CLUSTER SHARDS`` reply: per shard its slot ranges and nodes (role, health, endpoint)."""
    nodes = []
    for shard in reply:
        fields = _fields(shard)
        flat = [int(bound) for bound in fields.get("slots") or []]
        ranges = merged_ranges(zip(flat[::2], flat[1::2], strict=True))
        members = [_fields(member) for member in fields.get("nodes") or []]
        primary = next((_text(m["id"]) for m in members if _text(m.get("role")) == "master"), None)
        for member in members:
            is_primary = _text(member.get("role")) == "master"
            failed = _text(member.get("health")) == "failed"
            flags = {"master" if is_primary else "slave", *(("fail",) if failed else ())}
            port = member.get("tls-port") if tls and member.get("tls-port") else member.get("port")
            nodes.append(ClusterNode(_text(member["id"]), _endpoint(member), int(port or 0), frozenset(flags),
                                     None if is_primary else primary, "disconnected" if failed else "connected",
                                     ranges if is_primary else ()))
    return ClusterTopology(tuple(nodes), source, "CLUSTER SHARDS", migrations_known=False)


def parse_cluster_slots(reply: Any, source: str = "") -> ClusterTopology:
    """A ``CLUSTER SLOTS`` reply (servers before 7.0): per slot range its primary, then its replicas."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    nodes: dict[str, ClusterNode] = {}
    for start, end, primary, *replicas in reply:
        primary_id = _text(primary[2])
        ranges.setdefault(primary_id, []).append((int(start), int(end)))
        for entry, primary_of in ((primary, None), *((replica, primary_id) for replica in replicas)):
            node_id = _text(entry[2])
            nodes.setdefault(node_id, ClusterNode(node_id, _text(entry[0]), int(entry[1]),
                                                  frozenset({"slave" if primary_of else "master"}), primary_of,
                                                  "connected"))
    merged = [replace(node, slots=merged_ranges(ranges.get(node.node_id, ()))) for node in nodes.values()]
    return ClusterTopology(tuple(merged), source, "CLUSTER SLOTS", migrations_known=False)


def merged_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Slot ranges sorted, adjacent ones joined: one form whichever command listed them."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return tuple(out)


def with_node_states(topology: ClusterTopology, states: ClusterTopology) -> ClusterTopology:
    """``topology`` (its slot map and endpoints) with what only ``CLUSTER NODES`` tells: flags such as
    ``fail?`` and ``myself``, link state, slots in migration; nodes it alone lists (no slots) added."""
    by_id = {node.node_id: node for node in states.nodes}
    known = {node.node_id for node in topology.nodes}
    nodes = [replace(node, flags=by_id[node.node_id].flags, link_state=by_id[node.node_id].link_state,
                     migrating=by_id[node.node_id].migrating) if node.node_id in by_id else node
             for node in topology.nodes]
    nodes += [node for node in states.nodes if node.node_id not in known]
    return replace(topology, nodes=tuple(nodes), migrations_known=True)


def reachable_through(topology: ClusterTopology, reachable: AddressMap | None) -> ClusterTopology:
    """``topology`` with every node's announced address translated by ``reachable`` (a nat_map)."""
    if reachable is None:
        return topology
    nodes = []
    for node in topology.nodes:
        host, port = reachable(node.host, node.port)
        nodes.append(node if (host, port) == (node.host, node.port)
                     else replace(node, host=host, port=port, announced=node.address))
    return replace(topology, nodes=tuple(nodes))


def _fields(entry: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat list of name, value pairs, by name."""
    pairs = entry.items() if isinstance(entry, dict) else zip(entry[::2], entry[1::2], strict=True)
    return {_text(name): value for name, value in pairs}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value) if value is not None else ""


def _endpoint(member: dict[str, Any]) -> str:
    """Where clients reach a node: its preferred endpoint, or its ip when the endpoint is unknown ("?")."""
    endpoint = _text(member.get("endpoint"))
    return endpoint if endpoint and endpoint != "?" else _text(member.get("ip"))


def read_topology(seeds: Sequence[tuple[str, int]], connect: Callable[[str, int], Any],
                  reachable: AddressMap | None = None, tls: bool = False) -> ClusterTopology:
    """The topology as the first answering seed reports it (announced addresses translated by
    ``reachable``); raises the last seed's error if none does."""
    error: Exception | None = None
    for host, port in seeds:
        client = connect(host, port)
        try:
            return reachable_through(_read_map(client, host_port(host, port), tls), reachable)
        except Exception as exc:  # noqa: BLE001 - try the next seed, re-raise the last failure
            error = exc
        finally:
            client.close()
    assert error is not None, "read_topology needs at least one seed"
    raise error


def _read_map(client: Any, source: str, tls: bool) -> ClusterTopology:
    """CLUSTER SHARDS, or CLUSTER SLOTS where it is unknown (before 7.0) or refused (ACL, a proxy);
    then CLUSTER NODES, where allowed, for the node states the other two do not tell."""
    import redis

    try:
        topology = parse_cluster_shards(client.execute_command("CLUSTER", "SHARDS"), source, tls)
    except redis.ResponseError:
        topology = parse_cluster_slots(client.execute_command("CLUSTER", "SLOTS"), source)
    try:
        states = client.execute_command("CLUSTER", "NODES")
    except redis.ResponseError:
        return topology
    return with_node_states(topology, parse_cluster_nodes(_text(states), source))


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


def backend_topology(backend: Any, what: str) -> ClusterTopology:
    """The primaries a command visits on a redis backend (one server: a one-node topology serving every
    slot, see ``cache_topology``), with a connection failure translated into one of our errors."""
    from storagectl.errors import StoragectlError

    try:
        return backend.cache_topology(what)
    except StoragectlError:
        raise
    except Exception as exc:  # noqa: BLE001 - the seed(s) unreachable
        raise backend.translate_error(exc) from exc


def node_values(backend: Any, what: str, outcomes: Sequence[NodeOutcome[T]]) -> list[T]:
    """The values of fan_out outcomes; the first failed node's error as one of ours (``backend.node_error``)."""
    for outcome in outcomes:
        if outcome.error is not None:
            raise backend.node_error(what, outcome.node, outcome.error) from outcome.error
    return [outcome.value for outcome in outcomes]  # type: ignore[misc]


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
        if b"{" in b"".join(keys):  # a hash tag somewhere: each key's slot by its tag
            kept = [key for key in keys if owners[key_slot(key)] == node_id]
        else:  # no key has one (most batches): CRC16 of the whole key, without a Python call per key
            kept = [key for key in keys if owners[crc_hqx(key, 0) % SLOTS] == node_id]
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
