"""The row count and crc32 sum of a block of text COPY rows: the sums behind
:func:`storagectl.backends.postgres.copy.row_checksum`, per byte rather than per row.

:func:`line_crc32_sum` uses the C accelerator ``storagectl._rowsum`` (built by ``pip install``
where a compiler is found) and otherwise computes the same result in Python: ``bytes.splitlines``
and ``map(zlib.crc32, ...)``, one bytes object per row, about 14x slower. A build of an older
``_rowsum.c`` than the one beside it (a checkout edited since ``pip install -e .``) is not used:
:data:`EXTENSION` then says ``stale`` and the tests fail until it is rebuilt.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def python_line_crc32_sum(data: Any) -> tuple[int, int]:
    """(lines, sum of the crc32 of every line): lines end after each newline, which they include; a
    last one without it counts too. Any bytes-like ``data``."""
    lines = python_lines(bytes(data))
    return len(lines), sum(map(zlib.crc32, lines))


PLAIN_NUMBER_START, PLAIN_NUMBER_END = frozenset(b"+-.0123456789"), frozenset(b".0123456789")


def double_bytes(field: bytes) -> bytes | None:
    """The 8 big-endian bytes of the double a plain finite decimal field spells (as the C
    accelerator reads it: a sign, digit or point first, a digit or point last, no hex); None: any
    other field, summed as it is."""
    if not field or len(field) > 63 or field[0] not in PLAIN_NUMBER_START or field[-1] not in PLAIN_NUMBER_END \
            or b"_" in field or b"x" in field.lower():
        return None
    try:
        value = float(field)
    except ValueError:
        return None
    return struct.pack(">d", value) if math.isfinite(value) else None


def python_line_crc32_sum_doubles(data: Any, columns: bytes) -> tuple[int, int]:
    """:func:`python_line_crc32_sum` with the fields of the columns marked in ``columns`` (a non-zero
    byte per float8 column) summed as the bytes of their double (:func:`double_bytes`): SQLite sends a
    REAL with 17 digits, PostgreSQL prints the shortest text of the same double."""
    lines, total = 0, 0
    for line in python_lines(bytes(data)):
        fields = line.split(b"\t")
        for index, field in enumerate(fields):
            if index < len(columns) and columns[index]:
                newline = field.endswith(b"\n")
                rendered = double_bytes(field[:-1] if newline else field)
                if rendered is not None:
                    fields[index] = rendered + (b"\n" if newline else b"")
        lines += 1
        total += zlib.crc32(b"\t".join(fields))
    return lines, total


def python_lines(data: bytes) -> list[bytes]:
    if b"\r" not in data:  # always so in text COPY, which escapes a carriage return in data as \r
        return data.splitlines(keepends=True)
    *ended, last = data.split(b"\n")  # splitlines would also cut after a bare carriage return
    return [line + b"\n" for line in ended] + ([last] if last else [])


def _load() -> tuple[str, Callable[[Any], tuple[int, int]], Callable[[Any, bytes], tuple[int, int]]]:
    """(state of the C accelerator: ``built``, ``stale`` or ``missing``; the functions to use)."""
    try:
        from storagectl._rowsum import SOURCE_CRC32, line_crc32_sum, line_crc32_sum_doubles
    except ImportError:
        return "missing", python_line_crc32_sum, python_line_crc32_sum_doubles
    source = Path(__file__).with_name("_rowsum.c")  # a checkout's, or the copy a wheel ships beside its build
    if source.is_file() and zlib.crc32(source.read_bytes()) != SOURCE_CRC32:
        return "stale", python_line_crc32_sum, python_line_crc32_sum_doubles
    return "built", line_crc32_sum, line_crc32_sum_doubles


EXTENSION, line_crc32_sum, line_crc32_sum_doubles = _load()
