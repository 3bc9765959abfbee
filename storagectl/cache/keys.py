"""Single-key commands: get (the value read by its type), set, ttl, expire, persist, del, type.

Every function takes a key client (:func:`storagectl.cache.nodes.key_client`) and bytes keys, and
returns plain data; a missing key is :class:`NotFound` (exit 5), another type than asked
:class:`WrongType` (exit 1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from storagectl.cache.keyfmt import key_json, quoted, value_json
from storagectl.errors import NotFound, OperationFailed, UsageError, WrongType

TYPES = ("string", "hash", "list", "set", "zset", "stream")
NO_SUCH_KEY, NO_TTL = -2, -1  # PTTL replies


@dataclass
class KeyValue:
    key: bytes
    type: str
    ttl_ms: int | None  # None: no expiry
    length: int  # bytes of a string, elements of a collection
    value: Any  # bytes; dict (hash); list (list, set); list of (member, score) (zset); list of (id, fields)
    shown: int  # elements in ``value``
    truncated: bool = field(default=False)

    def to_dict(self) -> dict[str, Any]:
        value = self.value
        if self.type == "zset":
            value = [{"member": value_json(member), "score": score} for member, score in value]
        elif self.type == "stream":
            value = [{"id": entry_id.decode(), "fields": value_json(fields)} for entry_id, fields in value]
        else:
            value = value_json(value)
        return {**key_json(self.key), "type": self.type, "ttl_ms": self.ttl_ms, "length": self.length,
                "shown": self.shown, "truncated": self.truncated, "value": value}


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def missing_key(key: bytes) -> NotFound:
    return NotFound(f"key {quoted(key)} does not exist",
                    hint="Try: storagectl cache scan --pattern 'PREFIX*' to see the keys that do (names are exact: "
                         "case, spaces and bytes count)")


def key_type(client: Any, key: bytes) -> str:
    kind = _text(client.type(key))
    if kind == "none":
        raise missing_key(key)
    return kind


def check_type(type_: str | None) -> None:
    """Refuse (exit 2) a --type that is not a Redis type, before anything is read."""
    if type_ is not None and type_ not in TYPES:
        raise UsageError(f"--type {type_!r} is not a Redis type", hint=f"Try: one of {', '.join(TYPES)}")


def get(client: Any, key: bytes, *, limit: int = 100, expect: str | None = None) -> KeyValue:
    """The key's value by its type, collections cut at ``limit`` elements (``truncated`` says so)."""
    check_type(expect)
    kind = key_type(client, key)
    if expect is not None and kind != expect:
        raise WrongType(f"key {quoted(key)} is a {kind}, not a {expect}",
                        hint="Try: storagectl cache get without --type (it reads any type)")
    length, value = _READERS[kind](client, key, limit) if kind in _READERS else (0, None)
    shown = length if kind == "string" else len(value or ())
    return KeyValue(key, kind, ttl(client, key), length, value, shown, kind != "string" and shown < length)


def _string(client: Any, key: bytes, limit: int) -> tuple[int, bytes]:
    value = client.get(key) or b""
    return len(value), value


def _hash(client: Any, key: bytes, limit: int) -> tuple[int, dict[bytes, bytes]]:
    return client.hlen(key), dict(islice(client.hscan_iter(key, count=max(limit, 10)), limit))


def _list(client: Any, key: bytes, limit: int) -> tuple[int, list[bytes]]:
    return client.llen(key), client.lrange(key, 0, limit - 1)


def _set(client: Any, key: bytes, limit: int) -> tuple[int, list[bytes]]:
    return client.scard(key), sorted(islice(client.sscan_iter(key, count=max(limit, 10)), limit))


def _zset(client: Any, key: bytes, limit: int) -> tuple[int, list[tuple[bytes, float]]]:
    return client.zcard(key), client.zrange(key, 0, limit - 1, withscores=True)


def _stream(client: Any, key: bytes, limit: int) -> tuple[int, list[tuple[bytes, dict[bytes, bytes]]]]:
    return client.xlen(key), client.xrange(key, "-", "+", count=limit)


_LENGTH = {"string": "STRLEN", "hash": "HLEN", "list": "LLEN", "set": "SCARD", "zset": "ZCARD", "stream": "XLEN"}
_READERS = {"string": _string, "hash": _hash, "list": _list, "set": _set, "zset": _zset, "stream": _stream}


def ttl(client: Any, key: bytes) -> int | None:
    """Milliseconds to live; None when the key has no expiry."""
    left = int(client.pttl(key))
    if left == NO_SUCH_KEY:
        raise missing_key(key)
    return None if left == NO_TTL else left


def set_value(client: Any, key: bytes, value: bytes, *, ttl_ms: int | None = None, only_if: str | None = None) -> None:
    """SET, with PX and NX ("absent") / XX ("present"); raises when the condition kept it from being set."""
    done = client.set(key, value, px=ttl_ms, nx=only_if == "absent", xx=only_if == "present")
    if not done:
        state = "exists (--nx)" if only_if == "absent" else "does not exist (--xx)"
        raise OperationFailed(f"key {quoted(key)} {state}; nothing was set")


def expire(client: Any, key: bytes, ttl_ms: int) -> None:
    if not client.pexpire(key, ttl_ms):
        raise missing_key(key)


def persist(client: Any, key: bytes) -> bool:
    """Remove the key's expiry; False when it had none."""
    if client.persist(key):
        return True
    key_type(client, key)  # NotFound when missing
    return False


def delete(client: Any, keys: list[bytes]) -> dict[str, Any]:
    """UNLINK each key (one pipeline; on a cluster routed per key): which were deleted, which missing."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    replies = pipe.execute()
    missing = [key for key, gone in zip(keys, replies, strict=True) if not gone]
    return {"deleted": len(keys) - len(missing), "missing": [key_json(key) for key in missing]}


def describe(client: Any, key: bytes) -> dict[str, Any]:
    """Type, TTL, length, encoding and memory of a key."""
    kind = key_type(client, key)
    length = client.execute_command(_LENGTH[kind], key) if kind in _LENGTH else None
    return {**key_json(key), "type": kind, "ttl_ms": ttl(client, key), "length": length,
            "encoding": _text(client.object("encoding", key)), "memory_bytes": client.memory_usage(key)}
