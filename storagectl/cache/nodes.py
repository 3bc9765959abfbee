"""Opening what ``cache`` commands talk to: a key client (one server, or a cluster through redis-py's
RedisCluster) and the primaries to visit (:meth:`RedisBackend.cache_topology`), with driver errors
turned into ours. The per-node work itself is in each command's module, run through
:func:`storagectl.backends.redis_topology.fan_out` / ``fan_in``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from storagectl.backends import backend_from_config, only_backend, selected_backends
from storagectl.backends.redis_topology import backend_topology as topology
from storagectl.backends.redis_topology import node_values as first_error
from storagectl.errors import BackendUnavailable, OperationFailed, StoragectlError, UsageError

__all__ = ["cache_backend", "connected", "first_error", "key_client", "topology", "translated"]


def cache_backend(config: Any, name: str | None) -> Any:
    """The backend ``name`` of the config, refused unless it is a redis backend (one server or a cluster);
    without a name, the config's only redis backend."""
    if name is None:
        return only_backend([backend for backend in selected_backends(config, None) if _serves_cache(backend)],
                            "redis backends", hint="Try: -b NAME (storagectl backends lists them)")
    backend = backend_from_config(config, name)
    if not _serves_cache(backend):
        raise UsageError(f"{backend.label}: `storagectl cache` works on redis backends, not {backend.kind}",
                         hint="Try: -b with the name of a redis backend (storagectl backends lists them)")
    return backend


def _serves_cache(backend: Any) -> bool:
    return hasattr(backend, "cache_topology")


@contextlib.contextmanager
def key_client(backend: Any) -> Iterator[Any]:
    """A client for key commands (redis.Redis, or RedisCluster which follows MOVED/ASK), always closed."""
    client = connected(backend, backend.client)
    try:
        yield client
    finally:
        client.close()


def connected(backend: Any, open_client: Any) -> Any:
    """``open_client()`` pinged within the connect timeout; connection failures as our errors."""
    try:
        client = open_client()
        client.ping()
        return client
    except StoragectlError:
        raise
    except Exception as exc:  # noqa: BLE001 - refused / DNS / timeout / auth, translated
        raise backend.translate_error(exc) from exc


@contextlib.contextmanager
def translated(backend: Any, what: str) -> Iterator[None]:
    """Driver errors of the commands inside as one-line errors of ours."""
    import redis

    try:
        yield
    except redis.ResponseError as exc:
        if down := backend.cluster_down(what, exc):  # a ResponseError, but the cluster is unavailable
            raise down from exc
        raise OperationFailed(f"{backend.label}: {what} failed: {backend.error_line(exc)}") from exc
    except redis.RedisError as exc:
        raise BackendUnavailable(f"{backend.label}: {what} failed, connection lost: {backend.error_line(exc)}",
                                 hint=f"Try: storagectl diag --backend {backend.name}") from exc
