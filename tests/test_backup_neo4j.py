"""Neo4j backup and restore through the core API: against the Bolt stub serving a small in-memory graph
(answering exactly the queries of storagectl.backends.neo4j_archive), and against a real Neo4j when
STORAGECTL_TEST_NEO4J_URI is set."""

from __future__ import annotations

import itertools
import json
import os
import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from storagectl.archive.api import RestoreOptions
from storagectl.archive.reader import StoredArchive
from storagectl.backends import backend_from_config
from storagectl.backends import neo4j_archive as engine
from storagectl.backup import find_backup, list_backups, restore, run_backup
from storagectl.config import load_config
from storagectl.errors import AuthenticationFailed, IntegrityError, OperationFailed, UsageError
from tests.boltstub import BoltStubServer, Failure, Records, Structure, normalise_query

AUTH = ("neo4j", "password")
NAME = r"`((?:[^`]|``)*)`"
SCHEMA_FIELDS = ["name", "type", "entityType", "labelsOrTypes", "properties", "createStatement"]
INDEX_FIELDS = ["name", "type", "entityType", "labelsOrTypes", "properties", "owningConstraint", "createStatement"]
CREATE_NODES = re.compile(r"^UNWIND \$rows AS row CREATE \(n((?::`(?:[^`]|``)*`)*):__StorageCtlRestore "
                          r"\{__storagectl_id: row\.id\}\) SET n \+= row\.props$")
CREATE_RELATIONSHIPS = re.compile(r"^UNWIND \$rows AS row "
                                  r"MATCH \(a:__StorageCtlRestore \{__storagectl_id: row\.start\}\) "
                                  r"MATCH \(b:__StorageCtlRestore \{__storagectl_id: row\.end\}\) "
                                  rf"CREATE \(a\)-\[r:{NAME}\]->\(b\) SET r \+= row\.props$")
COUNT_LABEL = re.compile(rf"^MATCH \(n:{NAME}\) RETURN count\(n\) AS count$")
COUNT_TYPE = re.compile(rf"^MATCH \(\)-\[r:{NAME}\]->\(\) RETURN count\(r\) AS count$")
CREATE_SCHEMA = re.compile(rf"^CREATE (?:[A-Z]+ )?(CONSTRAINT|INDEX) {NAME} IF NOT EXISTS (.*)$")
DROP_SCHEMA = re.compile(rf"^DROP (CONSTRAINT|INDEX) {NAME} IF EXISTS$")
LOOKUP_INDEX = {"name": "node_lookup", "type": "LOOKUP", "entityType": "NODE", "labelsOrTypes": None,
                "properties": None, "owningConstraint": None,
                "createStatement": "CREATE LOOKUP INDEX `node_lookup` FOR (n) ON EACH labels(n)"}


def unquote(name: str) -> str:
    return name.replace("``", "`")


