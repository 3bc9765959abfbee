"""`storagectl cache` stats, pub/sub, watch and warm against a redis-server of the test's own (its
INFO counters and notify-keyspace-events are nobody else's), and warm from a real backup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from storagectl.cache.nodes import cache_backend
from storagectl.cache.pubsub import Gap, Message, subscribe
from storagectl.cache.stats import StatsOptions, cache_stats
from storagectl.cache.warm import _jittered
from storagectl.config import load_config
from storagectl.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def own_config(own_redis, write_config):
    return write_config(f"version: 1\nbackends:\n  cache: {{kind: redis, url: 'redis://127.0.0.1:{own_redis.port}/0'}}\n")


def storagectl(config: Path, *args: str) -> subprocess.Popen:
    """The CLI in a process of its own (for commands that block until messages come)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "storagectl", "-c", str(config), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


# -- stats ------------------------------------------------------------------------------------------
def test_hit_ratio_is_over_the_window_only(own_redis, own_config):
    client = own_redis.client()
    client.set("hit", "v")
    for _ in range(50):  # before the window: must not count
        client.get("missing")

    def inside_the_window(_seconds):
        for _ in range(30):
            client.get("hit")
        for _ in range(10):
            client.get("missing")
        client.set("gone", "v", px=1)
        time.sleep(0.05)
        client.get("gone")  # a miss too, and the key expired

    report = cache_stats(cache_backend(load_config(own_config), "cache"), StatsOptions(interval=1), inside_the_window)
    assert (report["hits"], report["misses"]) == (30, 11)
    assert report["hit_ratio"] == round(30 / 41, 4) and report["expired_keys"] == 1
    assert report["nodes"][0]["node"] is None and report["keys"] == 1 and report["used_memory"] > 0
    assert "get" in report["nodes"][0]["latency_usec_since_start"]


def test_stats_cli_and_prefix_estimates(own_redis, own_config, cli):
    client = own_redis.client()
    pipe = client.pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"user:{i}", "x" * 100, ex=1000)
    for i in range(1000):
        pipe.set(f"sess:{i}", "v")
    pipe.execute()
    report = cli("-c", own_config, "-o", "json", "cache", "stats", "--interval", "0", "--by-prefix", "--sample",
                 "400", "-b", "cache").json()
    prefixes = report["prefixes"]
    assert prefixes["estimate"] and prefixes["sample_size"] == 400 and prefixes["population"] == 4000
    rows = {row["prefix"]: row for row in prefixes["rows"]}
    assert set(rows) == {"user:", "sess:"}
    assert 2400 < rows["user:"]["keys"] < 3600 and rows["user:"]["with_ttl"] == 1 and rows["sess:"]["with_ttl"] == 0
    assert rows["user:"]["memory_bytes"] > rows["sess:"]["memory_bytes"]
    table = cli("-c", own_config, "cache", "stats", "--interval", "0", "--by-prefix", "-b", "cache")
    assert table.exit_code == 0 and "estimates from" in table.stdout and "Hit ratio" in table.stdout


# -- pub/sub ----------------------------------------------------------------------------------------
def test_subscribe_prints_messages_in_order(own_redis, own_config, cli):
    process = storagectl(own_config, "cache", "subscribe", "news", "--count", "20", "--timeout", "60s", "-b", "cache")
    try:
        wait_for(lambda: own_redis.client().pubsub_numsub("news")[0][1] == 1)
        result = cli("-c", own_config, "-o", "json", "cache", "publish", "news", "m0 \xff", "-b", "cache")
        assert result.json()["receivers"] == 1
        for i in range(1, 20):
            own_redis.client().publish("news", f"m{i}")
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    messages = [json.loads(line) for line in out.decode().splitlines()]
    assert process.returncode == 0, err
    assert [m["data"] for m in messages] == ["m0 \xff", *[f"m{i}" for i in range(1, 20)]]
    assert all(m["channel"] == "news" for m in messages)


