"""`storagectl cache` on one Redis server: single keys, scan, invalidate (exactly the matched keys,
resumable), the bad inputs and their exit codes. Keys with spaces, newlines and non-UTF-8 bytes
throughout. Stats, pub/sub, watch and warm: tests/test_cache_live.py; a cluster: test_cache_cluster.py."""

from __future__ import annotations

import base64
import json
import os

import pytest

from storagectl.archive.progress import ProgressModel
from storagectl.cache.invalidate import (
    InvalidateOptions,
    format_cursor,
    plan_invalidate,
    run_invalidate,
    scanned_fraction,
)
from storagectl.cache.keyfmt import escape, glob_regex, is_match_all
from storagectl.cache.nodes import cache_backend
from storagectl.cache.ratelimit import TokenBucket
from storagectl.config import load_config
from storagectl.errors import ExitCode, Interrupted, Terminated

WEIRD = [b"sess:with space", b"sess:new\nline", b"sess:\xff\xfebin", b"sess:back\\slash", b"sess:\x00nul"]


def arg(key: bytes) -> str:
    """A key as a command-line argument carries it (the CLI turns it back into the same bytes)."""
    return os.fsdecode(key)


@pytest.fixture
def cache_config(redis_db, write_config):
    return write_config(f"version: 1\nbackends:\n{redis_db.backend_yaml('cache')}")


def fill(client, prefix: str, count: int, **kwargs) -> list[bytes]:
    keys = [f"{prefix}{i}".encode() for i in range(count)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, b"v", **kwargs)
    pipe.execute()
    return keys


# -- single keys ------------------------------------------------------------------------------------
def test_set_with_ttl_then_get_ttl_expire_persist(redis_db, cache_config, cli):
    client = redis_db.client()
    key = b"user:\xff 1\n"
    assert cli("-c", cache_config, "cache", "set", arg(key), "hello", "--ttl", "300s", "-b", "cache").exit_code == 0
    assert client.get(key) == b"hello" and 290_000 < client.pttl(key) <= 300_000
    got = cli("-c", cache_config, "-o", "json", "cache", "get", arg(key), "-b", "cache").json()
    assert base64.b64decode(got["key_base64"]) == key and got["key"] == "user:\\xff 1\\n"
    assert got["type"] == "string" and base64.b64decode(got["value"]["base64"]) == b"hello"
    assert cli("-c", cache_config, "-o", "json", "cache", "ttl", arg(key), "-b", "cache").json()["ttl_ms"] > 280_000
    assert cli("-c", cache_config, "cache", "expire", arg(key), "20m", "-b", "cache").exit_code == 0
    assert 1_190_000 < client.pttl(key) <= 1_200_000
    assert cli("-c", cache_config, "-o", "json", "cache", "persist", arg(key), "-b", "cache").json()["persisted"]
    assert client.pttl(key) == -1
    assert cli("-c", cache_config, "-o", "json", "cache", "ttl", arg(key), "-b", "cache").json()["ttl_ms"] is None


def test_get_raw_writes_the_exact_bytes(redis_db, cache_config, capsysbinary):
    redis_db.client().set(b"blob", bytes(range(256)))
    from storagectl.cli.main import run

    capsysbinary.readouterr()
    assert run(["-c", str(cache_config), "cache", "get", "blob", "--raw", "-b", "cache"]) == 0
    assert capsysbinary.readouterr().out == bytes(range(256))


