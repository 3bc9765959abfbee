"""Tests of the Bolt stub server, mostly through the real neo4j driver it exists to serve."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any

import neo4j
import pytest
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError, ClientError, ConstraintError, DatabaseError
from neo4j.graph import Node as DriverNode
from neo4j.graph import Path as DriverPath

from tests.boltstub import (
    BoltStubError,
    BoltStubServer,
    Failure,
    Node,
    PackStreamError,
    Path,
    Received,
    Records,
    Relationship,
    Rule,
    Structure,
    normalise_query,
    pack,
    unpack,
)
from tests.boltstub.packstream import unpack_structure
from tests.boltstub.protocol import MAGIC, BoltSocket, frame

AUTH = ("neo4j", "password")
ALL_5X = tuple((5, minor) for minor in range(9))


@contextmanager
def stub_driver(
    script: Any = (), **server_options: Any
) -> Iterator[tuple[BoltStubServer, neo4j.Driver]]:
    with (
        BoltStubServer(script, **server_options) as server,
        GraphDatabase.driver(server.uri, auth=AUTH) as driver,
    ):
        yield server, driver


def names(server: BoltStubServer) -> list[str]:
    return [message.name for message in server.messages]


# -- PackStream ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (127, "7f"),
        (-16, "f0"),
        (-17, "c8ef"),
        (-128, "c880"),
        (128, "c90080"),
        (-129, "c9ff7f"),
        (32767, "c97fff"),
        (32768, "ca00008000"),
        (-32769, "caffff7fff"),
        (2**31, "cb0000000080000000"),
        (2**63 - 1, "cb7fffffffffffffff"),
        (-(2**63), "cb8000000000000000"),
    ],
)
def test_integers_use_the_smallest_encoding(value: int, encoded: str) -> None:
    assert pack(value).hex() == encoded
    assert unpack(bytes.fromhex(encoded)) == value


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (None, "c0"),
        (True, "c3"),
        (False, "c2"),
        (1.1, "c13ff199999999999a"),
        ("", "80"),
        ("a", "8161"),
        ("é", "82c3a9"),
        (b"", "cc00"),
        (b"\x01\x02", "cc020102"),
        ([], "90"),
        ([1, 2, 3], "93010203"),
        ({}, "a0"),
        ({"a": 1}, "a1816101"),
        (Structure(0x4E, (1,)), "b14e01"),
    ],
)
def test_scalar_and_container_encodings(value: Any, encoded: str) -> None:
    assert pack(value).hex() == encoded
    assert unpack(bytes.fromhex(encoded)) == value


@pytest.mark.parametrize(
    ("size", "string_header", "list_header", "map_header", "bytes_header"),
    [
        (15, "8f", "9f", "af", "cc0f"),
        (16, "d010", "d410", "d810", "cc10"),
        (255, "d0ff", "d4ff", "d8ff", "ccff"),
        (256, "d10100", "d50100", "d90100", "cd0100"),
        (65536, "d200010000", "d600010000", "da00010000", "ce00010000"),
    ],
)
def test_size_headers(
    size: int, string_header: str, list_header: str, map_header: str, bytes_header: str
) -> None:
    samples = {
        string_header: "x" * size,
        list_header: [0] * size,
        map_header: {f"k{i}": i for i in range(size)},
        bytes_header: b"\x00" * size,
    }
    for header, value in samples.items():
        encoded = pack(value)
        assert encoded.hex().startswith(header)
        assert unpack(encoded) == value


def test_nested_values_round_trip() -> None:
    value = {"list": [1, -2.5, None, "s", [True, {"deep": b"\xff"}]], "n": 2**40}
    assert unpack(pack(value)) == value


def test_node_encodes_as_bolt5_structure_with_element_id() -> None:
    encoded = pack(Node(1, ["L"], {"a": 1}, element_id="4:x:1"), default=lambda v: v.to_structure())
    assert encoded.hex() == "b44e01" + "91814c" + "a1816101" + "85343a783a31"


@pytest.mark.parametrize(
    ("value", "problem"),
    [(2**63, "64 bits"), ({1: "x"}, "map keys"), (object(), "cannot encode")],
)
def test_unencodable_values_are_rejected(value: Any, problem: str) -> None:
    with pytest.raises(PackStreamError, match=problem):
        pack(value)


@pytest.mark.parametrize(
    ("data", "problem"),
    [("c4", "unknown"), ("d005ab", "truncated"), ("0101", "trailing"), ("a101c0", "not a string")],
)
def test_malformed_input_is_rejected(data: str, problem: str) -> None:
    with pytest.raises(PackStreamError, match=problem):
        unpack(bytes.fromhex(data))


def test_message_tags_are_not_mistaken_for_values() -> None:
    # TELEMETRY (0x54) shares its tag with the Time structure; only fields may be hydrated.
    message = unpack_structure(pack(Structure(0x54, (1,))), lambda s: "hydrated")
    assert message == Structure(0x54, (1,))


# -- Handshake on the wire -------------------------------------------------------------------


def handshake(server: BoltStubServer, *slots: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
    sock.sendall(MAGIC + b"".join(bytes.fromhex(slot) for slot in slots))
    return sock, sock.recv(4)


def test_legacy_handshake_picks_highest_version_in_the_first_matching_range() -> None:
    with BoltStubServer(versions=[(5, 0), (5, 2), (5, 3)]) as server:
        sock, answer = handshake(server, "00040405", "00000404", "00000000", "00000000")
        with sock:
            assert answer.hex() == "00000305"


def test_handshake_without_common_version_answers_zero_and_closes() -> None:
    with BoltStubServer() as server:
        sock, answer = handshake(server, "00020404", "00000003", "00000000", "00000000")
        with sock:
            assert answer == b"\x00\x00\x00\x00"
            assert sock.recv(1) == b""


def test_manifest_handshake_offers_every_version_then_takes_the_clients_choice() -> None:
    with BoltStubServer(versions=[(5, 1), (5, 4)]) as server:
        sock, answer = handshake(server, "000001ff", "00080805", "00000000", "00000000")
        with sock:
            assert answer.hex() == "000001ff"
            assert sock.recv(10).hex() == "02" + "00000105" + "00000405" + "00"
            sock.sendall(bytes.fromhex("00000405") + b"\x00")
            sock.sendall(frame(pack(Structure(0x01, ({"user_agent": "raw"},)))))
            reply = sock.recv(1024)
    assert server.connections[0].version == (5, 4)
    success = unpack_structure(reply[2:-2])
    assert success.tag == 0x70
    assert success.fields[0] == {
        "server": "Neo4j/5.20.0",
        "connection_id": "bolt-1",
        "hints": {"telemetry.enabled": True},
    }


# -- Connecting with the driver ----------------------------------------------------------------


def test_driver_connects_and_reports_server_info() -> None:
    with stub_driver() as (server, driver):
        driver.verify_connectivity()
        info = driver.get_server_info()
    assert info.agent == "Neo4j/5.20.0"
    assert info.protocol_version == (5, 8)
    assert server.connections[0] == ("bolt-1", (5, 8), "manifest")


@pytest.mark.parametrize(
    ("versions", "handshake_form", "expected"),
    [
        ([(5, 0)], "legacy", (5, 0)),
        ([(5, 0), (5, 1), (5, 2), (5, 3), (5, 4)], "legacy", (5, 4)),
        ([(5, 1), (5, 2)], "manifest", (5, 2)),
        ([(5, 6)], "manifest", (5, 6)),
    ],
)
def test_driver_negotiates_the_highest_common_version(
    versions: list[tuple[int, int]], handshake_form: str, expected: tuple[int, int]
) -> None:
    script = [Rule("RETURN 1 AS n", Records(["n"], [[1]]))]
    with stub_driver(script, versions=versions, handshake=handshake_form) as (server, driver):
        records, _, _ = driver.execute_query("RETURN 1 AS n")
        assert driver.get_server_info().protocol_version == expected
    assert records[0]["n"] == 1
    assert server.connections[0].version == expected
    assert server.connections[0].handshake == handshake_form


@pytest.mark.parametrize("version", ALL_5X, ids=lambda v: "bolt-{}.{}".format(*v))
def test_every_offered_version_serves_a_transaction(version: tuple[int, int]) -> None:
    script = [
        Rule("MATCH (n) RETURN n", Records(["n"], [[Node(1, ["L"])]])),
        Rule("CREATE (n)", Failure("Neo.ClientError.Schema.ConstraintValidationFailed", "dup")),
    ]
    with stub_driver(script, versions=[version]) as (server, driver), driver.session() as session:
        node = session.execute_read(lambda tx: tx.run("MATCH (n) RETURN n").single()["n"])
        with pytest.raises(ConstraintError):
            session.execute_write(lambda tx: tx.run("CREATE (n)").consume())
    assert node.labels == {"L"}
    assert server.connections[0].version == version


@pytest.mark.parametrize("version", [(5, 0), (5, 8)], ids=["auth-in-HELLO", "auth-in-LOGON"])
def test_wrong_password_raises_auth_error(version: tuple[int, int]) -> None:
    with (
        BoltStubServer(versions=[version], auth=("neo4j", "right")) as server,
        GraphDatabase.driver(server.uri, auth=("neo4j", "wrong")) as driver,
        pytest.raises(AuthError) as raised,
    ):
        driver.verify_connectivity()
    assert raised.value.code == "Neo.ClientError.Security.Unauthorized"
    assert "wrong" not in repr(server.messages)


def test_auth_none_accepts_any_login() -> None:
    with stub_driver(auth=None) as (_, driver):
        driver.verify_connectivity()


def test_routing_driver_gets_a_single_server_table() -> None:
    script = [Rule("RETURN 1 AS n", Records(["n"], [[1]]))]
    with (
        BoltStubServer(script) as server,
        GraphDatabase.driver(server.routing_uri, auth=AUTH) as driver,
    ):
        records, _, _ = driver.execute_query("RETURN 1 AS n")
    assert records[0]["n"] == 1
    assert "ROUTE" in names(server)


# -- Scripted queries ----------------------------------------------------------------------------


def test_query_parameters_are_matched_and_recorded() -> None:
    script = [
        Rule(
            "MATCH (u:User {name: $name}) RETURN u.age AS age",
            Records(["age"], [[41]]),
            params={"name": "ada"},
        ),
        Rule("MATCH (u:User {name: $name}) RETURN u.age AS age", Records(["age"], [[7]])),
    ]
    with stub_driver(script) as (server, driver), driver.session(database="people") as session:
        ada = session.run("MATCH (u:User {name: $name})\n  RETURN u.age AS age", name="ada")
        assert ada.single()["age"] == 41
        summary = session.run(
            "MATCH (u:User {name: $name}) RETURN u.age AS age", name="bob"
        ).consume()
    assert summary.database == "people"
    assert server.received[0] == Received(
        "MATCH (u:User {name: $name})\n  RETURN u.age AS age", {"name": "ada"}, "people"
    )
    assert server.received[1].params == {"name": "bob"}


def test_regex_rule_with_computed_response() -> None:
    def echo(query: str, params: dict[str, Any]) -> Records:
        return Records(["label", "value"], [[re.search(r":(\w+)", query).group(1), params["v"]]])

    script = [Rule(re.compile(r"^CREATE \(:\w+ \{v: \$v\}\)"), echo)]
    with stub_driver(script) as (_, driver):
        records, _, _ = driver.execute_query("CREATE (:Thing {v: $v}) RETURN 1", v=3)
    assert records[0].data() == {"label": "Thing", "value": 3}


def test_unmatched_query_fails_loudly() -> None:
    with stub_driver() as (_, driver), pytest.raises(ClientError) as raised:
        driver.execute_query("MATCH (n)\n RETURN n")
    assert raised.value.code == "Neo.ClientError.Statement.SyntaxError"
    assert "stub has no rule for: MATCH (n) RETURN n" in raised.value.message


@pytest.mark.parametrize("version", [(5, 4), (5, 8)], ids=["code-metadata", "gql-metadata"])
def test_failure_rule_raises_the_matching_driver_error(version: tuple[int, int]) -> None:
    code = "Neo.ClientError.Schema.ConstraintValidationFailed"
    script = [Rule("CREATE (:User {name: 'ada'})", Failure(code, "already exists"))]
    with (
        stub_driver(script, versions=[version]) as (_, driver),
        pytest.raises(ConstraintError) as e,
    ):
        driver.execute_query("CREATE (:User {name: 'ada'})")
    assert e.value.code == code
    assert e.value.message == "already exists"


def test_connection_is_reused_after_a_failure_and_across_queries() -> None:
    script = [
        Rule("RETURN 1", Failure("Neo.ClientError.Statement.ArithmeticError", "boom"), times=1),
        Rule("RETURN 1", Records(["x"], [[1]])),
    ]
    with stub_driver(script) as (server, driver), driver.session() as session:
        with pytest.raises(ClientError):
            session.run("RETURN 1").consume()
        assert [session.run("RETURN 1").single()["x"] for _ in range(3)] == [1, 1, 1]
    assert len(server.connections) == 1
    assert {message.connection_id for message in server.messages} == {"bolt-1"}
    assert names(server).count("RESET") >= 1


def test_large_result_is_paged_with_the_fetch_size() -> None:
    rows = [[i, f"row-{i}"] for i in range(2500)]
    script = [Rule("MATCH (n) RETURN n.i AS i, n.s AS s", Records(["i", "s"], rows))]
    with stub_driver(script) as (server, driver), driver.session(fetch_size=1000) as session:
        result = session.run("MATCH (n) RETURN n.i AS i, n.s AS s")
        got = [[record["i"], record["s"]] for record in result]
    assert got == rows
    pulls = [message.fields[0]["n"] for message in server.messages if message.name == "PULL"]
    assert pulls == [1000, 1000, 1000]


def test_unconsumed_result_is_discarded() -> None:
    script = [Rule("UNWIND range(1, 5) AS i RETURN i", Records(["i"], [[i] for i in range(5)]))]
    with stub_driver(script) as (server, driver), driver.session(fetch_size=2) as session:
        result = session.run("UNWIND range(1, 5) AS i RETURN i")
        assert result.peek()["i"] == 0
        summary = result.consume()
    assert summary.database == "neo4j"
    flow = [m for m in server.messages if m.name in ("RUN", "PULL", "DISCARD")]
    assert [(m.name, m.fields[-1].get("n")) for m in flow] == [
        ("RUN", None),
        ("PULL", 2),
        ("DISCARD", -1),
    ]


def test_messages_larger_than_one_chunk() -> None:
    big = "x" * 200_000
    script = [Rule("RETURN $s AS s", Records(["s"], [[big * 2]]), params={"s": big})]
    with stub_driver(script) as (_, driver):
        records, _, _ = driver.execute_query("RETURN $s AS s", s=big)
    assert records[0]["s"] == big * 2


def test_summary_reports_counters_and_bookmarks() -> None:
    stats = {"nodes-created": 2, "properties-set": 4}
    script = [Rule("CREATE (a), (b)", Records(stats=stats, query_type="w"))]
    with stub_driver(script) as (_, driver), driver.session() as session:
        summary = session.run("CREATE (a), (b)").consume()
        bookmarks = session.last_bookmarks()
    assert summary.counters.nodes_created == 2
    assert summary.query_type == "w"
    assert bookmarks.raw_values == frozenset({"FB:stub:1"})


# -- Values ------------------------------------------------------------------------------------


def test_nodes_relationships_and_paths_reach_the_driver_as_graph_values() -> None:
    ada = Node(1, ["User", "Admin"], {"name": "ada"})
    bob = Node(2, ["User"], {"name": "bob"})
    knows = Relationship(7, ada, bob, "KNOWS", {"since": 2020})
    path = Path([bob, ada], [knows])
    script = [Rule("MATCH p RETURN a, r, p", Records(["a", "r", "p"], [[ada, knows, path]]))]
    with stub_driver(script) as (_, driver):
        records, _, _ = driver.execute_query("MATCH p RETURN a, r, p")
    node, rel, walked = records[0]["a"], records[0]["r"], records[0]["p"]
    assert isinstance(node, DriverNode)
    assert node.element_id == ada.resolved_element_id
    assert node.labels == {"User", "Admin"}
    assert dict(node) == {"name": "ada"}
    assert rel.type == "KNOWS"
    assert rel.start_node.element_id == ada.resolved_element_id
    assert rel.end_node.element_id == bob.resolved_element_id
    assert isinstance(walked, DriverPath)
    assert [n["name"] for n in walked.nodes] == ["bob", "ada"]
    assert walked.relationships[0].start_node["name"] == "ada"


def test_temporal_values_round_trip() -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    params = {"at": when, "day": date(2024, 5, 6), "ttl": timedelta(days=1, seconds=5)}
    script = [Rule("RETURN $at AS at", Records(["at", "day"], [[when, date(2024, 5, 6)]]))]
    with stub_driver(script) as (server, driver):
        records, _, _ = driver.execute_query("RETURN $at AS at", params)
    assert server.received[0].params == params
    assert records[0]["at"].to_native() == when
    assert records[0]["day"].to_native() == date(2024, 5, 6)
    assert server.received[0].params["at"].utcoffset() == timedelta(hours=2)


# -- Transactions and stateful fakes ------------------------------------------------------------


class MigrationsFake:
    """The kind of small stateful fake a responder makes easy: an applied-migrations table."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    def __call__(self, query: str, params: dict[str, Any]) -> Records | None:
        if query == "MERGE (:Migration {id: $id})":
            self.applied.append(params["id"])
            return Records(stats={"nodes-created": 1}, query_type="w")
        if query == "MATCH (m:Migration) RETURN m.id AS id ORDER BY id":
            return Records(["id"], [[mid] for mid in sorted(self.applied)])
        return None


