"""``cache invalidate``: SCAN + UNLINK of the keys matching a pattern, on every primary at once.

Per node, one round trip per batch: the UNLINK of batch k travels with the SCAN for batch k+1, over
a raw RESP socket parsed by hiredis (redis-py's per-reply Python would cost more than the server's
work). Nothing is read into memory beyond one batch per node. The resume cursor of a node is the SCAN
cursor whose keys are not deleted yet, updated only after an UNLINK's reply, so a Ctrl-C or a node lost
leaves a cursor from which a rerun deletes the rest (SCAN guarantees every key present for the whole
scan is returned). SCAN MATCH says nothing of the keys it skipped: ``scanned`` is estimated from the
cursor's position in the hash table times DBSIZE."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from storagectl.archive.progress import ProgressCallback, ProgressEvent, no_progress
from storagectl.backends.redis_topology import ClusterNode, ClusterTopology, fan_in, fan_out
from storagectl.cache.keyfmt import escape, is_match_all, key_json, quoted
from storagectl.cache.nodes import first_error, topology
from storagectl.cache.ratelimit import TokenBucket
from storagectl.errors import StoragectlError, UsageError, interruption

DONE = "done"  # a node's cursor once its scan has gone all the way round
STANDALONE = "standalone"


@dataclass(frozen=True)
class InvalidateOptions:
    pattern: bytes
    match_all: bool = False  # --all: the pattern may match every key
    type: str | None = None
    batch: int = 1000  # SCAN COUNT
    rate: float | None = None  # keys deleted per second, at most
    dry_run: bool = False
    sample: int = 10
    cursor: str | None = None  # --cursor: resume an interrupted run

    def check(self) -> None:
        if is_match_all(self.pattern) and not self.match_all:
            raise UsageError(f"pattern {quoted(self.pattern)} matches every key; refusing without --all",
                             hint="Try: a narrower --pattern such as 'session:*', or --all to empty the whole db")


@dataclass
class NodeRun:
    """What one node's scan did; written only by that node's thread."""

    node: ClusterNode
    dbsize: int
    cursor: int | None  # where to resume; None once complete
    fraction: float = 0.0  # of the node's hash table scanned
    started_at: float = 0.0  # the fraction where this run started (a resumed run: its cursor's)
    matched: int = 0
    deleted: int = 0
    sample: list[bytes] = field(default_factory=list)
    error: Exception | None = None

    @property
    def covered(self) -> float:
        return 1.0 if self.cursor is None else self.fraction

    @property
    def scanned(self) -> int:
        """Keys covered: the cursor's share of DBSIZE, and never fewer than those matched (a resumed
        run's DBSIZE no longer counts the keys deleted before the interruption, so the share of it
        alone falls short of the keys the rest of the table held)."""
        return max(round(self.dbsize * (self.covered - self.started_at)), self.matched)


@dataclass
class InvalidatePlan:
    backend: Any
    options: InvalidateOptions
    topology: ClusterTopology
    runs: list[NodeRun]

    @property
    def dbsize(self) -> int:
        return sum(run.dbsize for run in self.runs)

    def describe(self) -> str:
        nodes = f" on {len(self.runs)} primaries" if len(self.runs) > 1 else ""
        return (f"delete every key matching {quoted(self.options.pattern)} from {self.backend.label}{nodes} "
                f"({self.dbsize:,} keys in the db, matching or not; --dry-run counts the matches)")


@dataclass
class InvalidateResult:
    pattern: bytes
    dry_run: bool
    runs: list[NodeRun]
    duration: float
    cursor: str | None  # None: complete
    error: StoragectlError | None = None  # a node failed or Ctrl-C: raised by the CLI after the summary
    sample_size: int = 10

    def to_dict(self) -> dict[str, Any]:
        runs = self.runs
        sample = [key for run in runs for key in run.sample][:self.sample_size]
        return {"pattern": escape(self.pattern), "dry_run": self.dry_run, "complete": self.cursor is None,
                "scanned": sum(run.scanned for run in runs),
                "matched": sum(run.matched for run in runs), "deleted": sum(run.deleted for run in runs),
                "errors": sum(run.error is not None for run in runs), "duration": round(self.duration, 3),
                "keys_per_second": round(sum(run.deleted or run.matched for run in runs) / self.duration)
                if self.duration else None,
                "cursor": self.cursor, "sample": [key_json(key) for key in sample],
                "nodes": [{"node": run.node.address if run.node.node_id != STANDALONE else None,
                           "dbsize": run.dbsize, "matched": run.matched, "deleted": run.deleted,
                           "error": str(run.error) if run.error else None} for run in runs]}


def plan_invalidate(backend: Any, options: InvalidateOptions) -> InvalidatePlan:
    """Refuse a match-all pattern, read the primaries, their DBSIZE and the cursors to start from."""
    options.check()
    nodes = topology(backend, "invalidate")
    starts = parse_cursor(options.cursor, nodes) if options.cursor else {}

    def dbsize(node: ClusterNode) -> int:
        client = backend.node_client(node)
        try:
            return int(client.dbsize())
        finally:
            client.close()

    sizes = first_error(backend, "invalidate", fan_out(nodes.primaries(), dbsize, 8))
    runs = [NodeRun(node, size, starts.get(node.node_id, 0)) for node, size in zip(nodes.primaries(), sizes,
                                                                                    strict=True)]
    for run in runs:
        if run.cursor == -1:  # finished before the interruption
            run.cursor, run.fraction, run.started_at = None, 1.0, 1.0
        else:
            run.fraction = run.started_at = scanned_fraction(run.cursor)
    return InvalidatePlan(backend, options, nodes, runs)


def run_invalidate(plan: InvalidatePlan, progress: ProgressCallback = no_progress) -> InvalidateResult:
    """Scan (and unless --dry-run delete) on every primary in parallel; Ctrl-C and node failures end up
    in the result (``error``) with the cursor to resume from, never lost with the counts."""
    options, backend = plan.options, plan.backend
    bucket = TokenBucket(options.rate) if options.rate and not options.dry_run else None
    action = "scan" if options.dry_run else "invalidate"
    total = round(sum(run.dbsize * (1.0 - run.started_at) for run in plan.runs))  # a resumed run: what is left
    progress(ProgressEvent(action, "plan", "", total=total, unit="keys"))
    started = time.monotonic()
    error: StoragectlError | None = None
    pending = [run for run in plan.runs if run.cursor is not None]
    by_node = {run.node.node_id: run for run in pending}

    def produce(node: ClusterNode, emit: Any) -> None:
        run = by_node[node.node_id]
        try:
            _scan_node(backend, plan.topology, run, options, bucket, emit)
        except Exception as exc:  # noqa: BLE001 - kept in the run: the others go on, the summary shows it
            if type(exc).__name__ != "FanInClosed":
                run.error = backend.node_error(action, node, exc)

    try:
        with contextlib.closing(fan_in([run.node for run in pending], produce, concurrency=len(pending) or 1)) as ticks:
            for _ in ticks:
                done = sum(run.dbsize * (run.covered - run.started_at) for run in plan.runs)
                progress(ProgressEvent(action, "advance", "keys", done=round(done), total=total))
    except KeyboardInterrupt as exc:  # Ctrl-C: exit 130; SIGTERM (Terminated): 143
        error = interruption(exc)
    result = InvalidateResult(options.pattern, options.dry_run, plan.runs, time.monotonic() - started,
                              format_cursor(plan.runs), sample_size=options.sample)
    failed = next((run.error for run in plan.runs if run.error is not None), None)
    result.error = error or failed  # type: ignore[assignment]
    if result.error is not None:
        progress(ProgressEvent(action, "stop", ""))  # the display stays where it got, not at 100%
        _say_where_it_stopped(result)
    return result


def _say_where_it_stopped(result: InvalidateResult) -> None:
    error, summary = result.error, result.to_dict()
    resume = f"; resume with --cursor {result.cursor}" if result.cursor else ""
    what = "matched" if result.dry_run else "deleted"
    message = f"{error} ({summary[what]:,} keys {what} until then{resume})"
    if isinstance(error, StoragectlError):
        error.message, error.args = message, (message,)
    else:  # not ours (a bug): still say where it stopped
        result.error = StoragectlError(message)


def _scan_node(backend: Any, nodes: ClusterTopology, run: NodeRun, options: InvalidateOptions,
               bucket: TokenBucket | None, emit: Any) -> None:
    from storagectl.backends.redis_wire import RespSocket

    keep = backend.owned_keys(nodes, run.node)
    client = backend.node_client(run.node, single_connection_client=True)
    try:
        # A cluster node (one with an ownership filter) refuses a multi-key UNLINK across slots: a
        # script with allow-cross-slot-keys deletes the batch instead (Redis >= 7.0).
        unlink = _UnlinkRequest(client.script_load(UNLINK_CROSS_SLOT_LUA) if keep is not None else None)
        commands = RespSocket(client.connection)
        scan = _ScanRequest(options.pattern, options.batch, options.type)
        commands.send(scan(b"%d" % run.cursor))
        while True:
            cursor, keys = commands.reply()
            keys = keep(keys) if keep is not None else keys
            run.matched += len(keys)
            if len(run.sample) < options.sample:
                run.sample += keys[:options.sample - len(run.sample)]
            last = cursor == b"0"
            delete = bool(keys) and not options.dry_run
            if delete and bucket is not None:
                bucket.take(len(keys))
            request = (unlink(keys) if delete else b"") + (b"" if last else scan(cursor))
            if request:
                commands.send(request)
            if delete:
                run.deleted += commands.reply()
            run.cursor, run.fraction = (None, 1.0) if last else (int(cursor), scanned_fraction(int(cursor)))
            if last:
                return
            emit(run.node.node_id)
    finally:
        client.close()


UNLINK_CROSS_SLOT_LUA = """#!lua flags=allow-cross-slot-keys
local deleted = 0
for _, key in ipairs(ARGV) do
  deleted = deleted + redis.call('UNLINK', key)
