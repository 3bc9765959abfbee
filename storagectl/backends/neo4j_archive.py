"""Neo4j backup and restore: schema, nodes and relationships as JSON-lines archive objects.

Objects (see docs/NEO4J.md): ``schema.json`` (constraints and indexes with their create
statements), ``nodes.jsonl`` (``{"id", "labels", "props"}`` per line) and ``relationships.jsonl``
(``{"id", "type", "props", "start", "end"}``, endpoints by the nodes' backup element ids).
Property values JSON cannot carry exactly (bytes, temporal, spatial, non-finite floats) are
objects tagged with ``"$t"``; a property value is never a map in Neo4j, so the tags are unambiguous.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, BinaryIO

import neo4j
import neo4j.exceptions as neo4j_errors
from neo4j.spatial import CartesianPoint, Point, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from storagectl.archive.api import ContentSummary, RestoreOutcome, record_summary
from storagectl.errors import (
    BackendUnavailable,
    IntegrityError,
    OperationFailed,
    StoragectlError,
    UsageError,
    raise_with_state,
)

FORMAT_VERSION = 1
SCHEMA_OBJECT = "schema.json"
NODES_OBJECT = "nodes.jsonl"
RELATIONSHIPS_OBJECT = "relationships.jsonl"
FETCH_SIZE = 1000  # records per PULL while streaming the graph out
WRITE_BATCH = 5000  # rows per UNWIND transaction on restore and per delete transaction
WRITE_CHUNK = 1 << 20
READ_CHUNK = 1 << 20
INDEX_WAIT_SECONDS = 600
RESTORE_LABEL = "__StorageCtlRestore"
RESTORE_KEY = "__storagectl_id"
RESTORE_INDEX = "storagectl_restore_id"

# -- queries (the test fake answers exactly these shapes) --------------------------------------
NODES = "MATCH (n) RETURN elementId(n) AS id, labels(n) AS labels, properties(n) AS props"
RELATIONSHIPS = ("MATCH (a)-[r]->(b) RETURN elementId(r) AS id, type(r) AS type, properties(r) AS props, "
                 "elementId(a) AS start, elementId(b) AS end")
COUNT_NODES = "MATCH (n) RETURN count(n) AS count"
COUNT_RELATIONSHIPS = "MATCH ()-[r]->() RETURN count(r) AS count"
SHOW_CONSTRAINTS = "SHOW CONSTRAINTS YIELD name, type, entityType, labelsOrTypes, properties, createStatement"
SHOW_INDEXES = ("SHOW INDEXES YIELD name, type, entityType, labelsOrTypes, properties, owningConstraint, "
                "createStatement")
LABELS = "CALL db.labels() YIELD label RETURN label"
TYPES = "CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType"
CREATE_RESTORE_INDEX = (f"CREATE INDEX {RESTORE_INDEX} IF NOT EXISTS FOR (n:{RESTORE_LABEL}) ON (n.{RESTORE_KEY})")
DROP_RESTORE_INDEX = f"DROP INDEX {RESTORE_INDEX} IF EXISTS"
AWAIT_INDEXES = "CALL db.awaitIndexes($seconds)"
UNMARK_RESTORED = (f"MATCH (n:{RESTORE_LABEL}) WITH n LIMIT $limit REMOVE n:{RESTORE_LABEL} "
                   f"REMOVE n.{RESTORE_KEY} RETURN count(n) AS done")
DELETE_RESTORED = f"MATCH (n:{RESTORE_LABEL}) WITH n LIMIT $limit DETACH DELETE n RETURN count(n) AS done"
DELETE_RELATIONSHIPS = "MATCH ()-[r]->() WITH r LIMIT $limit DELETE r RETURN count(r) AS done"
DELETE_NODES = "MATCH (n) WITH n LIMIT $limit DETACH DELETE n RETURN count(n) AS done"


# A --label selection: nodes carrying any of $labels, and the relationships between two such nodes.
IN_LABELS = "any(l IN labels(n) WHERE l IN $labels)"
BOTH_IN_LABELS = "any(l IN labels(a) WHERE l IN $labels) AND any(l IN labels(b) WHERE l IN $labels)"
SELECTED_NODES = f"MATCH (n) WHERE {IN_LABELS} RETURN elementId(n) AS id, labels(n) AS labels, properties(n) AS props"
SELECTED_RELATIONSHIPS = (f"MATCH (a)-[r]->(b) WHERE {BOTH_IN_LABELS} RETURN elementId(r) AS id, type(r) AS type, "
                          "properties(r) AS props, elementId(a) AS start, elementId(b) AS end")
COUNT_SELECTED_NODES = f"MATCH (n) WHERE {IN_LABELS} RETURN count(n) AS count"
COUNT_SELECTED_RELATIONSHIPS = f"MATCH (a)-[r]->(b) WHERE {BOTH_IN_LABELS} RETURN count(r) AS count"
SELECTED_LABEL_COUNTS = f"MATCH (n) WHERE {IN_LABELS} UNWIND labels(n) AS label RETURN label, count(*) AS count"
SELECTED_TYPE_COUNTS = f"MATCH (a)-[r]->(b) WHERE {BOTH_IN_LABELS} RETURN type(r) AS type, count(*) AS count"
DELETE_SELECTED_NODES = f"MATCH (n) WHERE {IN_LABELS} WITH n LIMIT $limit DETACH DELETE n RETURN count(n) AS done"


def quote_name(name: str) -> str:
    """A label, type or schema name as a Cypher identifier (names cannot be query parameters)."""
    return "`" + name.replace("`", "``") + "`"


def create_nodes_query(labels: Iterable[str]) -> str:
    names = "".join(":" + quote_name(label) for label in labels)
    return (f"UNWIND $rows AS row CREATE (n{names}:{RESTORE_LABEL} {{{RESTORE_KEY}: row.id}}) "
            "SET n += row.props")


def create_relationships_query(rel_type: str) -> str:
    return (f"UNWIND $rows AS row MATCH (a:{RESTORE_LABEL} {{{RESTORE_KEY}: row.start}}) "
            f"MATCH (b:{RESTORE_LABEL} {{{RESTORE_KEY}: row.end}}) "
            f"CREATE (a)-[r:{quote_name(rel_type)}]->(b) SET r += row.props")


def count_label_query(label: str) -> str:
    return f"MATCH (n:{quote_name(label)}) RETURN count(n) AS count"


def count_type_query(rel_type: str) -> str:
    return f"MATCH ()-[r:{quote_name(rel_type)}]->() RETURN count(r) AS count"


_SCHEMA_CREATE = re.compile(r"^(\s*CREATE\s+(?:[A-Z]+\s+)?(?:CONSTRAINT|INDEX)\s+`(?:[^`]|``)*`)(?!\s+IF\s+NOT)",
                            re.IGNORECASE)


def idempotent_statement(statement: str) -> str:
    """``CREATE ... INDEX `name` ...`` -> ``CREATE ... INDEX `name` IF NOT EXISTS ...``."""
    return _SCHEMA_CREATE.sub(r"\1 IF NOT EXISTS", statement, count=1)


# -- property values <-> JSON -------------------------------------------------------------------
def encode_value(value: Any) -> Any:
    """A driver property value as JSON; what JSON cannot carry exactly becomes a ``$t``-tagged object."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$t": "float", "v": repr(value)}
    if isinstance(value, bytes | bytearray):
        return {"$t": "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Point):  # a tuple subclass, as Duration is: both are tested before lists
        return {"$t": "point", "srid": value.srid, "coords": list(value)}
    if isinstance(value, list | tuple) and not isinstance(value, Duration):
        return [encode_value(item) for item in value]
    return _encode_temporal(value)


def _encode_temporal(value: Any) -> dict[str, Any]:
    native = _from_native(value)
    if isinstance(native, DateTime):
        return _encode_datetime(native)
    if isinstance(native, Date):
        return {"$t": "date", "v": native.iso_format()}
    if isinstance(native, Time):
        if native.tzinfo is None:
            return {"$t": "localtime", "v": native.iso_format()}
        offset = native.utcoffset()
        return {"$t": "time", "v": native.replace(tzinfo=None).iso_format(), "offset": _seconds(offset)}
    if isinstance(native, Duration):
        return {"$t": "duration", "months": native.months, "days": native.days, "seconds": native.seconds,
                "nanoseconds": native.nanoseconds}
    raise OperationFailed(f"cannot back up a property value of type {type(value).__name__}")


def _from_native(value: Any) -> Any:
    """Python's datetime types as the driver's (which keep nanoseconds)."""
    if isinstance(value, datetime):
        return DateTime.from_native(value)
    if isinstance(value, date):
        return Date.from_native(value)
    if isinstance(value, time):
        return Time.from_native(value)
    if isinstance(value, timedelta):
        return Duration(days=value.days, seconds=value.seconds, microseconds=value.microseconds)
    return value


def _encode_datetime(value: DateTime) -> dict[str, Any]:
    """Like Bolt itself: the UTC instant plus the zone id or the offset it was written in.

    The driver hydrates offset +00:00 and zone id "UTC" into the same ``pytz.utc``; that is taken as the
    far more common offset (what Python's ``timezone.utc`` and Cypher's ``...Z`` write).
    """
    if value.tzinfo is None:
        return {"$t": "localdatetime", "v": value.iso_format()}
    zone = getattr(value.tzinfo, "zone", None) or getattr(value.tzinfo, "key", None)
    utc = value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(zone, str) and zone != "UTC":
        return {"$t": "datetime", "utc": utc.iso_format(), "zone": zone}
    return {"$t": "datetime", "utc": utc.iso_format(), "offset": _seconds(value.utcoffset())}


def _seconds(offset: Any) -> int:
    return int(offset.total_seconds()) if offset is not None else 0


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value`: a value the driver sends as the original property type."""
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    decoder = _DECODERS.get(value.get("$t"))
    if decoder is None:
        raise IntegrityError(f"unknown property value encoding {value!r}")
    return decoder(value)


def _time_offset(seconds: int) -> Any:
    """pytz, as the driver hydrates it: its Time dehydration needs a tzinfo that accepts a Time."""
    import pytz  # a dependency of the neo4j driver

    return pytz.FixedOffset(seconds // 60)


def _decode_datetime(value: dict[str, Any]) -> DateTime:
    """A zone id through pytz; an offset as a plain ``timezone``, which the driver sends as an offset
    (pytz's +00:00 is ``pytz.utc``, which it would send as the zone id "UTC")."""
    import pytz

    utc = DateTime.from_iso_format(value["utc"]).replace(tzinfo=pytz.UTC)
    zone = pytz.timezone(value["zone"]) if "zone" in value else timezone(timedelta(seconds=value["offset"]))
    return utc.as_timezone(zone)


def _decode_point(value: dict[str, Any]) -> Point:
    point_class = WGS84Point if value["srid"] in (4326, 4979) else CartesianPoint
    return point_class(value["coords"])


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": lambda v: float(v["v"]),
    "bytes": lambda v: base64.b64decode(v["v"]),
    "point": _decode_point,
    "date": lambda v: Date.from_iso_format(v["v"]),
    "localtime": lambda v: Time.from_iso_format(v["v"]),
    "time": lambda v: Time.from_iso_format(v["v"]).replace(tzinfo=_time_offset(v["offset"])),
    "localdatetime": lambda v: DateTime.from_iso_format(v["v"]),
    "datetime": _decode_datetime,
    "duration": lambda v: Duration(months=v["months"], days=v["days"], seconds=v["seconds"],
                                   nanoseconds=v["nanoseconds"]),
}


def encode_properties(props: dict[str, Any]) -> dict[str, Any]:
    return {key: encode_value(value) for key, value in props.items()}


def decode_properties(props: dict[str, Any]) -> dict[str, Any]:
    return {key: decode_value(value) for key, value in props.items()}


def json_line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode() + b"\n"


# -- errors --------------------------------------------------------------------------------------
@contextlib.contextmanager
def translated_errors(backend: Any, what: str) -> Iterator[None]:
    """Driver exceptions as storagectl errors naming ``what`` was being done; secrets redacted."""
    try:
        yield
    except StoragectlError:
        raise
    except neo4j_errors.AuthError as exc:
        raise backend.translate_error(exc) from exc
    except (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired) as exc:
        raise BackendUnavailable(f"{backend.label}: {what} failed, connection lost: {backend.redact(str(exc))}",
                                 hint=f"Try: storagectl diag --backend {backend.name}") from exc
    except neo4j_errors.Neo4jError as exc:
        detail = backend.redact(f"{exc.code}: {exc.message}")
        raise OperationFailed(f"{backend.label}: {what} failed: {detail}") from exc
    except neo4j_errors.DriverError as exc:
        raise OperationFailed(f"{backend.label}: {what} failed: {backend.redact(str(exc))}") from exc


# -- reading what the graph holds ----------------------------------------------------------------
def _single(session: Any, query: str, **params: Any) -> Any:
    return session.execute_read(lambda tx: tx.run(query, **params).single(strict=True)[0])


def _values(session: Any, query: str) -> list[Any]:
    return session.execute_read(lambda tx: [record[0] for record in tx.run(query)])


def read_schema(session: Any) -> dict[str, list[dict[str, Any]]]:
    """User constraints and indexes; LOOKUP indexes (present by default) and constraint-owned ones are left out."""
    constraints = session.execute_read(lambda tx: [record.data() for record in tx.run(SHOW_CONSTRAINTS)])
    indexes = session.execute_read(lambda tx: [record.data() for record in tx.run(SHOW_INDEXES)])
    own = [i for i in indexes if i["type"] != "LOOKUP" and not i.get("owningConstraint") and i["name"] != RESTORE_INDEX]
    return {"constraints": constraints, "indexes": own}


def graph_summary(backend: Any, driver: Any) -> ContentSummary:
    """Node and relationship counts, per label and per type (from the count store), and schema sizes."""
    with translated_errors(backend, "counting the graph"), backend.session(driver) as session:
        counts = {"nodes": _single(session, COUNT_NODES), "relationships": _single(session, COUNT_RELATIONSHIPS)}
        for label in _values(session, LABELS):
            counts[f"label:{label}"] = _single(session, count_label_query(label))
        for rel_type in _values(session, TYPES):
            counts[f"type:{rel_type}"] = _single(session, count_type_query(rel_type))
        schema = read_schema(session)
    counts = {unit: n for unit, n in counts.items() if n or unit in ("nodes", "relationships")}
    return ContentSummary(counts={**counts, **_schema_counts(schema)})


def selection_summary(backend: Any, driver: Any, labels: list[str]) -> ContentSummary:
    """Counts of a --label selection: its nodes and the relationships between them, per label and type."""
    with translated_errors(backend, "counting the selected graph"), backend.session(driver) as session:
        counts = {"nodes": _single(session, COUNT_SELECTED_NODES, labels=labels),
                  "relationships": _single(session, COUNT_SELECTED_RELATIONSHIPS, labels=labels)}
        for prefix, query in (("label", SELECTED_LABEL_COUNTS), ("type", SELECTED_TYPE_COUNTS)):
            rows = session.execute_read(lambda tx, q=query: [tuple(r.values()) for r in tx.run(q, labels=labels)])
            counts.update({f"{prefix}:{name}": n for name, n in rows if n})
    return ContentSummary(counts=counts)


def _schema_of_labels(schema: dict[str, list[dict[str, Any]]], labels: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The constraints and indexes on nodes of ``labels`` (relationship ones belong to no label)."""
    def on_labels(item: dict[str, Any]) -> bool:
        return item.get("entityType") == "NODE" and bool(set(item.get("labelsOrTypes") or ()) & set(labels))
    return {kind: [item for item in items if on_labels(item)] for kind, items in schema.items()}


def _schema_counts(schema: dict[str, list[Any]]) -> dict[str, int]:
    return {"constraints": len(schema["constraints"]), "indexes": len(schema["indexes"])}


def graph_is_empty(backend: Any, driver: Any) -> bool:
    with translated_errors(backend, "counting nodes"), backend.session(driver) as session:
        return _single(session, COUNT_NODES) == 0


# -- backup ---------------------------------------------------------------------------------------
def backup_graph(backend: Any, archive: Any, labels: list[str] | None = None) -> None:
    """Schema, then every node and relationship streamed inside one read transaction; with ``labels``
    only the nodes with one of them, the relationships between such nodes and their schema."""
    with backend.connect() as driver:
        with translated_errors(backend, "reading the schema"), backend.session(driver) as session:
            schema = read_schema(session)
        if labels:
            schema = _schema_of_labels(schema, labels)
        with archive.create(SCHEMA_OBJECT) as sink:
            sink.write(json.dumps(schema, indent=1, default=str).encode())
            sink.counts = _schema_counts(schema)
        tally = _backup_data(backend, driver, archive, labels)
    archive.set_metadata("neo4j_format", FORMAT_VERSION)
    record_summary(archive, ContentSummary(counts={**tally, **_schema_counts(schema)}))


def _backup_data(backend: Any, driver: Any, archive: Any, labels: list[str] | None = None) -> dict[str, int]:
    tally: Counter[str] = Counter(nodes=0, relationships=0)
    session = driver.session(database=backend.settings.database, default_access_mode=neo4j.READ_ACCESS,
                             fetch_size=FETCH_SIZE)
    nodes, relationships, count_nodes, count_relationships = (
        (SELECTED_NODES, SELECTED_RELATIONSHIPS, COUNT_SELECTED_NODES, COUNT_SELECTED_RELATIONSHIPS) if labels
        else (NODES, RELATIONSHIPS, COUNT_NODES, COUNT_RELATIONSHIPS))
    params = {"labels": labels} if labels else {}
    with translated_errors(backend, "backup of the graph"), session, session.begin_transaction() as tx:
        before = (_tx_single(tx, count_nodes, **params), _tx_single(tx, count_relationships, **params))
        _stream_object(archive, NODES_OBJECT, "nodes", tx.run(nodes, **params), lambda r: _node_line(r, tally))
        _stream_object(archive, RELATIONSHIPS_OBJECT, "relationships", tx.run(relationships, **params),
                       lambda r: _relationship_line(r, tally))
        after = (_tx_single(tx, count_nodes, **params), _tx_single(tx, count_relationships, **params))
    _require_unchanged(backend, before, after, (tally["nodes"], tally["relationships"]))
    return dict(tally)


def _tx_single(tx: Any, query: str, **params: Any) -> Any:
    return tx.run(query, **params).single(strict=True)[0]


def _require_unchanged(backend: Any, before: tuple[int, int], after: tuple[int, int],
                       streamed: tuple[int, int]) -> None:
    """Neo4j reads are read-committed, not a snapshot: refuse an archive the graph changed under."""
    if before == after == streamed:
        return
    raise OperationFailed(
        f"{backend.label}: the graph changed during the backup (nodes, relationships: {before} before, "
        f"{streamed} archived, {after} after); the archive would not be a consistent copy",
        hint="Try: run the backup again while writes are paused")


def _stream_object(archive: Any, name: str, unit: str, records: Iterable[Any],
                   to_line: Callable[[Any], bytes]) -> None:
    """Records -> one archive object, written in ~1 MiB chunks as the driver pulls them."""
    with archive.create(name) as sink:
        buffer, count = bytearray(), 0
        for record in records:
            buffer += to_line(record)
            count += 1
            if len(buffer) >= WRITE_CHUNK:
                sink.write(bytes(buffer))
                buffer.clear()
        if buffer:
            sink.write(bytes(buffer))
        sink.counts = {unit: count}


def _node_line(record: Any, tally: Counter[str]) -> bytes:
    tally["nodes"] += 1
    tally.update(f"label:{label}" for label in record["labels"])
    return json_line({"id": record["id"], "labels": record["labels"], "props": encode_properties(record["props"])})


def _relationship_line(record: Any, tally: Counter[str]) -> bytes:
    tally["relationships"] += 1
    tally[f"type:{record['type']}"] += 1
    return json_line({"id": record["id"], "type": record["type"], "props": encode_properties(record["props"]),
                      "start": record["start"], "end": record["end"]})


# -- restore ---------------------------------------------------------------------------------------
def json_records(stream: BinaryIO, name: str) -> Iterator[dict[str, Any]]:
    """One JSON object per line, read in chunks so memory does not grow with the object."""
    pending, number = b"", 0
    while chunk := stream.read(READ_CHUNK):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            number += 1
            yield _parsed(line, name, number)
    if pending.strip():
        raise IntegrityError(f"{name}: truncated last line {number + 1}")


def _parsed(line: bytes, name: str, number: int) -> dict[str, Any]:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise IntegrityError(f"{name}: line {number} is not valid JSON: {exc}") from exc


def grouped_batches(rows: Iterable[tuple[Any, dict[str, Any]]], size: int,
                    max_rows: int | None = None) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """(key, row) pairs -> (key, rows) batches of one key, each at most ``size`` rows.

    A group is written when it is full; when ``max_rows`` (default 4 x size) rows of many keys are waiting,
    every group is written, so memory stays bounded however labels and types interleave.
    """
    limit = max_rows or 4 * size
    pending: dict[Any, list[dict[str, Any]]] = {}
    waiting = 0
    for key, row in rows:
        group = pending.setdefault(key, [])
        group.append(row)
        waiting += 1
        if len(group) >= size:
            waiting -= len(group)
            yield key, pending.pop(key)
        elif waiting >= limit:
            yield from pending.items()
            pending, waiting = {}, 0
    yield from pending.items()


class GraphRestore:
    """Loads an archive into an empty graph through one driver; see docs/NEO4J.md for the steps."""

    def __init__(self, backend: Any, driver: Any, archive: Any, labels: list[str] | None = None) -> None:
        self.backend = backend
        self.driver = driver
        self.archive = archive
        self.labels = labels or []  # a selective restore: these labels' nodes, in place
        self.selected: set[str] = set()  # backup ids of the selected nodes restored (their relationships follow)
        self.tally: Counter[str] = Counter(nodes=0, relationships=0)
        self.outcome = RestoreOutcome()
        self.created_schema: list[tuple[str, str]] = []  # (CONSTRAINT|INDEX, name) this restore created

    def run(self, replace: bool) -> RestoreOutcome:
        if self.labels:
            return self.run_selection(replace)
        if not graph_is_empty(self.backend, self.driver):
            if not replace:
                raise UsageError(f"{self.backend.label} is not empty; restoring would mix two graphs",
                                 hint="Try: --yes to replace its contents")
            self.clear_target()
        try:
            self._load_graph()
        except BaseException as exc:
            left = self._undo()
            raise_with_state(exc, "the target graph was left empty" if not left else
                             f"the restore could not remove {', '.join(left)}: remove by hand")
        self._repeat("removing the temporary restore label", UNMARK_RESTORED)
        self._write("dropping the temporary restore index", DROP_RESTORE_INDEX)
        return self.outcome

    def _load_graph(self) -> None:
        """Schema, the temporary restore index, then nodes and relationships from the archive."""
        self.create_schema()
        self._write("creating the temporary restore index", CREATE_RESTORE_INDEX)
        self._write("waiting for indexes to come online", AWAIT_INDEXES, seconds=INDEX_WAIT_SECONDS)
        self.load_nodes()
        self.load_relationships()

    def run_selection(self, replace: bool) -> RestoreOutcome:
        """Only the nodes of ``labels`` and the relationships between them, in place: with ``replace`` the
        target's nodes of those labels go first (with every relationship they have); nothing else is touched."""
        held = selection_summary(self.backend, self.driver, self.labels).counts["nodes"]
        if held and not replace:
            raise UsageError(f"{self.backend.label} already holds {held} node(s) with label {', '.join(self.labels)}",
                             hint="Try: --yes to replace them (nothing else is touched)")
        if held:
            self._repeat("deleting the target's nodes of the selected labels", DELETE_SELECTED_NODES,
                         labels=self.labels)
        try:
            self._load_graph()
        except BaseException as exc:
            left = self._undo()
            raise_with_state(exc, "the nodes this restore created were removed" + (
                f" (the target's {held} replaced node(s) are gone)" if held else "") if not left else
                f"the restore could not remove {', '.join(left)}: remove by hand")
        self._repeat("removing the temporary restore label", UNMARK_RESTORED)
        self._write("dropping the temporary restore index", DROP_RESTORE_INDEX)
        self.outcome.expected = ContentSummary(counts=dict(self.tally))
        self.outcome.notes.append(f"restored {self.tally['nodes']} node(s) and {self.tally['relationships']} "
                                  f"relationship(s) of label {', '.join(self.labels)} in place"
                                  + (f", replacing {held} node(s)" if held else ""))
        return self.outcome

    def _node_selected(self, record: dict[str, Any]) -> bool:
        if self.labels and not set(record["labels"]) & set(self.labels):
            return False
        if self.labels:
            self.selected.add(record["id"])
            self.tally["nodes"] += 1
            self.tally.update(f"label:{label}" for label in record["labels"])
        return True

    def _relationship_selected(self, record: dict[str, Any]) -> bool:
        if self.labels and not (record["start"] in self.selected and record["end"] in self.selected):
            return False
        if self.labels:
            self.tally["relationships"] += 1
            self.tally[f"type:{record['type']}"] += 1
        return True

    def _write(self, what: str, query: str, **params: Any) -> Any:
        with translated_errors(self.backend, what), self.backend.session(self.driver) as session:
            return session.execute_write(lambda tx: tx.run(query, **params).consume().counters)

    def _repeat(self, what: str, query: str, **params: Any) -> None:
        """A batched delete/update (``... LIMIT $limit ... RETURN count(..) AS done``) until it does nothing."""
        with translated_errors(self.backend, what), self.backend.session(self.driver) as session:
            while session.execute_write(lambda tx: tx.run(query, limit=WRITE_BATCH, **params).single(strict=True)[0]):
                pass

    def clear_target(self) -> None:
        """--yes: drop the target's schema and delete its graph, relationships first, in batches."""
        with translated_errors(self.backend, "reading the target's schema"), self.backend.session(self.driver) as s:
            schema = read_schema(s)
        for constraint in schema["constraints"]:
            self._write(f"dropping constraint {constraint['name']!r}",
                        f"DROP CONSTRAINT {quote_name(constraint['name'])} IF EXISTS")
        for index in schema["indexes"]:
            self._write(f"dropping index {index['name']!r}", f"DROP INDEX {quote_name(index['name'])} IF EXISTS")
        self._repeat("deleting the target's relationships", DELETE_RELATIONSHIPS)
        self._repeat("deleting the target's nodes", DELETE_NODES)

    def create_schema(self) -> None:
        with self.archive.open(SCHEMA_OBJECT) as stream:
            schema = json.loads(stream.read())
        if self.labels:
            schema = _schema_of_labels(schema, self.labels)
        with translated_errors(self.backend, "reading the target's schema"), self.backend.session(self.driver) as s:
            existing = {item["name"] for items in read_schema(s).values() for item in items}
        items = [("CONSTRAINT", c) for c in schema["constraints"]] + [("INDEX", i) for i in schema["indexes"]]
        for kind, item in items:
            self._write(f"creating {kind.lower()} {item['name']!r}", idempotent_statement(item["createStatement"]))
            if item["name"] not in existing:
                self.created_schema.append((kind, item["name"]))

    def load_nodes(self) -> None:
        with self.archive.open(NODES_OBJECT) as stream:
            rows = ((tuple(r["labels"]), {"id": r["id"], "props": decode_properties(r["props"])})
                    for r in json_records(stream, NODES_OBJECT) if self._node_selected(r))
            for number, (labels, batch) in enumerate(grouped_batches(rows, WRITE_BATCH), 1):
                what = f"nodes batch {number} (labels {''.join(':' + x for x in labels) or 'none'}, {len(batch)} rows)"
                counters = self._write(f"restoring {what}", create_nodes_query(labels), rows=batch)
                if counters.nodes_created != len(batch):
                    raise IntegrityError(f"{self.backend.label}: {what}: {counters.nodes_created} nodes created")

    def load_relationships(self) -> None:
        with self.archive.open(RELATIONSHIPS_OBJECT) as stream:
            rows = ((r["type"], {"start": r["start"], "end": r["end"], "props": decode_properties(r["props"])})
                    for r in json_records(stream, RELATIONSHIPS_OBJECT) if self._relationship_selected(r))
            for number, (rel_type, batch) in enumerate(grouped_batches(rows, WRITE_BATCH), 1):
                what = f"relationships batch {number} (type {rel_type}, {len(batch)} rows)"
                counters = self._write(f"restoring {what}", create_relationships_query(rel_type), rows=batch)
                if counters.relationships_created != len(batch):
                    # The backup is one read transaction, so every endpoint is in it: a missing one means
                    # the archive is damaged, and the restore must fail rather than drop relationships.
                    raise IntegrityError(
                        f"{self.backend.label}: {what}: only {counters.relationships_created} created; "
                        "an endpoint is not in the backup", hint="Try: storagectl backup verify, or an older backup")

    def _undo(self) -> list[str]:
        """A failed restore deletes the nodes it created (all still carry the restore label) and the
        constraints and indexes it created; returns what could not be undone. Every step is tried:
        the original failure is what the user must see."""
        steps = [("its nodes", lambda: self._repeat("removing a partial restore", DELETE_RESTORED)),
                 ("the temporary restore index",
                  lambda: self._write("dropping the temporary restore index", DROP_RESTORE_INDEX))]
        steps += [(f"{kind.lower()} {name}", lambda kind=kind, name=name: self._write(
                      f"dropping {kind.lower()} {name!r}", f"DROP {kind} {quote_name(name)} IF EXISTS"))
                  for kind, name in reversed(self.created_schema)]
        left = []
        for what, step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001
                left.append(what)
        return left


def restore_graph(backend: Any, archive: Any, replace: bool, labels: list[str] | None = None) -> RestoreOutcome:
    version = archive.metadata.get("neo4j_format")
    if version != FORMAT_VERSION:
        raise IntegrityError(f"the backup's Neo4j format is {version!r}; this storagectl reads {FORMAT_VERSION}",
                             hint="Try: restore with the storagectl version that wrote the backup")
    with backend.connect() as driver:
        return GraphRestore(backend, driver, archive, labels).run(replace)
