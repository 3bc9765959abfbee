"""`storagectl inspect keys` on Redis: exact figures against a full MEMORY USAGE sum, extrapolated
figures within their error bounds, budget and Ctrl-C stopping with what was gathered."""

from __future__ import annotations

import random

import pytest

from storagectl.inspect.keyspace import NodeCensus, ttl_bucket
from storagectl.inspect.model import extrapolate


@pytest.fixture
def config(redis_db, write_config):
    return write_config("backends:\n" + redis_db.backend_yaml())


def fill(client, keys: int, seed: int = 7) -> None:
    """``keys`` keys in 40 prefixes of two levels with skewed (log-normal) sizes, some aggregates, some TTLs.
    Sizes with a much heavier tail (Pareto with alpha 1.5, infinite variance) do break the 3-sigma
    bounds of a 20% sample: see README "inspect keys" on what the bounds assume."""
    rng = random.Random(seed)
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        prefix = f"app{i % 4}:kind{rng.randrange(10)}"
        shape = i % 10
        if shape == 0:
            pipe.rpush(f"{prefix}:list{i}", *range(rng.randrange(1, 60)))
        elif shape == 1:
            pipe.hset(f"{prefix}:hash{i}", mapping={f"f{j}": "v" * j for j in range(rng.randrange(1, 30))})
        else:
            # TTLs long enough that no key expires while a slow (loaded) test reads the truth
            pipe.set(f"{prefix}:s{i}", "x" * int(rng.lognormvariate(3.5, 1.0)), ex=rng.choice([None, 3000, 7200]))
    pipe.set("flat", "no delimiter")
    pipe.execute()


def truth(client, delimiter=":"):
    """Keys and MEMORY USAGE bytes per prefix (levels 1-2) and overall, read key by key."""
    per_prefix: dict[str, list[int]] = {}
    total = [0, 0, 0]
    for key in client.scan_iter(count=500):
        size = client.memory_usage(key)
        no_ttl = client.pttl(key) < 0
        parts = key.decode().split(delimiter)
        prefixes = [delimiter.join(parts[:level]) + delimiter for level in range(1, min(2, len(parts) - 1) + 1)]
        for prefix in prefixes:
            entry = per_prefix.setdefault(prefix, [0, 0, 0])
            entry[0] += 1
            entry[1] += size
            entry[2] += no_ttl
        total[0] += 1
        total[1] += size
        total[2] += no_ttl
    return total, per_prefix


def keys_json(cli, config, *extra):
    result = cli("-o", "json", "-c", config, "inspect", "keys", "-b", "cache", "--top", "100", *extra)
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    return report


def test_full_scan_matches_memory_usage_key_by_key(cli, config, redis_db):
    client = redis_db.client()
    fill(client, 3000)
    (keys, size, no_ttl), per_prefix = truth(client)
    report = keys_json(cli, config)
    summary = report["summary"]
    assert summary["keys"] == {"value": keys, "provenance": "exact"}
    assert summary["memory_bytes"] == {"value": size, "provenance": "exact", "source": "MEMORY USAGE SAMPLES 5"}
    assert summary["keys_without_ttl"]["value"] == no_ttl
    assert summary["coverage_pct"]["value"] == 100.0 and report["complete"] is True
    rows = {r["prefix"]: r for r in report["sections"]["prefixes"]}
    assert len(rows) == len(per_prefix) == 44
    for prefix, (count, nbytes, without) in per_prefix.items():
        assert (rows[prefix]["keys"]["value"], rows[prefix]["memory_bytes"]["value"],
                rows[prefix]["keys_without_ttl"]["value"]) == (count, nbytes, without), prefix
    biggest = report["sections"]["biggest_keys_by_bytes"][0]
    assert biggest["memory_bytes"]["value"] == max(client.memory_usage(k) for k in client.scan_iter(count=500))
    longest = report["sections"]["biggest_keys_by_elements"][0]
    assert longest["elements"]["value"] == max(client.llen(k) for k in client.scan_iter("*:list*", count=500))