end
return deleted
"""


class _UnlinkRequest:
    """``UNLINK key ...`` as RESP, or on a cluster node ``EVALSHA`` of UNLINK_CROSS_SLOT_LUA (``sha``)."""

    def __init__(self, sha: str | None) -> None:
        from storagectl.backends.redis_wire import evalsha_head

        self.head, self.fixed = (evalsha_head(sha), 3) if sha else (b"$6\r\nUNLINK\r\n", 1)

    def __call__(self, keys: list[bytes]) -> bytes:
        return b"".join([b"*%d\r\n" % (len(keys) + self.fixed), self.head,
                         *[b"$%d\r\n%s\r\n" % (len(k), k) for k in keys]])


class _ScanRequest:
    """``SCAN cursor MATCH pattern COUNT n [TYPE t]`` as RESP, all but the cursor encoded once."""

    def __init__(self, pattern: bytes, count: int, type_: str | None) -> None:
        parts = [b"MATCH", pattern, b"COUNT", b"%d" % count] + ([b"TYPE", type_.encode()] if type_ else [])
        self.tail = b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)
        self.head = b"*%d\r\n$4\r\nSCAN\r\n" % (2 + len(parts))

    def __call__(self, cursor: bytes) -> bytes:
        return b"%s$%d\r\n%s\r\n%s" % (self.head, len(cursor), cursor, self.tail)


def scanned_fraction(cursor: int) -> float:
    """The part of a hash table a SCAN has visited, from its cursor: SCAN walks the buckets in reverse
    binary order, so the cursor's bits reversed (as 64 bits) over 2^64 is the fraction done."""
    return int(f"{cursor:064b}"[::-1], 2) / 2**64


