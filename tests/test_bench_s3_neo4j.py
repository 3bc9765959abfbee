"""`storagectl bench` against moto S3 and the Bolt stub (Neo4j figures from the stub are a
functional test only: the stub answers from a dict, not from a graph database)."""

from __future__ import annotations

import re

import pytest

from tests.boltstub import BoltStubServer, Records


def bucket_keys(s3_bucket) -> list[str]:
    pages = s3_bucket.client().get_paginator("list_objects_v2").paginate(Bucket=s3_bucket.name)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def s3_config(write_config, s3_bucket):
    return write_config(f"backends:\n  store:\n    kind: s3\n{s3_bucket.yaml_fields()}    prefix: app\n")


@pytest.mark.parametrize("workload", ["put", "get", "mixed"])
def test_s3_workloads_count_and_delete_only_their_objects(cli, write_config, s3_bucket, workload):
    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key="app/user-data", Body=b"kept")
    config = s3_config(write_config, s3_bucket)
    result = cli("-c", config, "bench", "run", "-b", "store", "-w", workload, "-c", "2", "-n", "40",
                 "--warmup", "0", "--keyspace", "20", "--object-size", "1KiB", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 40 and data["errors"] == {} and data["workload"]["data_size"] == 1024
    assert data["setup"]["namespace"].startswith("app/storagectl-bench-")
    assert bucket_keys(s3_bucket) == ["app/user-data"]
    assert ("bench: setup: filling app/storagectl-bench-" in result.stderr) is (workload != "put")  # put fills none


def test_s3_errors_are_counted_by_code(cli, write_config, s3_bucket, monkeypatch):
    """get on objects removed behind the bench's back: every op is a NoSuchKey, counted, not raised."""
    from storagectl.loadgen.workloads import s3 as s3_workloads

    original = s3_workloads.S3Workload.setup

    def setup_then_lose_objects(self):
        items = original(self)
        for n in range(self.options.keyspace):
            self._client.delete_object(Bucket=self.bucket, Key=self.key(n))
        return items

    monkeypatch.setattr(s3_workloads.S3Workload, "setup", setup_then_lose_objects)
    result = cli("-c", s3_config(write_config, s3_bucket), "bench", "run", "-b", "store", "-w", "get", "-n", "10",
                 "--warmup", "0", "--keyspace", "5", "-o", "json")
    assert result.exit_code == 1, result.stderr  # not one op succeeded: counted, then exit 1
    assert result.json()["errors"] == {"NoSuchKey": 10}


def test_s3_bucket_missing_is_one_line_and_nothing_to_remove(cli, write_config, s3_bucket):
    """Setup could not open the bucket: the teardown has nothing to remove (it tried, failed and
    logged a timestamped WARNING that contradicted the "removed" of the error line)."""
    fields = s3_bucket.yaml_fields().replace(f"bucket: {s3_bucket.name}", "bucket: no-such-bucket-here")
    config = write_config(f"backends:\n  store:\n    kind: s3\n{fields}")
    result = cli("-c", config, "bench", "run", "-b", "store", "-w", "get", "-n", "5", "--warmup", "0")
    assert result.exit_code == 5, result.stderr
    assert "WARNING" not in result.stderr and "by hand" not in result.stderr
    assert [line for line in result.stderr.splitlines() if not line.startswith(("bench:", "Try:"))] == [
        line for line in result.stderr.splitlines() if line.startswith("error:")]
def test_s3_objects_the_teardown_could_not_delete_are_a_warning_not_removed(cli, write_config, s3_bucket,
                                                                         monkeypatch):
    """DeleteObjects answers 200 with a per-key Errors list (AccessDenied, ...): the run must not
    say its objects were removed while some are left."""
    from storagectl.loadgen.workloads import s3 as s3_workloads

    original = s3_workloads.S3Workload.setup

    class Refusing:
        def __init__(self, client) -> None:
            self.client = client

        def __getattr__(self, name):
            return getattr(self.client, name)

        def delete_objects(self, Bucket, Delete):  # noqa: N803 - boto3's names
            kept, *rest = Delete["Objects"]
            answer = self.client.delete_objects(Bucket=Bucket, Delete={**Delete, "Objects": rest})
            return {**answer, "Errors": [{"Key": kept["Key"], "Code": "AccessDenied", "Message": "no"}]}

    def setup_with_a_refusing_client(self):
        items = original(self)
        self._client = Refusing(self._client)
        return items

    monkeypatch.setattr(s3_workloads.S3Workload, "setup", setup_with_a_refusing_client)
    result = cli("-c", s3_config(write_config, s3_bucket), "bench", "run", "-b", "store", "-w", "get", "-n", "5",
                 "--warmup", "0", "--keyspace", "3")
    assert result.exit_code == 0, result.stderr  # the figures stand; the leftover is a warning
    assert "may remain" in result.stderr and "1 objects under s3://" in result.stderr
    assert "obj-0: AccessDenied" in result.stderr
    assert [key.rsplit("/", 1)[1] for key in bucket_keys(s3_bucket)] == ["obj-0"]


class FakeGraph:
    """Just enough of Neo4j for the bench's queries: nodes by label and key, a `next` chain."""

    def __init__(self) -> None:
        self.nodes: dict[str, set[int]] = {}
        self.edges: dict[str, dict[int, int]] = {}
        self.indexes: set[str] = set()
        self.created = 0
        self.reads = 0

    def __call__(self, query: str, params: dict) -> Records | None:
        if match := re.fullmatch(r"CREATE INDEX (\w+) IF NOT EXISTS FOR \(n:(\w+)\) ON \(n.key\)", query):
            self.indexes.add(match[1])
            return Records()
        if match := re.fullmatch(r"DROP INDEX (\w+) IF EXISTS", query):
            self.indexes.discard(match[1])
            return Records()
        if match := re.fullmatch(r"UNWIND range\(\$start, \$stop\) AS k CREATE \(:(\w+) \{key: k\}\)", query):
            self.nodes.setdefault(match[1], set()).update(range(params["start"], params["stop"] + 1))
            return Records()
        if match := re.match(r"MATCH \(a:(\w+)\) WHERE a.key >= \$start .* CREATE \(a\)-\[:\w+\]->\(b\)", query):
            chain = self.edges.setdefault(match[1], {})
            for key in range(params["start"], min(params["stop"], params["keyspace"])):
                chain[key] = (key + 1) % params["keyspace"]
            return Records()
        if match := re.fullmatch(r"MATCH \(n:(\w+) \{key: \$key\}\) RETURN n.key", query):
            self.reads += 1
            found = params["key"] in self.nodes.get(match[1], set())
            return Records(["n.key"], [[params["key"]]] if found else [])
        if match := re.fullmatch(r"MATCH \(n:(\w+) \{key: \$key\}\)-\[:\w+\]->\(m\) RETURN m.key", query):
            self.reads += 1
            return Records(["m.key"], [[self.edges[match[1]][params["key"]]]])
        if match := re.fullmatch(r"CREATE \(n:(\w+) \{key: \$key, created: true\}\)", query):
            self.created += 1
            self.nodes.setdefault(match[1], set()).add(params["key"])
            return Records(query_type="w")
        if match := re.fullmatch(r"MATCH \(n:(\w+)\) WITH n LIMIT (\d+) DETACH DELETE n RETURN count\(\*\) AS deleted",
                                 query):
            nodes = self.nodes.get(match[1], set())
            doomed = sorted(nodes)[:int(match[2])]
            nodes.difference_update(doomed)
            if not nodes:
                self.nodes.pop(match[1], None)
                self.edges.pop(match[1], None)
            return Records(["deleted"], [[len(doomed)]], query_type="w")
        return None


def neo4j_config(write_config, uri: str):
    return write_config(f"backends:\n  graph:\n    kind: neo4j\n    uri: {uri}\n    user: neo4j\n"
                        "    password: password\n")


@pytest.mark.parametrize("workload", ["node-by-key", "create-node", "expand-1hop"])
def test_neo4j_workloads_against_the_stub(cli, write_config, workload):
    graph = FakeGraph()
    graph.nodes["Person"] = {1, 2}  # the user's own nodes
    with BoltStubServer([graph]) as server:
        config = neo4j_config(write_config, server.uri)
        result = cli("-c", config, "bench", "run", "-b", "graph", "-w", workload, "-c", "2", "-n", "60",
                     "--warmup", "0", "--keyspace", "1500", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 60 and data["errors"] == {}
    assert graph.created + graph.reads == 60
    assert graph.nodes == {"Person": {1, 2}} and graph.indexes == set()


def test_neo4j_cypher_file_and_errors_by_code(cli, write_config, tmp_path):
    script = tmp_path / "bench.cypher"
    script.write_text("\\set key random(1, :keyspace)\nMATCH (n:StoragectlBench {key: $key}) RETURN n.key;\n"
                      "MATCH (n:Missing) RETURN n;\n")
    graph = FakeGraph()
    with BoltStubServer([graph]) as server:
        config = neo4j_config(write_config, server.uri)
        result = cli("-c", config, "bench", "run", "-b", "graph", "-w", f"cypher:{script}", "-n", "8",
                     "--warmup", "0", "--keyspace", "10", "-o", "json")
    assert result.exit_code == 1, result.stderr  # every op's second statement fails: no op succeeded
    data = result.json()
    assert data["errors"] == {"Neo.ClientError.Statement.SyntaxError": 8}  # the stub has no rule for :Missing
    assert graph.reads == 8 and graph.nodes == {}
