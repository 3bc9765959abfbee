"""Redis backups of ``backup_method: rdb``: the server's snapshot read over the replication protocol and
restored key by key, on a redis-server of the test's own (CONFIG SET repl-diskless-sync-delay touches
nobody else). Every type and encoding round-trips; the db filter, the method choice, --validate and
damaged snapshots."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import redis

from storagectl.backends.redis_rdb import RdbParser, lzf_decompress, rdb_costs, rdb_obstacle
from storagectl.backup import restore, run_backup
from storagectl.config import load_config
from storagectl.errors import IntegrityError, UsageError
from tests.test_backup_redis import assert_same, meddling, populate, snapshot


@pytest.fixture
def server(own_redis):
    redis.Redis(port=own_redis.port).config_set("repl-diskless-sync-delay", 0)
    return own_redis


def url(server, db: int) -> str:
    return f"redis://127.0.0.1:{server.port}/{db}"


def db(server, number: int) -> redis.Redis:
    return redis.Redis(port=server.port, db=number)


def config_for(write_config, tmp_path, source: str, target: str, extra: str = ""):
    return load_config(write_config(f"""
        version: 1
        backends:
          cache: {{kind: redis, {source}{extra}}}
          spare: {{kind: redis, {target}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """))


def every_encoding(client) -> None:
    """populate's small keys (listpacks, intsets) plus the big encodings and awkward key names."""
    populate(client, 600)
    pipe = client.pipeline(transaction=False)
    pipe.rpush("list:quicklist", *[f"element {i} " * 20 for i in range(3000)])
    pipe.sadd("set:intset", *range(100))
    pipe.sadd("set:hashtable", *[f"member-{i}" for i in range(1000)])
    pipe.zadd("zset:skiplist", {f"member-{i}": i / 7 for i in range(1000)})
    pipe.zadd("zset:infinite", {"low": float("-inf"), "high": float("inf")})
    pipe.hset("hash:hashtable", mapping={f"field-{i}": "v" * (i % 90) for i in range(1000)})
    pipe.set("12345", "an integer-encoded key name")
    pipe.set("-7", "a negative one")
    pipe.set("k" * 200, "an LZF-compressed key name")
    pipe.set("str:long", "x" * 100_000)  # an LZF-compressed value
    pipe.set("str:expiring", "soon", px=900_000)
    for i in range(5):
        pipe.xadd("stream:groups", {"n": i})
    pipe.xgroup_create("stream:groups", "readers", id="0")
    pipe.xgroup_create("stream:groups", "idle", id="$")
    pipe.execute()
    client.xreadgroup("readers", "alice", {"stream:groups": ">"}, count=2)
    client.xreadgroup("readers", "bob", {"stream:groups": ">"}, count=1)
    client.xack("stream:groups", "readers", client.xrange("stream:groups", count=1)[0][0])


def test_every_type_and_encoding_round_trips_with_expiries(server, write_config, tmp_path):
    source, target = db(server, 3), db(server, 4)
    every_encoding(source)
    db(server, 0).set("in another db", "not restored")
    original, taken = snapshot(source), time.monotonic()
    groups = source.xinfo_groups("stream:groups")
    config = config_for(write_config, tmp_path, f'url: "{url(server, 3)}"', f'url: "{url(server, 4)}"')
    [result] = run_backup(config, backend="cache", destination="local")
    metadata = result.manifest.backend["metadata"]
    assert metadata["method"] == "rdb" and [o.name for o in result.manifest.objects] == ["server.rdb"]
    assert metadata["content_summary"]["counts"] == {"keys": len(original)}
    outcome = restore(config, result.manifest.id, target="spare", validate=True)
    assert outcome.validation.ok and outcome.validation.items[0].checked == len(original)
    assert_same(snapshot(target), original, tolerance_ms=int((time.monotonic() - taken) * 1000) + 2_000)
    assert target.xinfo_groups("stream:groups") == groups
    assert target.pexpiretime("str:expiring") == source.pexpiretime("str:expiring")


def test_several_dbs_each_restore_into_their_own_numbers(server, write_config, tmp_path):
    for number in (1, 2):
        populate(db(server, number), 200 * number)
    original = {number: snapshot(db(server, number)) for number in (1, 2)}
    config = config_for(write_config, tmp_path, f'host: 127.0.0.1, port: {server.port}, databases: [1, 2]',
                        f'url: "{url(server, 9)}"')
    [result] = run_backup(config, backend="cache", destination="local")
    assert result.manifest.backend["metadata"]["method"] == "rdb"
    assert result.manifest.backend["metadata"]["content_summary"]["counts"] == {"db1": 201, "db2": 401}
    for number in (1, 2):
        db(server, number).flushdb()
    db(server, 5).set("untouched", "yes")
    assert restore(config, result.manifest.id, target="cache", validate=True).validation.ok
    assert {number: snapshot(db(server, number)) for number in (1, 2)}.keys() == original.keys()
    for number in (1, 2):
        assert_same(snapshot(db(server, number)), original[number])
    assert db(server, 5).dbsize() == 1


def verbose_backup(cli, tmp_path) -> tuple[str, str]:
    """``storagectl -v backup run`` of the backend "cache": the backup's id and what -v logged."""
    result = cli("-v", "-c", tmp_path / "storagectl.yaml", "-o", "json", "backup", "run", "--backend", "cache",
                 "--to", "local")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    return (info[0] if isinstance(info, list) else info)["id"], result.stderr


def method_of(tmp_path, backup_id: str) -> str:
    manifest = next(Path(tmp_path / "backups").rglob(f"{backup_id}/manifest.json"))
    return json.loads(manifest.read_text())["backend"]["metadata"]["method"]


def test_auto_takes_dumps_where_the_server_would_wait_and_says_why(server, write_config, tmp_path, cli):
    populate(db(server, 1), 50)
    db(server, 1).config_set("repl-diskless-sync-delay", 5)
    config = config_for(write_config, tmp_path, f'url: "{url(server, 1)}"', f'url: "{url(server, 2)}"')
    backup_id, logged = verbose_backup(cli, tmp_path)
    assert method_of(tmp_path, backup_id) == "dump"
    assert "backup method dump (repl-diskless-sync-delay is 5" in logged
    assert db(server, 1).config_get("repl-diskless-sync-delay") == {"repl-diskless-sync-delay": "5"}
    assert restore(config, backup_id, target="spare", validate=True).validation.ok
    db(server, 1).config_set("repl-diskless-sync-delay", 0)
    backup_id, logged = verbose_backup(cli, tmp_path)
    assert method_of(tmp_path, backup_id) == "dump"  # db 2 now holds half the instance's keys
    assert "backup method dump (other dbs hold 51 of the instance's 102 keys" in logged
    db(server, 2).flushdb()
    backup_id, logged = verbose_backup(cli, tmp_path)
    assert method_of(tmp_path, backup_id) == "rdb"
    assert "backup method rdb (the server sends its snapshot without delay)" in logged


def test_a_user_denied_sync_gets_dumps_under_auto_and_an_error_under_rdb(server, write_config, tmp_path, cli):
    from storagectl.errors import OperationFailed

    db(server, 0).acl_setuser("limited", enabled=True, passwords=["+secret"], keys=["*"],
                              commands=["+@all", "-sync", "-psync"])
    populate(db(server, 1), 50)
    source = f'url: "redis://limited:secret@127.0.0.1:{server.port}/1"'
    config = config_for(write_config, tmp_path, source, f'url: "{url(server, 2)}"')
    backup_id, logged = verbose_backup(cli, tmp_path)
    assert method_of(tmp_path, backup_id) == "dump"
    assert "backup method dump (the server refused SYNC: NOPERM" in logged
    assert restore(config, backup_id, target="spare", validate=True).validation.ok
    config = config_for(write_config, tmp_path, source, f'url: "{url(server, 2)}"', extra=", backup_method: rdb")
    with pytest.raises(OperationFailed, match="backup_method rdb: the server refused SYNC: NOPERM"):
        run_backup(config, backend="cache", destination="local")


def test_auto_method_choice_is_a_pure_policy():
    quick = {"repl-diskless-sync": "yes", "repl-diskless-sync-delay": "0"}
    assert rdb_obstacle("7.0.15", quick, {3: 100}, [3]) is None
    assert rdb_obstacle("7.2.4", {"repl-diskless-sync": "no", "repl-diskless-sync-delay": "5"}, {}, [0]) is None
    assert "delay is 5" in rdb_obstacle("7.0.15", {**quick, "repl-diskless-sync-delay": "5"}, {}, [0])
    assert "other dbs hold 20 of the instance's 100" in rdb_obstacle("7.0.15", quick, {0: 20, 3: 80}, [3])
    assert "CONFIG GET" in rdb_obstacle("7.0.15", None, {}, [0])
    assert "predates" in rdb_obstacle("6.2.14", quick, {}, [0])
    assert "newer" in rdb_obstacle("7.4.1", quick, {}, [0])
    assert "modules are loaded" in rdb_obstacle("7.0.15", quick, {}, [0], modules=True)


def test_what_an_explicit_rdb_costs_is_a_pure_policy():
    waits = {"repl-diskless-sync": "yes", "repl-diskless-sync-delay": "5"}
    assert rdb_costs({**waits, "repl-diskless-sync-delay": "0"}, {3: 100}, [3]) is None
    assert rdb_costs({**waits, "repl-diskless-sync": "no"}, {3: 100}, [3]) is None  # disk-based: no delay
    assert rdb_costs(None, {0: 20, 3: 80}, [3]) == ("other dbs hold 20 of the instance's 100 keys, which the "
                                                    "snapshot carries too")
    assert rdb_costs(waits, {0: 1, 3: 80}, [3]) == (
        "repl-diskless-sync-delay is 5: the server waits 5 s before sending its snapshot; "
        "other dbs hold 1 of the instance's 81 keys, which the snapshot carries too")


def test_an_explicit_rdb_says_on_stderr_what_the_snapshot_costs(server, write_config, tmp_path, cli):
    populate(db(server, 1), 50)
    db(server, 2).set("elsewhere", "yes")
    db(server, 1).config_set("repl-diskless-sync-delay", 1)
    config_for(write_config, tmp_path, f'url: "{url(server, 1)}"', f'url: "{url(server, 3)}"',
               extra=", backup_method: rdb")
    result = cli("-c", tmp_path / "storagectl.yaml", "backup", "run", "--backend", "cache", "--to", "local")
    assert result.exit_code == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "backup_method rdb" in line]
    total = db(server, 1).dbsize() + 1
    assert len(said) == 1 and said[0].endswith(
        "): backup_method rdb: repl-diskless-sync-delay is 1: the server waits 1 s before sending its "
        f"snapshot; other dbs hold 1 of the instance's {total} keys, which the snapshot carries too"), said
    db(server, 1).config_set("repl-diskless-sync-delay", 0)
    db(server, 2).flushdb()
    result = cli("-c", tmp_path / "storagectl.yaml", "backup", "run", "--backend", "cache", "--to", "local")
    assert result.exit_code == 0 and "backup_method rdb" not in result.stderr, result.stderr


def test_selections_and_clusters_are_refused_the_rdb_method(server, write_config, tmp_path):
    from storagectl.selection import Selection

    config = config_for(write_config, tmp_path, f'url: "{url(server, 1)}"', f'url: "{url(server, 2)}"',
                        extra=", backup_method: rdb")
    with pytest.raises(UsageError, match="cannot select keys"):
        run_backup(config, backend="cache", destination="local", selection=Selection(patterns=("a*",)))
    with pytest.raises(Exception, match="backed up key by key"):
        config_for(write_config, tmp_path, 'url: "redis+cluster://127.0.0.1:7000"', f'url: "{url(server, 2)}"',
                   extra=", backup_method: rdb")


def rdb_backup(server, write_config, tmp_path, keys: int = 300):
    populate(db(server, 1), keys)
    config = config_for(write_config, tmp_path, f'url: "{url(server, 1)}"', f'url: "{url(server, 2)}"')
    [result] = run_backup(config, backend="cache", destination="local")
    assert result.manifest.backend["metadata"]["method"] == "rdb"
    return config, result.manifest.id


def test_validate_of_an_rdb_backup_catches_a_changed_missing_or_extra_key(server, write_config, tmp_path,
                                                                           monkeypatch):
    config, backup_id = rdb_backup(server, write_config, tmp_path)
    meddling(monkeypatch, lambda client: (client.set("str:6", "changed"), client.delete("hash:7"),
                                          client.set("extra", "x")))
    validation = restore(config, backup_id, target="spare", validate=True).validation
    assert not validation.ok
    assert validation.items[0].mismatched == {"value": 1, "missing": 1}
    assert [check.ok for check in validation.checks] == [True]  # counted before meddling
    from storagectl.backends.redis import RedisBackend

    restore_db = RedisBackend._restore_db

    def one_key_more(self, archive, source, target, replace):
        loaded = restore_db(self, archive, source, target, replace)
        self.client(db=target).set("extra too", "x")
        return loaded

    monkeypatch.setattr(RedisBackend, "_restore_db", one_key_more)
    validation = restore(config, backup_id, target="spare", validate=True, replace=True).validation
    assert [(check.ok, check.expected_count + 1) for check in validation.checks] == [
        (False, validation.checks[0].actual_count)]  # one key more than the backup


def test_selective_and_staged_restores_read_rdb_backups(server, write_config, tmp_path):
    from storagectl.selection import Selection

    config, backup_id = rdb_backup(server, write_config, tmp_path)
    outcome = restore(config, backup_id, target="spare", validate=True, selection=Selection(patterns=("hash:*",)))
    assert outcome.validation.ok
    assert sorted(db(server, 2).keys()) == sorted(db(server, 1).keys("hash:*"))
    staged = config_for(write_config, tmp_path, f'url: "{url(server, 1)}"',
                        f'url: "{url(server, 2)}", staging_db: 6')
    assert restore(staged, backup_id, target="spare", validate=True, replace=True).validation.ok
    assert_same(snapshot(db(server, 2)), snapshot(db(server, 1)))


def stored_snapshot(tmp_path) -> Path:
    return next(Path(tmp_path / "backups").rglob("00001-server.rdb*"))


def test_a_damaged_rdb_archive_restores_nothing(server, write_config, tmp_path, cli):
    config, backup_id = rdb_backup(server, write_config, tmp_path)
    stored = stored_snapshot(tmp_path)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x20
    stored.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="nothing was restored"):
        restore(config, backup_id, target="spare")
    assert db(server, 2).dbsize() == 0
    result = cli("-c", tmp_path / "storagectl.yaml", "restore", backup_id, "--to", "spare")
    assert result.exit_code == 6 and "nothing was restored" in result.stderr


