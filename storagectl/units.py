"""Human-readable quantities for tables and log lines."""

from __future__ import annotations


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
