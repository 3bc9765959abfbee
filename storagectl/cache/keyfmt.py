"""Keys and values as bytes end to end: how they are shown (escaped text, base64 in JSON), how a
command-line argument becomes the bytes it names, and Redis glob patterns matched client side."""

from __future__ import annotations

import base64
import os
import re
from typing import Any

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def arg_bytes(text: str) -> bytes:
    """A command-line argument as the bytes the user typed (non-UTF-8 bytes survive: surrogateescape)."""
    return os.fsencode(text)


def escape(data: bytes) -> str:
    """Printable, lossless text for a key or value: UTF-8 shown as is; backslash, control characters and
    bytes that are not UTF-8 as ``\\\\``, ``\\n``, ``\\xff`` ..."""
    text = data.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:  # nearly every key: one C call
        return text
    return "".join(_escape_char(char) for char in text)


def quoted(data: bytes) -> str:
    """A key or pattern in a message: escaped once, in single quotes (``!r`` would double each backslash)."""
    return f"'{escape(data)}'"


def escaped_lines(keys: list[bytes]) -> str:
    """``keys`` escaped, one per line: one decode and one check for a whole batch of plain keys."""
    joined = b"\n".join(keys)
    if b"\\" not in joined and joined.count(b"\n") == len(keys) - 1:
        try:
            text = joined.decode()
        except UnicodeDecodeError:
            text = ""
        if text and text.replace("\n", "").isprintable():
            return text + "\n"
    return "".join(escape(key) + "\n" for key in keys) if keys else ""


def _escape_char(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if not char.isprintable():
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def key_json(key: bytes) -> dict[str, str]:
    """A key in JSON: ``key`` (escaped text) and ``key_base64`` (the exact bytes)."""
    return {"key": escape(key), "key_base64": b64(key)}


def value_json(value: Any) -> Any:
    """A value read by type, for JSON: bytes as {"text", "base64"}, containers element by element."""
    if isinstance(value, bytes):
        return {"text": escape(value), "base64": b64(value)}
    if isinstance(value, dict):
        return [{"field": value_json(k), "value": value_json(v)} for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [value_json(item) for item in value]
    return value


def is_match_all(pattern: bytes | None) -> bool:
    """A pattern that matches every key, or nearly: empty, or made only of ``*`` and ``?`` (``?*`` matches
    every non-empty key, ``??*`` all but the one-character ones: treated alike, refused without --all)."""
    return not pattern or set(pattern) <= {ord("*"), ord("?")}


def glob_regex(pattern: bytes) -> re.Pattern[bytes]:
    """A Redis glob (``*``, ``?``, ``[a-z]``, ``[^x]``, ``\\`` escapes) as a compiled bytes regex."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i:i + 1]
        if char == b"\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1:i + 2]))
            i += 2
            continue
        if char == b"*":
            out.append(b".*")
        elif char == b"?":
            out.append(b".")
        elif char == b"[" and (end := pattern.find(b"]", i + 2)) != -1:
            body = pattern[i + 1:end]
            negate = body[:1] == b"^"
            body = body[1:] if negate else body
            out.append(b"[" + (b"^" if negate else b"") + body.replace(b"\\", b"\\\\") + b"]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile(b"".join(out) + rb"\Z", re.DOTALL)


def glob_escape(prefix: bytes) -> bytes:
    """``prefix`` with the glob's special characters escaped, so ``glob_escape(p) + b"*"`` is a prefix match."""
    return re.sub(rb"([\\*?\[\]])", rb"\\\1", prefix)
