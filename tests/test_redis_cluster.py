"""Redis Cluster: config, the fan-out primitive, diag, backup and restore against a real 3-primary
cluster (tests/redis_cluster.py), and restores across cluster sizes and into / from a single node."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from storagectl.backends import open_backend
from storagectl.backends.redis_cluster import RedisClusterBackend
from storagectl.backends.redis_topology import (
    SLOTS,
    ClusterNode,
    SlotOwnership,
    fan_out,
    parse_cluster_nodes,
    scan_primaries,
)
from storagectl.backup import list_backups, restore, run_backup
from storagectl.config import load_config
from storagectl.errors import BackendUnavailable, OperationFailed, UsageError
from tests.test_backup_redis import READERS, populate


def key_per_slot() -> dict[int, bytes]:
    """One key name for every one of the 16,384 slots."""
    from redis.crc import key_slot

    keys: dict[int, bytes] = {}
    i = 0
    while len(keys) < SLOTS:
        key = b"slot:%d" % i
        keys.setdefault(key_slot(key), key)
        i += 1
    return keys


def fill(cluster, mixed: int = 3000) -> None:
    """A key in every slot, keys of every type with TTLs, hash-tagged keys and binary names."""
    client = cluster.client()
    pipe = client.pipeline(transaction=False)
    for key in key_per_slot().values():
        pipe.set(key, key * 3)
    for i in range(50):
        pipe.hset(f"{{user:{i % 5}}}:profile:{i}", mapping={"n": i})
    pipe.set(b"bin\x00\xff\n key", bytes(range(256)))
    pipe.set(b"\xe2\x82\xac{tag}\x00", b"euro")
    pipe.execute()
    populate(client, mixed)


def node_snapshot(client) -> dict:
    """Every key of one node/db: type, full value read by type, and absolute expiry (PEXPIRETIME, which
    a restore with ABSTTL keeps exactly), read in pipelines."""
    keys = list(client.scan_iter(count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = pipe.execute()
    for key, kind in zip(keys, kinds, strict=True):
        READERS[kind](pipe, key)
        pipe.execute_command("PEXPIRETIME", key)
    replies = pipe.execute()
    pairs = enumerate(zip(keys, kinds, strict=True))
    return {key: (kind, replies[2 * i], replies[2 * i + 1]) for i, (key, kind) in pairs}


def assert_close(restored: dict, original: dict, slack_ms: int = 1000) -> None:
    """Same keys, types and values; expiries within ``slack_ms``: a single node's backup derives them
    from TIME + PTTL inside one MULTI, which drifts by up to the EXEC's duration."""
    assert restored.keys() == original.keys()
    for key, (kind, value, expire_at) in original.items():
        assert restored[key][:2] == (kind, value), key
        assert (restored[key][2] < 0) == (expire_at < 0) and abs(restored[key][2] - expire_at) <= slack_ms, key


def cluster_snapshot(cluster) -> dict:
    result: dict = {}
    for node in cluster.nodes:
        result.update(node_snapshot(node.client()))
    return result


def config_yaml(write_config, tmp_path, backends: str):
    return load_config(write_config("version: 1\nbackends:\n" + backends + "destinations:\n"
                                    f"  local: {{kind: local, path: {tmp_path / 'backups'}}}\n"))


def cluster_config(write_config, tmp_path, cluster, *others: str):
    return config_yaml(write_config, tmp_path, cluster.backend_yaml("cluster") + "".join(others))


# -- config ---------------------------------------------------------------------------------------
def settings(**fields):
    from storagectl.backends.redis import RedisSettings

    return RedisSettings(kind="redis", **fields)


@pytest.mark.parametrize("fields", [
    {"url": "redis+cluster://10.0.0.5:7000"},
    {"url": "rediss+cluster://u:p%40ss@10.0.0.5:7000/0"},
    {"cluster": True, "nodes": ["10.0.0.5:7000", "[::1]:7001"]},
    {"cluster": True, "host": "10.0.0.5", "port": 7000},
])
def test_a_cluster_is_configured_by_url_nodes_or_host(fields):
    backend = open_backend("c", settings(**fields))
    assert isinstance(backend, RedisClusterBackend)
    assert backend.seeds()[0][0] in ("10.0.0.5", "::1")
    assert "p%40ss" not in backend.endpoint() and "p@ss" not in backend.endpoint()


