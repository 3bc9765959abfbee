"""The verify at the end of a SQLite → PostgreSQL run, from the lines the copy sent.

While a chunk is copied, the XXH64 of every text COPY line sent is summed mod 2**64 (:func:`summed`,
in C: :mod:`storagectl.rowsum`) and recorded with the chunk's commit. The verify then reads the target
alone: PostgreSQL prints the rows of a range of chunks as text COPY lines (``COPY (SELECT ...) TO
STDOUT``, read by ``psql`` as the backup reads a large table), each column as the copy's line held it
(:data:`PRINTED_AS_SENT`), summed the same way. Equal sums and line counts prove the target holds
the lines sent, but for a chance of about 2**-64 that changed lines sum alike (as for the canonical
checksums; lines changed by accident: XXH64 is no defence against rows crafted to collide). The
source's rows were counted again per chunk by the run itself (:func:`checks.count_drift`), which
reports rows added or removed since they were copied.

A float8 field is summed as the 8 bytes of the double it spells (SQLite sends 17 digits, PostgreSQL
prints the shortest text of the same double). Another value printed otherwise than sent (text with
a control character COPY escapes and SQLite does not, a date spelled otherwise, JSON, a ``real``
column) makes its range's sums differ: the range is summed again chunk by chunk, and a chunk that
still differs is compared by the canonical encoding of both sides (:func:`checks.compare`), which
decides. A false difference costs time, never the verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from storagectl import interrupts
from storagectl.datamove.sql import canonical
from storagectl.datamove.sql.engine import TableJob
from storagectl.datamove.sql.rows import ChunkTally
from storagectl.datamove.sql.spec import Chunk, TableSpec, chunks_from_bounds
from storagectl.rowsum import line_xxh64_sum, line_xxh64_sum_doubles

COPY_SUMS, CANONICAL = "copy sums", "canonical"  # how a table was verified (ItemResult.verified_by)

# How the target prints a column of these kinds as the copy's line held it; the others print as sent
PRINTED_AS_SENT = {
    "bytes": "'\\x' || upper(encode({c}, 'hex'))",  # SQLite's hex() is upper case
    "timestamptz": "({c}) AT TIME ZONE 'UTC'",  # ISO text without a zone, as SQLite's dates are
}


def double_columns(spec: TableSpec) -> bytes:
    """A byte per field of the copy's lines (canonical order): 1 for a float8 column."""
    kinds = spec.kinds
    return bytes(kinds[i] == "float" for i in canonical.canonical_order(kinds))


def _line_sums(doubles: bytes) -> Any:
    return (lambda data: line_xxh64_sum_doubles(data, doubles)) if any(doubles) else line_xxh64_sum


def summed(pieces: Iterator[Any], tally: ChunkTally, doubles: bytes) -> Iterator[Any]:
    """``pieces`` of whole COPY lines as they go, their XXH64 sum into ``tally.copy_sum`` once all went."""
    line_sums, total = _line_sums(doubles), 0
    for piece in pieces:
        total += line_sums(piece if isinstance(piece, bytes) else piece.encode())[1]
        yield piece
    tally.copy_sum = total % 2**64


@dataclass
class Span:
    """Consecutive chunks of one table, summed by one COPY of the target."""

    job: TableJob
    chunks: list[Chunk]

    @property
    def expected(self) -> tuple[int, int]:
        done, sums = self.job.done, self.job.copy_sums
        return (sum(done[c.index][0] for c in self.chunks), sum(sums[c.index] for c in self.chunks) % 2**64)


def proven_chunks(target: Any, jobs: list[TableJob], parallel: int) -> dict[str, set[int]]:
    """Per target table, the chunks whose target rows print as the lines the copy sent. Spans of
    chunks first, up to ``parallel`` at once; the chunks of a span that differs one by one."""
    spans = [span for job in jobs for span in _spans(job, parallel)]
    proven: dict[str, set[int]] = {job.spec.target: set() for job in jobs}
    retry = []
    for span, equal in zip(spans, _check(target, spans, parallel), strict=True):
        if equal:
            proven[span.job.spec.target].update(c.index for c in span.chunks)
        elif len(span.chunks) > 1 and span.job.spec.key_column is not None:  # keyless: one chunk is no range
            retry += [Span(span.job, [chunk]) for chunk in span.chunks]
    for span, equal in zip(retry, _check(target, retry, parallel), strict=True):
        if equal:
            proven[span.job.spec.target].add(span.chunks[0].index)
    return proven


def _spans(job: TableJob, parallel: int) -> list[Span]:
    """The chunks with copy sums in spans of about a ``2 × parallel``-th of the table's rows (all at
    once for a table the target cannot cut by its key: then only if every chunk has its sums)."""
    chunks = job.chunks
    summed_chunks = [chunk for chunk in chunks if chunk.index in job.copy_sums and chunk.index in job.done]
    if job.spec.key_column is None:
        return [Span(job, chunks)] if summed_chunks == chunks else []
    per_span = max(1, sum(job.done[c.index][0] for c in summed_chunks) // (2 * max(1, parallel)))
    spans: list[Span] = []
    current: list[Chunk] = []
    rows = 0
    for chunk in chunks:
        summed_chunk = chunk.index in job.copy_sums and chunk.index in job.done
        if not summed_chunk or rows >= per_span:
            if current:
                spans.append(Span(job, current))
            current, rows = [], 0
        if summed_chunk:
            current.append(chunk)
            rows += job.done[chunk.index][0]
    if current:
        spans.append(Span(job, current))
    return spans


def _check(target: Any, spans: list[Span], parallel: int) -> list[bool]:
    if not spans:
        return []
    order = sorted(range(len(spans)), key=lambda i: -spans[i].expected[0])  # the largest first
    with ThreadPoolExecutor(max(1, min(parallel, len(spans)))) as pool:
        found = dict(zip(order, interrupts.map_results(pool, lambda i: _target_sums(target, spans[i]), order),
                         strict=True))
    return [found[i] == span.expected for i, span in enumerate(spans)]


def _target_sums(target: Any, span: Span) -> tuple[int, int]:
    """(rows, XXH64 sum) of the span's rows as the target prints them."""
    spec = span.job.spec
    copy_sql = f"COPY ({select_sql(spec)}{_where(spec, span.chunks)}) TO STDOUT"
    with target.connect() as conn:
        rows, total = target.copy_out_sums(conn, copy_sql, spec.target, _line_sums(double_columns(spec)))
    return rows, total % 2**64


def select_sql(spec: TableSpec) -> str:
    """The target's columns in the order of the copy's lines, each printed as the line held it."""
    kinds = spec.kinds
    fields = [PRINTED_AS_SENT.get(kinds[i], "{c}").format(c=_quote(spec.columns[i].name))
              for i in canonical.canonical_order(kinds)]
    return f"SELECT {', '.join(fields)} FROM {spec.target_sql}"


def _where(spec: TableSpec, chunks: list[Chunk]) -> str:
    if spec.key_column is None:
        return ""
    where, args = Chunk(-1, chunks[0].lower, chunks[-1].upper).where(_quote(spec.key_column), "{}")
    return where.format(*(int(arg) for arg in args))  # integers: written into the statement psql runs


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def all_chunks(job: TableJob) -> set[int]:
    return {chunk.index for chunk in chunks_from_bounds(job.bounds)}
