"""`storagectl cache` on the test Redis Cluster (3 primaries): key commands through RedisCluster, and
scan, invalidate, stats and watch over every primary (fan-out, deduplicated by slot ownership); a
node down; an interrupted invalidate resumed from its per-node cursor."""

from __future__ import annotations

import base64
import json
import os

import pytest

from storagectl.cache.invalidate import InvalidateOptions, plan_invalidate, run_invalidate
from storagectl.cache.nodes import cache_backend
from storagectl.cache.stats import StatsOptions, cache_stats
from storagectl.config import load_config
from storagectl.errors import ExitCode, Interrupted
from tests.test_cache_live import storagectl, wait_for

WEIRD = [b"sess:{tag} space", b"sess:new\nline", b"sess:\xff\xfe", b"sess:{x}\x00"]


@pytest.fixture
def cluster_config(redis_cluster, write_config):
    return write_config("version: 1\nbackends:\n" + redis_cluster.backend_yaml("cluster"))


def fill(cluster, prefix: str, count: int) -> set[bytes]:
    client = cluster.client()
    keys = {f"{prefix}{i}".encode() for i in range(count)}
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, b"v")
    pipe.execute()
    return keys


def all_keys(cluster) -> set[bytes]:
    return {key for node in cluster.nodes for key in node.client().scan_iter(count=1000)}


def test_key_commands_on_a_cluster(redis_cluster, cluster_config, cli):
    key = os.fsdecode(WEIRD[0])
    assert cli("-c", cluster_config, "cache", "set", key, "v", "--ttl", "1h", "-b", "cluster").exit_code == 0
    got = cli("-c", cluster_config, "-o", "json", "cache", "get", key, "-b", "cluster").json()
    assert got["value"]["text"] == "v" and 3_500_000 < got["ttl_ms"] <= 3_600_000
    fill(redis_cluster, "k", 20)
    deleted = cli("-c", cluster_config, "-o", "json", "cache", "del", *[f"k{i}" for i in range(20)], "nope", "--yes",
                  "-b", "cluster").json()
    assert deleted["deleted"] == 20 and len(deleted["missing"]) == 1
    assert cli("-c", cluster_config, "cache", "get", "k1", "-b", "cluster").exit_code == ExitCode.NOT_FOUND
    published = cli("-c", cluster_config, "-o", "json", "cache", "publish", "ch", "m", "-b", "cluster").json()
    assert published["receivers"] == 0


def test_scan_visits_every_primary_once(redis_cluster, cluster_config, cli):
    wanted = fill(redis_cluster, "sess:", 3000) | set(WEIRD)
    client = redis_cluster.client()
    for key in WEIRD:
        client.set(key, "v")
    fill(redis_cluster, "user:", 1000)
    assert all(list(node.client().scan_iter(match="sess:*", count=1000)) for node in redis_cluster.nodes)
    out = cli("-c", cluster_config, "-o", "json", "cache", "scan", "--pattern", "sess:*", "-b", "cluster").stdout
    found = [base64.b64decode(json.loads(line)["key_base64"]) for line in out.splitlines()]
    assert len(found) == len(wanted) and set(found) == wanted


def test_invalidate_deletes_exactly_the_matched_keys_on_every_primary(redis_cluster, cluster_config, cli):
    doomed = fill(redis_cluster, "sess:", 6000) | set(WEIRD)
    client = redis_cluster.client()
    for key in WEIRD:
        client.set(key, "v")
    kept = fill(redis_cluster, "user:", 3000)
    summary = cli("-c", cluster_config, "-o", "json", "cache", "invalidate", "--pattern", "sess:*", "--yes",
                  "-b", "cluster").json()
    assert summary["deleted"] == summary["matched"] == len(doomed) and summary["errors"] == 0
    assert len(summary["nodes"]) == 3 and all(node["deleted"] > 0 for node in summary["nodes"])
    assert all_keys(redis_cluster) == kept