@pytest.mark.parametrize(("fields", "message"), [
    ({"url": "redis+cluster://h:7000/3"}, "only db 0"),
    ({"cluster": True, "databases": [0, 1]}, "only db 0"),
    ({"cluster": True, "staging_db": 5}, "SWAPDB"),
    ({"nodes": ["h:7000"]}, "set cluster: true"),
    ({"url": "redis+cluster://h:7000", "cluster": False}, "cluster is false"),
    ({"cluster": True, "nodes": ["h:7000"], "url": "redis://h:7000"}, "not both"),
    ({"cluster": True, "nodes": ["h"]}, "not host:port"),
    ({"cluster": True, "nodes": ["h:notaport"]}, "port"),
    ({"cluster": True, "url": "unix:///run/redis.sock"}, "over TCP"),
    ({"url": "redis+cluster://h:7000?timeout=3"}, "query parameters"),
    ({"url": "redis://h:7000", "read_from_replicas": True}, "applies to a Redis Cluster"),
])
def test_bad_cluster_settings_are_config_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        settings(**fields)


def test_credentials_of_a_cluster_url_reach_every_node_decoded():
    backend = open_backend("c", settings(url="rediss+cluster://app:p%40ss@h:7000"))
    kwargs = backend.node_kwargs()
    assert (kwargs["username"], kwargs["password"], kwargs["ssl"]) == ("app", "p@ss", True)
    assert "p@ss" not in backend.label and "p%40ss" not in backend.label


def test_a_single_node_url_stays_a_single_node_backend():
    assert type(open_backend("c", settings(url="redis://h:6379/2"))).__name__ == "RedisBackend"


# -- the fan-out primitive --------------------------------------------------------------------
NODES_TEXT = """\
aaa 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461->-bbb]
bbb 10.0.0.2:7000@17000 master,fail? - 0 0 2 connected 5461-10922 [5461-<-aaa]
ccc 10.0.0.3:7000@17000,node-c master - 0 0 3 disconnected 10923-16383
ddd 10.0.0.4:7000@17000 slave aaa 0 0 1 connected
"""


def test_cluster_nodes_are_parsed_with_roles_flags_slots_and_migrations():
    topology = parse_cluster_nodes(NODES_TEXT)
    assert [node.node_id for node in topology.primaries()] == ["aaa", "bbb", "ccc"]
    assert topology.slots_covered == SLOTS and topology.owners[5461] == "bbb"
    replica = topology.nodes[3]
    assert (replica.is_primary, replica.primary_id, replica.slots) == (False, "aaa", ())
    assert topology.nodes[1].failing == "fail?" and topology.nodes[2].link_state == "disconnected"
    assert topology.migrating_slots() == ["[5461->-bbb]", "[5461-<-aaa]"]


def test_key_slots_agree_with_redis_py_and_the_server(redis_cluster):
    from redis.crc import key_slot as redis_py_key_slot

    from storagectl.backends.redis_topology import key_slot

    keys = [b"", b"a", b"{user:1}:x", b"{}x", b"x{}y{z}", b"{a}{b}", b"{", b"}{a}", b"bin\x00\xff{\xfe}"]
    server = redis_cluster.nodes[0].client()
    for key in keys:
        assert key_slot(key) == redis_py_key_slot(key) == server.cluster("KEYSLOT", key), key


def test_fan_out_bounds_concurrency_and_keeps_each_nodes_error():
    nodes = [ClusterNode(str(i), "h", 7000 + i, frozenset({"master"}), None, "connected") for i in range(6)]
    running, peak, lock = [0], [0], threading.Lock()

    def visit(node):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        if node.port == 7003:
            raise ConnectionError("down")
        return node.port

    outcomes = fan_out(nodes, visit, 2)
    assert peak[0] <= 2
    assert [o.value for o in outcomes] == [7000, 7001, 7002, None, 7004, 7005]
    assert isinstance(outcomes[3].error, ConnectionError)


def test_a_primarys_slots_are_read_from_a_healthy_replica_only_when_asked():
    text = NODES_TEXT + ("eee 10.0.0.5:7000@17000 slave,fail bbb 0 0 2 connected\n"
                         "fff 10.0.0.6:7000@17000 slave bbb 0 0 2 connected\n")
    topology = parse_cluster_nodes(text)
    aaa, bbb, ccc = topology.primaries()
    assert topology.reader_of(aaa, from_replicas=False) is aaa
    assert topology.reader_of(aaa, from_replicas=True).node_id == "ddd"
    assert topology.reader_of(bbb, from_replicas=True).node_id == "fff"  # eee is failing
    assert topology.reader_of(ccc, from_replicas=True) is ccc  # no replica: the primary


