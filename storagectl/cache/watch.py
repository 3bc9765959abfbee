"""``cache watch``: keyspace notifications (``__keyspace@<db>__:<key>``) of every primary, merged.

Notifications are off unless ``notify-keyspace-events`` holds ``K`` and the classes of the events
watched; :func:`notifications_enabled` adds what is missing on every primary (again after a node's
connection came back: a restarted server forgot it) and puts the old value back when the watch ends,
however it ends. Each node's subscription is a :class:`~storagectl.cache.pubsub.Subscription`, which
reconnects as ``cache subscribe`` does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from storagectl.backends.redis_topology import ClusterNode, fan_in, fan_out
from storagectl.cache.invalidate import STANDALONE
from storagectl.cache.keyfmt import arg_bytes, glob_escape, key_json
from storagectl.cache.nodes import first_error, topology
from storagectl.cache.pubsub import Gap, Message, Subscription
from storagectl.errors import FeatureUnavailable, StoragectlError

DEFAULT_EVENTS = ("set", "del", "expired", "evicted")
# notify-keyspace-events class of each event (Redis docs, "Keyspace notifications"); others need "A"
EVENT_CLASSES = {"set": "$", "setrange": "$", "incrby": "$", "incrbyfloat": "$", "append": "$",
                 "del": "g", "expire": "g", "rename_from": "g", "rename_to": "g", "persist": "g", "copy_to": "g",
                 "expired": "x", "evicted": "e", "new": "n",
                 "hset": "h", "hdel": "h", "lpush": "l", "rpush": "l", "lpop": "l", "rpop": "l",
                 "sadd": "s", "srem": "s", "zadd": "z", "zrem": "z", "xadd": "t"}
ALL_CLASSES = "g$lshzxetd"  # what "A" stands for
POLL_SECONDS = 0.2  # how soon a node's reader notices the watch has ended


@dataclass(frozen=True)
class KeyEvent:
    key: bytes
    event: str
    node: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**key_json(self.key), "event": self.event, "node": self.node}


def needed_flags(events: tuple[str, ...]) -> str:
    """``K`` and the classes of ``events``."""
    return "K" + "".join(sorted({EVENT_CLASSES.get(event, "A") for event in events}))


def missing_flags(current: str, needed: str) -> str:
    have = set(current) | (set(ALL_CLASSES) if "A" in current else set())
    return "".join(flag for flag in needed if flag not in have and not (flag == "A" and set(ALL_CLASSES) <= have))


def check_notifications(backend: Any, events: tuple[str, ...]) -> dict[ClusterNode, str]:
    """notify-keyspace-events per primary; FeatureUnavailable (exit 3) when one lacks a needed flag."""
    current = read_settings(backend)
    for node, value in current.items():
        _require(backend, node, value, events)
    return current


def _require(backend: Any, node: ClusterNode, value: str, events: tuple[str, ...]) -> None:
    if missing := missing_flags(value, needed_flags(events)):
        where = "" if node.node_id == STANDALONE else f" on node {node.address}"
        raise FeatureUnavailable(
            f"{backend.label}: keyspace notifications are off{where} (notify-keyspace-events is {value!r}, "
            f"needs {missing!r} for {', '.join(events)})",
            hint=f"Try: storagectl cache watch -b {backend.name} --enable-notifications --yes (restored on exit), "
                 f"or CONFIG SET notify-keyspace-events {value + missing}")


def still_enabled(backend: Any, events: tuple[str, ...]) -> Callable[[ClusterNode], None]:
    """What a watch does after a node's connection came back, when it did not turn notifications on
    itself: a restarted server may have lost them, and a watch would then print nothing (exit 3)."""
    return lambda node: _require(backend, node, _config(backend, node), events)


def read_settings(backend: Any) -> dict[ClusterNode, str]:
    nodes = topology(backend, "watch").primaries()
    return dict(zip(nodes, first_error(backend, "watch", fan_out(nodes, lambda node: _config(backend, node), 8)),
                    strict=True))


def _config(backend: Any, node: ClusterNode, value: str | None = None) -> str:
    client = backend.node_client(node)
    try:
        if value is not None:
            client.config_set("notify-keyspace-events", value)
            return value
        reply = client.config_get("notify-keyspace-events").get("notify-keyspace-events", "")
        return reply.decode() if isinstance(reply, bytes) else reply
    finally:
        client.close()


@contextlib.contextmanager
def notifications_enabled(backend: Any, events: tuple[str, ...]) -> Iterator[Callable[[ClusterNode], None]]:
    """Add the flags ``events`` need on every primary; put each node's old value back on exit. Yields
    what to do after a node's connection came back: set the value again if the server lost it (a
    restart forgets CONFIG SET)."""
    old = read_settings(backend)
    needed = needed_flags(events)
    wanted = {node: value + missing_flags(value, needed) for node, value in old.items()}
    changed = [node for node, value in old.items() if wanted[node] != value]
    first_error(backend, "enabling notifications", fan_out(
        changed, lambda node: _config(backend, node, wanted[node]), 8))

    def reapply(node: ClusterNode) -> None:
        if missing_flags(_config(backend, node), needed):
            _config(backend, node, wanted[node])

    try:
        yield reapply
    finally:
        first_error(backend, "restoring notify-keyspace-events", fan_out(
            changed, lambda node: _config(backend, node, old[node]), 8))


def watch(backend: Any, *, prefix: str = "", events: tuple[str, ...] = DEFAULT_EVENTS, count: int | None = None,
          timeout: float | None = None, after_gap: Callable[[ClusterNode], None] | None = None,
          clock: Callable[[], float] = time.monotonic) -> Iterator[KeyEvent | Gap]:
    """Events of keys starting with ``prefix`` on every primary, as they come, until ``count`` or
    ``timeout``. A node whose connection drops is reconnected (its subscription restored); a
    :class:`Gap` then says that events meanwhile were lost, after ``after_gap(node)`` ran (default:
    :func:`still_enabled`)."""
    nodes = topology(backend, "watch").primaries()
    db = backend.selected_databases()[0]
    channel = b"__keyspace@%d__:" % db
    wanted = {event.encode() for event in events}
    after_gap = after_gap or still_enabled(backend, events)

    def produce(node: ClusterNode, emit: Callable[[Any], None]) -> None:
        client = backend.node_client(node)
        name = None if node.node_id == STANDALONE else node.address
        try:
            subscription = Subscription(client, [channel + glob_escape(arg_bytes(prefix)) + b"*"], patterns=True,
                                        describe=backend.error_line)
        except BaseException:
            client.close()
            raise
        try:
            while True:
                item = subscription.poll(POLL_SECONDS)
                if isinstance(item, Gap):
                    after_gap(node)
                    emit(replace(item, node=name))
                elif isinstance(item, Message) and item.data in wanted:
                    emit(KeyEvent(item.channel[len(channel):], item.data.decode(), name))
                else:
                    emit(None)  # lets the reader notice the end of the watch without a message
        finally:
            subscription.close()
            client.close()

    deadline = None if timeout is None else clock() + timeout
    seen = 0
    try:
        with contextlib.closing(fan_in(nodes, produce, concurrency=len(nodes))) as items:
            for item in items:
                if item is not None:
                    seen += isinstance(item, KeyEvent)
                    yield item
                if (count is not None and seen >= count) or (deadline is not None and clock() >= deadline):
                    return
    except StoragectlError:
        raise
    except Exception as exc:  # noqa: BLE001 - fan_in names the node that failed
        raise backend.node_error("watch", getattr(exc, "redis_node", nodes[0]), exc) from exc