def test_a_truncated_snapshot_fails_with_an_integrity_error(server, write_config, tmp_path):
    """A snapshot cut short inside a consistent archive (manifest rewritten to match it) is refused."""
    import brotli

    config, backup_id = rdb_backup(server, write_config, tmp_path)
    stored = stored_snapshot(tmp_path)
    cut = brotli.compress(brotli.decompress(stored.read_bytes())[:-300], quality=1)
    stored.write_bytes(cut)
    manifest_path = stored.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib

    [entry] = manifest["objects"]
    entry.update(size=len(cut), sha256=hashlib.sha256(cut).hexdigest(), raw_size=entry["raw_size"] - 300)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="ends in the middle"):
        restore(config, backup_id, target="spare")


def test_parser_refuses_newer_versions_module_types_and_damage_in_one_line():
    def records(data: bytes):
        return list(RdbParser(io.BytesIO(data).read, "snap").records(0))

    with pytest.raises(IntegrityError, match=r"RDB version 12 is newer than this storagectl reads"):
        records(b"REDIS0012\xff")
    with pytest.raises(IntegrityError, match="a key of a module type"):
        records(b"REDIS0010\xfe\x00\x07\x01k" + b"\x00" * 20)
    with pytest.raises(IntegrityError, match="RDB value type 30 is unknown"):
        records(b"REDIS0010\xfe\x00\x1e\x01k\x00")
    with pytest.raises(IntegrityError, match="no REDIS header"):
        records(b"NOTREDIS0\xff")
    with pytest.raises(IntegrityError, match="db 0 holds 1 keys, its RESIZEDB says 2"):
        records(b"REDIS0010\xfe\x00\xfb\x02\x00\x00\x01k\x01v\xff")
    assert records(b"REDIS0010\xfe\x00\xfb\x01\x00\x00\x01k\x01v\xfe\x01\x00\x01x\x01y\xff")[0][0] == b"k"