def test_a_key_counts_only_on_the_primary_that_owns_its_slot():
    from redis.crc import key_slot

    topology = parse_cluster_nodes(NODES_TEXT)
    aaa, bbb = topology.nodes[0], topology.nodes[1]
    keys = [b"a", b"b", b"c", b"foo", b"{x}1"]
    keep_a, keep_b = SlotOwnership(topology, aaa), SlotOwnership(topology, bbb)
    assert sorted(keep_a(keys) + keep_b(keys)) == sorted(k for k in keys if key_slot(k) <= 10922)
    assert keep_a.dropped + keep_b.dropped == len(keys) + sum(key_slot(k) > 10922 for k in keys)


def test_scan_primaries_returns_every_key_of_every_primary_once(redis_cluster, write_config, tmp_path):
    fill(redis_cluster, mixed=600)
    backend = open_backend("cluster", cluster_config(write_config, tmp_path, redis_cluster).backend("cluster"))
    with backend.connect() as topology:
        seen = [key for _node, keys in scan_primaries(topology, backend.node_client, count=500) for key in keys]
        matched = [k for _n, keys in scan_primaries(topology, backend.node_client, match="slot:*") for k in keys]
    assert len(seen) == len(set(seen)) == redis_cluster.dbsize()
    assert len(matched) == SLOTS


