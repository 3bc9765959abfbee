"""``cache publish`` / ``cache subscribe``, and the reconnecting subscription ``cache watch`` uses too.
Pub/sub does not buffer: a subscriber that loses its connection reconnects (redis-py resubscribes its
channels) and is told, through a :class:`Gap`, that messages published meanwhile are lost. On a
cluster any primary serves: classic pub/sub is broadcast to every node."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from storagectl.cache.keyfmt import b64, escape
from storagectl.cache.nodes import connected, topology

RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0)  # waits between reconnection attempts, the last repeated


@dataclass(frozen=True)
class Message:
    channel: bytes
    data: bytes
    pattern: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"channel": escape(self.channel), "pattern": escape(self.pattern) if self.pattern else None,
                "data": escape(self.data), "data_base64": b64(self.data)}


@dataclass(frozen=True)
class Gap:
    """The connection (to ``node``, on a cluster) was lost for ``seconds`` and is back: messages
    published meanwhile are lost."""

    seconds: float
    error: str
    node: str | None = None


class Subscription:
    """Channels (or patterns) subscribed on one client, kept across lost connections: :meth:`poll`
    returns the next message, a :class:`Gap` once the connection is back after a loss, or None when
    nothing came within the wait (or the server is still away)."""

    def __init__(self, client: Any, channels: list[bytes], *, patterns: bool = False,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 describe: Callable[[Exception], str] = str) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.clock, self.sleep, self.describe = clock, sleep, describe
        self.lost_at: float | None = None
        self.lost_error, self.attempt = "", 0
        self.pending: Message | None = None
        try:
            (self.pubsub.psubscribe if patterns else self.pubsub.subscribe)(*channels)
        except BaseException:
            self.pubsub.close()
            raise

    def poll(self, wait: float) -> Message | Gap | None:
        import redis

        if self.pending is not None:  # read together with the reconnection, after its Gap
            message, self.pending = self.pending, None
            return message
        try:
            reply = self.pubsub.get_message(timeout=wait)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if self.lost_at is None:
                self.lost_at, self.lost_error = self.clock(), self.describe(exc)
            self.sleep(min(RETRY_SECONDS[min(self.attempt, len(RETRY_SECONDS) - 1)], max(wait, 0.0)))
            self.attempt += 1
            return None
        message = (Message(reply["channel"], reply["data"], reply.get("pattern"))
                   if reply is not None and reply["type"] in ("message", "pmessage") else None)
        if self.lost_at is not None:
            gap = Gap(round(self.clock() - self.lost_at, 3), self.lost_error)
            self.lost_at, self.attempt, self.pending = None, 0, message
            return gap
        return message

    def close(self) -> None:
        self.pubsub.close()


def publish(client: Any, channel: bytes, message: bytes) -> int:
    """The number of subscribers that received it (on a cluster: those of the node that was asked)."""
    return int(client.publish(channel, message))


def subscriber(backend: Any) -> Any:
    """A client of one primary (any: pub/sub is cluster-wide), connected."""
    node = topology(backend, "subscribe").primaries()[0]
    return connected(backend, lambda: backend.node_client(node))


def subscribe(client: Any, channels: list[bytes], *, patterns: bool = False, count: int | None = None,
              timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep, describe: Callable[[Exception], str] = str,
              ) -> Iterator[Message | Gap]:
    """Messages in the order the server sends them, until ``count`` of them or ``timeout`` seconds."""
    subscription = Subscription(client, channels, patterns=patterns, clock=clock, sleep=sleep, describe=describe)
    try:
        deadline = None if timeout is None else clock() + timeout
        received = 0
        while count is None or received < count:
            left = None if deadline is None else deadline - clock()
            if left is not None and left <= 0:
                return
            item = subscription.poll(min(left, 1.0) if left is not None else 1.0)
            if item is not None:
                received += isinstance(item, Message)
                yield item
    finally:
        subscription.close()