def test_estimates_hold_within_their_error_bounds(cli, config, redis_db):
    client = redis_db.client()
    fill(client, 20000, seed=11)
    (keys, size, no_ttl), per_prefix = truth(client)
    report = keys_json(cli, config, "--max-keys", "4000", "--depth", "1")
    summary = report["summary"]
    assert report["stopped"] == "max-keys" and report["complete"] is False
    assert summary["scanned_keys"]["value"] == 4000
    assert summary["coverage_pct"]["provenance"] == "estimate"
    checked = [(summary["memory_bytes"], size), (summary["keys_without_ttl"], no_ttl)]
    for row in report["sections"]["prefixes"]:
        count, nbytes, _ = per_prefix[row["prefix"]]
        checked += [(row["keys"], count), (row["memory_bytes"], nbytes)]
    assert len(checked) == 10
    for figure, true_value in checked:
        assert figure["provenance"] == "sampled" and figure["n"] == 4000
        assert 0 < figure["error_bound"] < true_value
        assert abs(figure["value"] - true_value) <= figure["error_bound"], (figure, true_value)


def test_pattern_limits_the_scan(cli, config, redis_db):
    client = redis_db.client()
    fill(client, 500)
    report = keys_json(cli, config, "--pattern", "app1:*")
    expected = sum(1 for _ in client.scan_iter("app1:*", count=500))
    assert report["summary"]["keys"]["value"] == expected
    assert {r["prefix"].split(":")[0] for r in report["sections"]["prefixes"]} == {"app1"}


def test_budget_zero_reports_nothing_scanned_as_incomplete(cli, config, redis_db):
    fill(redis_db.client(), 100)
    report = keys_json(cli, config, "--budget", "0")
    assert report["stopped"] == "budget" and report["summary"]["scanned_keys"]["value"] == 0
    assert report["summary"]["memory_bytes"]["value"] is None


def test_ctrl_c_prints_what_was_gathered_and_exits_130(cli, config, redis_db, monkeypatch):
    """Interrupted in the sleep between batches (-i): the first batch is reported, then exit 130."""
    import storagectl.inspect.redis as inspect_redis

    fill(redis_db.client(), 5000)

    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(inspect_redis.time, "sleep", interrupted)
    result = cli("-o", "json", "-c", config, "inspect", "keys", "-b", "cache", "-i", "1")
    assert result.exit_code == 130
    [report] = result.json()["backends"]
    assert report["stopped"] == "interrupted"
    assert 0 < report["summary"]["scanned_keys"]["value"] < 5001
    assert report["summary"]["memory_bytes"]["provenance"] == "sampled"
    assert "interrupted" in result.stderr


def test_overview_from_info(cli, config, redis_db):
    client = redis_db.client()
    fill(client, 200)
    result = cli("-o", "json", "-c", config, "inspect")
    [report] = result.json()["backends"]
    assert report["summary"]["keys"]["value"] == client.dbsize()
    assert report["summary"]["keys_with_ttl"]["value"] == sum(1 for k in client.scan_iter() if client.ttl(k) > 0)


def test_table_output_shows_iec_sizes_and_marks_estimates(cli, config, redis_db):
    fill(redis_db.client(), 3000)
    result = cli("-c", config, "inspect", "keys", "-b", "cache", "--max-keys", "1000")
    assert result.exit_code == 0
    assert "KiB" in result.stdout and "~" in result.stdout and "±" in result.stdout


# -- pure ---------------------------------------------------------------------------------------------
def test_prefixes_and_ttl_buckets():
    census = NodeCensus("n", ":", 2, 5)
    assert census.prefixes_of("a:b:c:d") == ["", "a:", "a:b:"]
    assert census.prefixes_of("a:b") == ["", "a:"]
    assert census.prefixes_of("plain") == [""]
    assert NodeCensus("n", "::", 3, 5).prefixes_of("a::b::c") == ["", "a::", "a::b::"]
    assert [ttl_bucket(v) for v in (-1, 59_999, 60_000, 86_400_000 * 8)] == ["none", "<1m", "<1h", ">=7d"]


def test_prefixes_beyond_the_cap_count_in_their_parent(monkeypatch):
    from storagectl.inspect import keyspace

    monkeypatch.setattr(keyspace, "MAX_PREFIXES", 4)
    census = NodeCensus("n", ":", 2, 5)
    for key in ("a:1:x", "a:2:x", "a:3:x", "b:1:x"):
        census.add(keyspace.KeyFacts(key, "string", -1, 10, None))
    assert census.capped
    assert {p: t.keys for p, t in census.prefixes.items()} == {"": 4, "a:": 3, "a:1:": 1, "a:2:": 1}