# -- diag -------------------------------------------------------------------------------------
def test_diag_of_a_healthy_cluster_has_a_row_per_node(redis_cluster, cli, write_config, tmp_path):
    fill(redis_cluster, mixed=60)
    path = write_config(f"version: 1\nbackends:\n{redis_cluster.backend_yaml('cluster')}")
    result = cli("-c", path, "diag", "-b", "cluster", "-o", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    [report] = result.json()["backends"] if isinstance(result.json(), dict) else result.json()
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["cluster_state"]["status"] == "ok" and checks["slots_unserved"]["value"] == 0
    rows = [name for name in checks if name.startswith("node ")]
    assert sorted(rows) == sorted(f"node {node.address}" for node in redis_cluster.nodes)
    assert sum(checks[row]["value"]["keys"] for row in rows) == redis_cluster.dbsize()


def test_a_down_node_is_a_critical_row_not_a_failed_command(own_redis_cluster, cli, write_config):
    with own_redis_cluster(3) as cluster:
        cluster.nodes[2].stop()
        path = write_config(f"version: 1\nbackends:\n{cluster.backend_yaml('cluster')}")
        result = cli("-c", path, "diag", "-b", "cluster")
    assert result.exit_code == 2, result.stdout + result.stderr
    down = [line for line in result.stdout.splitlines() if f"node {cluster.nodes[2].address}" in line]
    assert down and "CRITICAL" in down[0] and "unreachable" in down[0]
    assert "slots_unserved" in result.stdout and "Traceback" not in result.stderr


def test_a_replica_is_a_row_with_its_lag(own_redis_cluster, cli, write_config):
    with own_redis_cluster(3, spare=1) as cluster:
        replica = cluster.add_replica(cluster.nodes[0])
        path = write_config(f"version: 1\nbackends:\n{cluster.backend_yaml('cluster')}")
        result = cli("-c", path, "diag", "-b", "cluster")
    row = next(line for line in result.stdout.splitlines() if f"node {replica.address}" in line)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "replica" in row and "bytes behind" in row and "OK" in row


def test_bad_cluster_config_is_one_line_naming_the_field(cli, write_config):
    path = write_config("version: 1\nbackends:\n  c: {kind: redis, url: 'redis+cluster://u:secret@h:7000/2'}\n")
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 2 and "only db 0" in result.stderr and "secret" not in result.stderr


# -- backup / restore -------------------------------------------------------------------------
def test_round_trip_keeps_every_key_of_every_slot_with_counts_per_node(redis_cluster, write_config, tmp_path):
    fill(redis_cluster)
    original = cluster_snapshot(redis_cluster)
    config = cluster_config(write_config, tmp_path, redis_cluster)
    [result] = run_backup(config, backend="cluster", destination="local")
    manifest = result.manifest
    nodes = manifest.backend["metadata"]["cluster"]["nodes"]
    assert sum(node["keys"] for node in nodes) == len(original)
    by_address = {node.address: node.client().dbsize() for node in redis_cluster.nodes}
    assert {node["address"]: node["keys"] for node in nodes} == by_address
    assert sum(end - start + 1 for node in nodes for start, end in node["slots"]) == SLOTS
    assert manifest.backend["metadata"]["content_summary"]["counts"] == {"keys": len(original)}
    redis_cluster.flush()
    outcome = restore(config, manifest.id, target="cluster", validate=True)
    assert outcome.validation.ok
    assert cluster_snapshot(redis_cluster) == original


def big_values(client) -> list[bytes]:
    """Aggregates in hash tables (whose DUMP a RESTORE does not reproduce: table order), a long list
    and sorted set, and a stream with a consumer group; returns their names."""
    pipe = client.pipeline(transaction=False)
    pipe.sadd("big:set", *[f"m{i}" for i in range(3000)])
    pipe.srem("big:set", *[f"m{i}" for i in range(0, 3000, 3)])
    pipe.hset("big:hash", mapping={f"f{i}": "v" * (i % 17) for i in range(3000)})
    pipe.hdel("big:hash", *[f"f{i}" for i in range(0, 3000, 4)])
    pipe.rpush("big:list", *range(2500))
    pipe.zadd("big:zset", {f"m{i}": i % 11 for i in range(2500)})
    for i in range(1200):
        pipe.xadd("big:stream", {"n": i})
    pipe.execute()
    client.xgroup_create("big:stream", "readers", id="0")
    client.xreadgroup("readers", "one", {"big:stream": ">"}, count=10)
    return [b"big:set", b"big:hash", b"big:list", b"big:zset", b"big:stream"]


def test_validate_compares_every_key_not_only_the_count(redis_cluster, write_config, tmp_path, monkeypatch):
    """Between the restore and its check another client changes one value (of a hash-table set, same
    size), one expiry and one type, and replaces one key by another: the counts still match, the
    key-by-key comparison names each."""
    fill(redis_cluster, mixed=600)
    client = redis_cluster.client()
    big_values(client)
    config = cluster_config(write_config, tmp_path, redis_cluster)
    [result] = run_backup(config, backend="cluster", destination="local")
    redis_cluster.flush()
    compare_items = RedisClusterBackend.compare_items

    def tampered(self, archive, outcome):
        client.srem("big:set", "m1")
        client.sadd("big:set", "intruder")
        client.pexpireat("str:6", int(time.time() * 1000) + 3_600_000)
        client.delete("list:2")
        client.set("list:2", "a string now")
        client.delete("zset:4")
        client.set("extra key", 1)
        return compare_items(self, archive, outcome)

    monkeypatch.setattr(RedisClusterBackend, "compare_items", tampered)
    validation = restore(config, result.manifest.id, target="cluster", validate=True).validation
    assert [check.ok for check in validation.checks] == [True]  # the count alone would pass
    [items] = validation.items
    assert not validation.ok and items.checked == redis_cluster.dbsize()
    assert items.mismatched == {"value": 1, "expiry": 1, "type": 1, "missing": 1}
    assert sorted(items.examples) == ["big:set (value)", "list:2 (type)", "str:6 (expiry)", "zset:4 (missing)"]
    assert "1 value" in validation.problem() and "1 missing" in validation.problem()


def test_validate_finds_equal_values_equal_whatever_their_dump(redis_cluster, write_config, tmp_path):
    """Hash-table sets and hashes are restored in another order (DUMP differs); they, long lists,
    sorted sets and a stream with a group compare equal element by element, and no scratch key stays."""
    client = redis_cluster.client()
    names = big_values(client)
    fill(redis_cluster, mixed=60)
    client.set("expiring", 1, px=1500)
    dumps = {name: client.dump(name) for name in names}
    config = cluster_config(write_config, tmp_path, redis_cluster)
    [result] = run_backup(config, backend="cluster", destination="local")
    redis_cluster.flush()
    original = restore(config, result.manifest.id, target="cluster")
    assert client.dump(b"big:set") != dumps[b"big:set"] and client.dump(b"big:hash") != dumps[b"big:hash"]
    redis_cluster.flush()
    restore_it = RedisClusterBackend.restore

    def restore_then_expire(self, archive, options):
        outcome = restore_it(self, archive, options)
        time.sleep(1.6)  # "expiring" expires after its RESTORE: absent, not a mismatch
        return outcome

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RedisClusterBackend, "restore", restore_then_expire)
        validation = restore(config, result.manifest.id, target="cluster", validate=True).validation
    assert original.validation is None
    assert validation.ok, validation.to_dict()
    assert validation.items[0].checked == redis_cluster.dbsize() + 1 and "compared one by one" in validation.notes[-1]
    assert not list(client.scan_iter("storagectl:validate:*"))


