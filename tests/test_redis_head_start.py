"""`backup run` of a Redis backend sends SYNC before the heavy modules load (storagectl.backup.head_start,
storagectl.backends.redis_head_start): the head start is taken only from the backup's own server,
once, closed whatever happens, and never changes how a backup fails."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from storagectl.backends.redis import RedisBackend
from storagectl.backends.redis_head_start import head_start
from storagectl.backends.redis_rdb import READ_SIZE, RdbParser
from storagectl.backup import restore, run_each_backup
from storagectl.backup.head_start import head_start as run_head_start
from storagectl.backup.plan import plan_backups
from storagectl.config import load_config
from storagectl.errors import ExitCode
from tests.redis_cluster import running_server
from tests.test_backup_redis import populate

# Runs storagectl's command line and writes the modules loaded when SYNC is first sent to $SYNC_MODULES.
AT_SYNC = """
import json, os, runpy, socket, sys
sendall = socket.socket.sendall
def recording(sock, data, *args):
    if b"SYNC\\r\\n" in bytes(data) and not os.path.exists(os.environ["SYNC_MODULES"]):
        with open(os.environ["SYNC_MODULES"], "w") as out:
            json.dump(sorted(sys.modules), out)
    return sendall(sock, data, *args)
socket.socket.sendall = recording
sys.argv = ["storagectl", *sys.argv[1:]]
runpy.run_module("storagectl", run_name="__main__", alter_sys=True)
"""
HEAVY = {"redis", "brotli", "storagectl.archive.writer", "storagectl.backup.run"}
# which validating the config imports; on a hit not even the backends' base class (nor what it imports)
HEAVY_ON_A_CACHE_HIT = {*HEAVY, "storagectl.backends.redis", "storagectl.backends.base"}


@pytest.fixture
def server(own_redis):
    redis.Redis(port=own_redis.port).config_set("repl-diskless-sync-delay", 0)
    return own_redis


def write_redis_config(write_config, tmp_path: Path, port: int, extra: str = "", name: str = "storagectl.yaml") -> Path:
    return write_config(f"""
        version: 1
        backends:
          cache: {{kind: redis, url: "redis://127.0.0.1:{port}/1"{extra}}}
          spare: {{kind: redis, url: "redis://127.0.0.1:{port}/2"}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """, name)


def full_syncs(port: int) -> int:
    return int(redis.Redis(port=port).info("stats")["sync_full"])


def test_sync_is_sent_before_redis_py_and_the_archive_machinery_load(server, write_config, tmp_path):
    populate(redis.Redis(port=server.port, db=1), 50)
    config = write_redis_config(write_config, tmp_path, server.port)
    (tmp_path / "at_sync.py").write_text(AT_SYNC)
    modules = tmp_path / "modules.json"
    for heavy in (HEAVY, HEAVY_ON_A_CACHE_HIT):  # the config validated (and remembered), then from the cache
        modules.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, str(tmp_path / "at_sync.py"), "-c", str(config), "-o", "json",
                               "backup", "run", "--backend", "cache", "--to", "local"], capture_output=True, text=True,
                              cwd=tmp_path, env={**os.environ, "SYNC_MODULES": str(modules)})
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)[0]["size"] > 0
        loaded = set(json.loads(modules.read_text()))
        assert heavy.isdisjoint(loaded), sorted(heavy & loaded)


def test_a_head_started_backup_is_the_one_sync_and_round_trips(server, write_config, tmp_path, cli):
    populate(redis.Redis(port=server.port, db=1), 200)
    config = write_redis_config(write_config, tmp_path, server.port)
    syncs = full_syncs(server.port)
    result = cli("-c", config, "-o", "json", "backup", "run", "--backend", "cache", "--to", "local")
    assert result.exit_code == 0, result.stderr
    assert full_syncs(server.port) == syncs + 1  # the backup took the head start's snapshot: no second fork
    backup_id = json.loads(result.stdout)[0]["id"]
    manifest = next((tmp_path / "backups").rglob(f"{backup_id}/manifest.json"))
    assert json.loads(manifest.read_text())["backend"]["metadata"]["method"] == "rdb"
    assert restore(load_config(config), backup_id, target="spare", validate=True).validation.ok


def test_a_head_start_from_another_server_is_not_taken(server, write_config, tmp_path):
    populate(redis.Redis(port=server.port, db=1), 30)
    with running_server("--repl-diskless-sync-delay", "0") as other:
        populate(redis.Redis(port=other.port, db=1), 70)
        elsewhere = load_config(write_redis_config(write_config, tmp_path, other.port, name="other.yaml"))
        stray = head_start(elsewhere.backend("cache"))
        assert stray is not None
        config = load_config(write_redis_config(write_config, tmp_path, server.port))
        run = run_each_backup(config, backend="cache", destination="local", started={"cache": stray})
    assert run.error is None
    summary = run.results[0].manifest.backend["metadata"]
    ours = redis.Redis(port=server.port, db=1).dbsize()  # the other server holds 40 keys more
    assert summary["method"] == "rdb" and summary["content_summary"]["counts"] == {"keys": ours}, summary
    assert stray.sync.sock.fileno() == -1  # closed by the backup that did not take it


def test_no_head_start_where_the_backup_would_not_take_the_snapshot(server, write_config, tmp_path):
    populate(redis.Redis(port=server.port, db=1), 10)
    syncs = full_syncs(server.port)
    for extra in (", backup_method: dump", ", tls: {enabled: true}", ', password: "wrong"'):
        config = load_config(write_redis_config(write_config, tmp_path, server.port, extra))
        assert head_start(config.backend("cache")) is None, extra
    redis.Redis(port=server.port).config_set("repl-diskless-sync-delay", 5)  # auto takes DUMPs then
    config = load_config(write_redis_config(write_config, tmp_path, server.port))
    assert head_start(config.backend("cache")) is None
    assert full_syncs(server.port) == syncs


def test_a_refused_password_fails_the_backup_as_without_a_head_start(write_config, tmp_path, cli):
    with running_server("--requirepass", "right", "--repl-diskless-sync-delay", "0") as locked:
        config = write_redis_config(write_config, tmp_path, locked.port, ', password: "wrong"')
        result = cli("-c", config, "backup", "run", "--backend", "cache", "--to", "local")
        assert full_syncs_with_password(locked.port) == 0
    assert result.exit_code == ExitCode.AUTH and "authentication failed" in result.stderr, result.stderr


def full_syncs_with_password(port: int) -> int:
    return int(redis.Redis(port=port, password="right").info("stats")["sync_full"])


def test_a_head_start_the_run_never_takes_is_closed(server, write_config, tmp_path):
    config = load_config(write_redis_config(write_config, tmp_path, server.port))
    with pytest.raises(RuntimeError), run_head_start(config, plan_backups(config, backend="cache",
                                                                         destination="local")[0]) as started:
        sock = started["cache"].sync.sock
        raise RuntimeError("the run failed before the backup")
    assert sock.fileno() == -1


def test_the_snapshot_is_read_while_nothing_takes_it_yet(server, write_config, tmp_path):
    """More than the socket buffers hold arrives before the backup takes the transfer (the server would
    otherwise wait, its fork child too), and reaches the backup whole."""
    client = redis.Redis(port=server.port, db=1)
    client.mset({f"big:{i}": os.urandom(1_000_000) for i in range(24)})  # 24 MB of snapshot: LZF cannot shrink it
    config = load_config(write_redis_config(write_config, tmp_path, server.port))
    started = head_start(config.backend("cache"))
    assert started is not None
    deadline = time.monotonic() + 30
    while started.prefetch.is_alive() and time.monotonic() < deadline:  # it ends at the server's close
        time.sleep(0.05)
    assert started.prefetch.size > 24_000_000
    sync = started.taken()
    sync.await_snapshot()
    snapshot = b"".join(iter(sync.read, b""))
    started.close()
    sizes = RdbParser(io.BytesIO(snapshot).read, "snapshot").db_sizes([1])
    assert sizes == {1: 24} and len(snapshot) > 24_000_000


def test_what_was_read_ahead_is_handed_on_in_its_pieces_not_joined(server, write_config, tmp_path):
    """Tens of MB read ahead reach the backup as they were received, never as one joined copy (which
    would double the memory held and copy the snapshot once more while the server still sends)."""
    client = redis.Redis(port=server.port, db=1)
    client.mset({f"big:{i}": os.urandom(1_000_000) for i in range(8)})
    config = load_config(write_redis_config(write_config, tmp_path, server.port))
    started = head_start(config.backend("cache"))
    assert started is not None
    deadline = time.monotonic() + 30
    while started.prefetch.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.prefetch.size > 8_000_000
    sync = started.taken()
    sync.await_snapshot()
    pieces = list(iter(sync.read, b""))
    started.close()
    assert sum(map(len, pieces)) > 8_000_000 and max(map(len, pieces)) <= READ_SIZE


def test_a_head_start_is_closed_when_the_backup_takes_dumps_instead(server, write_config, tmp_path, monkeypatch):
    populate(redis.Redis(port=server.port, db=1), 20)
    config = load_config(write_redis_config(write_config, tmp_path, server.port))
    started = head_start(config.backend("cache"))
    assert started is not None
    redis.Redis(port=server.port).config_set("repl-diskless-sync-delay", 5)  # auto now takes DUMPs
    closed_before_the_dump = []
    dump = RedisBackend._backup_db

    def noting_dump(backend, *args, **kwargs):
        closed_before_the_dump.append(started.sync.sock.fileno() == -1)
        return dump(backend, *args, **kwargs)

    monkeypatch.setattr(RedisBackend, "_backup_db", noting_dump)
    run = run_each_backup(config, backend="cache", destination="local", started={"cache": started})
    assert run.error is None and run.results[0].manifest.backend["metadata"]["method"] == "dump"
    assert closed_before_the_dump == [True]  # the server's fork child did not wait for the whole dump


def test_a_head_start_is_closed_when_its_backup_fails_before_taking_it(server, write_config, tmp_path):
    config = load_config(write_redis_config(write_config, tmp_path, server.port))
    (tmp_path / "backups").write_text("a file where the destination's folder should be")
    started = head_start(config.backend("cache"))
    assert started is not None
    run = run_each_backup(config, backend="cache", destination="local", started={"cache": started})
    assert run.error is not None and started.sync.sock.fileno() == -1
