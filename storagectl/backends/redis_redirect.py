"""Following a Redis Cluster's redirections while keys are written to it (restore), for the keys a
routed batch could not write on the primary it was sent to because their slot moved (MOVED) or is
moving (ASK) since the slot map was read.

A routed batch's script restores each key it can and returns the positions of the keys of slots its
node does not serve (:data:`storagectl.backends.redis.RESTORE_ROUTED_LUA`): those were not written,
so sending them again elsewhere neither loses nor doubles one. They go one RESTORE each (pipelined
per node), whose reply says where the key belongs: MOVED refreshes the shared :class:`SlotMap` (the
dispatcher routes the rest of the records by it) and the key is sent to its new owner; ASK sends
ASKING + RESTORE to the node importing the slot; BUSYKEY is a key already there (a duplicate record),
counted as such.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from storagectl.backends.redis_compare import Record
from storagectl.backends.redis_topology import SLOTS, Address, AddressMap, ClusterTopology, key_slot
from storagectl.errors import OperationFailed

MAX_REDIRECTS = 5  # rounds per key: a slot moved again and again is a cluster in trouble, not a reshard


class SlotMap:
    """The primary (address) serving each slot, shared by a routed restore's threads. A MOVED reply
    re-reads the topology once per change (``refresh``); ``version`` counts the changes, so the
    dispatcher knows when to re-route."""

    def __init__(self, topology: ClusterTopology, refresh: Callable[[], ClusterTopology] | None = None) -> None:
        self._refresh = refresh
        self._lock = threading.Lock()
        self.version = 0
        self.addresses = _addresses(topology)
        self.refreshes = 0

    def moved(self, slot: int, address: Address) -> None:
        """A node answered MOVED ``slot`` ``address``: the map is refreshed unless it already says so."""
        with self._lock:
            if self.addresses[slot] == address:
                return
            addresses = _addresses(self._refresh()) if self._refresh is not None else list(self.addresses)
            self.refreshes += 1
            if addresses[slot] != address:  # the seed has not heard of the move yet; the node that answered has
                addresses[slot] = address
            self.addresses = addresses  # replaced whole: readers in other threads see one map or the other
            self.version += 1


def _addresses(topology: ClusterTopology) -> list[Address | None]:
    by_id = {node.node_id: (node.host, node.port) for node in topology.nodes}
    return [by_id.get(owner) if owner is not None else None for owner in topology.owners]


class Redirects:
    """One writer thread's follow-up of redirected keys: its connections to the nodes they are sent to
    (``connect(host, port)`` opens one), closed by :meth:`close`."""

    def __init__(self, slot_map: SlotMap, connect: Callable[[str, int], Any], reachable: AddressMap | None) -> None:
        self.slot_map = slot_map
        self.connect = connect
        self.reachable = reachable or (lambda host, port: (host, port))
        self.clients: dict[Address, Any] = {}
        self.moved = self.asked = 0  # keys sent on after a MOVED / an ASK reply

    def restore(self, records: list[Record], loaded: Any) -> None:
        """RESTORE ``records`` (none written yet) where the cluster says they belong; a key already
        there counts in ``loaded.present``."""
        pending: list[tuple[Record, Address | None]] = [(record, None) for record in records]
        for _ in range(MAX_REDIRECTS):
            groups: dict[tuple[Address, bool], list[Record]] = {}
            for record, asked in pending:
                address = asked or self.slot_map.addresses[key_slot(record[0])]
                if address is None:
                    raise OperationFailed(f"slot {key_slot(record[0])} is served by no node of the cluster")
                groups.setdefault((address, asked is not None), []).append(record)
            pending = [follow for (address, asking), group in groups.items()
                       for follow in self._send(address, asking, group, loaded)]
            if not pending:
                return
        key = pending[0][0][0]
        raise OperationFailed(f"key {key[:80]!r} was redirected {MAX_REDIRECTS} times (slot {key_slot(key)} keeps "
                              "moving); the cluster holds part of the backup",
                              hint="Try: restore --yes again once the cluster is stable")

    def _send(self, address: Address, asking: bool, records: list[Record],
              loaded: Any) -> list[tuple[Record, Address | None]]:
        """One pipeline of RESTOREs (each after ASKING when ``asking``); the records to send again."""
        import redis

        pipe = self._client(address).pipeline(transaction=False)
        for key, payload, expire_at in records:
            if asking:
                pipe.execute_command("ASKING")
            pipe.execute_command("RESTORE", key, expire_at, payload, "ABSTTL")
        replies = pipe.execute(raise_on_error=False)
        follow: list[tuple[Record, Address | None]] = []
        for record, reply in zip(records, replies[1::2] if asking else replies, strict=True):
            if not isinstance(reply, Exception):
                continue
            if isinstance(reply, redis.exceptions.MovedError):  # before AskError: a subclass of it
                self.moved += 1
                self.slot_map.moved(int(reply.slot_id), self.reachable(reply.host, int(reply.port)))
                follow.append((record, None))
            elif isinstance(reply, redis.exceptions.AskError):
                self.asked += 1
                follow.append((record, self.reachable(reply.host, int(reply.port))))
            elif str(reply).startswith("BUSYKEY"):
                loaded.present += 1
            else:
                raise reply
        return follow

    def _client(self, address: Address) -> Any:
        if address not in self.clients:
            self.clients[address] = self.connect(*address)
        return self.clients[address]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()


def route_table(slot_map: SlotMap, inboxes: dict[Address, int], previous: list[int] | None) -> list[int]:
    """Per slot, the index of the writer its keys go to: the one of the node serving it now, or for a
    node without a writer (one that joined during the restore) the writer it had (whose script reports
    the keys, which then follow the redirection)."""
    addresses = slot_map.addresses
    table = []
    for slot in range(SLOTS):
        index = inboxes.get(addresses[slot]) if addresses[slot] is not None else None
        table.append(index if index is not None else previous[slot] if previous is not None else 0)
    return table
