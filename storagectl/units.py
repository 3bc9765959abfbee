"""Human-readable quantities for tables and log lines."""

from __future__ import annotations


def human_bytes(size: float) -> str:
    """``1536`` -> ``1.5 KiB``; binary units, one decimal above bytes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"