def format_cursor(runs: list[NodeRun]) -> str | None:
    """The ``--cursor`` to resume from: one server's SCAN cursor, or ``<node id prefix>=<cursor>`` per
    primary of a cluster (``done`` for those finished). None when every node is done."""
    if all(run.cursor is None for run in runs):
        return None
    if len(runs) == 1 and runs[0].node.node_id == STANDALONE:
        return str(runs[0].cursor)
    return ",".join(f"{run.node.node_id[:12]}={DONE if run.cursor is None else run.cursor}" for run in runs)


def parse_cursor(text: str, nodes: ClusterTopology) -> dict[str, int]:
    """Node id -> cursor (-1: done) from a ``--cursor`` that :func:`format_cursor` printed for this topology."""
    primaries = nodes.primaries()
    hint = "Try: the --cursor value printed when the run was interrupted, unchanged"
    if len(primaries) == 1 and primaries[0].node_id == STANDALONE:
        if not text.isdigit():
            raise UsageError(f"--cursor {text!r} is not a SCAN cursor of one server", hint=hint)
        return {STANDALONE: int(text)}
    cursors: dict[str, int] = {}
    for entry in text.split(","):
        prefix, _, value = entry.partition("=")
        owner = [node.node_id for node in primaries if prefix and node.node_id.startswith(prefix)]
        if len(owner) != 1 or not (value.isdigit() or value == DONE):
            raise UsageError(f"--cursor {text!r} does not name this cluster's primaries (a failover or reshard "
                             "since it was printed?)", hint=hint + "; else rerun without --cursor")
        cursors[owner[0]] = -1 if value == DONE else int(value)
    if len(cursors) != len(primaries):
        raise UsageError(f"--cursor {text!r} names {len(cursors)} of the cluster's {len(primaries)} primaries",
                         hint=hint + "; else rerun without --cursor")
    return cursors