def test_interrupted_cluster_invalidate_resumes_from_per_node_cursors(redis_cluster, cluster_config):
    doomed = fill(redis_cluster, "sess:", 9000)
    kept = fill(redis_cluster, "user:", 3000)
    backend = cache_backend(load_config(cluster_config), "cluster")
    ticks = []

    def interrupt(event):
        ticks.append(event)
        if len(ticks) == 5:
            raise KeyboardInterrupt

    first = run_invalidate(plan_invalidate(backend, InvalidateOptions(b"sess:*", batch=100)), interrupt)
    assert isinstance(first.error, Interrupted) and first.cursor.count("=") == 3
    left = all_keys(redis_cluster)
    assert kept <= left and 0 < len(doomed & left) < len(doomed)
    assert first.to_dict()["deleted"] == len(doomed - left)
    second = run_invalidate(plan_invalidate(backend, InvalidateOptions(b"sess:*", batch=100, cursor=first.cursor)))
    assert second.error is None and all_keys(redis_cluster) == kept


def test_a_cursor_of_another_topology_is_refused(redis_cluster, cluster_config, cli):
    result = cli("-c", cluster_config, "cache", "invalidate", "--pattern", "s*", "--cursor", "0", "--yes",
                 "-b", "cluster")
    assert result.exit_code == ExitCode.USAGE and "does not name this cluster's primaries" in result.stderr


def test_windowed_hit_ratio_sums_the_primaries(redis_cluster, cluster_config):
    client = redis_cluster.client()
    keys = sorted(fill(redis_cluster, "hit:", 30))

    def inside_the_window(_seconds):
        for key in keys:
            client.get(key)
        for i in range(20):
            client.get(f"miss:{i}")

    report = cache_stats(cache_backend(load_config(cluster_config), "cluster"), StatsOptions(interval=0),
                         inside_the_window)
    assert (report["hits"], report["misses"], report["hit_ratio"]) == (30, 20, 0.6)
    assert len(report["nodes"]) == 3 and sum(row["keys"] for row in report["nodes"]) == 30
    assert {row["node"] for row in report["nodes"]} == {node.address for node in redis_cluster.nodes}


def test_watch_merges_the_events_of_every_primary(redis_cluster, cluster_config):
    for node in redis_cluster.nodes:
        node.client().config_set("notify-keyspace-events", "")
    keys = [f"app:{i}" for i in range(12)]  # spread over the primaries
    process = storagectl(cluster_config, "-o", "json", "cache", "watch", "--prefix", "app:", "--events", "set",
                         "--enable-notifications", "--yes", "--count", str(len(keys)), "--timeout", "60s",
                         "-b", "cluster")
    try:
        wait_for(lambda: all(n.client().execute_command("PUBSUB", "NUMPAT") == 1 for n in redis_cluster.nodes))
        client = redis_cluster.client()
        for key in keys:
            client.set(key, "v")
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert sorted(e["key"] for e in events) == sorted(keys) and {e["event"] for e in events} == {"set"}
    assert len({e["node"] for e in events}) == 3
    assert {n.client().config_get("notify-keyspace-events")["notify-keyspace-events"]
            for n in redis_cluster.nodes} == {""}


def test_a_node_down_is_a_one_line_error_naming_it(own_redis_cluster, cli, write_config):
    with own_redis_cluster(3) as cluster:
        config = write_config("version: 1\nbackends:\n" + cluster.backend_yaml("cluster"))
        fill(cluster, "sess:", 300)
        victim = cluster.nodes[2]
        victim.stop()
        for command in (["scan"], ["invalidate", "--pattern", "sess:*", "--yes"], ["stats", "--interval", "0"]):
            result = cli("-c", config, "cache", *command, "-b", "cluster")
            assert result.exit_code == ExitCode.UNAVAILABLE, (command, result.stderr)
            first = result.stderr.splitlines()[0]
            assert victim.address in first, (command, result.stderr)


