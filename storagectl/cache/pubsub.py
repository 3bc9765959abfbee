"""``cache publish`` / ``cache subscribe``. Pub/sub does not buffer: a subscriber that loses its
connection reconnects (redis-py resubscribes its channels) and is told, through a :class:`Gap`, that
messages published meanwhile are lost. On a cluster any primary serves: classic pub/sub is broadcast
to every node."""

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
    """The connection was lost for ``seconds`` and is back: messages published meanwhile are lost."""

    seconds: float
    error: str


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
    import redis

    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        (pubsub.psubscribe if patterns else pubsub.subscribe)(*channels)
        deadline = None if timeout is None else clock() + timeout
        received, lost_at, lost_error, attempt = 0, None, "", 0
        while count is None or received < count:
            left = None if deadline is None else deadline - clock()
            if left is not None and left <= 0:
                return
            try:
                message = pubsub.get_message(timeout=min(left, 1.0) if left is not None else 1.0)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if lost_at is None:
                    lost_at, lost_error = clock(), describe(exc)
                sleep(min(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)], max(left or 1.0, 0.0)))
                attempt += 1
                continue
            if lost_at is not None:
                yield Gap(round(clock() - lost_at, 3), lost_error)
                lost_at, attempt = None, 0
            if message is not None and message["type"] in ("message", "pmessage"):
                received += 1
                yield Message(message["channel"], message["data"], message.get("pattern"))
    finally:
        pubsub.close()
