"""Versioned Cypher migrations: through the CLI against the Bolt stub (a tiny in-memory graph of the
runner's bookkeeping queries), and against a real Neo4j when STORAGECTL_TEST_NEO4J_URI is set."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from storagectl.migrations import cypher
from tests.boltstub import BoltStubServer, Failure, Records, normalise_query

AUTH = ("neo4j", "password")
FAILING_MARKER = "THIS IS NOT CYPHER"


class FakeGraph:
    """Just enough of Neo4j for the runner: migration nodes, the lock node and its uniqueness."""

    def __init__(self) -> None:
        self.migrations: dict[int, dict[str, Any]] = {}
        self.lock: dict[str, Any] | None = None
        self.statements: list[str] = []
        self._handlers = {
            normalise_query(cypher.LOCK_CONSTRAINT): self._schema,
            normalise_query(cypher.VERSION_CONSTRAINT): self._schema,
            normalise_query(cypher.TAKE_LOCK): self._take_lock,
            normalise_query(cypher.LOCK_HOLDER): self._holder,
            normalise_query(cypher.RELEASE_LOCK): self._release,
            normalise_query(cypher.APPLIED): self._applied,
            normalise_query(cypher.RECORD): self._record,
        }

    def __call__(self, query: str, params: dict[str, Any]) -> Records | Failure:
        handler = self._handlers.get(normalise_query(query))
        return handler(params) if handler else self._user_statement(query)

    def _schema(self, params: dict[str, Any]) -> Records:
        return Records(query_type="s")

    def _take_lock(self, params: dict[str, Any]) -> Records | Failure:
        if self.lock is not None:
            return Failure(cypher.CONSTRAINT_VIOLATION, "Node(0) already exists with label `StorageCtlMigrationLock`")
        self.lock = {"owner": params["owner"], "acquired_at": "2024-05-01T10:00:00Z"}
        return Records(stats={"nodes-created": 1}, query_type="w")

    def _holder(self, params: dict[str, Any]) -> Records:
        rows = [[self.lock["owner"], self.lock["acquired_at"]]] if self.lock else []
        return Records(["owner", "acquired_at"], rows)

    def _release(self, params: dict[str, Any]) -> Records:
        if self.lock and self.lock["owner"] == params["owner"]:
            self.lock = None
        return Records(query_type="w")

    def _applied(self, params: dict[str, Any]) -> Records:
        rows = [[m["version"], m["description"], m["checksum"], m["applied_at"]]
                for _, m in sorted(self.migrations.items())]
        return Records(["version", "description", "checksum", "applied_at"], rows)

    def _record(self, params: dict[str, Any]) -> Records:
        self.migrations[params["version"]] = {**params, "applied_at": "2024-05-01T10:00:00Z"}
        return Records(stats={"nodes-created": 1}, query_type="w")

    def _user_statement(self, query: str) -> Records | Failure:
        if FAILING_MARKER in query:
            return Failure("Neo.ClientError.Statement.SyntaxError", f"Invalid input 'THIS': {query}")
        self.statements.append(normalise_query(query))
        return Records(query_type="w")


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
def stub(graph: FakeGraph):
    with BoltStubServer([graph], auth=AUTH) as server:
        yield server


@pytest.fixture
def config(stub: BoltStubServer, write_config) -> Path:
    return write_config(f"""
        backends:
          graph:
            kind: neo4j
            uri: {stub.uri}
            user: neo4j
            password: password
            migrations: cypher
    """)


def write_migration(config: Path, name: str, text: str) -> Path:
    path = config.parent / "cypher" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def migrate(cli, config: Path, *args: str):
    return cli("-c", config, "migrate", *args, "--backend", "graph")


def test_init_new_up_status_history_and_rerun(cli, config, graph):
    assert migrate(cli, config, "init").exit_code == 0
    created = migrate(cli, config, "new", "-m", "Create people", "-o", "json").json()
    assert created["revision"] == "V001" and created["path"].endswith("V001__create_people.cypher")
    Path(created["path"]).write_text("CREATE (:Person {name: 'Ada'});\nCREATE (:Person {name: 'Bob'})\n  ;\n")
    write_migration(config, "V002__people_index.cypher",
                    "// an index\nCREATE INDEX person_name IF NOT EXISTS FOR (p:Person) ON (p.name);\n")

    pending = migrate(cli, config, "status", "-o", "json")
    assert pending.exit_code == 1
    assert pending.json()[0] | {"pending": None} == {
        "backend": "graph", "kind": "neo4j", "current": None, "head": "V002", "pending": None,
        "edited": [], "pending_count": 2, "error": None, "exit_code": 1,
    }

    up = migrate(cli, config, "up", "-o", "json")
    assert up.exit_code == 0, up.stderr
    assert up.json()[0]["revisions"] == ["V001", "V002"] and up.json()[0]["current"] == "V002"
    assert graph.statements == [
        "CREATE (:Person {name: 'Ada'})", "CREATE (:Person {name: 'Bob'})",
        "CREATE INDEX person_name IF NOT EXISTS FOR (p:Person) ON (p.name)",
    ]
    assert sorted(graph.migrations) == [1, 2] and graph.migrations[1]["description"] == "create people"
    assert graph.lock is None  # released

    rerun = migrate(cli, config, "up", "-o", "json")
    assert rerun.exit_code == 0 and rerun.json()[0]["revisions"] == []
    assert len(graph.statements) == 3

    assert migrate(cli, config, "status").exit_code == 0
    history = migrate(cli, config, "history", "-o", "json").json()
    assert [(h["revision"], h["applied"], h["parent"]) for h in history] == [("V002", True, "V001"),
                                                                             ("V001", True, None)]


def test_edited_applied_file_is_an_integrity_error(cli, config, graph):
    path = write_migration(config, "V001__people.cypher", "CREATE (:Person {name: 'Ada'});\n")
    assert migrate(cli, config, "up").exit_code == 0
    path.write_text("CREATE (:Person {name: 'Eve'});\n")
    write_migration(config, "V002__more.cypher", "CREATE (:Person {name: 'Bob'});\n")
    up = migrate(cli, config, "up")
    assert up.exit_code == 6
    assert "V001__people.cypher" in up.stderr and "changed since they ran" in up.stderr
    assert sorted(graph.migrations) == [1]
    status = migrate(cli, config, "status", "-o", "json")
    assert status.exit_code == 6 and status.json()[0]["edited"] == ["V001"]


def test_failing_statement_is_not_recorded(cli, config, graph):
    write_migration(config, "V001__ok.cypher", "CREATE (:Person {name: 'Ada'});\n")
    write_migration(config, "V002__broken.cypher", f"CREATE (:Person {{name: 'Bob'}});\n{FAILING_MARKER};\n")
    write_migration(config, "V003__never.cypher", "CREATE (:Person {name: 'Cy'});\n")
    result = migrate(cli, config, "up")
    assert result.exit_code == 1
    error = result.stderr.splitlines()[0]
    assert "migration V002__broken.cypher failed at statement 2: THIS IS NOT CYPHER" in error
    assert "graph left at V001" in error
    assert sorted(graph.migrations) == [1]
    assert "CREATE (:Person {name: 'Cy'})" not in graph.statements
    assert graph.lock is None


def test_lock_held_by_another_run_is_exit_7(cli, config, graph):
    write_migration(config, "V001__people.cypher", "CREATE (:Person {name: 'Ada'});\n")
    graph.lock = {"owner": "storagectl-other", "acquired_at": "2024-05-01T09:00:00Z"}
    result = migrate(cli, config, "up", "--lock-timeout", "0.3")
    assert result.exit_code == 7
    assert "backend 'graph'" in result.stderr and "held by storagectl-other" in result.stderr
    assert graph.migrations == {} and graph.statements == []
    assert graph.lock["owner"] == "storagectl-other"  # someone else's lock is never released


def test_concurrent_runs_apply_once(config, graph):
    from storagectl.backends import backend_from_config
    from storagectl.config import load_config
    from storagectl.migrations import migrator_for

    write_migration(config, "V001__people.cypher", "CREATE (:Person {name: 'Ada'});\n")
    write_migration(config, "V002__more.cypher", "CREATE (:Person {name: 'Bob'});\n")
    loaded = load_config(config)
    results: list[Any] = []

    def run() -> None:
        results.append(migrator_for(backend_from_config(loaded, "graph")).up(lock_timeout=10))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(len(r.revisions) for r in results) == [0, 2]
    assert len(graph.statements) == 2


def test_dry_run_up_to_a_version_and_unsupported_commands(cli, config, graph):
    write_migration(config, "V001__people.cypher", "CREATE (:Person {name: 'Ada'});\n")
    write_migration(config, "V002__more.cypher", "CREATE (:Person {name: 'Bob'});\n")
    dry = migrate(cli, config, "up", "--dry-run", "--to", "1")
    assert dry.exit_code == 0 and "// V001 people\nCREATE (:Person {name: 'Ada'});" in dry.stdout
    assert "Bob" not in dry.stdout and graph.statements == [] and graph.lock is None

    assert migrate(cli, config, "up", "--to", "V009").exit_code == 5
    assert migrate(cli, config, "down", "--to", "V001", "--yes").exit_code == 2
    assert migrate(cli, config, "new", "-m", "x", "--merge").exit_code == 2

    assert migrate(cli, config, "stamp", "V001").exit_code == 0
    assert sorted(graph.migrations) == [1] and graph.statements == []


def test_bad_file_names_and_missing_directory(cli, config):
    assert migrate(cli, config, "status").exit_code == 2  # no directory yet
    write_migration(config, "people.cypher", "RETURN 1;\n")
    result = migrate(cli, config, "status")
    assert result.exit_code == 2 and "V<number>__<description>.cypher" in result.stderr


def test_scan_directory_orders_by_number(tmp_path):
    for name in ("V10__ten.cypher", "V2__two.cypher", "notes.txt"):
        (tmp_path / name).write_text("RETURN 1;\n")
    assert [m.label for m in cypher.scan_directory(tmp_path)] == ["V002", "V010"]
    (tmp_path / "V002__again.cypher").write_text("RETURN 2;\n")
    with pytest.raises(Exception, match="version 2 is also used"):
        cypher.scan_directory(tmp_path)


# -- a real Neo4j ---------------------------------------------------------------------------------
REAL_URI = os.environ.get("STORAGECTL_TEST_NEO4J_URI")


@pytest.mark.neo4j_real
@pytest.mark.skipif(not REAL_URI, reason="STORAGECTL_TEST_NEO4J_URI is not set")
def test_real_server_round_trip(cli, write_config, tmp_path):
    from neo4j import GraphDatabase

    user = os.environ.get("STORAGECTL_TEST_NEO4J_USER", "neo4j")
    password = os.environ.get("STORAGECTL_TEST_NEO4J_PASSWORD", "password")
    label = f"StorageCtlTest{uuid.uuid4().hex[:8]}"
    config = write_config(f"""
        backends:
          graph:
            kind: neo4j
            uri: {REAL_URI}
            user: {user}
            password: {password}
            migrations: cypher
    """)
    write_migration(config, "V001__nodes.cypher", f"CREATE (:{label} {{n: 1}});\nCREATE (:{label} {{n: 2}});\n")
    write_migration(config, "V002__broken.cypher", f"CREATE (:{label} {{n: 3}});\n{FAILING_MARKER};\n")
    with GraphDatabase.driver(REAL_URI, auth=(user, password)) as driver:
        # The test server's own bookkeeping nodes are reset: point this test at a scratch server.
        clean = f"MATCH (m) WHERE m:StorageCtlMigration OR m:StorageCtlMigrationLock OR m:{label} DETACH DELETE m"
        driver.execute_query(clean)
        try:
            failed = migrate(cli, config, "up")
            assert failed.exit_code == 1 and "V002__broken.cypher" in failed.stderr
            count = f"MATCH (n:{label}) RETURN count(n) AS c"
            assert driver.execute_query(count).records[0]["c"] == 2  # V002 rolled back whole
            (config.parent / "cypher" / "V002__broken.cypher").write_text(f"CREATE (:{label} {{n: 3}});\n")
            assert migrate(cli, config, "up").exit_code == 0
            assert migrate(cli, config, "up").exit_code == 0
            assert driver.execute_query(count).records[0]["c"] == 3
            assert migrate(cli, config, "status").exit_code == 0
        finally:
            driver.execute_query(clean)


def test_current_heads_and_show_of_versioned_files(cli, config, graph):
    migrate(cli, config, "init")
    write_migration(config, "V001__people.cypher", "CREATE (:Person {name: 'Ada'});\n")
    write_migration(config, "V002__people_index.cypher", "CREATE INDEX person_name FOR (p:Person) ON (p.name);\n")
    assert migrate(cli, config, "current", "-o", "json").json()[0]["current"] is None
    assert migrate(cli, config, "up", "--to", "1").exit_code == 0
    current = migrate(cli, config, "current", "-o", "json")
    assert current.exit_code == 0 and current.json()[0] | {"error": None} == {
        "backend": "graph", "kind": "neo4j", "current": "V001", "is_head": False, "error": None}
    [head] = migrate(cli, config, "heads", "-o", "json").json()
    assert head["revision"] == "V002" and head["parents"] == ["V001"] and head["message"] == "people index"
    shown = migrate(cli, config, "show", "V001", "-o", "json").json()
    assert shown["parents"] == [] and not shown["is_head"] and "CREATE (:Person" in shown["body"]
    assert migrate(cli, config, "show", "V009").exit_code == 5
