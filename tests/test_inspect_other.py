"""`storagectl inspect` on SQLite (dbstat), S3 (moto server: versions, delete markers, incomplete
multipart uploads) and Neo4j (the Bolt stub), and the overview over every kind at once."""

from __future__ import annotations

import sqlite3

import pytest

from tests.boltstub import BoltStubServer, Records, Rule


# -- SQLite -------------------------------------------------------------------------------------------
@pytest.fixture
def sqlite_db(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, bio TEXT)")
        db.execute("CREATE INDEX users_name ON users (name)")
        db.executemany("INSERT INTO users (name, bio) VALUES (?, ?)", [(f"u{i}", "b" * (i % 900)) for i in range(3000)])
        db.execute("CREATE TABLE events (at INTEGER, what TEXT)")
        db.executemany("INSERT INTO events VALUES (?, ?)", [(i, "e") for i in range(777)])
        db.execute("DELETE FROM users WHERE id % 3 = 0")  # leaves free pages and unused bytes
    return path


def test_sqlite_tables_add_up_to_the_file(cli, write_config, sqlite_db):
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_db}\n")
    result = cli("-o", "json", "-c", config, "inspect", "tables", "-b", "lite", "--exact")
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    rows = {r["table"]: r for r in report["sections"]["tables"]}
    with sqlite3.connect(sqlite_db) as db:
        assert rows["users"]["rows"]["value"] == db.execute("SELECT count(*) FROM users").fetchone()[0] == 2000
        assert rows["events"]["rows"]["value"] == 777
        page_size, pages, free = (db.execute(f"PRAGMA {p}").fetchone()[0]
                                  for p in ("page_size", "page_count", "freelist_count"))
        schema_bytes = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'sqlite_schema'").fetchone()[0]
    assert rows["users"]["index_bytes"]["value"] > 0 and rows["users"]["unused_bytes"]["value"] > 0
    listed = sum(r["total_bytes"]["value"] for r in rows.values())
    assert listed + schema_bytes + free * page_size == pages * page_size == sqlite_db.stat().st_size


def test_json_asked_for_before_the_view_applies_to_it(cli, write_config, sqlite_db):
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_db}\n")
    result = cli("-c", config, "inspect", "-o", "json", "indexes", "-b", "lite")
    assert result.json()["backends"][0]["sections"]["indexes"][0]["index"] == "users_name"


def test_sqlite_inspect_writes_nothing(cli, write_config, sqlite_db):
    before = sqlite_db.read_bytes()
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_db}\n")
    assert cli("-c", config, "inspect", "indexes", "-b", "lite").exit_code == 0
    assert cli("-c", config, "inspect", "-b", "lite").exit_code == 0
    assert sqlite_db.read_bytes() == before


# -- S3 -----------------------------------------------------------------------------------------------
@pytest.fixture
def versioned_bucket(s3_bucket):
    """Current objects under logs/ and data/ and the root, two overwritten (noncurrent) versions, a
    delete marker, one object in STANDARD_IA and an incomplete multipart upload of two parts."""
    client = s3_bucket.client()
    name = s3_bucket.name
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket=name, Key="logs/2024/a.log", Body=b"a" * 1000)
    client.put_object(Bucket=name, Key="logs/2024/a.log", Body=b"a" * 1500)  # the 1000 become noncurrent
    client.put_object(Bucket=name, Key="logs/2025/b.log", Body=b"b" * 200)
    client.put_object(Bucket=name, Key="data/x.bin", Body=b"x" * 4096, StorageClass="STANDARD_IA")
    client.put_object(Bucket=name, Key="data/gone.bin", Body=b"g" * 300)
    client.delete_object(Bucket=name, Key="data/gone.bin")  # a delete marker; the 300 become noncurrent
    client.put_object(Bucket=name, Key="top.txt", Body=b"t" * 10)
    upload = client.create_multipart_upload(Bucket=name, Key="data/big.bin")
    for number, size in ((1, 5 * 1024 * 1024), (2, 1234)):
        client.upload_part(Bucket=name, Key="data/big.bin", UploadId=upload["UploadId"], PartNumber=number,
                           Body=b"p" * size)
    yield s3_bucket
    for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
    client.abort_multipart_upload(Bucket=name, Key="data/big.bin", UploadId=upload["UploadId"])


def s3_config(write_config, bucket):
    return write_config(f"backends:\n  files:\n    kind: s3\n{bucket.yaml_fields()}")


def values(mapping):
    return {key: value["value"] if isinstance(value, dict) and "value" in value else value
            for key, value in mapping.items()}


def test_s3_objects_count_noncurrent_versions_and_incomplete_uploads(cli, write_config, versioned_bucket):
    result = cli("-o", "json", "-c", s3_config(write_config, versioned_bucket), "inspect", "objects", "-b", "files")
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    summary = values(report["summary"])
    assert {k: v for k, v in summary.items() if k != "oldest_incomplete_upload"} == {
        "objects": 4, "bytes": 1500 + 200 + 4096 + 10, "noncurrent_versions": 2, "noncurrent_bytes": 1300,
        "delete_markers": 1, "incomplete_uploads": 1, "incomplete_upload_bytes": 5 * 1024 * 1024 + 1234}
    assert summary["oldest_incomplete_upload"] is not None
    assert all(f["provenance"] == "exact" for f in report["summary"].values() if isinstance(f, dict))
    prefixes = {r["prefix"]: values(r) for r in report["sections"]["prefixes"]}
    assert prefixes["logs/"]["bytes"] == 1700 and prefixes["logs/"]["noncurrent_bytes"] == 1000
    assert prefixes["data/"]["objects"] == 1 and prefixes["data/"]["delete_markers"] == 1
    assert prefixes["(root)"]["bytes"] == 10
    classes = {r["storage_class"]: r["bytes"]["value"] for r in report["sections"]["storage_classes"]}
    assert classes["STANDARD_IA"] == 4096 and classes["STANDARD"] == 1500 + 1000 + 200 + 300 + 10