def test_get_shows_every_type_with_limit(redis_db, cache_config, cli):
    client = redis_db.client()
    client.hset("h", mapping={b"f\xff": b"1", b"g": b"2"})
    client.rpush("l", *[str(i) for i in range(10)])
    client.sadd("s", "a", "b")
    client.zadd("z", {"a": 1.5, "b": 2})
    client.xadd("x", {"f": "v"})

    def get(key, *extra):
        return cli("-c", cache_config, "-o", "json", "cache", "get", key, "-b", "cache", *extra).json()

    fields = {base64.b64decode(item["field"]["base64"]): item["value"]["text"] for item in get("h")["value"]}
    assert fields == {b"f\xff": "1", b"g": "2"}
    listed = get("l", "--limit", "3")
    assert [v["text"] for v in listed["value"]] == ["0", "1", "2"] and listed["truncated"] and listed["length"] == 10
    assert sorted(v["text"] for v in get("s")["value"]) == ["a", "b"]
    assert [(m["member"]["text"], m["score"]) for m in get("z")["value"]] == [("a", 1.5), ("b", 2.0)]
    assert get("x")["value"][0]["fields"][0]["value"]["text"] == "v"
    table = cli("-c", cache_config, "cache", "get", "h", "-b", "cache")
    assert "f\\xff" in table.stdout and "hash, 2 elements" in table.stdout


def test_pretty_prints_a_json_string(redis_db, cache_config, cli):
    redis_db.client().set("doc", '{"a": [1, 2]}')
    out = cli("-c", cache_config, "cache", "get", "doc", "--pretty", "-b", "cache").stdout
    assert '"a": [\n    1,' in out


@pytest.mark.parametrize("command", [["get", "nope"], ["ttl", "nope"], ["expire", "nope", "30s"],
                                     ["persist", "nope"], ["type", "nope"]])
def test_missing_key_exits_5(redis_db, cache_config, cli, command):
    result = cli("-c", cache_config, "cache", *command, "-b", "cache")
    assert result.exit_code == ExitCode.NOT_FOUND
    first, hint = result.stderr.splitlines()
    assert first == "error: key 'nope' does not exist" and hint.startswith("Try: storagectl cache scan --pattern")


def test_one_element_or_byte_is_not_plural(redis_db, cache_config, cli):
    client = redis_db.client()
    client.rpush("one", "x")
    client.set("c", "x")
    assert "list, 1 element," in cli("-c", cache_config, "cache", "get", "one", "-b", "cache").stdout
    assert "string, 1 byte," in cli("-c", cache_config, "cache", "get", "c", "-b", "cache").stdout


def test_wrong_type_exits_1(redis_db, cache_config, cli):
    redis_db.client().hset("h", "f", "v")
    result = cli("-c", cache_config, "cache", "get", "h", "--type", "string", "-b", "cache")
    assert result.exit_code == 1 and "key 'h' is a hash, not a string" in result.stderr
    raw = cli("-c", cache_config, "cache", "get", "h", "--raw", "-b", "cache")
    assert raw.exit_code == ExitCode.USAGE and "this key is a hash" in raw.stderr


def test_set_nx_on_an_existing_key_changes_nothing(redis_db, cache_config, cli):
    redis_db.client().set("k", "old")
    result = cli("-c", cache_config, "cache", "set", "k", "new", "--nx", "-b", "cache")
    assert result.exit_code == 1 and "exists (--nx)" in result.stderr
    assert redis_db.client().get("k") == b"old"
    assert cli("-c", cache_config, "cache", "set", "k", "new", "--nx", "--xx", "-b", "cache").exit_code == 2


def test_del_needs_yes_and_reports_missing_keys(redis_db, cache_config, cli):
    client = redis_db.client()
    client.set(WEIRD[1], "v")
    client.set("keep", "v")
    refused = cli("-c", cache_config, "cache", "del", arg(WEIRD[1]), "-b", "cache")
    assert refused.exit_code == ExitCode.USAGE and client.exists(WEIRD[1])
    done = cli("-c", cache_config, "-o", "json", "cache", "del", arg(WEIRD[1]), "gone", "-b", "cache", "--yes").json()
    assert done["deleted"] == 1 and [m["key"] for m in done["missing"]] == ["gone"]
    assert not client.exists(WEIRD[1]) and client.exists("keep")


def test_type_describes_the_key(redis_db, cache_config, cli):
    redis_db.client().rpush("l", "a", "b")
    facts = cli("-c", cache_config, "-o", "json", "cache", "type", "l", "-b", "cache").json()
    assert facts["type"] == "list" and facts["length"] == 2 and facts["memory_bytes"] > 0


