"""Redis → Redis (`storagectl migrate data --from R1 --to R2`): another db, instance or cluster.

Each *part* of the source (a db; on a cluster, a primary and the slots it owns) is copied by one
pipeline: SCAN + MULTI{DUMP, PTTL} batches on the source (the backup's code), RESTOREs of the same
batch on the target (per node of a target cluster, by slot), each side working while the other
does. TTLs move as what is left of them; a key that expired meanwhile is skipped, never restored
without one. A payload the target refuses (another server version) is copied with type commands.
After the target confirms a batch, the SCAN cursor after it is the part's resume point.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storagectl.backends.redis import server_ms
from storagectl.backends.redis_topology import SlotOwnership, fan_out, scan_primaries
from storagectl.backends.redis_wire import DUMP_BATCH_KEYS, RespSocket, dump_scan
from storagectl.datamove import redis_keys
from storagectl.datamove.model import ItemPlan, ItemResult, MigrationPlan, RunResult
from storagectl.datamove.redis_digest import HORIZON_MS, KeyDigest, snapshot_digest, target_digest
from storagectl.datamove.redis_keys import (
    TargetNodes,
    copy_with_commands,
    dump_reply,
    dump_request,
    dumper_for,
    live_expiries,
    live_records,
    printable_key,
    read_values,
    relative_ttls,
    restore_commands,
    restore_outcome,
    same_unordered,
)
from storagectl.datamove.state import RunState, other_run, raise_first, resume_command, run_identity, run_lock
from storagectl.errors import BackendUnavailable, OperationFailed, StoragectlError, UsageError, interruption

if TYPE_CHECKING:
    from storagectl.archive.progress import ProgressCallback
    from storagectl.datamove.model import DataMigrationRequest
    from storagectl.selection import Selection

DIGEST_METHOD = "copy digest"  # the target's keys against the digest of what the copy wrote
WHOLE_METHOD = "full compare"  # both sides read and compared key by key
TTL_TOLERANCE_MS = 2000  # verify: the same key's TTLs may differ by this much (copy latency, clock)
MAX_DIFF_KEYS = 1000  # --show-diffs lists at most this many keys per part
# A test seam: applied to each payload before its RESTORE (tests corrupt the version bytes with it,
# as a target of another Redis version would refuse them).
TARGET_PAYLOAD: Callable[[bytes], bytes] | None = None


part_clock = time.monotonic  # of each part's duration_s (copy and compare)


def path_for(source_kind: str, target_kind: str) -> RedisDataPath:
    return RedisDataPath()


@dataclass
class SourcePart:
    """A db of a single-node source, or a primary of a cluster source with the slots it owns."""

    name: str  # the state's key: "db3" or a node id
    label: str
    target_db: int
    connect: Callable[[bool], Any]  # single_connection_client -> a redis.Redis of this part
    cluster_node: bool = False
    owner: SlotOwnership | None = None

    @property
    def identity(self) -> str:
        """What a resumed run must find again: the db, or the primary with the same slots."""
        slots = self.owner.node.slots if self.owner else ()
        return f"{self.name}:{self.target_db}:{slots}"


@dataclass
class PartCounts:
    keys: int = 0
    bytes: int = 0
    expired: int = 0
    by_commands: int = 0
    diff_keys: list[str] = field(default_factory=list)
    mismatches: int = 0
    present: int = 0
    digest: KeyDigest | None = None  # what the copy wrote (None: the verify compares the part whole)
    undigested: str = ""  # why there is no digest
    duration_s: float = 0.0  # this run's time on the part (a part a resumed run found done: 0)


class RedisDataPath:
    def notes(self, request: DataMigrationRequest) -> list[str]:
        return []

    # -- plan --------------------------------------------------------------------------------
    def plan(self, request: DataMigrationRequest) -> MigrationPlan:
        _check_selection(request.selection)
        parts = self._parts(request)
        versions = {side.name: _translated(side, "reading the version", lambda b=side: _version(b))
                    for side in (request.source, request.target)}
        blockers = run_blockers(request, parts)
        missing_dbs = {part.target_db for part in parts if _target_db_error(request, part.target_db)}
        items = []
        for part in parts:
            item = ItemPlan(part.label, _target_label(request, part),
                            chunking=f"SCAN batches of {DUMP_BATCH_KEYS} keys")
            if not request.selection.patterns and not request.selection.types:
                item.row_estimate = _translated(request.source, "counting keys", lambda p=part: _dbsize(p))
            existing = 0 if part.target_db in missing_dbs else _translated(
                request.target, "counting keys", lambda p=part: _target_count(request, p.target_db))
            if existing:
                item.problems.append(f"the target already holds {existing} keys of the selection: "
                                     "run needs --yes (they are replaced)")
            if versions[request.source.name] != versions[request.target.name]:
                item.problems.append(f"Redis {versions[request.source.name]} → {versions[request.target.name]}: "
                                     "payloads the target refuses are copied with type commands")
            items.append(item)
        return MigrationPlan(request.source.name, request.target.name, "redis → redis", items, blockers)

    # -- run ---------------------------------------------------------------------------------
    def run(self, request: DataMigrationRequest, progress: ProgressCallback) -> RunResult:
        _check_selection(request.selection)
        parts = self._parts(request)
        with run_lock(request):
            raise_first(run_blockers(request, parts, locked=True))
            state = RunState.begin(request, _identity(request, parts))
            copy = PartCopy(request, state, progress)
            copy_started = time.monotonic()
            try:
                counts = _each(parts, copy.run, request.parallel, copy.stop)
            except KeyboardInterrupt as exc:
                state.save()
                raise interruption(exc, where=f"after {_progress_said(parts, state)} (state in {state.path})",
                                   hint=f"Try: {resume_command(request)}") from exc
            state.finish()
        copy_s = time.monotonic() - copy_started
        items = [_copied_item(request, part, part_counts) for part, part_counts in zip(parts, counts, strict=True)]
        result = RunResult(request.source.name, request.target.name, "redis → redis", items)
        if request.verify:
            started = time.monotonic()
            self._merge_verification(result, self._verify_copy(request, parts, counts, copy_s))
            result.verify_s = time.monotonic() - started
        return result

    @staticmethod
    def _merge_verification(result: RunResult, verification: RunResult) -> None:
        by_source = {item.source: item for item in verification.items}
        for item in result.items:
            checked = by_source.pop(item.source, None)
            if checked is None:
                continue
            item.verified_by = checked.verified_by
            if checked.status == "mismatch" or checked.detail:
                item.detail = "; ".join(d for d in (item.detail, checked.detail) if d)
            if checked.status == "mismatch":
                item.status, item.diff_keys = "mismatch", checked.diff_keys
                item.first_bad_chunk = checked.first_bad_chunk
        result.items += list(by_source.values())  # the target's extra keys
        result.verified = verification.verified

    # -- verify ------------------------------------------------------------------------------
    def verify(self, request: DataMigrationRequest) -> RunResult:
        _check_selection(request.selection)
        return self._compare_whole(request, self._parts(request))

    def _compare_whole(self, request: DataMigrationRequest, parts: list[SourcePart],
                       why: dict[str, str] | None = None) -> RunResult:
        """Every key of ``parts`` read on both sides and compared (``why``: per part, the reason the
        copy's digest did not do, said in its item)."""
        verify = PartVerify(request)
        counts = _each(parts, verify.run, request.parallel, verify.stop) if parts else []
        items = [_verified_item(request, part, part_counts) for part, part_counts in zip(parts, counts, strict=True)]
        for item, part in zip(items, parts, strict=True):
            if why and why.get(part.name):
                item.detail = "; ".join(d for d in (f"compared whole: {why[part.name]}", item.detail) if d)
        items += self._extra_keys(request, parts, sum(c.present for c in counts)) if parts else []
        return RunResult(request.source.name, request.target.name, "redis → redis", items,
                         verified=all(item.status == "equal" for item in items))

    def _verify_copy(self, request: DataMigrationRequest, parts: list[SourcePart],
                     counts: list[PartCounts], copy_s: float) -> RunResult:
        """The verify that ends a run: per target db, the target's digest against the copy's (one pass
        over the target); the parts of a db where that does not prove it equal are compared whole.
        ``copy_s``: how long the copy took, shared among the dbs by their keys, to choose how to read."""
        by_db: dict[int, list[int]] = {}
        for index, part in enumerate(parts):
            by_db.setdefault(part.target_db, []).append(index)
        proven: list[ItemResult] = []
        why: dict[str, str] = {}
        copied = sum(c.keys for c in counts) or 1
        for db, indexes in by_db.items():
            db_copy_s = copy_s * sum(counts[i].keys for i in indexes) / copied
            items, reason = self._digest_check(request, db, [parts[i] for i in indexes], [counts[i] for i in indexes],
                                               db_copy_s)
            proven += items
            why.update({parts[i].name: reason for i in indexes if not items})
        whole = self._compare_whole(request, [part for part in parts if part.name in why], why)
        whole.items = proven + whole.items
        whole.verified = all(item.status == "equal" for item in whole.items)
        return whole

    def _digest_check(self, request: DataMigrationRequest, db: int, parts: list[SourcePart],
                      counts: list[PartCounts], copy_s: float) -> tuple[list[ItemResult], str]:
        """Items proven equal by the digests of the parts copied into target ``db`` (all or none), or
        no items and why not."""
        digests = [c.digest for c in counts if c.digest is not None]
        if len(digests) < len(counts):
            return [], next(c.undigested or "no digest" for c in counts if c.digest is None)
        if reason := _translated(request.target, "reading the version", lambda: _no_digest_pass(request)):
            return [], reason
        if drift := _translated(request.source, "counting keys",
                                lambda: _source_drift(request, parts, digests, counts)):
            return [], drift
        expected = KeyDigest(digests[0].horizon)
        for digest in digests:
            expected.merge(digest)
        found, ended, read = _translated(request.target, "reading",
                                         lambda: _target_digest(request, db, expected.horizon, copy_s))
        equal, unchecked = expected.equal_to(found, ended)
        if not equal:
            return [], (f"the target holds {found.keys} keys of the selection, the copy wrote {expected.keys}"
                        if found.keys != expected.keys else "the target's digest differs from the copy's")
        note = f"; {unchecked} keys expiring by the end of the verify not checked" if unchecked else ""
        return [ItemResult(part.label, _target_label(request, part), "equal", rows=part_counts.keys,
                           verified_by=DIGEST_METHOD,
                           detail=f"target equal to what the copy wrote (read by {read}){note}")
                for part, part_counts in zip(parts, counts, strict=True)], ""

    def _extra_keys(self, request: DataMigrationRequest, parts: list[SourcePart], present: int) -> list[ItemResult]:
        """Keys of the selection in the target but not in the source: counted (the target holds more
        than the source's keys found there), and named with --show-diffs."""
        held = sum(_translated(request.target, "counting keys", lambda db=db: _target_count(request, db))
                   for db in {part.target_db for part in parts})
        if held <= present:
            return []
        item = ItemResult("(not in the source)", _target_label(request, parts[0]), "mismatch", rows=held - present,
                          verified_by=WHOLE_METHOD,
                          detail=f"{held - present} keys of the selection are in the target but not in the source")
        if request.show_diffs:
            item.diff_keys = _translated(request.target, "listing extra keys", lambda: _extra_key_names(request, parts))
        return [item]

    # -- parts -------------------------------------------------------------------------------
    def _parts(self, request: DataMigrationRequest) -> list[SourcePart]:
        source, target = request.source, request.target
        for side in (source, target):
            with _errors(side, "connecting"), side.connect():
                pass
        if _is_cluster(source):
            return self._cluster_parts(request)
        databases = source.selected_databases()
        targets = [0] if _is_cluster(target) else target.selected_databases()
        if len(databases) == 1:
            mapping = {databases[0]: targets[0]}
        elif _is_cluster(target):
            raise UsageError(f"{source.label} selects dbs {databases}; a Redis Cluster has only db 0",
                             hint="Try: a source backend of one db (databases: [N])")
        else:
            mapping = target._db_mapping(databases, "the source selects")
        return [SourcePart(f"db{db}", f"db{db}", mapping[db],
                           lambda single, db=db: source.client(db=db, single_connection_client=single))
                for db in databases]

    def _cluster_parts(self, request: DataMigrationRequest) -> list[SourcePart]:
        source, target = request.source, request.target
        topology = source._stable_topology("data migration")
        target_db = 0 if _is_cluster(target) else target.selected_databases()[0]
        return [SourcePart(node.node_id, f"node {node.address}", target_db,
                           lambda single, node=node: source.node_client(node, single_connection_client=single),
                           cluster_node=True, owner=SlotOwnership(topology, node))
                for node in topology.primaries()]


class PartCopy:
    """Copies parts, one pipeline each, recording each confirmed batch's cursor in the state. Once
    ``stop`` is set (the run was interrupted while parts copy in worker threads), each part ends at
    its next batch boundary, the batches sent confirmed and recorded, not marked done."""

    def __init__(self, request: DataMigrationRequest, state: RunState, progress: ProgressCallback) -> None:
        self.request, self.state, self.progress = request, state, progress
        self.replace = request.allow_nonempty_target or request.resume  # resume: the keys may be our own
        self.stop = threading.Event()
        # one horizon for every part (their digests add up per target db), kept by a resumed run
        self.horizon = next((part["digest"]["horizon"] for part in state.parts.values() if part.get("digest")),
                            int(time.time() * 1000) + HORIZON_MS)

    def run(self, part: SourcePart) -> PartCounts:
        from storagectl.archive.progress import ProgressEvent

        recorded = self.state.parts.get(part.name, {})
        counts = self._recorded_counts(recorded)
        if recorded.get("done"):
            return counts
        started = part_clock()
        self.progress(ProgressEvent("copy", "start", part.label))
        with contextlib.ExitStack() as stack:
            source, plain_source, target = _open_part(stack, self.request, part)
            _translated(self.request.target, "reading the clocks", lambda: target.measure_clocks(plain_source))
            plain_target = stack.enter_context(_closing(_plain_client(self.request.target, part.target_db)))
            batches = _source_batches(self.request, part, source, plain_source, recorded.get("cursor", "0"),
                                      live_expiries)
            pending: deque[tuple[bytes, int]] = deque()
            stopped = False
            for cursor, records, expired in batches:
                counts.expired += expired
                with _errors(self.request.target, "restoring"):
                    target.send(target.split(records, _first),
                                lambda node, items: restore_commands(node, items, self.replace))
                pending.append((cursor, sum(map(len, map(_payload, records)))))
                if len(pending) > 1:
                    self._confirm(part, target, pending, counts, plain_source, plain_target)
                if self.stop.is_set() and cursor != b"0":  # b"0": the last batch, the part is done
                    stopped = True
                    break
            while pending:
                self._confirm(part, target, pending, counts, plain_source, plain_target)
        counts.duration_s = part_clock() - started
        if stopped:
            return counts
        self.state.commit(part.name, force=True, done=True)
        self.progress(ProgressEvent("copy", "finish", part.label, done=counts.bytes))
        return counts

    def _recorded_counts(self, recorded: dict[str, Any]) -> PartCounts:
        """A part's counts and digest as the state has them (a new part: none yet)."""
        counts = PartCounts(keys=recorded.get("keys", 0), bytes=recorded.get("bytes", 0),
                            expired=recorded.get("expired", 0), undigested=recorded.get("undigested", ""))
        if recorded.get("digest"):
            counts.digest = KeyDigest.from_state(recorded["digest"])
        elif not recorded:
            counts.digest = KeyDigest(self.horizon)
        elif not counts.undigested:
            counts.undigested = "resumed from a state without a digest"
        return counts

    def _confirm(self, part: SourcePart, target: TargetNodes, pending: deque[tuple[bytes, int]], counts: PartCounts,
                 plain_source: Any, plain_target: Any) -> None:
        """Read the oldest batch's replies; copy refused payloads with type commands; record the cursor."""
        from storagectl.archive.progress import ProgressEvent

        cursor, size = pending.popleft()
        with _errors(self.request.target, "restoring"):
            replies = target.receive(_outcome_and_clock)
        for records, (reply, offset) in replies:
            if reply[0]:
                raise UsageError(f"key {printable_key(records[reply[0] - 1][0])!r} already exists in "
                                 f"{self.request.target.label}; the keys before it were copied",
                                 hint="Try: --resume --yes to replace existing keys and continue")
            counts.keys += len(records)
            refused = [records[index - 1][0] for index in reply[1:]]
            if counts.digest is not None:
                counts.digest.add(records, offset)
            if refused:
                counts.digest, counts.undigested = None, "keys copied with type commands"
                with _errors(self.request.target, "copying with type commands"):
                    copied = _type_copy(plain_source, plain_target, refused)
                counts.by_commands += copied
                counts.keys -= len(refused) - copied
        counts.bytes += size
        self.state.commit(part.name, cursor=cursor.decode(), keys=counts.keys, bytes=counts.bytes,
                          expired=counts.expired, undigested=counts.undigested,
                          digest=counts.digest.state() if counts.digest else None)
        self.progress(ProgressEvent("copy", "advance", part.label, done=counts.bytes))


def _open_part(stack: contextlib.ExitStack, request: DataMigrationRequest, part: SourcePart) -> tuple[Any, Any, Any]:
    """A part's source connections (for DUMP pipelines and for plain commands) and its target nodes,
    closed by ``stack``."""
    source = stack.enter_context(_closing(part.connect(True)))
    plain_source = stack.enter_context(_closing(part.connect(False)))
    target = _translated(request.target, "connecting", lambda: TargetNodes.open(request.target, part.target_db))
    stack.callback(target.close)
    return source, plain_source, target


def _source_batches(request: DataMigrationRequest, part: SourcePart, source: Any, plain_source: Any,
                    cursor: str, live: Callable[[list[bytes], list[Any], bool], tuple[list[Any], int]]
                    ) -> Iterator[tuple[bytes, list[Any], int]]:
    """(cursor after the batch, live records, keys expired meanwhile) per SCAN batch of the part, the
    records made by ``live(keys, reply, absolute expiries)``."""
    selection = request.selection
    match = selection.patterns[0].encode() if selection.patterns else None
    scan_type = selection.types[0].encode() if len(selection.types) == 1 else None
    keep = _keeper(part, plain_source, selection.types if len(selection.types) > 1 else ())
    with _errors(request.source, "reading"):
        commands = RespSocket(source.connection)
        dumper = dumper_for(part.cluster_node, source)
        scan = dump_scan(commands, cursor.encode(), keep=keep, dumper=dumper, match=match, type_=scan_type)
    while True:
        with _errors(request.source, "reading"):
            batch = next(scan, None)
        if batch is None:
            return
        next_cursor, keys, reply = batch
        records, expired = live(keys, reply, dumper.absolute_expiry)
        if TARGET_PAYLOAD is not None:
            records = [(key, ttl, TARGET_PAYLOAD(payload)) for key, ttl, payload in records]
        yield next_cursor, records, expired


def _relative_records(keys: list[bytes], reply: list[Any], absolute: bool) -> tuple[list[redis_keys.Record], int]:
    return live_records(keys, relative_ttls(reply, absolute), 0)


def _outcome_and_clock(node: Any, records: list[Any]) -> tuple[list[int], int]:
    """A node's replies to a RESTORE batch, and the clock offset its expiries were moved by."""
    return restore_outcome(node, records), node.offset


def _type_copy(source: Any, target: Any, keys: list[bytes]) -> int:
    try:
        return copy_with_commands(source, target, keys)
    except ValueError as exc:
        raise OperationFailed(f"{exc}; the keys before it were copied") from exc


def _keeper(part: SourcePart, client: Any, types: tuple[str, ...]) -> Callable[[list[bytes]], list[bytes]] | None:
    """The keys of a SCAN batch to copy: those of the slots the part owns, of the selected types."""
    if not types:
        return part.owner

    def keep(keys: list[bytes]) -> list[bytes]:
        keys = part.owner(keys) if part.owner else keys
        return _of_types(client, keys, types)

    return keep


def _of_types(client: Any, keys: list[bytes], types: tuple[str, ...]) -> list[bytes]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    wanted = {kind.encode() for kind in types} | set(types)
    return [key for key, kind in zip(keys, pipe.execute(), strict=True) if kind in wanted]


class PartVerify:
    """Compares a part's keys with the target's, a SCAN batch at a time: DUMP payloads first (equal
    payloads are equal values), then, where they differ, the values read with type commands."""

    def __init__(self, request: DataMigrationRequest) -> None:
        self.request = request
        self.stop = threading.Event()  # set on Ctrl-C while several parts are compared at once

    def run(self, part: SourcePart) -> PartCounts:
        counts = PartCounts()
        started = part_clock()
        with contextlib.ExitStack() as stack:
            source, plain_source, target = _open_part(stack, self.request, part)
            if target.owners is not None:
                from storagectl.backends.redis_wire import DUMP_CROSS_SLOT_LUA

                _translated(self.request.target, "loading a script", lambda: target.load_script(DUMP_CROSS_SLOT_LUA))
            plain_target = stack.enter_context(_closing(_plain_client(self.request.target, part.target_db)))
            pending: deque[list[redis_keys.Record]] = deque()
            for _cursor, records, _expired in _source_batches(self.request, part, source, plain_source, "0",
                                                              _relative_records):
                if self.stop.is_set():  # the caller was interrupted: what is left goes unread
                    return counts
                with _errors(self.request.target, "reading"):
                    target.send(target.split([key for key, _t, _p in records], bytes), dump_request)
                pending.append(records)
                if len(pending) > 1:
                    self._compare(target, pending.popleft(), counts, plain_source, plain_target)
            while pending:
                self._compare(target, pending.popleft(), counts, plain_source, plain_target)
        counts.duration_s = part_clock() - started
        return counts

    def _compare(self, target: TargetNodes, records: list[redis_keys.Record], counts: PartCounts,
                 plain_source: Any, plain_target: Any) -> None:
        with _errors(self.request.target, "reading"):
            replies = target.receive(dump_reply)
        found = {key: (payload, ttl) for keys, reply in replies
                 for key, payload, ttl in zip(keys, reply[1::2], reply[2::2], strict=True)}
        differing, unsure = [], []  # unsure: equal TTLs, other payloads (another encoding, or order)
        for key, ttl, payload in records:
            counts.keys += 1
            theirs, their_ttl = found[key]
            if theirs is None or their_ttl == redis_keys.NO_SUCH_KEY:
                if not 0 < ttl <= TTL_TOLERANCE_MS:  # gone from the target: fine only if about to expire
                    differing.append(key)
                continue
            counts.present += 1
            if (ttl == 0) != (their_ttl < 0) or (ttl and abs(ttl - their_ttl) > TTL_TOLERANCE_MS):
                differing.append(key)
            elif payload != theirs and not same_unordered(payload, theirs):
                unsure.append(key)
        if unsure:
            with _errors(self.request.source, "reading values"):
                ours = read_values(plain_source, unsure)
            with _errors(self.request.target, "reading values"):
                theirs_now = read_values(plain_target, unsure)
            differing += [key for key, mine, their in zip(unsure, ours, theirs_now, strict=True)
                          if mine is not None and mine != their]
        counts.mismatches += len(differing)
        room = MAX_DIFF_KEYS - len(counts.diff_keys)
        counts.diff_keys += [printable_key(key) for key in differing[:max(0, room)]]


# -- what stops a run before it writes (a plan reports them all) ---------------------------------
def run_blockers(request: DataMigrationRequest, parts: list[SourcePart], *, locked: bool = False
                 ) -> list[StoragectlError]:
    """Another run between the same backends (unless ``locked``: this run holds the lock), a state
    left or missing (--resume), a target db the server does not have, target keys of the selection
    without --yes, a target maxmemory too small for the source's data."""
    blockers = [error for error in (None if locked else other_run(request),
                                    RunState.refusal(request, _identity(request, parts))) if error]
    target_dbs = sorted({part.target_db for part in parts})
    missing = [error for db in target_dbs if (error := _target_db_error(request, db))]
    blockers += missing
    if missing:
        return blockers
    if not request.resume and not request.allow_nonempty_target:
        blockers += [_nonempty(request, db) for db in target_dbs
                     if _translated(request.target, "checking the target",
                                    lambda db=db: _target_count(request, db, stop_at=1))]
    if too_small := _translated(request.target, "reading the memory settings", lambda: _memory_short(request, parts)):
        blockers.append(too_small)
    return blockers


def _identity(request: DataMigrationRequest, parts: list[SourcePart]) -> str:
    return run_identity(request, {"parts": [part.identity for part in parts]})


def _target_db_error(request: DataMigrationRequest, db: int) -> StoragectlError | None:
    """A db number the target server does not have (its ``databases`` setting): SELECT refused."""
    import redis

    if _is_cluster(request.target) or db == 0:
        return None
    try:
        with _errors(request.target, "selecting the db"), _closing(request.target.client(db=db)) as client:
            client.ping()
    except OperationFailed as exc:
        if not isinstance(exc.__cause__, redis.ResponseError) or "out of range" not in str(exc.__cause__):
            raise
        return UsageError(f"{request.target.label} has no db {db} (DB index is out of range)",
                          hint="Try: a target db below the server's `databases` setting, or a target backend "
                               "naming another db")
    return None


def _memory_short(request: DataMigrationRequest, parts: list[SourcePart]) -> StoragectlError | None:
    """The target's maxmemory below what it uses plus what the moved keys take on the source, when
    that is known: whole dbs (no --pattern/--type) to a single node, MEMORY USAGE of a sample of each
    part's keys times its key count."""
    if _is_cluster(request.target) or request.selection.patterns or request.selection.types:
        return None
    with _closing(request.target.client(db=parts[0].target_db)) as client:
        target = client.info("memory")
    limit = int(target.get("maxmemory") or 0)
    if not limit:
        return None
    needed = sum(_translated(request.source, "sampling key sizes", lambda p=part: _estimated_bytes(p))
                 for part in parts)
    free = limit - int(target.get("used_memory") or 0)
    if needed <= free:
        return None
    policy = target.get("maxmemory_policy", "noeviction")
    policy = policy.decode() if isinstance(policy, bytes) else policy
    outcome = "its writes would be refused (OOM)" if policy == "noeviction" else \
        f"it would evict keys ({policy}), copied ones among them"
    return OperationFailed(f"{request.target.label}: maxmemory {_mb(limit)} leaves {_mb(max(free, 0))} free; the "
                           f"keys to copy take about {_mb(needed)} on the source: {outcome}; nothing was copied",
                           hint=f"Try: raise the target's maxmemory (CONFIG SET maxmemory) above "
                                f"{_mb(limit - free + needed)}, or move fewer keys (--pattern, --type)")


SIZE_SAMPLE_KEYS = 1000


def _estimated_bytes(part: SourcePart) -> int:
    """A part's keys' memory: MEMORY USAGE of its first SCAN keys (up to SIZE_SAMPLE_KEYS), scaled to DBSIZE."""
    with _closing(part.connect(False)) as client:
        total = int(client.dbsize())
        sample: list[bytes] = []
        cursor: Any = 0
        while len(sample) < SIZE_SAMPLE_KEYS:
            cursor, keys = client.scan(cursor, count=SIZE_SAMPLE_KEYS)
            sample += keys
            if int(cursor) == 0:
                break
        if not sample:
            return 0
        pipe = client.pipeline(transaction=False)
        for key in sample[:SIZE_SAMPLE_KEYS]:
            pipe.memory_usage(key)
        sizes = [int(size or 0) for size in pipe.execute()]
    return sum(sizes) * total // len(sizes)


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _progress_said(parts: list[SourcePart], state: RunState) -> str:
    """What an interrupted run committed, per part, as its state file says."""
    said = []
    for part in parts:
        recorded = state.parts.get(part.name, {})
        done = "all" if recorded.get("done") else f"{recorded.get('keys', 0)} keys"
        said.append(f"{done} of {part.label} copied")
    return ", ".join(said)


# -- helpers -------------------------------------------------------------------------------------
def _nonempty(request: DataMigrationRequest, db: int) -> UsageError:
    """What a run without --yes stops with when the target holds keys of the selection."""
    where = "" if _is_cluster(request.target) else f" db {db}"
    return UsageError(f"{request.target.label}{where} already holds keys of the selection; nothing was copied",
                      hint="Try: --yes to replace them, or another target db")


def _no_digest_pass(request: DataMigrationRequest) -> str:
    """Why the target's keys cannot be digested (read with their exact expiry), or ""."""
    if _is_cluster(request.target):
        return "a cluster target"
    version = _version(request.target)
    if int(version.split(".")[0]) < 7:
        return f"the target is Redis {version} (PEXPIRETIME needs 7.0)"
    return ""


def _source_drift(request: DataMigrationRequest, parts: list[SourcePart], digests: list[KeyDigest],
                  counts: list[PartCounts]) -> str:
    """A source db whose key count (DBSIZE: known without a pattern or type) left the range the copy
    allows (its keys, less those expiring since, plus those it found expired and DBSIZE may still
    count), said as the reason to compare whole; "" when none did or it is not known."""
    if request.selection.patterns or request.selection.types or _is_cluster(request.source):
        return ""
    now_ms = int(time.time() * 1000)
    for part, digest, part_counts in zip(parts, digests, counts, strict=True):
        held = _dbsize(part)
        expiring = sum(count for second, (count, _total) in digest.soon.items() if second * 1000 <= now_ms + 1000)
        if not digest.keys - expiring <= held <= digest.keys + part_counts.expired:
            return f"{part.label} of the source holds {held} keys now, the copy read {digest.keys}"
    return ""


def _target_digest(request: DataMigrationRequest, db: int, horizon: int,
                   copy_s: float) -> tuple[KeyDigest, int, str]:
    """The target db's digest of the keys of the selection, the target's clock when it was done, and
    how it was read: the server's snapshot when the backup would take it (the whole db, few keys in
    other dbs) and :func:`_snapshot_kind` finds one that comes soon enough, else SCAN + DUMP."""
    import redis

    from storagectl.backends.redis_rdb import RdbRefused
    from storagectl.errors import IntegrityError

    target = request.target
    if not request.selection.patterns and not request.selection.types:
        # INFO or SYNC denied, a snapshot this parser cannot read (damaged: IntegrityError, or a length
        # beyond any integer, OverflowError, from the parser in Python), a BGSAVE for a disk-based one
        # that failed (the server drops the link: ConnectionError): SCAN + DUMP decides
        with contextlib.suppress(redis.ResponseError, redis.ConnectionError, RdbRefused, IntegrityError,
                                 OverflowError):
            if read := _snapshot_kind(target, db, copy_s):
                return _snapshot_digest(target, db, horizon, read == SNAPSHOT), _target_ms(target, db), read
    return _scanned_digest(target, db, horizon, request.selection), _target_ms(target, db), "SCAN + DUMP"


SNAPSHOT, DISK_SNAPSHOT = "the target's snapshot", "the target's snapshot saved to its RDB file"


def _snapshot_kind(target: Any, db: int, copy_s: float) -> str | None:
    """Which snapshot the verify reads, if any. A server with ``repl-diskless-sync no`` writes every
    snapshot to its RDB file: read only where that does no harm (:func:`disk_snapshot_obstacle`).
    Diskless without delay (the backup's ``auto`` rule);
    when the server would wait ``repl-diskless-sync-delay`` first, disk-based if that does no harm
    (see :func:`disk_snapshot_obstacle`: a server that saves RDB snapshots anyway) as the server
    forks for it at once, else diskless if the copy was long enough to pay for the wait
    (:func:`affordable_wait`)."""
    from storagectl.backends.redis_rdb import disk_snapshot_obstacle, diskless_delay, rdb_obstacle

    version, config, keys, modules = target._server_facts()
    if config is None or rdb_obstacle(version, config, keys, [db], modules, max_wait=math.inf):
        return None  # an obstacle other than the wait
    if config.get("repl-diskless-sync") != "yes":  # capa eof or not, the server BGSAVEs to its RDB file first
        return None if disk_snapshot_obstacle(*_saving_facts(target)) else DISK_SNAPSHOT
    if not (delay := diskless_delay(config)):
        return SNAPSHOT
    if not disk_snapshot_obstacle(*_saving_facts(target)):
        return DISK_SNAPSHOT
    return SNAPSHOT if delay <= affordable_wait(copy_s) else None


def _saving_facts(target: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The server's ``save`` rules and its INFO persistence (None: denied), one round trip."""
    with _closing(target.client()) as client:
        pipe = client.pipeline(transaction=False)
        pipe.config_get("save").info("persistence")
        config, persistence = pipe.execute(raise_on_error=False)
    return (None if isinstance(config, Exception) else config.get("save"),
            None if isinstance(persistence, Exception) else persistence)


# The target read after a copy of the bench's 1 M keys, as a share of the copy's time (its source is
# read by the same DUMPs): by SCAN + DUMP 0.61-0.67x, bound by the target server's one thread (SCAN
# ~0.8 us a key, DUMP ~1.9, PEXPIRETIME ~0.35); by its snapshot 0.25-0.37x, the fork child serializing.
SCAN_DUMP_SHARE, SNAPSHOT_SHARE = 0.64, 0.31
CRON_S = 1.0  # the server forks for waiting replicas in a once-a-second check: up to this after the delay


def affordable_wait(copy_s: float) -> float:
    """The longest delay before the target's snapshot that still makes it the faster read, after a
    copy of ``copy_s`` seconds: what the snapshot saves on SCAN + DUMP, less the cron's second."""
    return max(0.0, (SCAN_DUMP_SHARE - SNAPSHOT_SHARE) * copy_s - CRON_S)


def _snapshot_digest(target: Any, db: int, horizon: int, diskless: bool = True) -> KeyDigest:
    """The digest of db's keys in the target's RDB snapshot (over the replication protocol, as the
    backup's rdb method reads it): the server's fork serializes, this process only parses."""
    from storagectl.backends.redis_rdb import start_sync

    with _closing(target.client(single_connection_client=True)) as client:
        sync = start_sync(client.connection, diskless)
        return snapshot_digest(lambda _size: sync.read(), f"{target.label} snapshot", db, horizon)


def _scanned_digest(target: Any, db: int, horizon: int, selection: Selection) -> KeyDigest:
    from storagectl.backends.redis_wire import MultiDumpExpireAt

    types = selection.types
    with _closing(target.client(db=db, single_connection_client=True)) as client, \
            _closing(target.client(db=db)) as plain:
        return target_digest(client, horizon, MultiDumpExpireAt(),
                             (lambda keys: _of_types(plain, keys, types)) if len(types) > 1 else None,
                             selection.patterns[0].encode() if selection.patterns else None,
                             types[0].encode() if len(types) == 1 else None)


def _target_ms(target: Any, db: int) -> int:
    with _closing(target.client(db=db)) as client:
        return server_ms(client.time())


def _check_selection(selection: Selection) -> None:
    """Keys by one SCAN MATCH glob and by types (the Selection checked they are Redis types)."""
    selection.require_fields(("patterns", "types"), "a Redis data move")
    if len(selection.patterns) > 1:
        raise UsageError("a Redis data move takes one --pattern", hint="Try: one glob, such as 'session:*'")


def _pattern(selection: Selection) -> str | None:
    return selection.patterns[0] if selection.patterns else None


def _is_cluster(backend: Any) -> bool:
    return bool(getattr(backend.settings, "is_cluster", False))


def _first(record: redis_keys.Record) -> bytes:
    return record[0]


def _payload(record: redis_keys.Record) -> bytes:
    return record[2]


def _plain_client(backend: Any, db: int) -> Any:
    """A redis-py client for type commands: a RedisCluster (routes by slot) or the db's client."""
    return backend.client() if _is_cluster(backend) else backend.client(db=db)


@contextlib.contextmanager
def _closing(client: Any) -> Iterator[Any]:
    try:
        yield client
    finally:
        client.close()


def _target_label(request: DataMigrationRequest, part: SourcePart) -> str:
    return "cluster" if _is_cluster(request.target) else f"db{part.target_db}"


def _version(backend: Any) -> str:
    with backend.connect() as connection:
        return backend.server_version(connection)


def _dbsize(part: SourcePart) -> int:
    with _closing(part.connect(False)) as client:
        return int(client.dbsize())


def _target_count(request: DataMigrationRequest, db: int, stop_at: int | None = None) -> int:
    """Keys of the selection in the target db (a cluster: all primaries), counted up to ``stop_at``
    (everything: DBSIZE)."""
    selection, target = request.selection, request.target
    if not selection.patterns and not selection.types:
        if _is_cluster(target):
            return sum(target.content_summary().counts.values())
        with _closing(target.client(db=db)) as client:
            return int(client.dbsize())
    count = 0
    for keys in _selected_keys(target, db, selection):
        count += len(keys)
        if stop_at is not None and count >= stop_at:
            break
    return count


def _selected_keys(backend: Any, db: int, selection: Selection) -> Iterator[list[bytes]]:
    """Batches of the backend's keys of the selection, by SCAN."""
    scan_type = selection.types[0] if len(selection.types) == 1 else None
    if _is_cluster(backend):
        topology = backend._stable_topology("data migration")
        client = backend.client()
        try:
            for _node, keys in scan_primaries(topology, backend.node_client, match=_pattern(selection),
                                              type_=scan_type):
                yield _of_types(client, keys, selection.types) if len(selection.types) > 1 else keys
        finally:
            client.close()
        return
    with _closing(backend.client(db=db)) as client:
        cursor: Any = 0
        while True:
            cursor, keys = client.scan(cursor, match=_pattern(selection), count=DUMP_BATCH_KEYS, _type=scan_type)
            yield _of_types(client, keys, selection.types) if len(selection.types) > 1 else keys
            if int(cursor) == 0:
                return


def _extra_key_names(request: DataMigrationRequest, parts: list[SourcePart]) -> list[str]:
    """Up to MAX_DIFF_KEYS keys of the selection in the target that the source does not have."""
    names: list[str] = []
    for part in parts if not _is_cluster(request.source) else parts[:1]:
        source = _plain_client(request.source, 0) if _is_cluster(request.source) else part.connect(False)
        with _closing(source):
            for keys in _selected_keys(request.target, part.target_db, request.selection):
                pipe = source.pipeline(transaction=False)
                for key in keys:
                    pipe.exists(key)
                names += [printable_key(key) for key, exists in zip(keys, pipe.execute(), strict=True) if not exists]
                if len(names) >= MAX_DIFF_KEYS:
                    return names[:MAX_DIFF_KEYS]
    return names


def _copied_item(request: DataMigrationRequest, part: SourcePart, counts: PartCounts) -> ItemResult:
    notes = []
    if counts.expired:
        notes.append(f"{counts.expired} expired meanwhile (skipped)")
    if counts.by_commands:
        notes.append(f"{counts.by_commands} copied with type commands (payload refused by the target)")
    status = "resumed" if request.resume else "copied"
    return ItemResult(part.label, _target_label(request, part), status, rows=counts.keys, bytes=counts.bytes,
                      duration_s=counts.duration_s, detail="; ".join(notes))


def _verified_item(request: DataMigrationRequest, part: SourcePart, counts: PartCounts) -> ItemResult:
    item = ItemResult(part.label, _target_label(request, part), "mismatch" if counts.mismatches else "equal",
                      rows=counts.keys, duration_s=counts.duration_s, verified_by=WHOLE_METHOD)
    if counts.mismatches:
        item.detail = f"{counts.mismatches} of {counts.keys} keys differ (type, value, or TTL by more than " \
                      f"{TTL_TOLERANCE_MS} ms), or are missing from the target"
        item.first_bad_chunk = f"key {counts.diff_keys[0]}"
        item.diff_keys = counts.diff_keys if request.show_diffs else []
    return item


def _each(parts: list[SourcePart], visit: Callable[[SourcePart], PartCounts], parallel: int,
          stop: threading.Event | None = None) -> list[PartCounts]:
    """``visit`` of every part: in this thread when there is one (Ctrl-C stops it at once), else
    ``parallel`` parts at a time, ``stop`` set on Ctrl-C for the visits running to end early; the first
    failure is raised once the others have ended."""
    if len(parts) == 1:
        return [visit(parts[0])]
    return _values(fan_out(parts, visit, parallel, stop))


def _values(outcomes: list[Any]) -> list[Any]:
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return [outcome.value for outcome in outcomes]


def _translated(backend: Any, what: str, call: Callable[[], Any]) -> Any:
    with _errors(backend, what):
        return call()


@contextlib.contextmanager
def _errors(backend: Any, what: str) -> Iterator[None]:
    """redis-py errors as ours, naming the backend; a lost connection says the run can be resumed."""
    import redis

    try:
        yield
    except StoragectlError:
        raise
    except redis.ResponseError as exc:
        text = backend.error_line(exc)
        if "NOAUTH" in text or "WRONGPASS" in text:
            raise backend.translate_error(exc) from exc
        if "non local key" in text or "MOVED" in text:
            raise OperationFailed(f"{backend.label}: {what} failed: a slot moved (a reshard?)",
                                  hint="Try: --resume once the cluster is stable") from exc
        raise OperationFailed(f"{backend.label}: {what} failed: {text}") from exc
    except redis.RedisError as exc:
        lost = isinstance(exc, redis.ConnectionError | redis.TimeoutError)
        if isinstance(exc, redis.AuthenticationError) or not lost:
            raise backend.translate_error(exc) from exc
        raise BackendUnavailable(f"{backend.label}: {what} failed, connection lost: {backend.error_line(exc)}",
                                 hint="Try: the same command with --resume once the server is back") from exc
    except OSError as exc:
        raise backend.translate_error(exc) from exc
