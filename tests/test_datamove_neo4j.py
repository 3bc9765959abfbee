"""`storagectl migrate data` Neo4j → Neo4j: against two Bolt stubs serving in-memory graphs (answering
exactly the queries of storagectl.datamove.neo4j_path and the restore's), and between the stub and a
real Neo4j when STORAGECTL_TEST_NEO4J_URI is set."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from storagectl.backends import neo4j_archive as engine
from storagectl.config import load_config
from storagectl.datamove import api
from storagectl.datamove import neo4j_path as copy
from storagectl.errors import Interrupted, OperationFailed, Terminated, UsageError
from tests.boltstub import BoltStubServer, Failure, Records
from tests.test_backup_neo4j import AUTH, NAME, FakeGraph, count, populate, unquote

CREATE_NODES_RETURNING = re.compile(
    r"^UNWIND \$rows AS row CREATE \(n((?::`(?:[^`]|``)*`)*):__StorageCtlRestore \{__storagectl_id: row\.id\}\) "
    r"SET n \+= row\.props RETURN row\.id AS source, elementId\(n\) AS target$")
CREATE_RELATIONSHIPS_BY_ID = re.compile(
    r"^UNWIND \$rows AS row MATCH \(a\) WHERE elementId\(a\) = row\.start MATCH \(b\) WHERE elementId\(b\) = row\.end "
    rf"CREATE \(a\)-\[r:{NAME}\]->\(b\) SET r \+= row\.props$")


class CopyGraph(FakeGraph):
    """The backup tests' fake graph, answering the data migration's queries too. Like a transaction,
    a batch's writes take effect together: they are staged, and applied by the progress update that
    ends each of the migration's write transactions; a failed or killed transaction leaves them
    staged, and the next run drops them when it reads the progress."""

    def __init__(self) -> None:
        super().__init__()
        self.progress: dict[str, tuple[int, int]] = {}
        self.staged: list[Any] = []
        self.fail_relationship_batch: int | None = None
        self.relationship_batches = 0
        for labels in ((), ("x",)):
            self._exact.update({
                copy._filtered(copy.SOURCE_NODES, labels): self._source_nodes,
                copy._filtered(copy.SOURCE_RELATIONSHIPS, labels, True): self._source_relationships,
                copy._filtered(copy.COUNT_SELECTED_NODES, labels): lambda p: count(len(self._selected(p))),
                copy._filtered(copy.COUNT_SELECTED_RELATIONSHIPS, labels, True):
                    lambda p: count(len(self._selected_relationships(p))),
                copy._filtered(copy.CONTENT_NODES, labels): self._content_nodes,
                copy._filtered(copy.CONTENT_RELATIONSHIPS, labels, True): self._content_relationships,
            })
        self._exact.update({
            copy.SET_PROGRESS: self._set_progress, copy.READ_PROGRESS: self._read_progress,
            copy.DELETE_PROGRESS: lambda p: Records(query_type="w") if self.progress.pop(p["run"], None) or True
            else None,
            copy.FIND_MARKED: self._find_marked,
        })
        self._patterns = [(CREATE_NODES_RETURNING, self._create_nodes_returning),
                          (CREATE_RELATIONSHIPS_BY_ID, self._create_relationships_by_id), *self._patterns]

    def _selected(self, params: dict[str, Any]) -> list[str]:
        wanted = set(params.get("labels") or [])
        return [n for n, (labels, _) in self.nodes.items() if not wanted or wanted & set(labels)]

    def _selected_relationships(self, params: dict[str, Any]) -> list[str]:
        nodes = set(self._selected(params))
        return [r for r, (_t, _p, a, b) in self.relationships.items() if a in nodes and b in nodes]

    def _source_nodes(self, params: dict[str, Any]) -> Records:
        rows = [[n, self.nodes[n][0], self.nodes[n][1]] for n in self._selected(params)]
        return Records(["id", "labels", "props"], rows[params["skip"]:])

    def _source_relationships(self, params: dict[str, Any]) -> Records:
        rows = [[r, *self.relationships[r]] for r in self._selected_relationships(params)]
        return Records(["id", "type", "props", "start", "end"], rows[params["skip"]:])

    def _content_nodes(self, params: dict[str, Any]) -> Records:
        return Records(["labels", "props"], [self.nodes[n] for n in self._selected(params)])

    def _content_relationships(self, params: dict[str, Any]) -> Records:
        rows = []
        for rel in self._selected_relationships(params):
            rel_type, props, a, b = self.relationships[rel]
            rows.append([rel_type, props, *self.nodes[a], *self.nodes[b]])
        return Records(["type", "props", "start_labels", "start_props", "end_labels", "end_props"], rows)

    def _set_progress(self, params: dict[str, Any]) -> Records:
        for apply in self.staged:
            apply()
        self.staged.clear()
        self.progress[params["run"]] = (params["nodes"], params["relationships"])
        return Records(query_type="w")

    def _read_progress(self, params: dict[str, Any]) -> Records:
        self.staged.clear()  # of a transaction that never committed
        if params["run"] not in self.progress:
            return Records(["nodes", "relationships"], [])
        return Records(["nodes", "relationships"], [list(self.progress[params["run"]])])

    def _find_marked(self, params: dict[str, Any]) -> Records:
        marked = {props.get(engine.RESTORE_KEY): n for n, (labels, props) in self.nodes.items()
                  if engine.RESTORE_LABEL in labels}
        return Records(["source", "target"], [[i, marked[i]] for i in params["ids"] if i in marked])

    def _create_nodes_returning(self, match: re.Match[str], params: dict[str, Any]) -> Records | Failure:
        self.node_batches += 1
        if self.node_batches == self.fail_node_batch:
            return Failure("Neo.ClientError.Schema.ConstraintValidationFailed", "Node already exists")
        labels = [unquote(name) for name in re.findall(NAME, match[1])] + [engine.RESTORE_LABEL]
        rows = []
        for row in params["rows"]:
            node_id = f"4:fake:{next(self._ids)}"
            node = (list(labels), {engine.RESTORE_KEY: row["id"], **row["props"]})
            self.staged.append(lambda node_id=node_id, node=node: self.nodes.__setitem__(node_id, node))
            rows.append([row["id"], node_id])
        return Records(["source", "target"], rows, stats={"nodes-created": len(rows)}, query_type="rw")

    def _create_relationships_by_id(self, match: re.Match[str], params: dict[str, Any]) -> Records | Failure:
        self.relationship_batches += 1
        if self.relationship_batches == self.fail_relationship_batch:
            return Failure("Neo.DatabaseError.Statement.ExecutionFailed", "disk full")
        for row in params["rows"]:
            self.staged.append(lambda row=row: self.add_relationship(row["start"], unquote(match[1]), row["end"],
                                                                     **row["props"]))
        return Records(stats={"relationships-created": len(params["rows"])}, query_type="w")


@pytest.fixture
def graphs():
    source, target = CopyGraph(), CopyGraph()
    with BoltStubServer([source], auth=AUTH) as a, BoltStubServer([target], auth=AUTH) as b:
        yield source, target, a, b


@pytest.fixture
def config_path(graphs, write_config):
    _, _, a, b = graphs
    return write_config(f"""
        version: 1
        backends:
          a: {{kind: neo4j, uri: "{a.uri}", user: neo4j, password: "password", retry: {{attempts: 1}}}}
          b: {{kind: neo4j, uri: "{b.uri}", user: neo4j, password: "password", retry: {{attempts: 1}}}}
          wrong: {{kind: neo4j, uri: "{b.uri}", user: neo4j, password: "nope", retry: {{attempts: 1}}}}
          down: {{kind: neo4j, uri: "bolt://127.0.0.1:9", user: neo4j, password: "x", retry: {{attempts: 1}},
                  timeouts: {{connect: 2s}}}}
    """)


def request(config_path, **options):
    return api.open_request(load_config(config_path), options.pop("source", "a"), options.pop("target", "b"),
                            **options)


def test_round_trip_copies_graph_and_schema_and_verifies(graphs, config_path, cli, monkeypatch):
    source, target, _, _ = graphs
    populate(source)
    monkeypatch.setattr(copy.GraphCopy, "clock", staticmethod(itertools.count().__next__))
    result = cli("-c", config_path, "-o", "json", "migrate", "data", "run", "--from", "a", "--to", "b")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["verified"] is True
    copied = {item["source"]: item for item in report["items"] if item["status"] == "copied"}
    assert copied["nodes"]["rows"] == 4 and copied["relationships"]["rows"] == 5
    # each item its own time: one tick of the counting clock per timed block (schema: its reading, the
    # indexes before the data, the constraints and clean-up after)
    assert {name: item["duration_s"] for name, item in copied.items()} == {"nodes": 1.0, "relationships": 1.0,
                                                                           "schema": 3.0}
    checked = {item["source"]: item for item in report["items"] if item["status"] == "equal"}
    assert checked["label:Person"]["rows"] == 2 and checked["type:KNOWS"]["rows"] == 3
    assert target.content() == source.content()
    assert target.schema() == source.schema()  # indexes and constraints; the temporary index is gone
    assert engine.RESTORE_LABEL not in target.labels() and not target.progress
    assert not list(config_path.parent.glob(".storagectl-data-*"))  # state and id map removed


def test_label_selection_copies_those_nodes_and_the_relationships_between_them(graphs, config_path):
    source, target, _, _ = graphs
    x1, x2, y = source.add_node("x", key=1), source.add_node("x", "z", key=2), source.add_node("y", key=3)
    source.add_relationship(x1, "R", x2)
    source.add_relationship(x1, "R", y)
    result = api.run(request(config_path, selection=api_selection(labels=("x",))))
    assert result.verified is True
    assert sorted(props["key"] for _, props in target.nodes.values()) == [1, 2]
    assert len(target.relationships) == 1


def api_selection(**fields):
    from storagectl.datamove.model import Selection

    return Selection(**fields)


def test_non_empty_target_refused_then_replaced_with_yes(graphs, config_path):
    source, target, _, _ = graphs
    populate(source)
    target.add_node("Old", key="old")
    with pytest.raises(UsageError, match="is not empty"):
        api.run(request(config_path))
    assert "Old" in target.labels()
    assert api.run(request(config_path, allow_nonempty_target=True)).verified is True
    assert "Old" not in target.labels() and target.content() == source.content()


def many(graph: CopyGraph, nodes: int = 23, relationships: int = 31) -> None:
    ids = [graph.add_node("N" if i % 2 else "M", key=i, name=f"n{i}") for i in range(nodes)]
    for i in range(relationships):
        graph.add_relationship(ids[i % nodes], "LINK" if i % 3 else "NEXT", ids[(i * 7 + 1) % nodes], i=i)


@pytest.mark.parametrize("fail", ["nodes", "relationships", "id map", "finishing"])
def test_an_interrupted_run_resumes_without_missing_or_duplicated_entities(graphs, config_path, monkeypatch, fail):
    source, target, _, _ = graphs
    many(source)
    monkeypatch.setattr(copy, "WRITE_BATCH", 5)
    if fail == "nodes":
        target.fail_node_batch = 3
    elif fail == "relationships":
        target.fail_relationship_batch = 4
    elif fail == "finishing":  # killed after the progress node was removed, before the state file
        monkeypatch.setattr(copy.RunState, "finish", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    else:  # killed after the target committed batch 2 but before its ids reached the id map
        real_add, calls = copy.IdMap.add, []

        def add(self, pairs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real_add(self, pairs)

        monkeypatch.setattr(copy.IdMap, "add", add)
    with pytest.raises((OperationFailed, Interrupted)):  # Ctrl-C: said as Interrupted
        api.run(request(config_path))
    if fail in ("nodes", "id map"):
        assert 0 < len(target.nodes) < 23
    with pytest.raises(UsageError, match="was interrupted"):
        api.run(request(config_path))
    target.fail_node_batch = target.fail_relationship_batch = None
    monkeypatch.undo()
    monkeypatch.setattr(copy, "WRITE_BATCH", 3)  # ignored: a resumed run keeps the interrupted run's batches
    result = api.run(request(config_path, resume=True))
    assert result.verified is True
    assert {item.status for item in result.items[:3]} == {"resumed"}
    assert target.content() == source.content()  # content() is by unique key: none missing, none twice
    assert len(target.nodes) == 23 and len(target.relationships) == 31


def test_kill_9_of_the_cli_at_a_random_point_then_resume_ends_verified(graphs, config_path):
    source, target, _, _ = graphs
    many(source, nodes=1500, relationships=2500)
    state = config_path.parent / ".storagectl-data-a-b.json"
    small_batches = ("import sys; from storagectl.datamove import neo4j_path; neo4j_path.WRITE_BATCH = 40; "
                     "from storagectl.cli.main import run; sys.exit(run(sys.argv[1:]))")
    command = [sys.executable, "-c", small_batches, "-c", str(config_path), "-o", "json", "migrate", "data", "run",
               "--from", "a", "--to", "b"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # killed once a random number of nodes and relationships is committed (a random sleep let a fast
    # run finish first); polled in this process, where the stub keeps the progress
    stop_at, deadline = random.randrange(1, 1500 + 2500), time.monotonic() + 60  # after the first batch
    while process.poll() is None and time.monotonic() < deadline:
        if sum(sum(done) for done in list(target.progress.values())) >= stop_at:
            break
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    if process.returncode != -signal.SIGKILL or not state.exists():
        # finished before the kill landed, or killed after the copy (state gone) while it verified
        assert process.returncode in (0, -signal.SIGKILL)
        assert target.content() == source.content() and len(target.nodes) == 1500
        assert engine.RESTORE_LABEL not in target.labels() and not target.progress
        return

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["verified"] is True
    assert target.content() == source.content()  # by unique key: none missing, none twice
    assert len(target.nodes) == 1500 and len(target.relationships) == 2500
    assert not state.exists() and engine.RESTORE_LABEL not in target.labels()


def test_resume_refused_when_the_source_changed(graphs, config_path, monkeypatch):
    source, target, _, _ = graphs
    many(source)
    monkeypatch.setattr(copy, "WRITE_BATCH", 5)
    target.fail_node_batch = 2
    with pytest.raises(OperationFailed):
        api.run(request(config_path))
    source.add_node("M", key="late")
    with pytest.raises(UsageError, match="changed since the interrupted run"):
        api.run(request(config_path, resume=True))


def test_verify_reports_differences_per_label_and_type(graphs, config_path, cli):
    source, target, _, _ = graphs
    populate(source)
    assert api.run(request(config_path)).verified is True
    node = next(n for n, (labels, props) in target.nodes.items() if props.get("key") == "bob")
    target.nodes[node][1]["name"] = "Robert"
    result = cli("-c", config_path, "-o", "json", "migrate", "data", "verify", "--from", "a", "--to", "b")
    assert result.exit_code == 6
    bad = {item["source"] for item in result.json()["items"] if item["status"] == "mismatch"}
    assert bad == {"nodes", "label:Person", "relationships", "type:KNOWS"}  # KNOWS ends at bob


@pytest.mark.parametrize("target, code, message", [
    ("wrong", 4, "authentication failed"),
    ("down", 3, "connection refused"),
    ("nowhere", 2, "nowhere"),
])
def test_bad_input_is_one_line(graphs, config_path, cli, target, code, message):
    result = cli("-c", config_path, "migrate", "data", "run", "--from", "a", "--to", target)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_redis_options_are_refused_for_neo4j(graphs, config_path, cli):
    result = cli("-c", config_path, "migrate", "data", "run", "--from", "a", "--to", "b", "--pattern", "x*")
    assert result.exit_code == 2 and "--pattern does not apply to a Neo4j data move; it selects with --label" \
        in result.stderr


# -- a real Neo4j -------------------------------------------------------------------------------
REAL_URI = os.environ.get("STORAGECTL_TEST_NEO4J_URI")
REAL_USER = os.environ.get("STORAGECTL_TEST_NEO4J_USER", "neo4j")
REAL_PASSWORD = os.environ.get("STORAGECTL_TEST_NEO4J_PASSWORD", "")


@pytest.mark.neo4j_real
@pytest.mark.skipif(not REAL_URI, reason="STORAGECTL_TEST_NEO4J_URI is not set")
def test_real_server_as_target_then_as_source(write_config):
    """Community edition has one user database, so the other side is the stub: stub → real → stub."""
    from neo4j import GraphDatabase

    from tests.test_backup_neo4j import wipe

    first, back = CopyGraph(), CopyGraph()
    populate(first)
    with GraphDatabase.driver(REAL_URI, auth=(REAL_USER, REAL_PASSWORD)) as driver, driver.session() as session, \
            BoltStubServer([first], auth=AUTH) as a, BoltStubServer([back], auth=AUTH) as c:
        if session.run("MATCH (n) RETURN count(n) AS n").single()["n"]:
            pytest.skip("the Neo4j test database is not empty; this test deletes everything in it")
        path = write_config(f"""
            version: 1
            backends:
              a: {{kind: neo4j, uri: "{a.uri}", user: neo4j, password: "password"}}
              real: {{kind: neo4j, uri: "{REAL_URI}", user: "{REAL_USER}", password: "{REAL_PASSWORD}"}}
              c: {{kind: neo4j, uri: "{c.uri}", user: neo4j, password: "password"}}
        """)
        try:
            assert api.run(request(path, source="a", target="real")).verified is True
            assert api.run(request(path, source="real", target="c")).verified is True
            assert back.content() == first.content()
        finally:
            wipe(session)


def test_plan_counts_and_names_a_non_empty_target(graphs, config_path, cli):
    source, target, _, _ = graphs
    populate(source)
    target.add_node("Old", key="old")
    result = cli("-c", config_path, "-o", "json", "migrate", "data", "plan", "--from", "a", "--to", "b")
    assert result.exit_code == 2  # as the run without --yes
    assert "is not empty; copying would mix two graphs" in result.stderr
    assert cli("-c", config_path, "migrate", "data", "plan", "--from", "a", "--to", "b", "--yes").exit_code == 0
    items = {item["source"]: item for item in result.json()["items"]}
    assert items["nodes"]["row_estimate"] == 4 and items["relationships"]["row_estimate"] == 5
    assert items["schema"]["row_estimate"] == 2  # one constraint, one index
    assert "run needs --yes" in items["nodes"]["problems"][0]
    assert list(target.labels()) == ["Old"]  # nothing written


def test_a_target_schema_the_source_lacks_stops_plan_and_run_and_yes_drops_it(graphs, config_path, cli):
    source, target, _, _ = graphs
    populate(source)
    target.constraints.append({"name": "email_key", "type": "UNIQUENESS", "entityType": "NODE",
                               "labelsOrTypes": ["Person"], "properties": ["email"],
                               "createStatement": "CREATE CONSTRAINT `email_key` FOR (n:`Person`) "
                                                  "REQUIRE (n.`email`) IS UNIQUE"})
    for command in (["plan"], ["run"]):
        result = cli("-c", config_path, "migrate", "data", *command, "--from", "a", "--to", "b")
        assert result.exit_code == 2, result.stderr
        assert result.stderr.splitlines()[0].endswith(
            "has constraints or indexes the source does not: 'email_key' (CREATE CONSTRAINT `email_key` FOR "
            "(n:`Person`) REQUIRE (n.`email`) IS UNIQUE); a run would keep them on the copy; nothing was copied")
    assert not target.nodes
    result = cli("-c", config_path, "-o", "json", "migrate", "data", "run", "--from", "a", "--to", "b", "--yes")
    assert result.exit_code == 0 and result.json()["verified"] is True, result.stderr
    assert target.schema() == source.schema()


@pytest.mark.parametrize(("stop", "word", "code"), [(KeyboardInterrupt, "interrupted", 130),
                                                    (Terminated, "terminated", 143)])
def test_an_interrupted_run_says_what_is_committed_and_the_command_that_resumes(graphs, config_path, cli,
                                                                               monkeypatch, stop, word, code):
    source, target, _, _ = graphs
    many(source)
    monkeypatch.setattr(copy, "WRITE_BATCH", 5)
    real, calls = copy.GraphCopy._transaction, []

    def transaction(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise stop()
        return real(self, *args)

    monkeypatch.setattr(copy.GraphCopy, "_transaction", transaction)
    result = cli("-c", config_path, "migrate", "data", "run", "--from", "a", "--to", "b", "--label", "N",
                 "--label", "M")
    assert result.exit_code == code, result.stderr
    state = config_path.parent / ".storagectl-data-a-b.json"
    assert result.stderr.splitlines() == [
        f"error: {word} after 10 of 23 nodes and 0 of 31 relationships were committed (state in {state})",
        f"Try: storagectl -c {config_path} migrate data run --from a --to b --label N --label M --resume"]
    monkeypatch.undo()
    resumed = cli("-c", config_path, "-o", "json", "migrate", "data", "run", "--from", "a", "--to", "b",
                  "--label", "N", "--label", "M", "--resume")
    assert resumed.exit_code == 0 and resumed.json()["verified"] is True, resumed.stderr
    assert target.content() == source.content()


def test_parallel_is_said_to_be_ignored(graphs, config_path, cli):
    populate(graphs[0])
    result = cli("-c", config_path, "migrate", "data", "run", "--from", "a", "--to", "b", "--parallel", "4")
    assert result.exit_code == 0, result.stderr
    assert "--parallel 4 is ignored for neo4j → neo4j" in result.stderr