def test_a_backend_of_another_kind_is_refused(cli, write_config, tmp_path):
    config = write_config(f"version: 1\nbackends:\n  lite: {{kind: sqlite, path: {tmp_path / 'x.db'}}}\n")
    result = cli("-c", config, "cache", "get", "k", "-b", "lite")
    assert result.exit_code == ExitCode.USAGE and "works on redis backends, not sqlite" in result.stderr


def test_without_b_the_only_redis_backend_is_taken_and_several_are_listed(redis_db, cli, write_config, tmp_path):
    lite = f"  lite: {{kind: sqlite, path: {tmp_path / 'x.db'}}}\n"
    one = write_config(f"version: 1\nbackends:\n{lite}{redis_db.backend_yaml('cache')}")
    redis_db.client().set("only", "v")
    result = cli("-c", one, "-o", "json", "cache", "get", "only")
    assert result.exit_code == 0, result.stderr
    assert result.json()["value"]["text"] == "v"
    two = write_config(f"version: 1\nbackends:\n{lite}{redis_db.backend_yaml('cache')}"
                       f"{redis_db.backend_yaml('sessions')}")
    several = cli("-c", two, "cache", "get", "only")
    assert several.exit_code == ExitCode.USAGE
    assert "error: several redis backends (cache, sessions); name one" in several.stderr
    none = cli("-c", write_config(f"version: 1\nbackends:\n{lite}"), "cache", "get", "only")
    assert none.exit_code == ExitCode.USAGE and "error: no redis backends in the config" in none.stderr


# -- scan -------------------------------------------------------------------------------------------
def test_scan_streams_exactly_the_matching_keys(redis_db, cache_config, cli):
    client = redis_db.client()
    for key in WEIRD:
        client.set(key, "v")
    fill(client, "other:", 50)
    client.hset(b"sess:hash", "f", "v")
    lines = cli("-c", cache_config, "-o", "json", "cache", "scan", "--pattern", "sess:*", "-b", "cache").stdout
    found = [base64.b64decode(json.loads(line)["key_base64"]) for line in lines.splitlines()]
    assert sorted(found) == sorted([*WEIRD, b"sess:hash"])
    plain = cli("-c", cache_config, "cache", "scan", "--pattern", "sess:*", "--type", "hash", "-b", "cache").stdout
    assert plain == "sess:hash\n"
    text = cli("-c", cache_config, "cache", "scan", "--pattern", "sess:*", "-b", "cache").stdout.splitlines()
    assert sorted(text) == sorted([escape(k) for k in [*WEIRD, b"sess:hash"]])  # one line each, newline escaped
    limited = cli("-c", cache_config, "cache", "scan", "--limit", "7", "--count", "5", "-b", "cache").stdout
    assert len(limited.splitlines()) == 7


def test_scan_details_and_bad_type(redis_db, cache_config, cli):
    redis_db.client().set("t", "v", ex=100)
    out = cli("-c", cache_config, "-o", "json", "cache", "scan", "--details", "-b", "cache").stdout
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["type"] == "string" and 90_000 < row["ttl_ms"] <= 100_000
    bad = cli("-c", cache_config, "cache", "scan", "--type", "bogus", "-b", "cache")
    assert bad.exit_code == ExitCode.USAGE and "not a Redis type" in bad.stderr


@pytest.mark.parametrize("key", ["t", "absent"])
def test_get_with_a_type_that_is_not_a_redis_type_is_a_usage_error(redis_db, cache_config, cli, key):
    redis_db.client().set("t", "v")
    bad = cli("-c", cache_config, "cache", "get", key, "--type", "bogus", "-b", "cache")
    assert bad.exit_code == ExitCode.USAGE and "--type 'bogus' is not a Redis type" in bad.stderr