def test_scratch_keys_hash_to_their_slot_and_duplicates_are_forgiven():
    from storagectl.backends.redis_compare import KeyComparison, forgive_duplicates, scratch_keys
    from storagectl.backends.redis_topology import key_slot

    assert [key_slot(name) for name in scratch_keys()] == list(range(SLOTS))
    first, second = KeyComparison("keys"), KeyComparison("keys")
    first.count([(b"a", b"", 0), (b"twice", b"", 0)], [0, 3])
    second.count([(b"gone", b"", 0)], [1])
    total = forgive_duplicates([first, second], {b"twice"}, "keys")
    assert (total.checked, total.mismatched, total.examples) == (3, {"missing": 1}, ["gone (missing)"])


def test_cluster_backup_restores_into_a_single_node_and_back(redis_cluster, redis_db, write_config, tmp_path):
    fill(redis_cluster, mixed=600)
    original = cluster_snapshot(redis_cluster)
    config = cluster_config(write_config, tmp_path, redis_cluster, redis_db.backend_yaml("single"))
    [to_single] = run_backup(config, backend="cluster", destination="local")
    assert restore(config, to_single.manifest.id, target="single", validate=True).validation.ok
    assert node_snapshot(redis_db.client()) == original
    redis_cluster.flush()
    [from_single] = run_backup(config, backend="single", destination="local")
    assert restore(config, from_single.manifest.id, target="cluster", validate=True).validation.ok
    assert_close(cluster_snapshot(redis_cluster), original)


def test_a_backup_restores_into_a_cluster_of_another_size(redis_cluster, own_redis_cluster, write_config, tmp_path):
    fill(redis_cluster, mixed=600)
    original = cluster_snapshot(redis_cluster)
    with own_redis_cluster(4) as bigger:
        config = cluster_config(write_config, tmp_path, redis_cluster, bigger.backend_yaml("bigger"))
        [result] = run_backup(config, backend="cluster", destination="local")
        assert restore(config, result.manifest.id, target="bigger", validate=True).validation.ok
        assert cluster_snapshot(bigger) == original
        assert all(node.client().dbsize() > 0 for node in bigger.nodes)


def test_a_reshard_between_backup_and_restore_routes_keys_to_their_new_owner(own_redis_cluster, write_config,
                                                                             tmp_path):
    with own_redis_cluster(3, spare=1) as cluster:
        fill(cluster, mixed=600)
        original = cluster_snapshot(cluster)
        config = cluster_config(write_config, tmp_path, cluster)
        [result] = run_backup(config, backend="cluster", destination="local")
        cluster.client().set("written after the backup", 1)
        new = cluster.add_node()
        cluster.reshard(cluster.nodes[0], new, 2000)
        outcome = restore(config, result.manifest.id, target="cluster", validate=True, replace=True)
        assert outcome.validation.ok
        assert cluster_snapshot(cluster) == original
        assert new.client().dbsize() > 0


def test_a_node_killed_during_a_backup_fails_it_and_leaves_no_backup(own_redis_cluster, write_config, tmp_path):
    with own_redis_cluster(3) as cluster:
        fill(cluster, mixed=600)
        config = cluster_config(write_config, tmp_path, cluster)
        victim = cluster.nodes[2]
        os.kill(victim.process.pid, signal.SIGSTOP)  # the backup cannot get past this node ...
        failure: list[BaseException] = []

        def backup() -> None:
            try:
                run_backup(config, backend="cluster", destination="local")
            except BaseException as exc:  # noqa: BLE001 - inspected below
                failure.append(exc)

        runner = threading.Thread(target=backup)
        runner.start()
        time.sleep(0.5)
        victim.stop()  # ... until it is killed under it
        runner.join(60)
    assert not runner.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], BackendUnavailable), failure
    assert victim.address in str(failure[0])
    assert list_backups(config) == []
    assert not [p for p in (tmp_path / "backups").rglob("*") if p.name == "manifest.json"]