def test_warm_loads_a_single_server_backup_into_the_cluster(redis_cluster, own_redis, write_config, tmp_path, cli):
    from storagectl.backup import run_backup

    source = own_redis.client()
    pipe = source.pipeline(transaction=False)
    for i in range(300):
        pipe.set(f"page:{i}", f"v{i}", ex=3600)
    pipe.set(b"{t}\xff bin", "b")
    pipe.execute()
    config = write_config("version: 1\nbackends:\n"
                          f"  single: {{kind: redis, url: 'redis://127.0.0.1:{own_redis.port}/0'}}\n"
                          + redis_cluster.backend_yaml("cluster")
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    [backup] = run_backup(load_config(config), backend="single", destination="local")
    redis_cluster.client().set("page:7", "newer")
    summary = cli("-c", config, "-o", "json", "cache", "warm", "--from", backup.manifest.id, "-b", "cluster").json()
    assert (summary["restored"], summary["present"]) == (300, 1)
    client = redis_cluster.client()
    assert client.get("page:7") == b"newer" and client.get("page:8") == b"v8" and client.get(b"{t}\xff bin") == b"b"
    assert 3_500_000 < client.pttl("page:9") <= 3_600_000 and redis_cluster.dbsize() == 301


def test_a_cluster_that_is_down_is_unavailable_naming_the_failing_primary(own_redis_cluster, own_redis, cli,
                                                                          write_config, tmp_path):
    """A primary down: the others answer CLUSTERDOWN to every key command (full coverage required).
    That is exit 3 naming the backend and the failing node, with a hint, for get, set and warm."""
    from storagectl.backup import run_backup

    own_redis.client().set("page:1", "v")
    with own_redis_cluster(3) as cluster:
        config = write_config("version: 1\nbackends:\n"
                              f"  single: {{kind: redis, url: 'redis://127.0.0.1:{own_redis.port}/0'}}\n"
                              + cluster.backend_yaml("cluster")
                              + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
        [backup] = run_backup(load_config(config), backend="single", destination="local")
        victim, healthy = cluster.nodes[2], cluster.nodes[0]
        key = next(f"k{i}" for i in range(10_000) if healthy.client().cluster("keyslot", f"k{i}") in
                   range(*_first_range(healthy)))
        victim.stop()
        wait_for(lambda: healthy.client().cluster("info")["cluster_state"] == "fail", timeout=60)
        for command in (["get", key], ["set", key, "v"], ["warm", "--from", backup.manifest.id]):
            result = cli("-c", config, "cache", *command, "-b", "cluster")
            assert result.exit_code == ExitCode.UNAVAILABLE, (command, result.stderr)
            first, hint = result.stderr.splitlines()[:2]
            assert "backend 'cluster'" in first and "cluster is down" in first, (command, first)
            assert victim.address in first and hint.startswith("Try: "), (command, result.stderr)


def _first_range(node) -> tuple[int, int]:
    [start, end] = next(slots for slots in node.client().cluster("slots")
                        if slots[2][1] == node.port)[:2]
    return start, end + 1


def test_a_key_command_against_a_down_node_or_cluster_is_sent_once(own_redis_cluster, write_config, monkeypatch):
    """redis-py's own retries are off on the RedisCluster client (as on every client storagectl builds):
    a node refusing connections, then a cluster answering CLUSTERDOWN, each cost one attempt, not 11."""
    import redis
    from redis.cluster import RedisCluster

    from storagectl.backends import backend_from_config

    sent: list[str] = []
    execute = RedisCluster._execute_command

    def counted(self, node, *args, **kwargs):
        sent.append(node.name)
        return execute(self, node, *args, **kwargs)

    with own_redis_cluster(3) as cluster:
        config = write_config("version: 1\nbackends:\n" + cluster.backend_yaml("cluster"))
        victim, healthy = cluster.nodes[2], cluster.nodes[0]
        on_victim, on_healthy = (next(f"k{i}" for i in range(10_000)
                                      if node.client().cluster("keyslot", f"k{i}") in range(*_first_range(node)))
                                 for node in (victim, healthy))
        client = backend_from_config(load_config(config), "cluster").client()
        try:
            monkeypatch.setattr(RedisCluster, "_execute_command", counted)
            victim.stop()
            with pytest.raises(redis.ConnectionError):
                client.get(on_victim)
            assert sent == [victim.address]
            wait_for(lambda: healthy.client().cluster("info")["cluster_state"] == "fail", timeout=60)
            sent.clear()
            with pytest.raises(redis.exceptions.ClusterDownError):
                client.get(on_healthy)
            assert sent == [healthy.address]
        finally:
            client.close()


def test_the_cluster_client_follows_moved_and_ask_and_a_failover(own_redis_cluster, write_config):
    """With redis-py's retries off the RedisCluster client still follows MOVED (a slot moved after it read
    the slot map) and ASK (a slot in migration, its key already on the importing node): redis-py's loop
    of redirections is not its retry. After a failover the first command sent to the dead primary fails
    (storagectl's policy, not redis-py's, decides on trying again) and asks for a new slot map, which
    the next command uses: it reaches the promoted replica."""
    import redis

    from storagectl.backends import backend_from_config

    with own_redis_cluster(3, replicas=1) as cluster:
        config = write_config("version: 1\nbackends:\n" + cluster.backend_yaml("cluster"))
        source, target, victim = cluster.nodes
        moved, asked = _keys_on(source, 2)
        [failed_over] = _keys_on(victim, 1)
        seeded = cluster.client()
        for key in (moved, asked, failed_over):
            seeded.set(key, key)
        cluster.wait_for_replicas()
        client = backend_from_config(load_config(config), "cluster").client()
        try:
            assert client.get(moved) == moved.encode()  # the slot map is read
            _migrate(source, target, moved, finish=True)
            assert client.get(moved) == moved.encode()  # MOVED, followed
            _migrate(source, target, asked, finish=False)
            assert client.get(asked) == asked.encode()  # ASK, followed
            victim.stop()
            [replica] = [node for node in cluster.replicas
                         if node.client().info("replication").get("master_port") == victim.port]
            slot = source.client().cluster("keyslot", failed_over)
            live = [source, target, *(node for node in cluster.replicas if node.process.poll() is None)]
            # every live node's map, not one node's state: the client's new slot map may come from any
            # of them, and one the failover's gossip has not reached yet still names the dead primary
            wait_for(lambda: replica.client().info("replication")["role"] == "master"
                     and source.client().cluster("info")["cluster_state"] == "ok"
                     and all(_primary_port_of(node, slot) == replica.port for node in live), timeout=60)
            with pytest.raises(redis.ConnectionError):
                client.get(failed_over)
            assert client.get(failed_over) == failed_over.encode()
        finally:
            client.close()


def _primary_port_of(node, slot: int) -> int | None:
    """The port of the primary that ``node``'s slot map gives for ``slot``."""
    for start, end, primary, *_ in node.client().cluster("slots"):
        if start <= slot <= end:
            return primary[1]
    return None


def _keys_on(node, count: int) -> list[str]:
    """``count`` keys of slots ``node`` serves, each in a slot of its own."""
    first, end = _first_range(node)
    keys: dict[int, str] = {}
    for key in (f"k{i}" for i in range(100_000)):
        slot = node.client().cluster("keyslot", key)
        if first <= slot < end and slot not in keys:
            keys[slot] = key
            if len(keys) == count:
                return list(keys.values())
    raise AssertionError(f"no {count} keys on {node.address}")


def _migrate(source, target, key: str, finish: bool) -> None:
    """Move ``key``'s slot as redis-cli's reshard does; without ``finish`` the slot stays in migration
    (the key already on ``target``: the source answers ASK)."""
    slot = source.client().cluster("keyslot", key)
    source_id, target_id = source.node_id(), target.node_id()
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    source.client().execute_command("MIGRATE", "127.0.0.1", target.port, key, 0, 5000)
    if finish:
        target.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        source.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