def test_lzf_strings_decompress():
    assert lzf_decompress(b"\x01ab\xe0\x02\x01", 13, "x") == b"ab" * 6 + b"a"
    with pytest.raises(IntegrityError):
        lzf_decompress(b"\x01ab", 5, "x")


def test_cache_warm_loads_an_rdb_backup(server, write_config, tmp_path, cli):
    config, backup_id = rdb_backup(server, write_config, tmp_path, keys=120)
    result = cli("-c", tmp_path / "storagectl.yaml", "cache", "warm", "--from", backup_id, "-b", "spare")
    assert result.exit_code == 0, result.stderr
    assert_same(snapshot(db(server, 2)), snapshot(db(server, 1)))


def test_values_read_across_many_small_reads_are_the_servers_dumps(server, tmp_path):
    """A value of many elements is read over many refills of the parser's buffer; what it rebuilds
    must be the server's own DUMP, key by key (the refills keep the value's bytes once, not per read)."""
    import subprocess

    client = db(server, 0)
    client.flushall()
    every_encoding(client)
    client.sadd("set:big", *[f"member-{i}" for i in range(20_000)])
    snapshot_file = tmp_path / "dump.rdb"
    subprocess.run(["redis-cli", "-p", str(server.port), "--rdb", str(snapshot_file)], check=True,
                   capture_output=True)
    with snapshot_file.open("rb") as source:
        parsed = {key: value for key, value, _ in RdbParser(lambda n: source.read(min(n, 97)), "snap").records(0)}
    assert len(parsed) == client.dbsize()
    for key, value in parsed.items():
        assert client.dump(key) == value, key