def test_execute_write_and_read_use_explicit_transactions() -> None:
    fake = MigrationsFake()
    with stub_driver([fake]) as (server, driver), driver.session(database="ops") as session:
        session.execute_write(lambda tx: tx.run("MERGE (:Migration {id: $id})", id="002").consume())
        session.execute_write(lambda tx: tx.run("MERGE (:Migration {id: $id})", id="001").consume())
        ids = session.execute_read(
            lambda tx: [
                r["id"] for r in tx.run("MATCH (m:Migration) RETURN m.id AS id ORDER BY id")
            ]
        )
        bookmarks = session.last_bookmarks()
    assert ids == ["001", "002"]
    assert fake.applied == ["002", "001"]
    assert [r.db for r in server.received] == ["ops", "ops", "ops"]
    flow = [name for name in names(server) if name in ("BEGIN", "RUN", "PULL", "COMMIT")]
    assert flow == ["BEGIN", "RUN", "PULL", "COMMIT"] * 3
    begins = [message.fields[0] for message in server.messages if message.name == "BEGIN"]
    assert [begin.get("mode", "w") for begin in begins] == ["w", "w", "r"]
    assert "TELEMETRY" in names(server)
    assert len(bookmarks.raw_values) == 1


def test_explicit_transaction_with_several_open_results_then_rollback() -> None:
    script = [
        Rule("RETURN 'a' AS v", Records(["v"], [["a"], ["a2"]])),
        Rule("RETURN 'b' AS v", Records(["v"], [["b"]])),
    ]
    with stub_driver(script) as (server, driver), driver.session(fetch_size=1) as session:
        tx = session.begin_transaction()
        first = tx.run("RETURN 'a' AS v")
        second = tx.run("RETURN 'b' AS v")
        assert [r["v"] for r in second] == ["b"]
        assert [r["v"] for r in first] == ["a", "a2"]
        tx.rollback()
    pulls = [message.fields[0] for message in server.messages if message.name == "PULL"]
    assert {"n": 1, "qid": 0} in pulls  # the driver went back to the first, still open, result
    assert "ROLLBACK" in names(server)
    assert "COMMIT" not in names(server)


