"""Redis backup and restore: every key, type, value and TTL; expired keys; keys gone mid-backup; a server
lost or a destination full mid-backup."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from storagectl.backup import list_backups, restore, run_backup
from storagectl.config import load_config
from storagectl.errors import BackendUnavailable, UsageError
from tests.conftest import leased_redis_dbs


def populate(client, keys: int = 3000) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        kind = i % 6
        if kind == 0:
            pipe.set(f"str:{i}", f"value {i}" * (i % 7 + 1))
        elif kind == 1:
            pipe.hset(f"hash:{i}", mapping={"a": i, "b": "x" * (i % 13)})
        elif kind == 2:
            pipe.rpush(f"list:{i}", *range(i % 9 + 1))
        elif kind == 3:
            pipe.sadd(f"set:{i}", *[f"m{j}" for j in range(i % 5 + 1)])
        elif kind == 4:
            pipe.zadd(f"zset:{i}", {f"m{j}": j / 3 for j in range(i % 6 + 1)})
        else:
            pipe.xadd(f"stream:{i}", {"f": i})
        if i % 4 == 0:
            pipe.pexpire(pipe_key(i), 600_000 + i)
    pipe.set(b"bin\x00\xff", bytes(range(256)))
    pipe.execute()


def pipe_key(i: int) -> str:
    return f"{('str', 'hash', 'list', 'set', 'zset', 'stream')[i % 6]}:{i}"


READERS = {
    b"string": lambda c, k: c.get(k),
    b"hash": lambda c, k: c.hgetall(k),
    b"list": lambda c, k: c.lrange(k, 0, -1),
    b"set": lambda c, k: c.smembers(k),
    b"zset": lambda c, k: c.zrange(k, 0, -1, withscores=True),
    b"stream": lambda c, k: c.xrange(k),
}


def snapshot(client) -> dict[bytes, tuple[bytes, object, int]]:
    """Every key with its type, its full value read by type, and its PTTL."""
    result = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        result[key] = (kind, READERS[kind](client, key), client.pttl(key))
    return result


def assert_same(restored: dict, original: dict, tolerance_ms: int = 15_000) -> None:
    """Equal types and values; TTLs apart by less than ``tolerance_ms`` (the time between the snapshots)."""
    assert restored.keys() == original.keys()
    for key, (kind, payload, ttl) in original.items():
        r_kind, r_payload, r_ttl = restored[key]
        assert (r_kind, r_payload) == (kind, payload), key
        if ttl < 0:
            assert r_ttl == ttl, key
        else:
            assert r_ttl > 0 and abs(ttl - r_ttl) < tolerance_ms, (key, ttl, r_ttl)


@pytest.fixture
def redis_pair(redis_base_url):
    """Two leased dbs: source and target."""
    with leased_redis_dbs(redis_base_url, 2) as databases:
        yield databases


def config_for(write_config, tmp_path, source_url: str, target_url: str):
    return load_config(write_config(f"""
        version: 1
        backends:
          cache: {{kind: redis, url: "{source_url}"}}
          spare: {{kind: redis, url: "{target_url}"}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """))


def test_round_trip_into_another_db_keeps_types_values_and_ttls(redis_pair, write_config, tmp_path):
    source, target = redis_pair
    populate(source.client())
    original, taken = snapshot(source.client()), time.monotonic()
    config = config_for(write_config, tmp_path, source.url, target.url)
    [result] = run_backup(config, backend="cache", destination="local")
    assert result.manifest.objects[0].counts == {"keys": len(original)}
    outcome = restore(config, result.manifest.id, target="spare", validate=True)
    assert outcome.validation.ok
    restored, elapsed_ms = snapshot(target.client()), int((time.monotonic() - taken) * 1000)
    assert_same(restored, original, tolerance_ms=elapsed_ms + 2_000)  # TTLs ticked down meanwhile, no more


def test_non_empty_target_needs_replace_and_is_then_replaced(redis_pair, write_config, tmp_path):
    source, target = redis_pair
    populate(source.client(), 60)
    config = config_for(write_config, tmp_path, source.url, target.url)
    [result] = run_backup(config, backend="cache", destination="local")
    target.client().set("str:0", "other")
    target.client().set("only-in-target", "stale")
    with pytest.raises(UsageError, match="not empty"):
        restore(config, result.manifest.id, target="spare")
    outcome = restore(config, result.manifest.id, target="spare", replace=True, validate=True)
    assert outcome.validation.ok
    assert_same(snapshot(target.client()), snapshot(source.client()))
    assert target.client().get("only-in-target") is None


def test_keys_expired_since_the_backup_are_skipped_and_counted(redis_pair, write_config, tmp_path):
    source, target = redis_pair
    client = source.client()
    client.set("short", "x", px=300)
    client.set("long", "y", ex=600)
    config = config_for(write_config, tmp_path, source.url, target.url)
    [result] = run_backup(config, backend="cache", destination="local")
    time.sleep(0.4)
    outcome = restore(config, result.manifest.id, target="spare", validate=True)
    assert outcome.validation.ok and any("1 skipped" in note for note in outcome.validation.notes)
    assert target.client().keys() == [b"long"]


class DyingProxy:
    """A TCP proxy to Redis that dies for good after forwarding ``limit`` bytes from the server (or,
    with ``count_requests``, to it)."""

    def __init__(self, upstream: tuple[str, int], limit: int, count_requests: bool = False) -> None:
        self.upstream, self.limit, self.sent, self.count_requests = upstream, limit, 0, count_requests
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                self.sent += len(data) if from_server != self.count_requests else 0
                if self.sent > self.limit:
                    self.kill()
        except OSError:
            pass

    def kill(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_server_lost_mid_backup_fails_cleanly_and_leaves_no_backup(redis_pair, write_config, tmp_path):
    from urllib.parse import urlsplit

    source, target = redis_pair
    populate(source.client(), 6000)
    parts = urlsplit(source.url)
    proxy = DyingProxy((parts.hostname, parts.port or 6379), limit=200_000)
    try:
        proxied = f"redis://127.0.0.1:{proxy.port}/{source.db}"
        config = config_for(write_config, tmp_path, proxied, target.url)
        with pytest.raises(BackendUnavailable, match="backup failed"):
            run_backup(config, backend="cache", destination="local")
    finally:
        proxy.kill()
    assert list_backups(config) == []
    assert list((tmp_path / "backups").rglob("*.*")) == []


def test_damaged_archive_restores_nothing_even_without_validate(redis_pair, write_config, tmp_path):
    from pathlib import Path

    from storagectl.errors import IntegrityError

    source, target = redis_pair
    populate(source.client(), 300)
    config = config_for(write_config, tmp_path, source.url, target.url)
    [result] = run_backup(config, backend="cache", destination="local")
    stored = next(Path(tmp_path / "backups").rglob("00001-*"))
    data = bytearray(stored.read_bytes())
    data[len(data) * 2 // 3] ^= 0x20
    stored.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="nothing was restored"):
        restore(config, result.manifest.id, target="spare")
    assert target.client().dbsize() == 0


def test_disk_full_mid_backup_fails_cleanly_and_leaves_nothing(redis_db, cli, write_config, tiny_disk):
    """Compression and writes run in a helper thread: its failure must still fail the backup."""
    import os

    pipe = redis_db.client().pipeline(transaction=False)
    for i in range(600):
        pipe.set(f"blob:{i}", os.urandom(5000))  # ~3 MiB that does not compress
    pipe.execute()
    config = write_config(f"""
        version: 1
        backends:
          cache: {{kind: redis, url: "{redis_db.url}"}}
        destinations:
          tiny: {{kind: local, path: {tiny_disk}}}
    """)
    result = cli("-c", config, "backup", "run", "--backend", "cache", "--to", "tiny")
    assert result.exit_code == 1 and "no space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert [p for p in tiny_disk.rglob("*") if p.is_file()] == []
    assert cli("-c", config, "-o", "json", "backup", "list").json() == []


def test_keys_gone_before_their_dump_are_left_out(redis_db):
    from storagectl.backends.redis import RedisBackend, RedisSettings, _pack_records
    from storagectl.backends.redis_wire import MultiDump, RespSocket

    redis_db.client().set("kept", "x")
    redis_db.client().set("expiring", "y", px=600_000)
    client = RedisBackend("cache", RedisSettings(url=redis_db.url)).client(single_connection_client=True)
    try:
        commands = RespSocket(client.connection)
        keys = [b"kept", b"deleted-since-scan", b"expiring"]
        commands.send(MultiDump.request(keys))
        records, count = _pack_records(keys, MultiDump.reply(commands, keys))
    finally:
        client.close()
    assert count == 2
    assert b"deleted-since-scan" not in records and records.count(b"kept") == 1


def test_key_expired_between_its_dump_and_pttl_is_left_out():
    from storagectl.backends.redis import _RECORD_HEADER, _pack_records

    time_reply = [b"1700000000", b"250000"]  # TIME at the start of the batch: 1700000000250 ms
    reply = [time_reply, b"payload-a", -1, b"payload-b", -2, None, -2, b"payload-c", 5000]
    records, count = _pack_records([b"a", b"b", b"gone", b"c"], reply)
    assert count == 2
    first = _RECORD_HEADER.size + 1 + len(b"payload-a")
    assert _RECORD_HEADER.unpack(records[:_RECORD_HEADER.size]) == (1, 9, 0)
    assert _RECORD_HEADER.unpack(records[first:first + _RECORD_HEADER.size]) == (1, 9, 1700000000250 + 5000)


def test_pipelined_small_batches_return_every_key(redis_db):
    from storagectl.backends.redis import RedisBackend
    from storagectl.backends.redis import RedisSettings as Settings
    from storagectl.backends.redis_wire import RespSocket, dump_batches

    populate(redis_db.client(), 300)
    client = RedisBackend("cache", Settings(url=redis_db.url)).client(single_connection_client=True)
    try:
        batches = list(dump_batches(RespSocket(client.connection), count=3))  # SCAN also returns empty batches
    finally:
        client.close()
    assert {key for keys, _reply in batches for key in keys} == set(redis_db.client().keys())
    assert all(len(reply) == 1 + 2 * len(keys) for keys, reply in batches)


# -- restore --yes through a staging db (SWAPDB) ------------------------------------------------------
@pytest.fixture
def redis_trio(redis_base_url):
    """Three leased dbs: source, target and the target's staging db."""
    with leased_redis_dbs(redis_base_url, 3) as databases:
        yield databases


def staged_backup(redis_trio, write_config, tmp_path, keys: int):
    """A backup of ``keys`` keys of the source, and a target holding one old key: (config, backup id)."""
    source, target, staging = redis_trio
    populate(source.client(), keys)
    config = load_config(write_config(f"""
        version: 1
        backends:
          cache: {{kind: redis, url: "{source.url}"}}
          spare: {{kind: redis, url: "{target.url}", staging_db: {staging.db}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """))
    [result] = run_backup(config, backend="cache", destination="local")
    target.client().set("only-in-target", "old data")
    return config, result.manifest.id


def test_replace_with_a_staging_db_swaps_in_the_complete_restore(redis_trio, write_config, tmp_path):
    source, target, staging = redis_trio
    config, backup_id = staged_backup(redis_trio, write_config, tmp_path, 600)
    outcome = restore(config, backup_id, target="spare", replace=True, validate=True)
    assert outcome.validation.ok and outcome.validation.checks[0].actual_count == 601
    assert_same(snapshot(target.client()), snapshot(source.client()))
    assert staging.client().dbsize() == 0  # the old keys were flushed after the swap


def test_a_failed_staged_restore_leaves_the_target_as_it_was(redis_trio, write_config, tmp_path, monkeypatch):
    from storagectl.backends.redis import RedisBackend
    from storagectl.errors import IntegrityError

    source, target, staging = redis_trio
    config, backup_id = staged_backup(redis_trio, write_config, tmp_path, 300)
    original = RedisBackend.content_summary

    def one_key_more(self, like=None):
        summary = original(self, like)
        summary.counts["keys"] += 1
        return summary

    monkeypatch.setattr(RedisBackend, "content_summary", one_key_more)
    with pytest.raises(IntegrityError, match="does not match the backup: keys; the target was left as it was"):
        restore(config, backup_id, target="spare", replace=True, validate=True)
    assert target.client().keys() == [b"only-in-target"] and target.client().get("only-in-target") == b"old data"
    assert staging.client().dbsize() == 0


def test_a_non_empty_staging_db_is_refused_before_anything_is_written(redis_trio, write_config, tmp_path):
    source, target, staging = redis_trio
    config, backup_id = staged_backup(redis_trio, write_config, tmp_path, 50)
    staging.client().set("someone-elses", "x")
    with pytest.raises(UsageError, match=f"staging db {staging.db} is not empty") as caught:
        restore(config, backup_id, target="spare", replace=True)
    assert "FLUSHDB" in caught.value.hint
    assert target.client().keys() == [b"only-in-target"] and staging.client().keys() == [b"someone-elses"]


def test_staging_db_must_not_be_one_of_the_backends_own(write_config):
    from storagectl.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_config(write_config("""
            version: 1
            backends:
              cache: {kind: redis, url: "redis://127.0.0.1:6379/3", staging_db: 3}
        """))
    assert any("staging_db 3 is one of the backend's own dbs" in line for line in caught.value.problems)


def test_dry_run_says_how_a_non_empty_target_is_replaced(redis_trio, cli, write_config, tmp_path):
    source, target, staging = redis_trio
    populate(source.client(), 20)
    config = write_config(f"""
        version: 1
        backends:
          cache: {{kind: redis, url: "{source.url}"}}
          spare: {{kind: redis, url: "{target.url}", staging_db: {staging.db}}}
          inplace: {{kind: redis, url: "{target.url}"}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """)
    backup_id = cli("-c", config, "-o", "json", "backup", "run", "--backend", "cache", "--to", "local").json()[0]["id"]
    target.client().set("only-in-target", "old data")
    staged = cli("-c", config, "restore", backup_id, "--to", "spare", "--dry-run", "--yes")
    in_place = cli("-c", config, "-o", "json", "restore", backup_id, "--to", "inplace", "--dry-run", "--yes")
    assert staged.exit_code == 0 and f"loaded into staging db {staging.db}" in staged.stderr
    assert in_place.json()["replace_method"].startswith("in place: the db is flushed first")
    assert target.client().keys() == [b"only-in-target"]


def test_several_dbs_of_a_url_configured_backend_are_each_backed_up(redis_trio, write_config, tmp_path):
    """redis-py's from_url lets the URL's /N win over a db argument: each db must still be its own."""
    first, second, _ = redis_trio
    first.client().set("in-first", "1")
    second.client().mset({"in-second": "2", "also-in-second": "3"})
    config = load_config(write_config(f"""
        version: 1
        backends:
          cache: {{kind: redis, url: "{first.url}", databases: [{first.db}, {second.db}]}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """))
    [result] = run_backup(config, backend="cache", destination="local")
    assert {obj.name: obj.counts for obj in result.manifest.objects} == {
        f"db{first.db}.records": {"keys": 1}, f"db{second.db}.records": {"keys": 2}}


def fields_of(database) -> str:
    """The host/port/db form of a leased db's backend config (the other form is `url:`)."""
    from urllib.parse import urlsplit

    parts = urlsplit(database.url)
    return f"host: {parts.hostname}, port: {parts.port or 6379}, db: {database.db}"


def test_host_port_configured_backends_back_up_and_restore_through_a_staging_db(redis_trio, write_config, tmp_path):
    source, target, staging = redis_trio
    populate(source.client(), 300)
    config = load_config(write_config(f"""
        version: 1
        backends:
          cache: {{kind: redis, {fields_of(source)}}}
          spare: {{kind: redis, {fields_of(target)}, staging_db: {staging.db}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """))
    [result] = run_backup(config, backend="cache", destination="local")
    target.client().set("only-in-target", "old data")
    outcome = restore(config, result.manifest.id, target="spare", replace=True, validate=True)
    assert outcome.validation.ok
    assert_same(snapshot(target.client()), snapshot(source.client()))
    assert staging.client().dbsize() == 0


def test_connection_lost_during_a_staged_load_leaves_the_target_as_it_was(redis_trio, write_config, tmp_path):
    from urllib.parse import urlsplit

    source, target, staging = redis_trio
    populate(source.client(), 6000)
    parts = urlsplit(target.url)
    proxy = DyingProxy((parts.hostname, parts.port or 6379), limit=150_000, count_requests=True)
    try:
        config = load_config(write_config(f"""
            version: 1
            backends:
              cache: {{kind: redis, url: "{source.url}"}}
              spare: {{kind: redis, url: "redis://127.0.0.1:{proxy.port}/{target.db}", staging_db: {staging.db},
                       retry: {{attempts: 1}}}}
            destinations:
              local: {{kind: local, path: {tmp_path / "backups"}}}
        """))
        [result] = run_backup(config, backend="cache", destination="local")
        target.client().set("only-in-target", "old data")
        with pytest.raises(BackendUnavailable, match=f"connection lost.*db {target.db} is unchanged; staging db "
                                                     f"{staging.db} could not be emptied: FLUSHDB it"):
            restore(config, result.manifest.id, target="spare", replace=True)
    finally:
        proxy.kill()
    assert target.client().keys() == [b"only-in-target"]
    assert 0 < staging.client().dbsize() < 6001  # the partial load, named in the error


def test_keys_lost_from_the_staging_db_during_the_load_are_never_swapped_in(redis_trio, write_config, tmp_path):
    """Another client (or eviction under maxmemory) takes a key from the staging db mid-load: the
    count check before SWAPDB refuses, even without --validate."""
    from storagectl.errors import IntegrityError

    source, target, staging = redis_trio
    config, backup_id = staged_backup(redis_trio, write_config, tmp_path, 30_000)
    meddler, taken, done = staging.client(), [], threading.Event()

    def take_one_key() -> None:
        while not done.is_set() and not taken:
            key = meddler.randomkey()
            if key is not None and meddler.delete(key):
                taken.append(key)

    thread = threading.Thread(target=take_one_key)
    thread.start()
    try:
        with pytest.raises(IntegrityError, match=f"staging db {staging.db} holds .* keys after the restore"):
            restore(config, backup_id, target="spare", replace=True)
    finally:
        done.set()
        thread.join()
    assert taken and target.client().keys() == [b"only-in-target"] and staging.client().dbsize() == 0


def test_keys_expiring_right_after_their_restore_are_allowed_for_not_a_mismatch(
        redis_trio, write_config, tmp_path, monkeypatch):
    """Absolute expiries pass during the load: the count check and --validate allow exactly for those.

    The expiry is made to pass mid-load by holding the load after its 10th batch until the server's
    clock is past it, so the scenario does not depend on how fast this machine is right now."""
    import storagectl.backends.redis as redis_backend

    source, target, staging = redis_trio
    client = source.client()
    expire_at = _backup_with_expiring_keys(redis_trio, write_config, tmp_path, client)
    config, backup_id = expire_at.pop("config"), expire_at.pop("backup_id")
    original, batches = redis_backend._restore_batch, []

    def restore_batch_then_let_expiry_pass(*args):
        original(*args)
        batches.append(1)
        while len(batches) == 10 and _server_ms(client) <= expire_at["ms"]:
            time.sleep(0.01)

    monkeypatch.setattr(redis_backend, "_restore_batch", restore_batch_then_let_expiry_pass)
    outcome = restore(config, backup_id, target="spare", replace=True, validate=True)
    assert len(batches) > 10  # the expiry passed mid-load
    assert outcome.validation.ok, outcome.validation.to_dict()
    assert any("fewer allowed" in note for note in outcome.validation.notes)
    assert 30_001 <= target.client().dbsize() < 60_001


def _server_ms(client) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def _backup_with_expiring_keys(redis_trio, write_config, tmp_path, client) -> dict:
    """60,000 keys, every second one expiring at one absolute time that the backup finishes before
    (the margin doubles until it does, so a loaded machine only makes the test slower)."""
    for margin_ms in (3_000, 6_000, 12_000, 24_000, 48_000):
        client.flushdb()
        expire_at = _server_ms(client) + margin_ms
        pipe = client.pipeline(transaction=False)
        for i in range(60_000):
            pipe.set(f"k{i}", "v")
            if i % 2 == 0:
                pipe.pexpireat(f"k{i}", expire_at)
        pipe.execute()
        config, backup_id = staged_backup(redis_trio, write_config, tmp_path / str(margin_ms), 0)
        if _server_ms(client) < expire_at - 500:
            return {"ms": expire_at, "config": config, "backup_id": backup_id}
    raise AssertionError("the backup of 60,000 keys never finished within 48 s")


def test_expiry_allowance_counts_restored_keys_only_and_errs_wide():
    from storagectl.backends.redis import LoadedKeys

    loaded = LoadedKeys(started_ms=1_000_000, expired=2)
    for expire_at in (999_000, 999_500, 1_000_400, 1_000_900, 1_002_000, 1_000_000 + 7_200_000):
        loaded.note_expiry(expire_at)
    assert loaded.may_have_expired(999_999) == 0  # the two due by then were skipped as expired
    assert loaded.may_have_expired(1_000_000) == 2  # a 1 s bucket counts as due from its start
    assert loaded.may_have_expired(1_002_000) == 3
    assert loaded.may_have_expired(8_159_999) == 3  # 2 h ahead: a 1 min bucket, from 8_160_000
    assert loaded.may_have_expired(8_160_000) == 4
    assert len(loaded.expiries) == 4


def meddling(monkeypatch, change) -> None:
    """``change(client of the db compared)`` runs between the restore and its key-by-key check."""
    from storagectl.backends.redis import RedisBackend

    compare_items = RedisBackend.compare_items

    def changed_first(self, archive, outcome):
        client = self.client(db=self.selected_databases()[0])
        try:
            change(client)
        finally:
            client.close()
        return compare_items(self, archive, outcome)

    monkeypatch.setattr(RedisBackend, "compare_items", changed_first)


def test_validate_compares_every_key_of_a_single_node(redis_pair, write_config, tmp_path, monkeypatch):
    source, target = redis_pair
    populate(source.client(), 600)
    config = config_for(write_config, tmp_path, source.url, target.url)
    [result] = run_backup(config, backend="cache", destination="local")
    assert restore(config, result.manifest.id, target="spare", validate=True).validation.items[0].checked == 601
    meddling(monkeypatch, lambda client: (client.set("str:6", "changed"), client.persist("zset:4")))
    validation = restore(config, result.manifest.id, target="spare", validate=True, replace=True).validation
    assert [check.ok for check in validation.checks] == [True] and not validation.ok
    assert validation.items[0].mismatched == {"value": 1, "expiry": 1}
    assert sorted(validation.items[0].examples) == ["str:6 (value)", "zset:4 (expiry)"]


def test_a_staged_restore_whose_keys_differ_is_never_swapped_in(redis_trio, write_config, tmp_path, monkeypatch):
    from storagectl.errors import IntegrityError

    source, target, staging = redis_trio
    config, backup_id = staged_backup(redis_trio, write_config, tmp_path, 300)
    meddling(monkeypatch, lambda client: client.set("str:6", "changed in the staging db"))
    with pytest.raises(IntegrityError, match="does not match the backup: keys 1 value; the target was left as it was"):
        restore(config, backup_id, target="spare", replace=True, validate=True)
    assert target.client().keys() == [b"only-in-target"] and staging.client().dbsize() == 0
