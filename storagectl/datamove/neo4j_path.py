"""Neo4j → Neo4j (`storagectl migrate data --from G1 --to G2`) over Bolt, Community edition, no APOC.

Steps: the source's indexes (``SHOW INDEXES``) on the target; nodes, then relationships, streamed
from one read transaction per phase (``fetch_size`` rows at a time) and written in batches of
``UNWIND`` statements, one per label set or type; the source's constraints last (they would slow
every batch, and a violation is best reported once the data is there). An id map (source element
id → target element id) lives in a SQLite file beside the state, so a graph of any size never sits
in memory; relationships find their endpoints by element id in it.

Resume: each batch's transaction also sets, in a progress node of the target, how many nodes and
relationships of the source streams are committed — atomic with the data. ``--resume`` reads it and
continues the streams after that many rows (the source must not change in between: its counts are
compared). New nodes carry the backup restore's marker label and key until the end, so the id map
is rebuilt from the target for a batch committed just before a kill.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import neo4j

from storagectl.backends.neo4j_archive import (
    AWAIT_INDEXES,
    COUNT_NODES,
    CREATE_RESTORE_INDEX,
    DROP_RESTORE_INDEX,
    FETCH_SIZE,
    INDEX_WAIT_SECONDS,
    RESTORE_KEY,
    RESTORE_LABEL,
    UNMARK_RESTORED,
    WRITE_BATCH,
    GraphRestore,
    decode_properties,
    encode_properties,
    idempotent_statement,
    quote_name,
    read_schema,
    translated_errors,
)
from storagectl.datamove.model import ItemPlan, ItemResult, MigrationPlan, RunResult
from storagectl.datamove.state import (
    RunState,
    other_run,
    raise_first,
    resume_command,
    run_identity,
    run_lock,
    state_path,
)
from storagectl.errors import IntegrityError, StoragectlError, UsageError, interruption

if TYPE_CHECKING:
    from storagectl.archive.progress import ProgressCallback
    from storagectl.datamove.model import DataMigrationRequest

PROGRESS_LABEL = "__StorageCtlCopy"
INTERNAL_LABELS = (RESTORE_LABEL, PROGRESS_LABEL)
_NODE_FILTER = "WHERE any(label IN labels(n) WHERE label IN $labels) "
_ENDS_FILTER = ("WHERE any(label IN labels(a) WHERE label IN $labels) "
                "AND any(label IN labels(b) WHERE label IN $labels) ")
SOURCE_NODES = "MATCH (n) {filter}RETURN elementId(n) AS id, labels(n) AS labels, properties(n) AS props SKIP $skip"
SOURCE_RELATIONSHIPS = ("MATCH (a)-[r]->(b) {filter}RETURN elementId(r) AS id, type(r) AS type, "
                        "properties(r) AS props, elementId(a) AS start, elementId(b) AS end SKIP $skip")
COUNT_SELECTED_NODES = "MATCH (n) {filter}RETURN count(n) AS count"
COUNT_SELECTED_RELATIONSHIPS = "MATCH (a)-[r]->(b) {filter}RETURN count(r) AS count"
CONTENT_NODES = "MATCH (n) {filter}RETURN labels(n) AS labels, properties(n) AS props"
CONTENT_RELATIONSHIPS = ("MATCH (a)-[r]->(b) {filter}RETURN type(r) AS type, properties(r) AS props, "
                         "labels(a) AS start_labels, properties(a) AS start_props, "
                         "labels(b) AS end_labels, properties(b) AS end_props")
SET_PROGRESS = (f"MERGE (p:{PROGRESS_LABEL} {{run: $run}}) "
                "SET p.nodes = $nodes, p.relationships = $relationships")
READ_PROGRESS = f"MATCH (p:{PROGRESS_LABEL} {{run: $run}}) RETURN p.nodes AS nodes, p.relationships AS relationships"
DELETE_PROGRESS = f"MATCH (p:{PROGRESS_LABEL} {{run: $run}}) DELETE p"
FIND_MARKED = (f"UNWIND $ids AS id MATCH (n:{RESTORE_LABEL} {{{RESTORE_KEY}: id}}) "
               "RETURN id AS source, elementId(n) AS target")


def path_for(source_kind: str, target_kind: str) -> Neo4jDataPath:
    return Neo4jDataPath()


def create_nodes_returning_query(labels: Iterable[str]) -> str:
    names = "".join(":" + quote_name(label) for label in labels)
    return (f"UNWIND $rows AS row CREATE (n{names}:{RESTORE_LABEL} {{{RESTORE_KEY}: row.id}}) "
            "SET n += row.props RETURN row.id AS source, elementId(n) AS target")


def create_relationships_by_id_query(rel_type: str) -> str:
    return ("UNWIND $rows AS row MATCH (a) WHERE elementId(a) = row.start MATCH (b) WHERE elementId(b) = row.end "
            f"CREATE (a)-[r:{quote_name(rel_type)}]->(b) SET r += row.props")


def _filtered(query: str, labels: tuple[str, ...], ends: bool = False) -> str:
    return query.format(filter=(_ENDS_FILTER if ends else _NODE_FILTER) if labels else "")


class IdMap:
    """Source element id → target element id, in a SQLite file (a graph's ids never sit in memory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS ids (source TEXT PRIMARY KEY, target TEXT NOT NULL) WITHOUT ROWID")

    def add(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO ids VALUES (?, ?)", pairs)

    def lookup(self, sources: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(sources), 500):
            chunk = sources[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT source, target FROM ids WHERE source IN ({marks})", chunk))
        return found

    def close(self, remove: bool = False) -> None:
        self.db.close()
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class Neo4jDataPath:
    def notes(self, request: DataMigrationRequest) -> list[str]:
        if request.parallel <= 1:
            return []
        return [f"--parallel {request.parallel} is ignored for neo4j → neo4j: nodes, then relationships, are "
                "copied by one writer in the source's order (the order its resume position counts)"]

    def plan(self, request: DataMigrationRequest) -> MigrationPlan:
        _check_selection(request)
        labels = request.selection.labels
        with _driver(request.source) as source, _driver(request.target) as target:
            nodes = _count(request.source, source, _filtered(COUNT_SELECTED_NODES, labels), labels)
            rels = _count(request.source, source, _filtered(COUNT_SELECTED_RELATIONSHIPS, labels, True), labels)
            occupied = _count(request.target, target, COUNT_NODES, ())
            with translated_errors(request.source, "reading the schema"), request.source.session(source) as session:
                schema = read_schema(session)
            blockers = run_blockers(request, source, target)
        problems = [f"the target holds {occupied} nodes: run needs --yes (the target graph is deleted first)"] \
            if occupied else []
        batching = f"UNWIND batches of {WRITE_BATCH}"
        items = [ItemPlan("nodes", "nodes", row_estimate=nodes, chunking=batching, problems=problems),
                 ItemPlan("relationships", "relationships", row_estimate=rels, chunking=batching),
                 ItemPlan("schema", "schema", row_estimate=len(schema["indexes"]) + len(schema["constraints"]),
                          chunking="indexes before the data, constraints after")]
        return MigrationPlan(request.source.name, request.target.name, "neo4j → neo4j", items, blockers)

    def run(self, request: DataMigrationRequest, progress: ProgressCallback) -> RunResult:
        _check_selection(request)
        with _driver(request.source) as source, _driver(request.target) as target, run_lock(request):
            raise_first(run_blockers(request, source, target, locked=True))
            copy = GraphCopy(request, source, target, progress)
            try:
                items = copy.run()
            except KeyboardInterrupt as exc:
                raise interruption(exc, where=f"{copy.progress_said()} (state in {state_path(request)})",
                                   hint=f"Try: {resume_command(request)}") from exc
        result = RunResult(request.source.name, request.target.name, "neo4j → neo4j", items)
        if request.verify:
            verification = self.verify(request)
            result.items += verification.items
            result.verified = verification.verified
        return result

    def verify(self, request: DataMigrationRequest) -> RunResult:
        """Per label and per type: counts and an order-free content hash (a sum of per-entity hashes
        over labels/type and properties; a relationship's also over its endpoints' content)."""
        _check_selection(request)
        with _driver(request.source) as source, _driver(request.target) as target:
            ours = content_hashes(request.source, source, request.selection.labels)
            theirs = content_hashes(request.target, target, request.selection.labels)
        items = []
        for unit in sorted(set(ours) | set(theirs)):
            mine, their = ours.get(unit, (0, 0)), theirs.get(unit, (0, 0))
            item = ItemResult(unit, unit, "equal" if mine == their else "mismatch", rows=their[0],
                              checksum=f"{their[1]:016x}")
            if mine != their:
                item.detail = f"source {mine[0]} with hash {mine[1]:016x}, target {their[0]} with hash {their[1]:016x}"
            items.append(item)
        return RunResult(request.source.name, request.target.name, "neo4j → neo4j", items,
                         verified=all(item.status == "equal" for item in items))


class GraphCopy:
    """One run: schema and data from the source driver to the target driver, resumable."""

    clock = staticmethod(time.monotonic)  # of each item's duration_s

    def __init__(self, request: DataMigrationRequest, source: Any, target: Any, progress: ProgressCallback) -> None:
        self.request, self.source, self.target, self.progress = request, source, target, progress
        self.labels = request.selection.labels
        self.writer = GraphRestore(request.target, target, archive=None)  # its statement helpers
        self.batch = WRITE_BATCH
        self.counts: tuple[int, int] | None = None  # selected (nodes, relationships) of the source
        self.committed: tuple[int, int] | None = (0, 0)  # in the target so far; None: all, finishing
        self.seconds = {"nodes": 0.0, "relationships": 0.0, "schema": 0.0}  # this run's time per item

    def progress_said(self) -> str:
        """Where an interrupted run stopped, as the target's progress node records it."""
        if self.counts is None:
            return "before any node was copied"
        if self.committed is None:
            return "after all nodes and relationships were committed, while constraints were created"
        (nodes, relationships), (all_nodes, all_relationships) = self.committed, self.counts
        return (f"after {nodes} of {all_nodes} nodes and {relationships} of {all_relationships} relationships "
                "were committed")

    def run(self) -> list[ItemResult]:
        request = self.request
        counts = (_count(request.source, self.source, _filtered(COUNT_SELECTED_NODES, self.labels), self.labels),
                  _count(request.source, self.source, _filtered(COUNT_SELECTED_RELATIONSHIPS, self.labels, True),
                         self.labels))
        self.counts = counts
        state, run_id = self._begin(counts)
        with self._timed("schema"):
            schema = self._schema()
        with contextlib.closing(IdMap(state_path(request).with_suffix(".idmap.sqlite"))) as ids:
            if not state.part("run").get("finishing"):  # killed while finishing: the data is all there
                self._copy(run_id, schema, ids)
                state.commit("run", force=True, finishing=True)
            self.committed = None  # all of it
            with self._timed("schema"):
                self._statements("creating constraint", schema["constraints"])
                self.writer._repeat("removing the temporary copy label", UNMARK_RESTORED)
                self.writer._write("dropping the temporary copy index", DROP_RESTORE_INDEX)
                self.writer._write("removing the progress node", DELETE_PROGRESS, run=run_id)
        ids.close(remove=True)
        state.finish()
        status = "resumed" if request.resume else "copied"
        seconds = self.seconds
        return [ItemResult("nodes", "nodes", status, rows=counts[0], duration_s=seconds["nodes"]),
                ItemResult("relationships", "relationships", status, rows=counts[1],
                           duration_s=seconds["relationships"]),
                ItemResult("schema", "schema", status, rows=len(schema["indexes"]) + len(schema["constraints"]),
                           duration_s=seconds["schema"])]

    def _begin(self, counts: tuple[int, int]) -> tuple[RunState, str]:
        """The run's state: new (the target checked and cleared with --yes), or the interrupted one."""
        request = self.request
        state = RunState.begin(request, run_identity(request))
        run = state.part("run")
        run_id = run.setdefault("id", run_identity(request, {"counts": counts}))
        if request.resume and run.get("counts") != list(counts):
            raise UsageError(f"{request.source.label} changed since the interrupted run (nodes, relationships: "
                             f"{run.get('counts')} then, {list(counts)} now); nothing was done",
                             hint=f"Try: delete {state.path} and run again with --yes")
        if not request.resume:
            self._prepare_target()
        # A resumed run keeps the interrupted run's batches, so the last committed one is read again whole.
        self.batch = int(run.get("batch") or WRITE_BATCH)
        state.commit("run", force=True, id=run_id, counts=list(counts), batch=self.batch)
        return state, run_id

    def _copy(self, run_id: str, schema: dict[str, list[dict[str, Any]]], ids: IdMap) -> None:
        done = self.committed = self._committed(run_id)
        with self._timed("schema"):
            self._statements("creating index", schema["indexes"])
        with self._timed("nodes"):
            self._copy_nodes(run_id, done, ids)
        with self._timed("relationships"):
            self._copy_relationships(run_id, done, ids)

    @contextlib.contextmanager
    def _timed(self, item: str) -> Iterator[None]:
        """The time of the block, added to ``item``'s (its ItemResult's duration_s)."""
        started = self.clock()
        try:
            yield
        finally:
            self.seconds[item] += self.clock() - started

    def _prepare_target(self) -> None:
        """--yes (the run's blockers were checked): a graph or a schema of its own on the target deleted."""
        request = self.request
        if request.allow_nonempty_target and (_count(request.target, self.target, COUNT_NODES, ())
                                              or _foreign_schema(request, self.source, self.target)):
            self.writer.clear_target()
        state_file = state_path(self.request).with_suffix(".idmap.sqlite")
        with contextlib.suppress(FileNotFoundError):
            state_file.unlink()

    def _committed(self, run_id: str) -> tuple[int, int]:
        with translated_errors(self.request.target, "reading the progress"), \
                self.request.target.session(self.target) as session:
            record = session.execute_read(lambda tx: tx.run(READ_PROGRESS, run=run_id).single())
        return (0, 0) if record is None else (int(record["nodes"] or 0), int(record["relationships"] or 0))

    def _schema(self) -> dict[str, list[dict[str, Any]]]:
        with translated_errors(self.request.source, "reading the schema"), \
                self.request.source.session(self.source) as session:
            return read_schema(session)

    def _statements(self, what: str, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.writer._write(f"{what} {item['name']!r}", idempotent_statement(item["createStatement"]))
        if items:
            self.writer._write("waiting for indexes to come online", AWAIT_INDEXES, seconds=INDEX_WAIT_SECONDS)

    def _copy_nodes(self, run_id: str, done: tuple[int, int], ids: IdMap) -> None:
        """Batches of the node stream after the committed ones. On resume the last committed batch is
        read again: a kill may have come between its commit and its ids reaching the id map, and its
        nodes still carry their source ids (the marker key), so the map is completed from the target."""
        self.writer._write("creating the temporary copy index", CREATE_RESTORE_INDEX)
        self.writer._write("waiting for indexes to come online", AWAIT_INDEXES, seconds=INDEX_WAIT_SECONDS)
        committed = done[0]
        start = max(0, committed - self.batch) if committed else 0
        position = start
        for batch in self._stream(_filtered(SOURCE_NODES, self.labels), start):
            if position < committed:
                ids.add(self._marked([row["id"] for row in batch]))
                position += len(batch)
                continue
            position += len(batch)
            pairs = self._transaction(f"nodes {position - len(batch) + 1}-{position}", run_id, position, done[1],
                                      _node_statements(batch))
            self.committed = (position, done[1])
            ids.add(pairs)
            self.progress(_event("nodes", position))

    def _marked(self, sources: list[str]) -> list[tuple[str, str]]:
        with translated_errors(self.request.target, "reading the copied nodes"), \
                self.request.target.session(self.target) as session:
            return session.execute_read(
                lambda tx: [(r["source"], r["target"]) for r in tx.run(FIND_MARKED, ids=sources)])

    def _copy_relationships(self, run_id: str, done: tuple[int, int], ids: IdMap) -> None:
        committed = done[1]
        nodes = _count(self.request.source, self.source, _filtered(COUNT_SELECTED_NODES, self.labels), self.labels)
        for batch in self._stream(_filtered(SOURCE_RELATIONSHIPS, self.labels, True), committed):
            ends = ids.lookup(sorted({row["start"] for row in batch} | {row["end"] for row in batch}))
            missing = [row for row in batch if row["start"] not in ends or row["end"] not in ends]
            if missing:
                raise IntegrityError(f"{self.request.source.label}: relationship {missing[0]['id']} has an endpoint "
                                     "that was not copied (the source graph changed during the copy?)",
                                     hint="Try: run again with --yes while writes to the source are paused")
            committed += len(batch)
            statements = _relationship_statements(batch, ends)
            self._transaction(f"relationships {committed - len(batch) + 1}-{committed}", run_id, nodes, committed,
                              statements)
            self.committed = (nodes, committed)
            self.progress(_event("relationships", committed))

    def _stream(self, query: str, skip: int) -> Iterator[list[dict[str, Any]]]:
        """Batches of ``self.batch`` rows of ``query`` after ``skip`` rows, from one read transaction."""
        session = self.source.session(database=self.request.source.settings.database,
                                      default_access_mode=neo4j.READ_ACCESS, fetch_size=FETCH_SIZE)
        with translated_errors(self.request.source, "reading the graph"), session, \
                session.begin_transaction() as tx:
            batch: list[dict[str, Any]] = []
            for record in tx.run(query, skip=skip, labels=list(self.labels)):
                batch.append(record.data())
                if len(batch) >= self.batch:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def _transaction(self, what: str, run_id: str, nodes: int, relationships: int,
                     statements: list[tuple[str, list[dict[str, Any]]]]) -> list[tuple[str, str]]:
        """The batch's statements and the progress update, in one write transaction; the created
        nodes' (source id, target id)."""
        def work(tx: Any) -> list[tuple[str, str]]:
            pairs = []
            for query, rows in statements:
                result = tx.run(query, rows=rows)
                if "source" in result.keys():  # noqa: SIM118 - a Result has no __contains__
                    pairs += [(r["source"], r["target"]) for r in result]
                else:
                    result.consume()
            tx.run(SET_PROGRESS, run=run_id, nodes=nodes, relationships=relationships).consume()
            return pairs

        with translated_errors(self.request.target, f"copying {what}"), \
                self.request.target.session(self.target) as session:
            return session.execute_write(work)


def _node_statements(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row["labels"])].append({"id": row["id"], "props": _as_written(row["props"])})
    return [(create_nodes_returning_query(labels), batch) for labels, batch in groups.items()]


def _relationship_statements(rows: list[dict[str, Any]],
                             ends: dict[str, str]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["type"]].append({"start": ends[row["start"]], "end": ends[row["end"]],
                                    "props": _as_written(row["props"])})
    return [(create_relationships_by_id_query(rel_type), batch) for rel_type, batch in groups.items()]


def _as_written(props: dict[str, Any]) -> dict[str, Any]:
    """Property values as the driver must send them to mean what the source holds: through the
    backup's encoding, which resolves what hydration blurs (offset +00:00 and zone "UTC" are one
    ``pytz.utc`` once read; sent back as is, it would become the zone)."""
    return decode_properties(encode_properties(props))


def _event(what: str, done: int) -> Any:
    from storagectl.archive.progress import ProgressEvent

    return ProgressEvent("copy", "advance", what, done=done)


# -- verification ---------------------------------------------------------------------------------
def content_hashes(backend: Any, driver: Any, labels: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """(count, hash sum mod 2**64) per ``label:X`` and ``type:Y``, and for all ``nodes`` and
    ``relationships``; streamed, so memory holds one record and the sums."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def add(unit: str, digest: int) -> None:
        entry = sums[unit]
        entry[0] += 1
        entry[1] = (entry[1] + digest) % 2**64

    session = driver.session(database=backend.settings.database, default_access_mode=neo4j.READ_ACCESS,
                             fetch_size=FETCH_SIZE)
    with translated_errors(backend, "hashing the graph"), session, session.begin_transaction() as tx:
        for record in tx.run(_filtered(CONTENT_NODES, labels), labels=list(labels)):
            if set(record["labels"]) & set(INTERNAL_LABELS):
                continue
            digest = _digest(_node_content(record["labels"], record["props"]))
            add("nodes", digest)
            for label in record["labels"] or ["(no label)"]:
                add(f"label:{label}", digest)
        for record in tx.run(_filtered(CONTENT_RELATIONSHIPS, labels, True), labels=list(labels)):
            digest = _digest([record["type"], encode_properties(record["props"]),
                              _node_content(record["start_labels"], record["start_props"]),
                              _node_content(record["end_labels"], record["end_props"])])
            add("relationships", digest)
            add(f"type:{record['type']}", digest)
    sums.setdefault("nodes", [0, 0])
    sums.setdefault("relationships", [0, 0])
    return {unit: (entry[0], entry[1]) for unit, entry in sums.items()}


def _node_content(labels: list[str], props: dict[str, Any]) -> list[Any]:
    return [sorted(labels), encode_properties({k: v for k, v in props.items() if k != RESTORE_KEY})]


def _digest(content: Any) -> int:
    encoded = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.blake2b(encoded, digest_size=8).digest(), "big")


# -- what stops a run before it writes (a plan reports them all) -------------------------------------
def run_blockers(request: DataMigrationRequest, source: Any, target: Any, *, locked: bool = False
                 ) -> list[StoragectlError]:
    """Another run between the same backends (unless ``locked``: this run holds the lock), a state
    left or missing (--resume); without --yes, a target holding nodes, or constraints and indexes
    the source does not have (kept, they could refuse the copied data or differ from the source's)."""
    blockers = [error for error in (None if locked else other_run(request),
                                    RunState.refusal(request, run_identity(request))) if error]
    if request.resume or request.allow_nonempty_target:
        return blockers
    if _count(request.target, target, COUNT_NODES, ()):
        blockers.append(_nonempty(request))
    if foreign := _foreign_schema(request, source, target):
        blockers.append(UsageError(f"{request.target.label} has constraints or indexes the source does not: "
                                   f"{', '.join(foreign)}; a run would keep them on the copy; nothing was copied",
                                   hint="Try: --yes to drop the target's schema (and graph) first, or drop them "
                                        "on the target"))
    return blockers


def _foreign_schema(request: DataMigrationRequest, source: Any, target: Any) -> list[str]:
    """The target's constraints and indexes that are not the source's, same name and definition."""
    def schema_of(backend: Any, driver: Any) -> dict[str, str]:
        with translated_errors(backend, "reading the schema"), backend.session(driver) as session:
            return {item["name"]: item["createStatement"] for items in read_schema(session).values()
                    for item in items}

    ours, theirs = schema_of(request.source, source), schema_of(request.target, target)
    return [f"{name!r} ({statement})" for name, statement in sorted(theirs.items()) if ours.get(name) != statement]


# -- helpers ---------------------------------------------------------------------------------------
def _nonempty(request: DataMigrationRequest) -> UsageError:
    """What a run without --yes stops with when the target holds a graph."""
    return UsageError(f"{request.target.label} is not empty; copying would mix two graphs; nothing was copied",
                      hint="Try: --yes to delete the target graph first")


def _check_selection(request: DataMigrationRequest) -> None:
    request.selection.require_fields(("labels",), "a Neo4j data move")


@contextlib.contextmanager
def _driver(backend: Any) -> Iterator[Any]:
    with backend.connect() as driver:
        yield driver


def _count(backend: Any, driver: Any, query: str, labels: tuple[str, ...]) -> int:
    with translated_errors(backend, "counting"), backend.session(driver) as session:
        return int(session.execute_read(lambda tx: tx.run(query, labels=list(labels)).single(strict=True)[0]))