# -- invalidate -------------------------------------------------------------------------------------
def test_invalidate_deletes_exactly_the_matched_keys(redis_db, cache_config, cli):
    client = redis_db.client()
    doomed = fill(client, "sess:", 3000) + WEIRD
    for key in WEIRD:
        client.set(key, "v")
    kept = fill(client, "user:", 2000) + fill(client, "sessX", 10)
    summary = cli("-c", cache_config, "-o", "json", "cache", "invalidate", "--pattern", "sess:*", "--batch", "100",
                  "--yes", "-b", "cache").json()
    assert summary["matched"] == summary["deleted"] == len(doomed) and summary["errors"] == 0
    assert summary["complete"] and summary["cursor"] is None and summary["scanned"] == len(doomed) + len(kept)
    assert set(client.scan_iter(count=1000)) == set(kept)


def test_invalidate_type_filter(redis_db, cache_config, cli):
    client = redis_db.client()
    client.set("a:1", "v")
    client.hset("a:2", "f", "v")
    cli("-c", cache_config, "cache", "invalidate", "--pattern", "a:*", "--type", "hash", "--yes", "-b", "cache")
    assert client.exists("a:1") and not client.exists("a:2")


@pytest.mark.parametrize("pattern", [[], ["--pattern", "*"], ["--pattern", "**"], ["--pattern", ""],
                                     ["--pattern", "?*"], ["--pattern", "*?"], ["--pattern", "??*"]])
def test_a_match_all_pattern_is_refused_without_all(redis_db, cache_config, cli, pattern):
    client = redis_db.client()
    fill(client, "k", 5)
    result = cli("-c", cache_config, "cache", "invalidate", *pattern, "--yes", "-b", "cache")
    assert result.exit_code == ExitCode.USAGE and "matches every key; refusing without --all" in result.stderr
    assert len(result.stderr.splitlines()) == 2 and client.dbsize() == 5  # the error, the hint
    assert cli("-c", cache_config, "cache", "invalidate", "--all", "--yes", "-b", "cache").exit_code == 0
    assert client.dbsize() == 0


def test_dry_run_counts_and_samples_and_deletes_nothing(redis_db, cache_config, cli):
    client = redis_db.client()
    fill(client, "sess:", 40)
    fill(client, "user:", 10)
    summary = cli("-c", cache_config, "-o", "json", "cache", "invalidate", "--pattern", "sess:*", "--dry-run",
                  "--sample", "5", "-b", "cache").json()
    assert summary["dry_run"] and summary["matched"] == 40 and summary["deleted"] == 0
    assert len(summary["sample"]) == 5 and all(s["key"].startswith("sess:") for s in summary["sample"])
    assert client.dbsize() == 50


def test_invalidate_needs_yes_when_not_interactive(redis_db, cache_config, cli):
    fill(redis_db.client(), "sess:", 5)
    fill(redis_db.client(), "other:", 3)
    result = cli("-c", cache_config, "cache", "invalidate", "--pattern", "sess:*", "-b", "cache")
    assert result.exit_code == ExitCode.USAGE and "invalidate would delete every key matching 'sess:*'" in result.stderr
    assert "(8 keys in the db, matching or not; --dry-run counts the matches)" in result.stderr  # not "8 to delete"
    assert redis_db.client().dbsize() == 8


def test_interrupted_invalidate_resumes_from_its_cursor(redis_db, cache_config):
    """Ctrl-C after some batches: the result says how far it got and the cursor; a rerun with it
    deletes the rest, and only matched keys are gone."""
    client = redis_db.client()
    doomed = set(fill(client, "sess:", 5000))
    kept = set(fill(client, "user:", 5000))
    backend = cache_backend(load_config(cache_config), "cache")
    ticks = []

    def interrupt_after_three(event):
        ticks.append(event)
        if len(ticks) == 4:  # the plan, then three batches
            raise KeyboardInterrupt

    first = run_invalidate(plan_invalidate(backend, InvalidateOptions(b"sess:*", batch=200)), interrupt_after_three)
    assert isinstance(first.error, Interrupted) and first.cursor and first.cursor.isdigit()
    assert f"resume with --cursor {first.cursor}" in first.error.message
    left = set(client.scan_iter(count=1000))
    assert kept <= left and 0 < len(doomed & left) < len(doomed)
    assert first.to_dict()["deleted"] == len(doomed - left)
    second = run_invalidate(plan_invalidate(backend, InvalidateOptions(b"sess:*", batch=200, cursor=first.cursor)))
    assert second.error is None and second.cursor is None
    assert set(client.scan_iter(count=1000)) == kept
    assert second.to_dict()["scanned"] < len(left)  # it started where the first run stopped


