"""Selective Redis backups and restores (--pattern/--type) against the real server: the restored keys
equal the selected source keys, and no other key of the target changes."""

from __future__ import annotations

import pytest

from storagectl.backends.redis_selection import RDB_TYPES
from tests.conftest import leased_redis_dbs


@pytest.fixture
def dbs(redis_base_url):
    with leased_redis_dbs(redis_base_url, 2) as pair:
        yield pair


@pytest.fixture
def env(dbs, tmp_path, write_config):
    source, target = dbs
    client = source.client()
    for i in range(50):
        client.hset(f"user:{i}", mapping={"name": f"n{i}", "i": i})
    client.set("user:count", 50)
    client.set("user:token", "t", ex=3600)
    for i in range(10):
        client.set(f"session:{i}", f"s{i}")
    client.rpush("queue", *range(20))
    client.rpush("user:list", 1, 2, 3)
    config = write_config("version: 1\nbackends:\n" + source.backend_yaml("src") + target.backend_yaml("dst")
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    return {"config": config, "source": client, "target": target.client()}


def snapshot(client, pattern: str = "*") -> dict:
    return {key: (client.type(key), client.dump(key)) for key in client.scan_iter(match=pattern)}


def run(cli, env, *args):
    return cli("-c", env["config"], *args)


def backup(cli, env, *args) -> dict:
    result = run(cli, env, "-o", "json", "backup", "run", "--backend", "src", "--to", "local", *args)
    assert result.exit_code == 0, result.stderr
    return result.json()[0]


def test_pattern_and_type_backup_holds_exactly_the_selected_keys(cli, env):
    info = backup(cli, env, "--pattern", "user:*", "--type", "hash")
    assert info["partial"] and info["selection"] == {"patterns": ["user:*"], "types": ["hash"], "matched": {"keys": 50}}
    target = env["target"]
    target.set("other", "mine")
    target.hset("user:3", "name", "stale")
    target.set("user:count", 7)  # a string: not of the selected type, so left alone
    refused = run(cli, env, "restore", info["id"], "--to", "dst")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    restored = run(cli, env, "-o", "json", "restore", info["id"], "--to", "dst", "--yes", "--validate")
    assert restored.exit_code == 0, restored.stderr
    assert restored.json()["validation"]["checks"][0]["expected_count"] == 50
    hashes = {key: value for key, value in snapshot(env["source"], "user:*").items() if value[0] == b"hash"}
    assert {key: value for key, value in snapshot(target, "user:*").items() if value[0] == b"hash"} == hashes
    assert target.get("other") == b"mine" and target.get("user:count") == b"7"
    assert len(snapshot(target)) == 52


def test_subset_of_a_full_backup_with_several_types(cli, env):
    info = backup(cli, env)
    assert info["partial"] is False
    target = env["target"]
    target.set("session:1", "old")
    target.set("session:99", "not in the backup: a key of the selection, so replaced away")
    target.set("keep", "k")
    restored = run(cli, env, "restore", info["id"], "--to", "dst", "--pattern", "session:*", "--pattern", "user:l*",
                   "--type", "string", "--type", "list", "--yes", "--validate")
    assert restored.exit_code == 0, restored.stderr
    expected = {**snapshot(env["source"], "session:*"), **snapshot(env["source"], "user:l*")}
    assert {**snapshot(target, "session:*"), **snapshot(target, "user:l*")} == expected
    assert target.get("keep") == b"k" and target.dbsize() == len(expected) + 1


def test_type_filter_on_payloads_matches_the_type_command(env):
    client = env["source"]
    client.sadd("a:set", 1, 2)
    client.zadd("a:zset", {"x": 1})
    client.xadd("a:stream", {"f": "v"})
    for key in (b"user:1", b"queue", b"session:1", b"a:set", b"a:zset", b"a:stream"):
        assert RDB_TYPES[client.dump(key)[0]] == client.type(key).decode()


def test_redis_options_on_a_sql_backend_and_bad_types_are_usage_errors(cli, env, tmp_path):
    bad = run(cli, env, "backup", "run", "--backend", "src", "--to", "local", "--type", "hashes")
    assert bad.exit_code == 2 and "--type 'hashes' is not a Redis type" in bad.stderr
    label = run(cli, env, "backup", "run", "--backend", "src", "--to", "local", "--label", "Person")
    assert label.exit_code == 2 and "--label does not apply to backend 'src' (redis)" in label.stderr


def test_a_cluster_backs_up_and_restores_a_selection_on_every_primary(redis_cluster, cli, write_config, tmp_path):
    """Keys of the pattern spread over all three primaries; the restore deletes only the selection's keys."""
    from tests.test_redis_cluster import cluster_snapshot

    client = redis_cluster.client()
    for i in range(300):
        client.hset(f"user:{i}", mapping={"n": i})
        client.set(f"other:{i}", i)
    path = write_config("version: 1\nbackends:\n" + redis_cluster.backend_yaml("cluster") +
                        f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    ran = cli("-c", path, "-o", "json", "backup", "run", "--backend", "cluster", "--to", "local",
              "--pattern", "user:*", "--type", "hash")
    assert ran.exit_code == 0, ran.stderr
    assert ran.json()[0]["selection"]["matched"] == {"keys": 300}
    before = cluster_snapshot(redis_cluster)
    for i in range(0, 300, 3):
        client.hset(f"user:{i}", "n", "changed")
    client.hset("user:new", "n", 1)  # of the selection, not in the backup: replaced away
    client.set("other:0", "kept as it is now")
    restored = cli("-c", path, "restore", ran.json()[0]["id"], "--to", "cluster", "--yes", "--validate")
    assert restored.exit_code == 0, restored.stderr
    after = cluster_snapshot(redis_cluster)
    assert {k: v for k, v in after.items() if k.startswith(b"user:")} == \
        {k: v for k, v in before.items() if k.startswith(b"user:")}
    assert client.get("other:0") == b"kept as it is now" and redis_cluster.dbsize() == 600
