"""Proof that a move is complete: per-chunk checksums of both sides compared, and the source's row
counts checked against what the run copied (a source that changed during the run)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from storagectl import interrupts
from storagectl.datamove.model import ItemResult
from storagectl.datamove.sql import canonical
from storagectl.datamove.sql.spec import TableSpec, chunks_from_bounds
from storagectl.errors import IntegrityError

MAX_DIFF_KEYS = 50


def count_drift(source: Any, sconn: Any, spec: TableSpec, bounds: list[int],
                copied: dict[int, tuple[int, int, int | None]]) -> str | None:
    """What changed in the source since its chunks were copied, or None."""
    now = source.chunk_counts(sconn, spec, bounds)
    for index in range(len(bounds) + 1):
        then = copied.get(index)
        then_rows = then[0] + then[1] if then else 0
        if now.get(index, 0) != then_rows:
            return (f"{spec.source} changed during the run: chunk {describe_chunk(spec, bounds, index)} had "
                    f"{then_rows} rows when copied, {now.get(index, 0)} now")
    return None


def raise_on_drift(drift: str | None) -> None:
    if drift:
        raise IntegrityError(drift, hint="Try: stop the writers, drop the target table and run again")


def compare(source: Any, target: Any, spec: TableSpec, bounds: list[int], *,
            recorded: dict[int, tuple[int, int, int | None]] | None = None, show_diffs: bool = False,
            only: set[int] | None = None) -> ItemResult:
    """Checksums of both sides (the source's from ``recorded`` for the chunks whose checksum the copy
    computed, which leaves rejected rows out), computed side by side. ``only``: the chunks to compare
    (None: all; a table the target cannot cut by its key is compared whole)."""
    wanted = set(range(len(bounds) + 1)) if only is None else only
    source_sums = {index: (rows, checksum) for index, (rows, _rejected, checksum) in (recorded or {}).items()
                   if checksum is not None and index in wanted}
    scheme = canonical.CANONICAL if source_sums else canonical.server_scheme(source, target, spec)
    missing = wanted - set(source_sums)
    with ThreadPoolExecutor(2) as pool:
        target_sums = pool.submit(_sums, target, spec, bounds, True, scheme, only)
        if missing:
            source_sums |= _sums(source, spec, bounds, False, scheme, None if only is None and missing == wanted
                                 else missing)
        found = interrupts.result(target_sums)
    if spec.key_column is None:  # the target cannot be cut the same way: compare the whole table
        source_sums, found = _whole(source_sums), _whole(found)
    item = ItemResult(spec.source, spec.target, "equal", rows=sum(rows for rows, _ in found.values()),
                      chunks=len(bounds) + 1, checksum=f"{sum(c for _, c in found.values()) % 2**64:016x}")
    for index in sorted(set(source_sums) | set(found)):
        if _nonempty(source_sums.get(index)) != _nonempty(found.get(index)):
            item.status = "mismatch"
            item.first_bad_chunk = describe_chunk(spec, bounds, index) if spec.key_column else "the whole table"
            src_rows, tgt_rows = source_sums.get(index, (0, 0))[0], found.get(index, (0, 0))[0]
            item.detail = f"source {src_rows} rows, target {tgt_rows} rows in that chunk"
            if show_diffs:
                item.diff_keys = diff_keys(source, target, spec, bounds, index, scheme=scheme)
            break
    return item


def _nonempty(entry: tuple[int, int] | None) -> tuple[int, int]:
    return entry if entry and entry[0] else (0, 0)


def _whole(sums: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    return {0: (sum(rows for rows, _ in sums.values()), sum(c for _, c in sums.values()) % 2**64)}


def _sums(side: Any, spec: TableSpec, bounds: list[int], as_target: bool, scheme: str, only: set[int] | None = None
          ) -> dict[int, tuple[int, int]]:
    with side.connect() as conn:
        if only is None or (as_target and spec.key_column is None):
            return side.chunk_sums(conn, spec, bounds, as_target=as_target, scheme=scheme)
        return side.chunk_sums(conn, spec, bounds, as_target=as_target, scheme=scheme, only=only)


def diff_keys(source: Any, target: Any, spec: TableSpec, bounds: list[int], index: int, *,
              scheme: str = canonical.CANONICAL) -> list[str]:
    """The row keys in chunk ``index`` that are missing, extra or different on the target. A table
    without a key has no key to pair rows by: its rows are matched by content, and those left over
    on either side are named by where they are (SQLite ``rowid``, PostgreSQL ``ctid``)."""
    chunk = chunks_from_bounds(bounds)[index] if spec.key_column else chunks_from_bounds([])[0]
    with source.connect() as sconn, target.connect() as tconn:
        theirs = target.row_hashes(tconn, spec, chunk, as_target=True, scheme=scheme)
        ours = source.row_hashes(sconn, spec, chunk, as_target=False, scheme=scheme)
    if not spec.key_column:
        return _unmatched_rows(ours, theirs)
    keys = sorted(set(ours) ^ set(theirs) | {k for k in set(ours) & set(theirs) if ours[k] != theirs[k]},
                  key=_natural)
    return keys[:MAX_DIFF_KEYS]


def _unmatched_rows(ours: dict[str, int], theirs: dict[str, int]) -> list[str]:
    """Rows of a keyless table (position → row hash on each side) that no row of the other side
    equals, each as "source <position>" or "target <position>"."""
    from collections import Counter

    unmatched = Counter(ours.values())
    unmatched.subtract(theirs.values())
    shown: list[str] = []
    for side, rows, sign in (("source", ours, 1), ("target", theirs, -1)):
        for position, row_hash in rows.items():
            if len(shown) == MAX_DIFF_KEYS:
                return shown
            if unmatched[row_hash] * sign > 0:
                unmatched[row_hash] -= sign
                shown.append(f"{side} {position}")
    return shown


def _natural(key: str) -> tuple[int, Any]:
    return (0, int(key)) if key.lstrip("-").isdigit() else (1, key)


def describe_chunk(spec: TableSpec, bounds: list[int], index: int) -> str:
    edges: list[Any] = [None, *bounds, None]
    lower, upper = edges[index], edges[index + 1]
    label = spec.key_label or "key"
    if lower is None and upper is None:
        return f"{index + 1} (all rows)"
    if lower is None:
        return f"{index + 1} ({label} < {upper})"
    if upper is None:
        return f"{index + 1} ({label} ≥ {lower})"
    return f"{index + 1} ({lower} ≤ {label} < {upper})"
