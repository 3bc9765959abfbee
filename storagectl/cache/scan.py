"""``cache scan``: key names streamed from a SCAN of every primary (never KEYS), in batches, with type
and TTL when asked (one pipeline per batch on the node that holds the batch)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from storagectl.backends.redis_topology import scan_primaries
from storagectl.cache.keys import check_type
from storagectl.cache.nodes import topology
from storagectl.errors import StoragectlError


@dataclass(frozen=True)
class ScanOptions:
    pattern: bytes | None = None
    type: str | None = None
    count: int = 1000
    limit: int | None = None
    details: bool = False  # type and TTL per key


@dataclass(frozen=True)
class ScannedKey:
    key: bytes
    type: str | None = None
    ttl_ms: int | None = None  # None: no expiry (or not asked)


def scan_keys(backend: Any, options: ScanOptions) -> Iterator[list[bytes] | list[ScannedKey]]:
    """Batches of keys as the primaries return them, up to ``limit`` keys in all: key names, or with
    ``details`` :class:`ScannedKey` (no object per key otherwise: a million keys stream at SCAN's pace)."""
    check_type(options.type)
    nodes = topology(backend, "scan")
    clients: dict[str, Any] = {}
    left = options.limit
    batches = scan_primaries(nodes, lambda node: backend.node_client(node), match=options.pattern,
                             count=options.count, type_=options.type, concurrency=len(nodes.primaries()),
                             ownership=backend.owned_keys)
    try:
        with contextlib.closing(batches):
            for node, keys in batches:
                keys = keys if left is None else keys[:left]
                if options.details:
                    client = clients.get(node.node_id) or clients.setdefault(node.node_id, backend.node_client(node))
                    yield _with_details(client, keys)
                else:
                    yield keys
                if left is not None:
                    left -= len(keys)
                    if left <= 0:
                        return
    except StoragectlError:
        raise
    except Exception as exc:  # noqa: BLE001 - fan_in names the node that failed
        raise backend.node_error("scan", getattr(exc, "redis_node", nodes.primaries()[0]), exc) from exc
    finally:
        for client in clients.values():
            client.close()


def _with_details(client: Any, keys: list[bytes]) -> list[ScannedKey]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.pttl(key)
    replies = pipe.execute()
    return [ScannedKey(key, kind.decode() if isinstance(kind, bytes) else kind, None if ttl < 0 else ttl)
            for key, kind, ttl in zip(keys, replies[::2], replies[1::2], strict=True)]
