"""Redis over TLS through storagectl's raw-socket paths (bench clients, backup and restore), against a
redis-server of the tests that speaks TLS only, verified with the CA file named in the config
(tests/redis_cluster.py running_server(tls=...); certificates made with the openssl command)."""

from __future__ import annotations

import pytest

from storagectl.backup import restore as restore_backup
from storagectl.backup import run_backup
from storagectl.config import load_config
from tests.conftest import service_unavailable
from tests.test_backup_redis import assert_same, populate, snapshot


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    from tests.redis_cluster import cluster_binaries, make_tls_files, running_server

    missing = cluster_binaries()
    if isinstance(missing, str):
        service_unavailable("redis", missing)
    try:
        files = make_tls_files(tmp_path_factory.mktemp("tls"))
    except FileNotFoundError as exc:
        service_unavailable("redis", str(exc))
    with running_server(tls=files) as server:
        server.tls = files
        yield server


def tls_client(server, db: int = 0):
    import redis

    return redis.Redis(host="127.0.0.1", port=server.port, db=db, ssl=True, ssl_ca_certs=str(server.tls.ca),
                       socket_timeout=10)


@pytest.fixture
def tls(tls_server):
    """The TLS server, dbs 0 and 1 empty at the start and the end of the test."""
    for db in (0, 1):
        tls_client(tls_server, db).flushdb()
    yield tls_server
    for db in (0, 1):
        tls_client(tls_server, db).flushdb()


def backends_yaml(server, ca: bool = True) -> str:
    ca_line = f", ca_file: {server.tls.ca}" if ca else ""
    return "".join(f"  {name}:\n    kind: redis\n    host: 127.0.0.1\n    port: {server.port}\n    db: {db}\n"
                   f"    tls: {{enabled: true{ca_line}}}\n" for name, db in (("secure", 0), ("spare", 1)))


@pytest.mark.parametrize("workload", ["get", "set", "mixed", "hset", "hget", "lpush", "rpop", "zadd", "zrange",
                                      "pubsub"])
def test_every_bench_workload_runs_over_tls(cli, write_config, tls, workload):
    client = tls_client(tls)
    client.config_resetstat()
    config = write_config("backends:\n" + backends_yaml(tls))
    result = cli("-c", config, "bench", "run", "-b", "secure", "-w", workload, "-c", "3", "-n", "300",
                 "--warmup", "0", "--keyspace", "500", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 300 and data["errors"] == {}
    command = {"mixed": None, "pubsub": "publish"}.get(workload, workload)
    if command is not None:
        assert int(client.info("commandstats")[f"cmdstat_{command}"]["calls"]) == 300
    assert list(client.scan_iter(match="storagectl:bench:*")) == []


def test_bench_replies_spanning_several_tls_records(cli, write_config, tls):
    """16 replies of 3000 bytes per batch are 48 KB: more than one TLS record (16 KB) per read, with -j 2."""
    config = write_config("backends:\n" + backends_yaml(tls))
    result = cli("-c", config, "bench", "run", "-b", "secure", "-w", "get", "-c", "4", "-j", "2", "-P", "16",
                 "-d", "3000", "-n", "3200", "--warmup", "0", "--keyspace", "200", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["ops"] == 3200 and result.json()["errors"] == {}


def test_without_the_ca_file_the_certificate_is_refused(cli, write_config, tls):
    config = write_config("backends:\n" + backends_yaml(tls, ca=False))
    result = cli("-c", config, "bench", "run", "-b", "secure", "-w", "get", "-n", "10", "--warmup", "0")
    assert result.exit_code != 0 and "certificate verify failed" in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr  # a one-line error (with its hint)


def test_backup_and_restore_over_tls(write_config, tls, tmp_path):
    populate(tls_client(tls, 0), 600)
    original = snapshot(tls_client(tls, 0))
    config = load_config(write_config("version: 1\nbackends:\n" + backends_yaml(tls) + "destinations:\n"
                                      f"  local: {{kind: local, path: {tmp_path / 'backups'}}}\n"))
    [result] = run_backup(config, backend="secure", destination="local")
    assert result.manifest.objects[0].counts == {"keys": len(original)}
    outcome = restore_backup(config, result.manifest.id, target="spare", validate=True)
    assert outcome.validation.ok
    assert_same(snapshot(tls_client(tls, 1)), original)