def test_a_resumed_invalidate_never_reports_fewer_keys_scanned_than_matched(redis_db, cache_config):
    """Every key matches: the resumed run's DBSIZE no longer holds the keys the first run deleted, so
    the cursor's share of it alone came out below the keys it matched ('4,198 matched of ~3,542
    scanned'); every matched key was scanned."""
    client = redis_db.client()
    fill(client, "sess:", 5000)
    backend = cache_backend(load_config(cache_config), "cache")
    ticks = []

    def interrupt_after_three(event):
        ticks.append(event)
        if len(ticks) == 4:  # the plan, then three batches
            raise KeyboardInterrupt

    first = run_invalidate(plan_invalidate(backend, InvalidateOptions(b"sess:*", batch=200)), interrupt_after_three)
    assert isinstance(first.error, Interrupted) and first.to_dict()["deleted"] > 0
    second = run_invalidate(plan_invalidate(backend, InvalidateOptions(b"sess:*", batch=200, cursor=first.cursor)))
    summary = second.to_dict()
    assert second.error is None and summary["matched"] == 5000 - first.to_dict()["deleted"]
    assert summary["scanned"] >= summary["matched"]
    assert all(node["dbsize"] >= node["matched"] for node in summary["nodes"])


@pytest.mark.parametrize(("signal", "code", "word"), [(KeyboardInterrupt, ExitCode.INTERRUPTED, "interrupted"),
                                                    (Terminated, ExitCode.TERMINATED, "terminated")])
def test_an_interrupted_invalidate_exits_130_on_ctrl_c_and_143_on_sigterm(redis_db, cache_config, signal, code, word):
    fill(redis_db.client(), "sess:", 2000)
    backend = cache_backend(load_config(cache_config), "cache")

    def interrupt_after_the_plan(event):
        if event.stage == "advance":
            raise signal

    result = run_invalidate(plan_invalidate(backend, InvalidateOptions(b"sess:*", batch=100)), interrupt_after_the_plan)
    assert isinstance(result.error, Interrupted) and result.error.exit_code == code
    assert result.error.message.startswith(f"{word} (")


def test_an_interrupted_invalidate_stops_its_progress_short_of_100_percent(redis_db, cache_config):
    fill(redis_db.client(), "sess:", 2000)
    backend = cache_backend(load_config(cache_config), "cache")
    model = ProgressModel()

    def interrupt_at_the_second_batch(event):
        model.update(event)
        if event.stage == "advance" and event.done > 0:
            raise KeyboardInterrupt

    run_invalidate(plan_invalidate(backend, InvalidateOptions(b"sess:*", batch=100)), interrupt_at_the_second_batch)
    model.end()  # as the display does once the command is over
    [view] = model.views()
    assert not view.complete and view.fraction is not None and view.fraction < 1.0


def test_progress_counts_keys_against_dbsize(redis_db, cache_config):
    client = redis_db.client()
    fill(client, "sess:", 2000)
    events = []
    backend = cache_backend(load_config(cache_config), "cache")
    run_invalidate(plan_invalidate(backend, InvalidateOptions(b"sess:*", batch=100)), events.append)
    assert events[0].stage == "plan" and events[0].total == 2000 and events[0].unit == "keys"
    done = [event.done for event in events[1:]]
    assert done == sorted(done) and 0 < done[-1] <= 2000


