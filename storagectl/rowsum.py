"""The row count and crc32 sum of a block of text COPY rows: the sums behind
:func:`storagectl.backends.postgres.copy.row_checksum`, per byte rather than per row.

:func:`line_crc32_sum` uses the C accelerator ``storagectl._rowsum`` (built by ``pip install``
where a compiler is found) and otherwise computes the same result in Python: ``bytes.splitlines``
and ``map(zlib.crc32, ...)``, one bytes object per row, about 14x slower. A build of an older
``_rowsum.c`` than the one beside it (a checkout edited since ``pip install -e .``) is not used:
:data:`EXTENSION` then says ``stale`` and the tests fail until it is rebuilt.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def python_line_crc32_sum(data: Any) -> tuple[int, int]:
    """(lines, sum of the crc32 of every line): lines end after each newline, which they include; a
    last one without it counts too. Any bytes-like ``data``."""
    data = bytes(data)
    if b"\r" not in data:  # always so in text COPY, which escapes a carriage return in data as \r
        lines = data.splitlines(keepends=True)
    else:  # splitlines would also cut after a bare carriage return
        *ended, last = data.split(b"\n")
        lines = [line + b"\n" for line in ended] + ([last] if last else [])
    return len(lines), sum(map(zlib.crc32, lines))


def _load() -> tuple[str, Callable[[Any], tuple[int, int]]]:
    """(state of the C accelerator: ``built``, ``stale`` or ``missing``; the function to use)."""
    try:
        from storagectl._rowsum import SOURCE_CRC32, line_crc32_sum
    except ImportError:
        return "missing", python_line_crc32_sum
    source = Path(__file__).with_name("_rowsum.c")  # a checkout's, or the copy a wheel ships beside its build
    if source.is_file() and zlib.crc32(source.read_bytes()) != SOURCE_CRC32:
        return "stale", python_line_crc32_sum
    return "built", line_crc32_sum


EXTENSION, line_crc32_sum = _load()
