"""The row count and a sum of per-line hashes of a block of text COPY rows, per byte rather than per
row: :func:`line_crc32_sum`, the crc32 sums behind the backup's
:func:`storagectl.backends.postgres.copy.row_checksum`; :func:`line_xxh64_sum` and
:func:`line_xxh64_sum_doubles`, the XXH64 sums behind a data migration's copy sums
(:mod:`storagectl.datamove.sql.copy_sums`).

Each uses the C accelerator ``storagectl._rowsum`` (built by ``pip install`` where a compiler is
found) and otherwise computes the same result in Python: for the crc32, ``bytes.splitlines`` and
``map(zlib.crc32, ...)``, one bytes object per row, about 14x slower (XXH64 in Python is far slower
still: a fallback, not a path to run on large tables). A build of an older
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


def python_line_xxh64_sum(data: Any) -> tuple[int, int]:
    """(lines, sum mod 2**64 of the :func:`xxh64` of every line), the lines as :func:`python_line_crc32_sum`'s."""
    lines = python_lines(bytes(data))
    return len(lines), sum(map(xxh64, lines)) & MASK64


MASK64 = 2**64 - 1
P1, P2, P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
P4, P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK64


def _round(acc: int, word: int) -> int:
    return _rotl((acc + word * P2) & MASK64, 31) * P1 & MASK64


def xxh64(data: bytes) -> int:
    """XXH64 with seed 0, as published (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md)
    and as ``_rowsum.c`` computes it."""
    size, at = len(data), 0
    if size >= 32:
        lanes = [(P1 + P2) & MASK64, P2, 0, -P1 & MASK64]
        while size - at >= 32:
            lanes = [_round(lane, _word(data, at + 8 * i, 8)) for i, lane in enumerate(lanes)]
            at += 32
        h = sum(_rotl(lane, r) for lane, r in zip(lanes, (1, 7, 12, 18), strict=True)) & MASK64
        for lane in lanes:
            h = ((h ^ _round(0, lane)) * P1 + P4) & MASK64
    else:
        h = P5
    h = (h + size) & MASK64
    while size - at >= 8:
        h = (_rotl(h ^ _round(0, _word(data, at, 8)), 27) * P1 + P4) & MASK64
        at += 8
    if size - at >= 4:
        h = (_rotl(h ^ (_word(data, at, 4) * P1 & MASK64), 23) * P2 + P3) & MASK64
        at += 4
    for byte in data[at:]:
        h = _rotl(h ^ (byte * P5 & MASK64), 11) * P1 & MASK64
    h = (h ^ (h >> 33)) * P2 & MASK64
    h = (h ^ (h >> 29)) * P3 & MASK64
    return h ^ (h >> 32)


def _word(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at:at + size], "little")


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


def python_line_xxh64_sum_doubles(data: Any, columns: bytes) -> tuple[int, int]:
    """:func:`python_line_xxh64_sum` with the fields of the columns marked in ``columns`` (a non-zero
    byte per float8 column) hashed as the bytes of their double (:func:`double_bytes`): SQLite sends a
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
        total += xxh64(b"\t".join(fields))
    return lines, total & MASK64


def python_lines(data: bytes) -> list[bytes]:
    if b"\r" not in data:  # always so in text COPY, which escapes a carriage return in data as \r
        return data.splitlines(keepends=True)
    *ended, last = data.split(b"\n")  # splitlines would also cut after a bare carriage return
    return [line + b"\n" for line in ended] + ([last] if last else [])


LineSums = Callable[[Any], tuple[int, int]]


def _load() -> tuple[str, LineSums, LineSums, Callable[[Any, bytes], tuple[int, int]]]:
    """(state of the C accelerator: ``built``, ``stale`` or ``missing``; the functions to use)."""
    python = python_line_crc32_sum, python_line_xxh64_sum, python_line_xxh64_sum_doubles
    try:
        from storagectl._rowsum import SOURCE_CRC32, line_crc32_sum, line_xxh64_sum, line_xxh64_sum_doubles
    except ImportError:
        return "missing", *python
    source = Path(__file__).with_name("_rowsum.c")  # a checkout's, or the copy a wheel ships beside its build
    if source.is_file() and zlib.crc32(source.read_bytes()) != SOURCE_CRC32:
        return "stale", *python
    return "built", line_crc32_sum, line_xxh64_sum, line_xxh64_sum_doubles


EXTENSION, line_crc32_sum, line_xxh64_sum, line_xxh64_sum_doubles = _load()