def test_telemetry_is_only_sent_from_bolt_5_4() -> None:
    script = [Rule("RETURN 1", Records())]
    with stub_driver(script, versions=[(5, 3)]) as (server, driver):
        driver.execute_query("RETURN 1")
    assert "TELEMETRY" not in names(server)


# -- Misuse is loud ----------------------------------------------------------------------------


def test_a_raising_responder_fails_the_query_and_the_test() -> None:
    def broken(query: str, params: dict[str, Any]) -> Records:
        raise KeyError("oops")

    # Entered left to right, left right to left: the driver error first, then the stub's.
    with (
        pytest.raises(BoltStubError, match="responder failed"),
        stub_driver([broken]) as (_, driver),
        driver.session() as session,
        pytest.raises(DatabaseError, match="stub responder raised"),
    ):
        session.run("RETURN 1").consume()


def test_out_of_order_requests_fail_then_are_ignored_until_reset() -> None:
    login = {"scheme": "basic", "principal": "neo4j", "credentials": "password"}
    script = [Rule("RETURN 1", Records())]
    with (
        pytest.raises(BoltStubError, match="PULL cannot be handled in state READY"),
        BoltStubServer(script, versions=[(5, 4)]) as server,
    ):
        sock, _ = handshake(server, "00000405", "00000000", "00000000", "00000000")
        bolt = BoltSocket(sock)

        def request(tag: int, *fields: Any) -> int:
            sock.sendall(frame(pack(Structure(tag, fields))))
            return unpack_structure(bolt.read_message()).tag

        with sock:
            assert request(0x01, {"user_agent": "raw"}) == 0x70  # HELLO: SUCCESS
            assert request(0x6A, login) == 0x70  # LOGON: SUCCESS
            assert request(0x3F, {"n": -1}) == 0x7F  # PULL without RUN: FAILURE
            assert request(0x10, "RETURN 1", {}, {}) == 0x7E  # RUN while FAILED: IGNORED
            assert request(0x0F) == 0x70  # RESET: SUCCESS
            assert request(0x10, "RETURN 1", {}, {}) == 0x70  # RUN: SUCCESS again


def test_script_entries_are_validated() -> None:
    with pytest.raises(ValueError, match="one value per field"):
        Records(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="status code"):
        Failure("Unauthorized", "no")
    with pytest.raises(ValueError, match="Bolt 5.0-5.8"):
        BoltStubServer(versions=[(4, 4)])
    assert normalise_query("  MATCH (n)\n\tRETURN n ") == "MATCH (n) RETURN n"