def test_cross_slot_dump_leaves_out_missing_keys_and_keeps_exact_expiries(redis_cluster):
    from storagectl.backends.redis import _RECORD_HEADER, _pack_records
    from storagectl.backends.redis_wire import DUMP_CROSS_SLOT_LUA, RespSocket, ScriptDump

    node = redis_cluster.nodes[0]
    topology = parse_cluster_nodes(node.client().execute_command("CLUSTER", "NODES").decode())
    first = next(n.slots[0][0] for n in topology.nodes if "myself" in n.flags)
    slots = key_per_slot()
    owned = [slots[first], slots[first + 1], slots[first + 2]]  # three slots of this node
    plain = node.client()
    plain.set(owned[0], "x")
    plain.set(owned[2], "y", px=600_000)
    expire_at = plain.execute_command("PEXPIRETIME", owned[2])
    client = type(plain)(host="127.0.0.1", port=node.port, single_connection_client=True)
    try:
        dumper = ScriptDump(client.script_load(DUMP_CROSS_SLOT_LUA))
        commands = RespSocket(client.connection)
        commands.send(dumper.request(owned))  # owned[1] was never written: left out
        records, count = _pack_records(owned, dumper.reply(commands, owned), dumper.absolute_expiry)
    finally:
        client.close()
    assert count == 2 and owned[1] not in records
    last = records[len(records) - len(plain.dump(owned[2])) - len(owned[2]) - _RECORD_HEADER.size:]
    assert _RECORD_HEADER.unpack(last[:_RECORD_HEADER.size])[2] == expire_at


def test_slots_in_migration_refuse_the_backup_before_it_starts(redis_cluster, write_config, tmp_path):
    source, target = redis_cluster.nodes[0], redis_cluster.nodes[1]
    source.client().execute_command("CLUSTER", "SETSLOT", 0, "MIGRATING", target.node_id())
    try:
        config = cluster_config(write_config, tmp_path, redis_cluster)
        with pytest.raises(OperationFailed, match="being migrated"):
            run_backup(config, backend="cluster", destination="local")
    finally:
        source.client().execute_command("CLUSTER", "SETSLOT", 0, "STABLE")
    assert list_backups(config) == []


def test_a_multi_db_backup_is_refused_by_a_cluster(redis_cluster, redis_base_url, write_config, tmp_path):
    from tests.conftest import leased_redis_dbs

    with leased_redis_dbs(redis_base_url, 2) as (first, second):
        first.client().set("a", 1)
        second.client().set("b", 2)
        config = cluster_config(write_config, tmp_path, redis_cluster, f"""\
  multi:
    kind: redis
    url: {first.url}
    databases: [{first.db}, {second.db}]
""")
        [result] = run_backup(config, backend="multi", destination="local")
        for dry_run in (True, False):  # refused when planned, before the archive is read
            with pytest.raises(UsageError, match="only db 0") as refused:
                restore(config, result.manifest.id, target="cluster", dry_run=dry_run)
            assert f"--db {first.db}" in refused.value.hint
        with pytest.raises(UsageError, match="--db 99 is not one of them"):
            restore(config, result.manifest.id, target="cluster", db=99)
        assert redis_cluster.dbsize() == 0