def test_s3_depth_and_prefix(cli, write_config, versioned_bucket):
    config = s3_config(write_config, versioned_bucket)
    result = cli("-o", "json", "-c", config, "inspect", "objects", "-b", "files", "--prefix", "logs/", "--depth", "2")
    [report] = result.json()["backends"]
    assert {r["prefix"]: r["bytes"]["value"] for r in report["sections"]["prefixes"]} == {
        "logs/2024/": 1500, "logs/2025/": 200}
    assert report["summary"]["incomplete_uploads"]["value"] == 0


def test_s3_budget_gives_lower_bounds(cli, write_config, versioned_bucket):
    result = cli("-o", "json", "-c", s3_config(write_config, versioned_bucket), "inspect", "objects", "-b", "files",
                 "--budget", "0")
    [report] = result.json()["backends"]
    assert report["stopped"] == "budget"
    assert report["summary"]["objects"]["provenance"] == "estimate"
    assert "lower bound" in report["summary"]["objects"]["source"]


# -- Neo4j (Bolt stub) -------------------------------------------------------------------------------
def graph_script():
    from storagectl.backends import neo4j_archive as cypher
    from storagectl.inspect import neo4j as inspect_neo4j

    def count(query, n):
        return Rule(query, Records(["count"], [[n]]))

    return [
        Rule("RETURN 1", Records(["1"], [[1]])),
        count(cypher.COUNT_NODES, 30), count(cypher.COUNT_RELATIONSHIPS, 12),
        Rule(cypher.LABELS, Records(["label"], [["Person"], ["City"]])),
        Rule(cypher.TYPES, Records(["relationshipType"], [["LIVES_IN"]])),
        count(cypher.count_label_query("Person"), 25), count(cypher.count_label_query("City"), 5),
        count(cypher.count_type_query("LIVES_IN"), 12),
        Rule(inspect_neo4j.PROPERTY_KEYS, Records(["propertyKey"], [["name"], ["since"]])),
        Rule(inspect_neo4j.CONSTRAINTS, Records(
            ["name", "type", "entityType", "labelsOrTypes", "properties"],
            [["person_name", "UNIQUENESS", "NODE", ["Person"], ["name"]]])),
        Rule(inspect_neo4j.INDEXES, Records(
            ["name", "type", "entityType", "labelsOrTypes", "properties", "state", "populationPercent"],
            [["person_name", "RANGE", "NODE", ["Person"], ["name"], "ONLINE", 100.0],
             ["city_name", "RANGE", "NODE", ["City"], ["name"], "POPULATING", 40.0]])),
    ]


def neo4j_config(write_config, uri):
    return write_config(f"backends:\n  graph:\n    kind: neo4j\n    uri: {uri}\n    user: neo4j\n"
                        "    password: password\n    retry: {attempts: 1}\n")


def test_neo4j_graph_counts_schema_and_index_states(cli, write_config):
    with BoltStubServer(graph_script()) as server:
        result = cli("-o", "json", "-c", neo4j_config(write_config, server.uri), "inspect", "graph", "-b", "graph")
        assert server.errors == []
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    assert values(report["summary"]) == {"nodes": 30, "relationships": 12, "property_keys": 2, "constraints": 1,
                                         "indexes": 2}
    assert report["summary"]["nodes"]["source"] == "count store"
    assert [(r["label"], r["nodes"]["value"]) for r in report["sections"]["labels"]] == [("Person", 25), ("City", 5)]
    assert report["sections"]["relationship_types"][0]["relationships"]["value"] == 12
    assert {i["name"]: i["state"] for i in report["sections"]["indexes"]} == {"person_name": "ONLINE",
                                                                            "city_name": "POPULATING"}


# -- every kind at once -------------------------------------------------------------------------------
def test_overview_over_every_kind(cli, write_config, pg_database, redis_db, s3_bucket, sqlite_db):
    with BoltStubServer(graph_script()) as server:
        config = write_config(
            "backends:\n" + pg_database.backend_yaml() + redis_db.backend_yaml()
            + f"  lite:\n    kind: sqlite\n    path: {sqlite_db}\n"
            + f"  files:\n    kind: s3\n{s3_bucket.yaml_fields()}"
            + f"  graph:\n    kind: neo4j\n    uri: {server.uri}\n    user: neo4j\n    password: password\n")
        result = cli("-o", "json", "-c", config, "inspect")
    assert result.exit_code == 0, result.stderr
    reports = {r["backend"]: r for r in result.json()["backends"]}
    assert sorted(reports) == ["cache", "files", "graph", "lite", "pg"]
    assert all(r["complete"] and r["error"] is None for r in reports.values()), reports
    assert reports["lite"]["summary"]["tables"]["value"] == 2
    assert reports["graph"]["summary"]["nodes"]["value"] == 30


def test_overview_reports_an_unreachable_backend_and_goes_on(cli, write_config, sqlite_db):
    from tests.conftest import free_port

    config = write_config(f"backends:\n  down:\n    kind: redis\n    url: redis://127.0.0.1:{free_port()}/0\n"
                          "    retry: {attempts: 1}\n"
                          f"  lite:\n    kind: sqlite\n    path: {sqlite_db}\n")
    result = cli("-o", "json", "-c", config, "inspect")
    assert result.exit_code == 0
    reports = {r["backend"]: r for r in result.json()["backends"]}
    assert "connection refused" in reports["down"]["error"] and reports["lite"]["complete"]
