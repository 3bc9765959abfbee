"""Human-readable quantities: durations and sizes as people write them (config values, options) and
as tables and log lines show them. Plain Python, so option parsing needs no pydantic."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4,
}


MAX_DURATION = 100 * 365.25 * 86400  # seconds: far beyond any timeout or retention, and safe for time_t
MAX_BYTE_SIZE = 1024**5


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``500ms``, ``30s``, ``5m``, ``2h``, ``30d``, ``1w``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 2h or 30d")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = _DURATION.match(str(value))
            if not match:
                raise ValueError(f"{value!r} is not a duration; use a number of seconds or 500ms, 30s, 5m, 2h, 30d, 1w")
            seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    except OverflowError:
        seconds = float("inf")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not seconds <= MAX_DURATION:  # also NaN and .inf
        raise ValueError("a duration must be finite and at most 100 years")
    return seconds


def parse_byte_size(value: Any) -> int:
    """Bytes from a number or a string like ``64MiB``, ``8MB``, ``512k``."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a size; use bytes or 512KiB, 64MiB, 1GiB")
        size_float = float(match[1]) * _SIZE_UNITS[(match[2] or "").lower()]
        if not size_float <= MAX_BYTE_SIZE:
            raise ValueError("a size must be at most 1 PiB")
        size = int(size_float)
    if size < 0:
        raise ValueError("a size cannot be negative")
    if size > MAX_BYTE_SIZE:
        raise ValueError("a size must be at most 1 PiB")
    return size


def plural(count: int, noun: str) -> str:
    """``1 destination``, ``2 destinations``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def human_bytes(size: float) -> str:
    """``1536`` -> ``1.5 KiB``; binary units, one decimal above bytes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def format_duration(seconds: float) -> str:
    """``90061`` → ``1d1h1m1s``: compact, largest units first, for reasons, descriptions and ETAs."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