def test_a_bad_cursor_is_refused(redis_db, cache_config, cli):
    result = cli("-c", cache_config, "cache", "invalidate", "--pattern", "a*", "--cursor", "abc=1", "--yes",
                 "-b", "cache")
    assert result.exit_code == ExitCode.USAGE and "is not a SCAN cursor of one server" in result.stderr


# -- pure parts -------------------------------------------------------------------------------------
def test_token_bucket_bounds_the_rate():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    bucket = TokenBucket(1000, clock=lambda: now[0], sleep=sleep)
    for _ in range(50):
        bucket.take(100)  # 5000 tokens
    assert now[0] == pytest.approx(5.0)  # starts empty: no burst
    now[0] += 10  # idle: at most the burst is saved up
    assert bucket.take(150) == pytest.approx(0.05)


def test_scanned_fraction_follows_the_reverse_binary_cursor():
    assert scanned_fraction(0) == 0
    assert scanned_fraction(1) == 0.5  # the top bit reversed: half the table
    assert scanned_fraction(3) == 0.75 and scanned_fraction(2) == 0.25


def test_glob_and_escape():
    assert glob_regex(b"a\\*[^x]?*").match(b"a*yzzz") and not glob_regex(b"a\\*[^x]?*").match(b"abyzzz")
    assert glob_regex(b"s:[a-c]").match(b"s:b") and not glob_regex(b"s:[a-c]").match(b"s:d")
    assert escape(b"a\\b\n\xff\x00") == "a\\\\b\\n\\xff\\x00" and escape("é".encode()) == "é"
    assert is_match_all(b"") and is_match_all(b"**") and not is_match_all(b"a*")
    assert is_match_all(b"?*") and is_match_all(b"*?") and is_match_all(b"?") and not is_match_all(b"?a*")
    assert format_cursor([]) is None


def test_fan_in_raises_a_node_error_at_once_and_stops_the_others():
    """A watch never ends by itself: a node that fails must end it at once, naming the node."""
    import threading

    from storagectl.backends.redis_topology import ClusterNode, fan_in

    nodes = [ClusterNode(f"n{i}", "127.0.0.1", 7000 + i, frozenset({"master"}), None, "connected", ((0, 1),))
             for i in range(2)]
    failing = threading.Event()
    stopped = []

    def produce(node, emit):
        if node.node_id == "n1":
            failing.wait(10)
            raise ConnectionError("node lost")
        try:
            while True:
                emit(node.node_id)
        except Exception as exc:
            stopped.append(type(exc).__name__)
            raise

    items = fan_in(nodes, produce, concurrency=2)
    assert next(items) == "n0"
    failing.set()
    with pytest.raises(ConnectionError) as raised:
        for _ in items:
            pass
    assert raised.value.redis_node.node_id == "n1" and stopped == ["FanInClosed"]


def test_a_key_in_a_message_is_escaped_once(redis_db, cache_config, cli):
    result = cli("-c", cache_config, "cache", "get", "a\\b", "-b", "cache")
    assert result.exit_code == ExitCode.NOT_FOUND and "key 'a\\\\b' does not exist" in result.stderr  # a\\b
    assert "\\\\\\\\" not in result.stderr
    summary = cli("-c", cache_config, "cache", "invalidate", "--pattern", "x\\*", "--dry-run", "-b", "cache")
    assert "keys matching 'x\\\\*'" in summary.stdout and "\\\\\\\\" not in summary.stdout


@pytest.mark.parametrize("command", [["set", "k", "new", "--ttl", "0"], ["set", "k", "new", "--ttl", "0s"],
                                     ["expire", "k", "0"], ["expire", "k", "0.0001s"]])
def test_a_ttl_of_zero_is_refused(redis_db, cache_config, cli, command):
    client = redis_db.client()
    client.set("k", "old")
    result = cli("-c", cache_config, "cache", *command, "-b", "cache")
    assert result.exit_code == ExitCode.USAGE and "a TTL of 0 would delete the key" in result.stderr
    assert client.get("k") == b"old" and client.ttl("k") == -1
