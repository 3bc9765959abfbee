"""`storagectl diag` for a Neo4j backend, through the CLI against the Bolt stub."""

from __future__ import annotations

import pytest

from tests.boltstub import BoltStubServer, Records, Rule

PING = Rule("RETURN 1", Records(["1"], [[1]]))
COMPONENTS = Rule("CALL dbms.components() YIELD name, versions, edition RETURN name, versions, edition",
                  Records(["name", "versions", "edition"], [["Neo4j Kernel", ["5.20.0"], "community"]]))
DATABASES_QUERY = ("SHOW DATABASES YIELD name, currentStatus, requestedStatus "
                   "RETURN name, currentStatus, requestedStatus")
DATABASE_FIELDS = ["name", "currentStatus", "requestedStatus"]


def databases(*rows: list[str]) -> Rule:
    return Rule(DATABASES_QUERY, Records(DATABASE_FIELDS, [list(row) for row in rows]))


HEALTHY = [PING, COMPONENTS, databases(["neo4j", "online", "online"], ["system", "online", "online"])]


def config_for(write_config, uri: str, password: str = "password"):
    return write_config(f"""
        backends:
          graph:
            kind: neo4j
            uri: {uri}
            user: neo4j
            password: {password}
            retry: {{attempts: 1}}
            timeouts: {{connect: 2}}
    """)


def diag(cli, config):
    result = cli("-c", config, "-o", "json", "diag")
    [report] = result.json()["backends"]
    return result, report


def checks(report) -> dict:
    return {check["name"]: check for check in report["checks"]}


def test_healthy_server_reports_version_edition_and_databases(cli, write_config):
    with BoltStubServer(HEALTHY) as server:
        result, report = diag(cli, config_for(write_config, server.uri))
        system_queries = [r.query for r in server.received if r.db == "system"]
    assert result.exit_code == 0, result.stdout + result.stderr
    assert report["status"] == "ok" and report["reachable"] and report["auth_ok"] is True
    assert report["server_version"] == "Neo4j/5.20.0"
    assert checks(report)["edition"]["value"] == "community"
    assert checks(report)["databases"]["value"] == {"neo4j": "online", "system": "online"}
    assert system_queries == [DATABASES_QUERY]


def test_an_offline_database_is_critical(cli, write_config):
    script = [PING, COMPONENTS, databases(["neo4j", "offline", "online"], ["archive", "offline", "offline"])]
    with BoltStubServer(script) as server:
        result, report = diag(cli, config_for(write_config, server.uri))
    assert result.exit_code == 2
    check = checks(report)["databases"]
    assert check["status"] == "critical" and "neo4j is offline" in check["detail"]
    assert "archive" not in check["detail"]  # requested offline: as it should be


def test_wrong_password_is_critical_with_auth_not_ok(cli, write_config):
    with BoltStubServer(HEALTHY) as server:
        result, report = diag(cli, config_for(write_config, server.uri, password="not-the-password"))
    assert result.exit_code == 2
    assert report["reachable"] is True and report["auth_ok"] is False
    assert "authentication failed" in report["error"]
    assert "not-the-password" not in result.stdout + result.stderr


@pytest.mark.parametrize("handshake", ["manifest", "legacy"])
def test_both_handshakes_work(cli, write_config, handshake):
    with BoltStubServer(HEALTHY, handshake=handshake) as server:
        result, _ = diag(cli, config_for(write_config, server.uri))
    assert result.exit_code == 0


def test_stopped_server_is_unknown(cli, write_config):
    with BoltStubServer(HEALTHY) as server:
        uri = server.uri
    result, report = diag(cli, config_for(write_config, uri))
    assert result.exit_code == 3
    assert report["status"] == "unknown" and report["reachable"] is False
    # The driver puts "Connection refused" on its message's second line; the classifier reads it there.
    assert report["error"].endswith("connection refused") and uri in report["error"]