def test_subscriber_reconnects_and_warns_of_the_gap(own_redis, own_config):
    backend = cache_backend(load_config(own_config), "cache")
    control = own_redis.client()
    client = backend.client()
    stream = subscribe(client, [b"ch"], timeout=60)
    received: list = []

    def read():
        for item in stream:
            received.append(item)
            if isinstance(item, Message) and item.data == b"after":
                return

    reader = threading.Thread(target=read)
    reader.start()
    wait_for(lambda: control.pubsub_numsub("ch")[0][1] == 1)
    control.publish("ch", "before")
    wait_for(lambda: received)
    killed = {entry["id"] for entry in control.client_list(_type="pubsub")}
    control.client_kill_filter(_type="pubsub")

    def resubscribed() -> bool:  # on a new connection (it may come back before a poll sees none)
        fresh = [entry for entry in control.client_list(_type="pubsub") if entry["id"] not in killed]
        return bool(fresh) and control.pubsub_numsub("ch")[0][1] == 1

    wait_for(resubscribed)
    control.publish("ch", "after")
    reader.join(30)
    client.close()
    assert [type(item) for item in received] == [Message, Gap, Message]
    assert received[0].data == b"before" and received[2].data == b"after"


# -- watch ------------------------------------------------------------------------------------------
def test_watch_says_when_notifications_are_off(own_redis, own_config, cli):
    result = cli("-c", own_config, "cache", "watch", "--timeout", "1s", "-b", "cache")
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert "keyspace notifications are off (notify-keyspace-events is ''" in result.stderr
    assert "--enable-notifications --yes" in result.stderr
    refused = cli("-c", own_config, "cache", "watch", "--enable-notifications", "-b", "cache")
    assert refused.exit_code == ExitCode.USAGE and "needs confirmation" in refused.stderr


def test_watch_reports_events_in_order_and_restores_the_setting(own_redis, own_config):
    control = own_redis.client()
    control.config_set("notify-keyspace-events", "Ex")  # expired events only: watch needs more
    process = storagectl(own_config, "-o", "json", "cache", "watch", "--prefix", "app:", "--enable-notifications",
                         "--yes", "--count", "4", "--timeout", "60s", "-b", "cache")
    try:
        wait_for(lambda: control.execute_command("PUBSUB", "NUMPAT") == 1)
        assert set(control.config_get("notify-keyspace-events")["notify-keyspace-events"]) >= set("K$gxe")
        control.set("other:1", "v")  # not under the prefix
        control.set(b"app:\xff 1", "v")
        control.delete(b"app:\xff 1")
        control.set("app:2", "v", px=1)
        wait_for(lambda: control.get("app:2") is None)  # expired on access
        control.set("app:3", "v")
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    events = [(e["event"], e["key"]) for e in map(json.loads, out.decode().splitlines())]
    assert events == [("set", "app:\\xff 1"), ("del", "app:\\xff 1"), ("set", "app:2"), ("expired", "app:2")]
    assert control.config_get("notify-keyspace-events")["notify-keyspace-events"] == "xE"  # put back


def _notify_flags(control) -> str:
    return control.config_get("notify-keyspace-events")["notify-keyspace-events"]


def test_watch_reconnects_warns_of_the_gap_and_sets_notifications_again(own_redis, own_config):
    control = own_redis.client()
    control.config_set("notify-keyspace-events", "Ex")
    process = storagectl(own_config, "-o", "json", "cache", "watch", "--prefix", "app:", "--enable-notifications",
                         "--yes", "--count", "2", "--timeout", "60s", "-b", "cache")
    try:
        wait_for(lambda: control.execute_command("PUBSUB", "NUMPAT") == 1)
        control.set("app:1", "v")
        first = json.loads(process.stdout.readline())
        control.config_set("notify-keyspace-events", "")  # as a restarted server would have it
        control.client_kill_filter(_type="pubsub")
        wait_for(lambda: set(_notify_flags(control)) >= set("K$"))  # reconnected and set again
        wait_for(lambda: control.execute_command("PUBSUB", "NUMPAT") == 1)
        control.set("app:2", "v")
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert [first["key"], *(json.loads(line)["key"] for line in out.decode().splitlines())] == ["app:1", "app:2"]
    assert "warning: connection lost (" in err.decode() and "events meanwhile were lost" in err.decode()
    assert _notify_flags(control) == "xE"  # the value before the watch, put back