class FakeGraph:
    """Nodes, relationships and schema in dicts; answers only the engine's fixed query shapes."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[list[str], dict[str, Any]]] = {}
        self.relationships: dict[str, tuple[str, dict[str, Any], str, str]] = {}
        self.constraints: list[dict[str, Any]] = []
        self.indexes: list[dict[str, Any]] = [dict(LOOKUP_INDEX)]
        self.fail_node_batch: int | None = None
        self.lose_endpoints = False  # relationship writes find no endpoints (as if nodes were missing)
        self.undroppable: set[str] = set()  # schema names whose DROP fails
        self.on_node_scan: Any = None
        self.node_batches = 0
        self._ids = itertools.count(1)
        self._exact = {
            engine.NODES: self._scan_nodes, engine.RELATIONSHIPS: self._scan_relationships,
            engine.COUNT_NODES: lambda p: count(len(self.nodes)),
            engine.COUNT_RELATIONSHIPS: lambda p: count(len(self.relationships)),
            engine.SHOW_CONSTRAINTS: lambda p: Records(SCHEMA_FIELDS, [[c[f] for f in SCHEMA_FIELDS]
                                                                       for c in self.constraints]),
            engine.SHOW_INDEXES: lambda p: Records(INDEX_FIELDS, [[i[f] for f in INDEX_FIELDS] for i in self.indexes]),
            engine.LABELS: lambda p: Records(["label"], [[x] for x in sorted(self.labels())]),
            engine.TYPES: lambda p: Records(["relationshipType"], [[t] for t in sorted(self.types())]),
            engine.CREATE_RESTORE_INDEX: self._create_restore_index,
            engine.DROP_RESTORE_INDEX: lambda p: self._drop("INDEX", engine.RESTORE_INDEX),
            engine.AWAIT_INDEXES: lambda p: Records(),
            engine.UNMARK_RESTORED: self._unmark, engine.DELETE_RESTORED: self._delete_restored,
            engine.DELETE_RELATIONSHIPS: self._delete_relationships, engine.DELETE_NODES: self._delete_nodes,
        }
        self._patterns = [
            (CREATE_NODES, self._create_nodes), (CREATE_RELATIONSHIPS, self._create_relationships),
            (COUNT_LABEL, lambda m, p: count(sum(unquote(m[1]) in ls for ls, _ in self.nodes.values()))),
            (COUNT_TYPE, lambda m, p: count(sum(unquote(m[1]) == r[0] for r in self.relationships.values()))),
            (CREATE_SCHEMA, self._create_schema), (DROP_SCHEMA, lambda m, p: self._drop(m[1], unquote(m[2]))),
        ]

    # -- building a graph ------------------------------------------------------------------
    def add_node(self, *labels: str, **props: Any) -> str:
        node_id = f"4:fake:{next(self._ids)}"
        self.nodes[node_id] = (list(labels), props)
        return node_id

    def add_relationship(self, start: str, rel_type: str, end: str, **props: Any) -> str:
        rel_id = f"5:fake:{next(self._ids)}"
        self.relationships[rel_id] = (rel_type, props, start, end)
        return rel_id

    def labels(self) -> set[str]:
        return {label for labels, _ in self.nodes.values() for label in labels}

    def types(self) -> set[str]:
        return {rel[0] for rel in self.relationships.values()}

    def content(self) -> tuple[list[Any], list[Any]]:
        """Nodes and relationships by value (ids differ between graphs; every node has a unique "key")."""
        key = {node_id: props["key"] for node_id, (_, props) in self.nodes.items()}
        nodes = sorted((props["key"], sorted(labels), canonical(props)) for labels, props in self.nodes.values())
        rels = sorted((t, canonical(props), key[a], key[b]) for t, props, a, b in self.relationships.values())
        return nodes, rels

    def schema(self) -> list[tuple[str, str]]:
        owned = [(i["name"], f"owned by {i['owningConstraint']}") for i in self.indexes if i["owningConstraint"]]
        free = [(s["name"], s["createStatement"]) for s in [*self.constraints, *self.indexes]
                if not s.get("owningConstraint")]
        return sorted(owned + free)

    # -- the responder ---------------------------------------------------------------------
    def __call__(self, query: str, params: dict[str, Any]) -> Records | Failure:
        query = normalise_query(query)
        handler = self._exact.get(query)
        if handler is not None:
            return handler(params)
        for pattern, answer in self._patterns:
            match = pattern.match(query)
            if match:
                return answer(match, params)
        return Failure("Neo.ClientError.Statement.SyntaxError", f"fake graph does not know: {query}")

    def _scan_nodes(self, params: dict[str, Any]) -> Records:
        rows = [[node_id, labels, props] for node_id, (labels, props) in self.nodes.items()]
        if self.on_node_scan:
            self.on_node_scan(self)
        return Records(["id", "labels", "props"], rows)

    def _scan_relationships(self, params: dict[str, Any]) -> Records:
        rows = [[rel_id, t, props, a, b] for rel_id, (t, props, a, b) in self.relationships.items()]
        return Records(["id", "type", "props", "start", "end"], rows)

    def _create_nodes(self, match: re.Match[str], params: dict[str, Any]) -> Records | Failure:
        self.node_batches += 1
        if self.node_batches == self.fail_node_batch:
            return Failure("Neo.ClientError.Schema.ConstraintValidationFailed", "Node already exists")
        labels = [unquote(name) for name in re.findall(NAME, match[1])] + [engine.RESTORE_LABEL]
        for row in params["rows"]:
            self.add_node(*labels, **{engine.RESTORE_KEY: row["id"], **row["props"]})
        return Records(stats={"nodes-created": len(params["rows"])}, query_type="w")

    def _create_relationships(self, match: re.Match[str], params: dict[str, Any]) -> Records:
        by_old_id = {props[engine.RESTORE_KEY]: node_id for node_id, (labels, props) in self.nodes.items()
                     if engine.RESTORE_LABEL in labels}
        created = 0
        for row in params["rows"]:
            if row["start"] in by_old_id and row["end"] in by_old_id and not self.lose_endpoints:
                self.add_relationship(by_old_id[row["start"]], unquote(match[1]), by_old_id[row["end"]],
                                      **row["props"])
                created += 1
        return Records(stats={"relationships-created": created}, query_type="w")

    def _create_schema(self, match: re.Match[str], params: dict[str, Any]) -> Records:
        kind, name = match[1], unquote(match[2])
        statement = match[0].replace(" IF NOT EXISTS", "")
        if all(s["name"] != name for s in [*self.constraints, *self.indexes]):
            target = self.constraints if kind == "CONSTRAINT" else self.indexes
            target.append({"name": name, "type": "RANGE", "entityType": "NODE", "labelsOrTypes": [],
                           "properties": [], "owningConstraint": None, "createStatement": statement})
            if kind == "CONSTRAINT":
                self.indexes.append({**target[-1], "owningConstraint": name})
        return Records(query_type="s")

    def _create_restore_index(self, params: dict[str, Any]) -> Records:
        self.indexes.append({**LOOKUP_INDEX, "name": engine.RESTORE_INDEX, "type": "RANGE",
                             "createStatement": engine.CREATE_RESTORE_INDEX})
        return Records(query_type="s")

    def _drop(self, kind: str, name: str) -> Records | Failure:
        if name in self.undroppable:
            return Failure("Neo.DatabaseError.Schema.ConstraintDropFailed", f"cannot drop {name} now")
        self.constraints = [c for c in self.constraints if c["name"] != name]
        self.indexes = [i for i in self.indexes if name not in (i["name"], i["owningConstraint"])]
        return Records(query_type="s")

    def _restored(self, limit: int) -> list[str]:
        return [n for n, (labels, _) in self.nodes.items() if engine.RESTORE_LABEL in labels][:limit]

    def _unmark(self, params: dict[str, Any]) -> Records:
        batch = self._restored(params["limit"])
        for node_id in batch:
            labels, props = self.nodes[node_id]
            labels.remove(engine.RESTORE_LABEL)
            del props[engine.RESTORE_KEY]
        return done(len(batch))

    def _delete_restored(self, params: dict[str, Any]) -> Records:
        return self._detach_delete(self._restored(params["limit"]))

    def _delete_nodes(self, params: dict[str, Any]) -> Records:
        return self._detach_delete(list(self.nodes)[: params["limit"]])

    def _detach_delete(self, node_ids: list[str]) -> Records:
        doomed = set(node_ids)
        self.relationships = {r: rel for r, rel in self.relationships.items() if not doomed & {rel[2], rel[3]}}
        for node_id in doomed:
            del self.nodes[node_id]
        return done(len(doomed))

    def _delete_relationships(self, params: dict[str, Any]) -> Records:
        batch = list(self.relationships)[: params["limit"]]
        for rel_id in batch:
            del self.relationships[rel_id]
        return done(len(batch))


def count(n: int) -> Records:
    return Records(["count"], [[n]])


def done(n: int) -> Records:
    return Records(["done"], [[n]], query_type="w")


def canonical(props: dict[str, Any]) -> list[tuple[str, str]]:
    """Properties by type and value: repr tells 1 from 1.0, and a zone from its offset."""
    return sorted((key, repr(value)) for key, value in props.items())


def populate(graph: FakeGraph) -> None:
    berlin = datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    ada = graph.add_node("Person", "Admin", key="ada", name="Ada", avatar=b"\x00\x01\xfe\xff", born=berlin,
                         tags=["math", "poetry"], scores=[1.5, 2.0, -0.25], joined=date(2020, 2, 29),
                         wake=time(6, 30, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
                         local=datetime(1999, 12, 31, 23, 59, 59), utc=datetime(2024, 1, 1, tzinfo=UTC),
                         days=[date(2024, 1, 1), date(2024, 1, 2)], big=2**62, ratio=float("inf"),
                         home=Structure(0x58, (7203, 1.5, -2.0)), trip=timedelta(days=2, seconds=5))
    bob = graph.add_node("Person", key="bob", name="Bob", flag=True, empty=[])
    odd = graph.add_node("Odd `Label` x", key="odd", note="é ✓ \n \"quoted\"")
    bare = graph.add_node(key="no labels")
    graph.add_relationship(ada, "KNOWS", bob, since=date(2001, 1, 1))
    graph.add_relationship(ada, "KNOWS", bob, since=date(2010, 5, 5), weight=0.5)  # parallel
    graph.add_relationship(ada, "LIKES", ada, at=datetime(2024, 5, 1, 8, 0, tzinfo=UTC))  # self-loop
    graph.add_relationship(odd, "WORKS AT", bare)
    graph.add_relationship(bare, "KNOWS", odd, raw=b"\x10\x20")
    graph.constraints.append({"name": "person_key", "type": "UNIQUENESS", "entityType": "NODE",
                              "labelsOrTypes": ["Person"], "properties": ["key"],
                              "createStatement": "CREATE CONSTRAINT `person_key` FOR (n:`Person`) "
                                                 "REQUIRE (n.`key`) IS UNIQUE"})
    graph.indexes += [
        {**LOOKUP_INDEX, "name": "person_key", "type": "RANGE", "owningConstraint": "person_key",
         "createStatement": "CREATE RANGE INDEX `person_key` FOR (n:`Person`) ON (n.`key`)"},
        {**LOOKUP_INDEX, "name": "person_name", "type": "RANGE", "labelsOrTypes": ["Person"],
         "properties": ["name"], "createStatement": "CREATE RANGE INDEX `person_name` FOR (n:`Person`) ON (n.`name`)"},
    ]


@pytest.fixture
def graphs():
    source, target = FakeGraph(), FakeGraph()
    with BoltStubServer([source], auth=AUTH) as a, BoltStubServer([target], auth=AUTH) as b:
        yield source, target, a, b


def make_config(write_config, tmp_path, a: BoltStubServer, b: BoltStubServer, password: str = "password"):
    return load_config(write_config(f"""
        version: 1
        backends:
          a: {{kind: neo4j, uri: "{a.uri}", user: neo4j, password: "{password}", retry: {{attempts: 1}}}}
          b: {{kind: neo4j, uri: "{b.uri}", user: neo4j, password: "{password}", retry: {{attempts: 1}}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """))


@pytest.fixture
def config(graphs, write_config, tmp_path):
    _, _, a, b = graphs
    return make_config(write_config, tmp_path, a, b)


def test_round_trip_recreates_the_same_graph_and_schema(graphs, config):
    source, target, _, _ = graphs
    populate(source)
    [result] = run_backup(config, backend="a", destination="local")
    counts = {entry.name: entry.counts for entry in result.manifest.objects}
    assert counts == {"schema.json": {"constraints": 1, "indexes": 1}, "nodes.jsonl": {"nodes": 4},
                      "relationships.jsonl": {"relationships": 5}}

    outcome = restore(config, result.manifest.id, target="b", validate=True)

    assert outcome.validation.ok, outcome.validation.to_dict()
    units = {check.unit: check.actual_count for check in outcome.validation.checks}
    assert units["label:Odd `Label` x"] == 1 and units["type:KNOWS"] == 3 and units["label:Person"] == 2
    assert target.content() == source.content()
    assert target.schema() == source.schema()  # the temporary restore index is gone too
    assert engine.RESTORE_LABEL not in target.labels()


def test_nodes_and_relationships_stream_in_one_read_transaction_with_fetch_size(graphs, config, monkeypatch):
    source, _, a, _ = graphs
    monkeypatch.setattr(engine, "FETCH_SIZE", 40)
    nodes = [source.add_node("N", key=i) for i in range(130)]
    for i in range(100):
        source.add_relationship(nodes[i], "NEXT", nodes[i + 1])
    run_backup(config, backend="a", destination="local")

    transaction = read_transaction(a)
    assert transaction[0].fields[0].get("mode") == "r"
    queries = [m.fields[0] for m in transaction if m.name == "RUN"]
    assert queries == [engine.COUNT_NODES, engine.COUNT_RELATIONSHIPS, engine.NODES, engine.RELATIONSHIPS,
                       engine.COUNT_NODES, engine.COUNT_RELATIONSHIPS]
    pulls = [m.fields[0]["n"] for m in transaction if m.name == "PULL"]
    assert pulls == [40] * (4 + 4 + 3)  # 4 counts, 130 nodes, 100 relationships; never "all at once" (n=-1)


def read_transaction(server: BoltStubServer) -> list[Any]:
    """The messages from the BEGIN of the transaction that read the nodes to its end."""
    messages = server.messages
    run = next(i for i, m in enumerate(messages) if m.name == "RUN" and m.fields[0] == engine.NODES)
    connection = messages[run].connection_id
    own = [(i, m) for i, m in enumerate(messages) if m.connection_id == connection]
    begin = max(i for i, m in own if m.name == "BEGIN" and i < run)
    end = min(i for i, m in own if m.name in ("COMMIT", "ROLLBACK", "RESET", "GOODBYE") and i > run)
    return [m for i, m in own if begin <= i < end]


def test_graph_changing_during_the_backup_fails_it_and_leaves_no_backup(graphs, config):
    source, _, _, _ = graphs
    populate(source)
    source.on_node_scan = lambda graph: graph.add_node("Late", key="late")
    with pytest.raises(OperationFailed, match="changed during the backup"):
        run_backup(config, backend="a", destination="local")
    assert list_backups(config) == []


def test_non_empty_target_is_refused_then_replaced_with_yes(graphs, config):
    source, target, _, _ = graphs
    populate(source)
    [result] = run_backup(config, backend="a", destination="local")
    old = target.add_node("Old", key="old")
    target.add_relationship(old, "SELF", old)
    target.indexes.append({**LOOKUP_INDEX, "name": "old_index", "type": "RANGE",
                           "createStatement": "CREATE RANGE INDEX `old_index` FOR (n:`Old`) ON (n.`key`)"})
    with pytest.raises(UsageError, match="not empty"):
        restore(config, result.manifest.id, target="b")
    with pytest.raises(UsageError, match="not empty"):  # the engine refuses on its own too
        backend_from_config(config, "b").restore(open_backup(config, result.manifest.id), RestoreOptions())
    assert list(target.nodes) == [old]

    outcome = restore(config, result.manifest.id, target="b", replace=True, validate=True)
    assert outcome.validation.ok, outcome.validation.to_dict()
    assert target.content() == source.content() and target.schema() == source.schema()


def open_backup(config, backup_id: str) -> StoredArchive:
    found = find_backup(config, backup_id)
    return StoredArchive(found.destination, found.manifest)


def test_cypher_failure_mid_restore_names_the_batch_and_removes_what_it_created(graphs, config, monkeypatch):
    source, target, _, _ = graphs
    monkeypatch.setattr(engine, "WRITE_BATCH", 3)
    for i in range(10):
        source.add_node("Item", key=i)
    [result] = run_backup(config, backend="a", destination="local")
    target.fail_node_batch = 2
    with pytest.raises(OperationFailed, match=r"restoring nodes batch 2 \(labels :Item, 3 rows\) failed: "
                                              r"Neo.ClientError.Schema.ConstraintValidationFailed"):
        restore(config, result.manifest.id, target="b")
    assert target.nodes == {} and target.node_batches == 2
    assert all(index["name"] != engine.RESTORE_INDEX for index in target.indexes)


def test_a_failed_restore_also_drops_the_constraints_and_indexes_it_created(graphs, config):
    source, target, _, _ = graphs
    populate(source)
    [result] = run_backup(config, backend="a", destination="local")
    target.fail_node_batch = 1
    with pytest.raises(OperationFailed, match="restoring nodes batch 1"):
        restore(config, result.manifest.id, target="b")
    assert target.nodes == {} and target.constraints == [] and target.indexes == [LOOKUP_INDEX]


def test_undo_tries_every_step_and_names_what_it_could_not_remove(graphs, config):
    source, target, _, _ = graphs
    populate(source)
    [result] = run_backup(config, backend="a", destination="local")
    target.fail_node_batch, target.undroppable = 1, {"person_key"}
    with pytest.raises(OperationFailed, match="the restore could not remove constraint person_key: remove by hand"):
        restore(config, result.manifest.id, target="b")
    assert target.nodes == {} and [c["name"] for c in target.constraints] == ["person_key"]
    assert all(index["name"] != "person_name" for index in target.indexes)  # the later steps still ran


def test_a_relationship_without_its_endpoints_fails_the_restore_and_leaves_the_target_empty(graphs, config):
    source, target, _, _ = graphs
    populate(source)
    [result] = run_backup(config, backend="a", destination="local")
    target.lose_endpoints = True
    with pytest.raises(IntegrityError, match="only 0 created; an endpoint is not in the backup"):
        restore(config, result.manifest.id, target="b")
    assert target.nodes == {} and target.relationships == {} and target.constraints == []


def test_wrong_password_is_authentication_failed_without_the_password(graphs, write_config, tmp_path):
    _, _, a, b = graphs
    config = make_config(write_config, tmp_path, a, b, password="not-the-password")
    with pytest.raises(AuthenticationFailed) as caught:
        run_backup(config, backend="a", destination="local")
    assert "not-the-password" not in str(caught.value) + str(caught.value.hint)
    assert list_backups(config) == []


# -- pure parts ---------------------------------------------------------------------------------
def test_driver_values_keep_nanoseconds_zones_and_types_through_json():
    import pytz
    from neo4j.spatial import CartesianPoint, WGS84Point
    from neo4j.time import Date, DateTime, Duration, Time

    zoned = DateTime(2024, 10, 27, 1, 30, 0, 123456789).replace(tzinfo=pytz.UTC).as_timezone(
        pytz.timezone("Europe/Berlin"))
    values = [zoned, DateTime(1, 1, 1, 0, 0, 0, 1), Date(2024, 2, 29), Time(23, 59, 59, 999999999),
              Time(1, 2, 3, 4, tzinfo=pytz.FixedOffset(-90)), Duration(months=14, days=-3, seconds=5, nanoseconds=7),
              CartesianPoint((1.5, 2.0, 3.0)), WGS84Point((13.4, 52.5)), b"\x00\xff", bytearray(b"ab"),
              [1, 2.0, "x", True, None], float("-inf"), [Date(2020, 1, 1), Duration(days=1)]]
    for value in values:
        restored = engine.decode_value(json.loads(json.dumps(engine.encode_value(value))))
        assert repr(restored) == repr(bytes(value) if isinstance(value, bytearray) else value)
    assert engine.encode_value(zoned)["zone"] == "Europe/Berlin"


def test_grouped_batches_keep_groups_bounded():
    rows = [(("A",), {"i": i}) for i in range(5)] + [((), {"i": 9}), (("A",), {"i": 5})]
    assert list(engine.grouped_batches(rows, size=3)) == [
        (("A",), [{"i": 0}, {"i": 1}, {"i": 2}]), (("A",), [{"i": 3}, {"i": 4}, {"i": 5}]), ((), [{"i": 9}])]
    interleaved = [((str(i % 2),), {"i": i}) for i in range(12)]
    batches = list(engine.grouped_batches(interleaved, size=100, max_rows=6))  # never more than 6 rows waiting
    assert [(key, len(rows)) for key, rows in batches] == [(("0",), 3), (("1",), 3)] * 2
    assert sorted(row["i"] for _, rows in batches for row in rows) == list(range(12))


def test_schema_statements_become_idempotent_and_names_are_quoted():
    assert engine.idempotent_statement("CREATE RANGE INDEX `a``b` FOR (n:`L`) ON (n.`p`)") == (
        "CREATE RANGE INDEX `a``b` IF NOT EXISTS FOR (n:`L`) ON (n.`p`)")
    assert engine.idempotent_statement("CREATE CONSTRAINT `c` IF NOT EXISTS FOR (n:`L`) REQUIRE n.p IS UNIQUE") == (
        "CREATE CONSTRAINT `c` IF NOT EXISTS FOR (n:`L`) REQUIRE n.p IS UNIQUE")
    assert engine.create_nodes_query(["A`B", "C"]).startswith("UNWIND $rows AS row CREATE (n:`A``B`:`C`:")


# -- a real Neo4j -------------------------------------------------------------------------------
REAL_URI = os.environ.get("STORAGECTL_TEST_NEO4J_URI")
REAL_USER = os.environ.get("STORAGECTL_TEST_NEO4J_USER", "neo4j")
REAL_PASSWORD = os.environ.get("STORAGECTL_TEST_NEO4J_PASSWORD", "")
REAL_GRAPH = """
CREATE (ada:Person:Admin {key: 'ada', avatar: $avatar, born: datetime('2024-03-31T01:30:15.123456789[Europe/Berlin]'),
        tags: ['math', 'poetry'], joined: date('2020-02-29'), wake: time('06:30:00-03:30'),
        local: localdatetime('1999-12-31T23:59:59'), trip: duration('P1Y2M3DT4.000000005S'),
        home: point({x: 1.5, y: -2.0}), place: point({longitude: 13.4, latitude: 52.5, height: 30.0}),
        days: [date('2024-01-01'), date('2024-01-02')], big: 4611686018427387904})
CREATE (bob:Person {key: 'bob', flag: true})
CREATE (odd:`Odd ``Label`` x` {key: 'odd'})
CREATE (bare {key: 'bare'})
CREATE (ada)-[:KNOWS {since: date('2001-01-01')}]->(bob), (ada)-[:KNOWS {weight: 0.5}]->(bob),
       (ada)-[:LIKES]->(ada), (odd)-[:`WORKS AT`]->(bare)
"""


def real_snapshot(session) -> tuple[list[Any], list[Any]]:
    nodes = sorted((r["key"], sorted(r["labels"]), json.dumps(engine.encode_properties(r["props"]), sort_keys=True))
                   for r in session.run("MATCH (n) RETURN n.key AS key, labels(n) AS labels, properties(n) AS props"))
    rels = sorted((r["type"], json.dumps(engine.encode_properties(r["props"]), sort_keys=True), r["a"], r["b"])
                  for r in session.run("MATCH (a)-[r]->(b) RETURN type(r) AS type, properties(r) AS props, "
                                       "a.key AS a, b.key AS b"))
    return nodes, rels


def wipe(session) -> None:
    session.run("MATCH (n) DETACH DELETE n").consume()
    for record in session.run("SHOW CONSTRAINTS YIELD name").data():
        session.run(f"DROP CONSTRAINT {engine.quote_name(record['name'])}").consume()
    for record in session.run("SHOW INDEXES YIELD name, type, owningConstraint").data():
        if record["type"] != "LOOKUP" and not record["owningConstraint"]:
            session.run(f"DROP INDEX {engine.quote_name(record['name'])}").consume()


@pytest.mark.neo4j_real
@pytest.mark.skipif(not REAL_URI, reason="STORAGECTL_TEST_NEO4J_URI is not set")
def test_real_server_round_trip(write_config, tmp_path):
    from neo4j import GraphDatabase

    config = load_config(write_config(f"""
        version: 1
        backends:
          real: {{kind: neo4j, uri: "{REAL_URI}", user: "{REAL_USER}", password: "{REAL_PASSWORD}"}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """))
    with GraphDatabase.driver(REAL_URI, auth=(REAL_USER, REAL_PASSWORD)) as driver, driver.session() as session:
        if session.run("MATCH (n) RETURN count(n) AS n").single()["n"]:
            pytest.skip("the Neo4j test database is not empty; this test deletes everything in it")
        try:
            session.run("CREATE CONSTRAINT person_key FOR (p:Person) REQUIRE p.key IS UNIQUE").consume()
            session.run("CREATE INDEX person_joined FOR (p:Person) ON (p.joined)").consume()
            session.run(REAL_GRAPH, avatar=b"\x00\x01\xfe\xff").consume()
            before = real_snapshot(session)
            [result] = run_backup(config, backend="real", destination="local")
            wipe(session)
            outcome = restore(config, result.manifest.id, target="real", validate=True)
            assert outcome.validation.ok, outcome.validation.to_dict()
            assert real_snapshot(session) == before
            names = {r["name"] for r in session.run("SHOW INDEXES YIELD name").data()}
            assert {"person_key", "person_joined"} <= names and engine.RESTORE_INDEX not in names
        finally:
            wipe(session)