def test_extrapolate_is_exact_when_everything_was_seen_and_bounded_otherwise():
    assert extrapolate(500, 2500, 100, 100) == (500.0, 0.0)
    value, bound = extrapolate(50, 50, 100, 1000)  # half the sample in the group
    assert value == 500 and 185 < bound < 195  # 4 * 1000 * sqrt(0.25 * 100/99 / 100 * 0.9)


def cluster_truth(cluster) -> tuple[int, int]:
    """Keys and MEMORY USAGE bytes summed over the primaries, read key by key."""
    totals = [truth(node.client())[0] for node in cluster.nodes]
    return sum(t[0] for t in totals), sum(t[1] for t in totals)


def test_every_primary_is_scanned_and_max_keys_split_between_them(cli, write_config, redis_cluster):
    """Full scans add up exactly; --max-keys is split between the primaries, each extrapolated alone."""
    fill(redis_cluster.client(), 8000, seed=2)
    keys, size = cluster_truth(redis_cluster)
    config = write_config("backends:\n" + redis_cluster.backend_yaml("cache"))
    full = keys_json(cli, config)
    sampled = keys_json(cli, config, "--max-keys", "2400", "--depth", "1")
    assert (full["summary"]["keys"]["value"], full["summary"]["memory_bytes"]["value"]) == (keys, size)
    assert sampled["summary"]["scanned_keys"]["value"] == 2400 and sampled["stopped"] == "max-keys"
    estimate = sampled["summary"]["memory_bytes"]
    assert estimate["provenance"] == "sampled" and abs(estimate["value"] - size) <= estimate["error_bound"]


def test_keys_moved_by_a_reshard_during_the_scan_count_once(cli, write_config, own_redis_cluster, monkeypatch):
    """The primaries are scanned one at a time here; once the first is done, slots move from it (keys
    and all) to the others, which are scanned next: those keys count on the primary that owned their
    slot when the scan started, not twice."""
    import storagectl.inspect.redis as inspect_redis

    scan_part = inspect_redis.RedisInspector.scan_part
    moved: list[str] = []

    with own_redis_cluster(3) as cluster:
        def scan_then_reshard(self, part, *args):
            done = scan_part(self, part, *args)
            if not moved:
                source = next(node for node in cluster.nodes if node.address == part.name)
                moved.append(part.name)
                cluster.reshard(source, next(node for node in cluster.nodes if node is not source), 200)
            return done

        fill(cluster.client(), 3000)
        keys, size = cluster_truth(cluster)
        monkeypatch.setattr(inspect_redis, "NODES_AT_ONCE", 1)
        monkeypatch.setattr(inspect_redis.RedisInspector, "scan_part", scan_then_reshard)
        report = keys_json(cli, write_config("backends:\n" + cluster.backend_yaml("cache")))
    assert moved
    assert (report["summary"]["keys"]["value"], report["summary"]["memory_bytes"]["value"]) == (keys, size)


def test_ctrl_c_during_a_cluster_scan_stops_every_primary_and_reports(cli, write_config, redis_cluster, monkeypatch):
    """Ctrl-C (SIGINT to the process) while the primaries are scanned in worker threads: fan_out's stop
    ends every scan at its next batch, what was gathered is printed, exit 130."""
    import os
    import signal

    import storagectl.inspect.redis as inspect_redis

    fill(redis_cluster.client(), 30000)
    pauses: list[float] = []

    def interrupt_once(seconds):
        pauses.append(seconds)
        if len(pauses) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(inspect_redis.time, "sleep", interrupt_once)
    config = write_config("backends:\n" + redis_cluster.backend_yaml("cache"))
    result = cli("-o", "json", "-c", config, "inspect", "keys", "-b", "cache", "-i", "0.01")
    assert result.exit_code == 130, result.stderr
    [report] = result.json()["backends"]
    assert report["stopped"] == "interrupted" and not report["complete"]
    assert 0 < report["summary"]["scanned_keys"]["value"] < redis_cluster.dbsize() / 2
    assert len(pauses) < 10  # ~30 batches in all: the scans did not run on