def test_watch_ends_with_exit_3_when_a_reconnected_server_lost_the_notifications(own_redis, own_config):
    control = own_redis.client()
    control.config_set("notify-keyspace-events", "K$gxe")
    process = storagectl(own_config, "cache", "watch", "--timeout", "60s", "-b", "cache")
    try:
        wait_for(lambda: control.execute_command("PUBSUB", "NUMPAT") == 1)
        control.config_set("notify-keyspace-events", "")
        control.client_kill_filter(_type="pubsub")
        _out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == ExitCode.UNAVAILABLE
    assert "keyspace notifications are off (notify-keyspace-events is ''" in err.decode()


# -- warm -------------------------------------------------------------------------------------------
@pytest.fixture
def backed_up(own_redis, write_config, tmp_path):
    """A backup of 500 keys (some with TTLs, a binary one, one expiring at once) of our own server, then
    the server emptied: (config, backup id, client)."""
    from storagectl.backup import run_backup

    client = own_redis.client()
    pipe = client.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"page:{i}", f"v{i}", ex=3600 if i % 2 else None)
    pipe.hset(b"user:\xff", mapping={"a": "1"})
    pipe.set("soon", "v", px=300)
    pipe.execute()
    config_path = write_config(f"""
        version: 1
        backends:
          cache: {{kind: redis, url: 'redis://127.0.0.1:{own_redis.port}/0'}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
        """)
    config = load_config(config_path)
    [result] = run_backup(config, backend="cache", destination="local")
    client.flushall()
    time.sleep(0.4)  # "soon" has expired since the backup
    return config_path, result.manifest.id, client


def test_warm_loads_the_backup_without_replacing_present_keys(backed_up, cli):
    config, backup_id, client = backed_up
    client.set("page:1", "newer")
    summary = cli("-c", config, "-o", "json", "cache", "warm", "--from", backup_id, "-b", "cache").json()
    assert summary["restored"] == 500 and summary["present"] == 1 and summary["expired"] == 1
    assert client.get("page:1") == b"newer" and client.get("page:2") == b"v2" and client.hget(b"user:\xff", "a") == b"1"
    assert 3500_000 < client.pttl("page:3") <= 3600_000 and client.pttl("page:2") == -1
    assert not client.exists("soon")


def test_warm_pattern_replace_and_jitter(backed_up, cli):
    config, backup_id, client = backed_up
    client.set("page:1", "newer")
    refused = cli("-c", config, "cache", "warm", "--from", backup_id, "--replace", "-b", "cache")
    assert refused.exit_code == ExitCode.USAGE and client.dbsize() == 1
    summary = cli("-c", config, "-o", "json", "cache", "warm", "--from", backup_id, "--pattern", "page:1*",
                  "--replace", "--yes", "--ttl-jitter", "50%", "--rate", "100000", "-b", "cache").json()
    assert summary["restored"] == 111 and summary["present"] == 0 and client.get("page:1") == b"v1"
    assert client.dbsize() == 111
    ttls = {client.pttl(f"page:{i}") for i in range(11, 20, 2)}
    assert all(1700_000 < ttl <= 5400_000 for ttl in ttls) and len(ttls) > 1  # spread by the jitter


def test_warm_from_a_backup_that_is_not_redis_is_refused(backed_up, cli):
    config, _, _ = backed_up
    result = cli("-c", config, "cache", "warm", "--from", "nope", "-b", "cache")
    assert result.exit_code == ExitCode.NOT_FOUND


def test_jitter_moves_ttls_within_the_share():
    now = 1_000_000
    assert _jittered(0, now, 0.1, lambda: 1.0) == 0  # no expiry stays none
    assert _jittered(now + 10_000, now, 0.1, lambda: 1.0) == now + 11_000
    assert _jittered(now + 10_000, now, 0.1, lambda: 0.0) == now + 9_000


# -- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ("cache", "scan"), ("cache", "invalidate", "--pattern", "p:*", "--yes"), ("cache", "stats", "--interval", "0"),
    ("cache", "watch", "--count", "1", "--timeout", "1s"), ("cache", "get", "k")])
def test_a_wrong_password_is_authentication_failed_on_every_command(own_redis, write_config, cli, command):
    own_redis.client().config_set("requirepass", "right")
    config = write_config("version: 1\nbackends:\n  cache: {kind: redis, url: "
                          f"'redis://:wrong@127.0.0.1:{own_redis.port}/0'}}\n")
    result = cli("-c", config, *command, "-b", "cache")
    assert result.exit_code == ExitCode.AUTH, result.stderr
    assert "authentication failed" in result.stderr and "wrong" not in result.stderr