def test_one_db_of_a_multi_db_backup_restores_into_a_cluster_with_db(redis_cluster, redis_base_url, cli,
                                                                     write_config, tmp_path):
    from tests.conftest import leased_redis_dbs

    with leased_redis_dbs(redis_base_url, 2) as (first, second):
        populate(first.client(), 300)
        second.client().set("only in the other db", 1)
        original = node_snapshot(second.client())
        path = write_config("version: 1\nbackends:\n" + redis_cluster.backend_yaml("cluster") +
                            f"  multi: {{kind: redis, url: '{first.url}', databases: [{first.db}, {second.db}]}}\n"
                            f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
        assert cli("-c", path, "backup", "run", "--backend", "multi", "--to", "local").exit_code == 0
        planned = cli("-c", path, "-o", "json", "restore", "latest", "--backend", "multi", "--to", "cluster",
                      "--db", str(second.db), "--dry-run")
        assert planned.exit_code == 0 and planned.json()["db"] == second.db, planned.stderr
        restored = cli("-c", path, "-o", "json", "restore", "latest", "--backend", "multi", "--to", "cluster",
                       "--db", str(second.db), "--validate")
        assert restored.exit_code == 0, restored.stderr
        validation = restored.json()["validation"]
        assert validation["checks"][0]["expected_count"] == 1 and validation["items"][0]["checked"] == 1
        assert cluster_snapshot(redis_cluster) == original
        absent = str(max(first.db, second.db) + 50)
        wrong_db = cli("-c", path, "restore", "latest", "--backend", "multi", "--to", "cluster", "--db", absent,
                       "--yes")
        assert wrong_db.exit_code == 2 and "not one of them" in wrong_db.stderr


def test_non_empty_cluster_needs_yes_and_is_then_replaced(redis_cluster, write_config, tmp_path):
    fill(redis_cluster, mixed=60)
    original = cluster_snapshot(redis_cluster)
    config = cluster_config(write_config, tmp_path, redis_cluster)
    [result] = run_backup(config, backend="cluster", destination="local")
    redis_cluster.client().set("stray", 1)
    with pytest.raises(UsageError):
        restore(config, result.manifest.id, target="cluster")
    assert restore(config, result.manifest.id, target="cluster", replace=True, validate=True).validation.ok
    assert cluster_snapshot(redis_cluster) == original


def test_backup_and_restore_of_a_cluster_run_from_the_cli(redis_cluster, cli, write_config, tmp_path):
    fill(redis_cluster, mixed=60)
    total = redis_cluster.dbsize()
    path = write_config("version: 1\nbackends:\n" + redis_cluster.backend_yaml("cluster") +
                        f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    backup = cli("-c", path, "-o", "json", "backup", "run", "--backend", "cluster", "--to", "local")
    assert backup.exit_code == 0, backup.stderr
    refused = cli("-c", path, "restore", "latest", "--to", "cluster")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    restored = cli("-c", path, "restore", "latest", "--to", "cluster", "--yes", "--validate")
    assert restored.exit_code == 0, restored.stderr
    assert redis_cluster.dbsize() == total


def test_the_first_seed_that_answers_gives_the_topology(redis_cluster, cli, write_config):
    from tests.conftest import free_port

    seeds = f'["127.0.0.1:{free_port()}", "{redis_cluster.nodes[1].address}"]'
    path = write_config(f"version: 1\nbackends:\n  c: {{kind: redis, cluster: true, nodes: {seeds}}}\n")
    result = cli("-c", path, "diag", "-b", "c")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert all(f"node {node.address}" in result.stdout for node in redis_cluster.nodes)


def test_an_unreachable_cluster_is_one_row_saying_so(cli, write_config):
    from tests.conftest import free_port

    path = write_config(f"version: 1\nbackends:\n  c: {{kind: redis, url: 'redis+cluster://127.0.0.1:{free_port()}'}}\n")
    result = cli("-c", path, "diag", "-b", "c")
    assert result.exit_code == 3 and "connection refused" in result.stdout and "Traceback" not in result.stderr


def move_empty_slot(source, target) -> int:
    """Move one key-less slot of ``source`` to ``target`` as redis-cli's reshard does (IMPORTING,
    MIGRATING, NODE on both), without needing the other nodes."""
    topology = parse_cluster_nodes(source.client().execute_command("CLUSTER", "NODES").decode())
    [(first, last)] = next(node.slots for node in topology.nodes if "myself" in node.flags)
    slot = next(s for s in range(first, last + 1) if source.client().cluster("COUNTKEYSINSLOT", s) == 0)
    source_id, target_id = source.node_id(), target.node_id()
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return slot


def test_a_slot_moved_during_the_backup_fails_it(own_redis_cluster, write_config, tmp_path):
    with own_redis_cluster(3) as cluster:
        populate(cluster.client(), 600)  # leaves most slots empty
        config = cluster_config(write_config, tmp_path, cluster)
        moved: list[int] = []
        lock = threading.Lock()

        def move_once(event) -> None:  # runs inside the backup, when a primary's object is complete
            with lock:
                if event.stage == "finish" and not moved:
                    moved.append(move_empty_slot(cluster.nodes[0], cluster.nodes[1]))

        with pytest.raises(OperationFailed, match="slots moved during the backup"):
            run_backup(config, backend="cluster", destination="local", progress=move_once)
    assert moved and list_backups(config) == []


def command_calls(node, *names: str) -> int:
    stats = node.client().info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in names)


def test_backup_and_inspect_read_from_replicas_when_asked(own_redis_cluster, cli, write_config, tmp_path):
    """With read_from_replicas every primary's keys are scanned and dumped on its replica (the primaries
    see no SCAN, script or MEMORY call); the backup restores to the same keys, validated on the primaries."""
    with own_redis_cluster(3, replicas=1) as cluster:
        fill(cluster, mixed=600)
        cluster.wait_for_replicas()
        original = cluster_snapshot(cluster)
        for node in cluster.nodes + cluster.replicas:
            node.client().config_resetstat()
        path = write_config("version: 1\nbackends:\n" + cluster.backend_yaml("cluster", "read_from_replicas: true\n")
                            + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
        backup = cli("-c", path, "-o", "json", "backup", "run", "--backend", "cluster", "--to", "local")
        assert backup.exit_code == 0, backup.stderr
        inspected = cli("-c", path, "-o", "json", "inspect", "keys", "-b", "cluster")
        assert inspected.exit_code == 0, inspected.stderr
        reads = ("scan", "evalsha", "memory|usage", "type")
        assert all(command_calls(node, *reads) == 0 for node in cluster.nodes)
        assert all(command_calls(node, "scan") > 0 and command_calls(node, "evalsha") > 0 for node in cluster.replicas)
        assert inspected.json()["backends"][0]["summary"]["keys"]["value"] == len(original)
        cluster.flush()
        restored = cli("-c", path, "restore", "latest", "--to", "cluster", "--validate")
        assert restored.exit_code == 0, restored.stderr
        assert cluster_snapshot(cluster) == original


# -- inspect (storagectl.inspect.redis through RedisBackend.visit_keyspace) ------------------------
def test_inspect_counts_the_keys_and_bytes_of_every_primary(redis_cluster, cli, write_config):
    from tests.test_inspect_redis import fill as fill_prefixes
    from tests.test_inspect_redis import truth

    fill_prefixes(redis_cluster.client(), 900)
    per_node = [truth(node.client())[0] for node in redis_cluster.nodes]
    keys, size = sum(n[0] for n in per_node), sum(n[1] for n in per_node)
    assert all(n[0] for n in per_node)  # every primary holds some
    path = write_config("version: 1\nbackends:\n" + redis_cluster.backend_yaml("cache"))
    scanned = cli("-o", "json", "-c", path, "inspect", "keys", "-b", "cache")
    assert scanned.exit_code == 0, scanned.stderr
    [report] = scanned.json()["backends"]
    assert report["summary"]["keys"]["value"] == keys and report["summary"]["memory_bytes"]["value"] == size
    overview = cli("-o", "json", "-c", path, "inspect", "-b", "cache")
    assert overview.exit_code == 0, overview.stderr
    assert overview.json()["backends"][0]["summary"]["keys"]["value"] == keys


@pytest.mark.parametrize("job_parallel, visits", [(None, 3), (1, 1)])
def test_a_cluster_backup_visits_every_primary_at_once_unless_the_job_sets_parallel(
        redis_cluster, write_config, tmp_path, monkeypatch, job_parallel, visits):
    """The default ``parallel`` (the CPU count, 2 here) would leave the third primary waiting."""
    from storagectl.backends import redis_cluster as module

    fill(redis_cluster)
    seen = []
    real_fan_out = module.fan_out

    def recording_fan_out(nodes, visit, concurrency, *args, **kwargs):
        if visit.__name__ == "dump":  # the backup's visits (the others read the topology)
            seen.append(concurrency)
        return real_fan_out(nodes, visit, concurrency, *args, **kwargs)

    monkeypatch.setattr(module, "fan_out", recording_fan_out)
    parallel = "" if job_parallel is None else f"    parallel: {job_parallel}\n"
    config = load_config(write_config(
        "version: 1\nbackends:\n" + redis_cluster.backend_yaml("cluster")
        + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n"
        + "jobs:\n  nightly:\n    backends: [cluster]\n    destination: local\n" + parallel))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    [result] = run_backup(config, job="nightly")
    assert result.manifest is not None
    assert seen == [visits]
