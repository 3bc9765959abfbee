"""Progress reporting from the core: plain events to a callback; the CLI decides how to show them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ProgressEvent:
    action: str  # "backup", "restore", "verify"
    stage: Literal["start", "advance", "finish"]
    object: str
    done: int = 0  # original (uncompressed) bytes so far
    total: int | None = None  # original bytes expected, when known
    stored: int | None = None  # stored bytes, on "finish" of a backup object


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(_event: ProgressEvent) -> None:
    return None
