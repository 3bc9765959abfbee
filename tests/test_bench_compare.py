"""`bench compare`: the pure comparison, its conditions, and the CLI's exit codes."""

from __future__ import annotations

import json

import pytest

from storagectl.errors import UsageError
from storagectl.loadgen.compare import compare_results, parse_condition


def result(ops_per_s=1000.0, p99=10.0, workload="get", kind="redis", errors=0, corrected=None):
    latency = {"min": 0.1, "p50": 1.0, "p90": 5.0, "p95": 8.0, "p99": p99, "p99_9": 20.0, "max": 30.0, "mean": 2.0}
    return {"schema_version": 1, "backend": {"name": "x", "kind": kind}, "workload": {"name": workload},
            "load": {"mode": "open-loop" if corrected else "closed-loop"}, "ops_per_s": ops_per_s,
            "error_count": errors, "latency_ms": latency,
            "corrected_latency_ms": {**latency, "p99": corrected} if corrected else None}


@pytest.mark.parametrize("text, base, new, holds", [
    ("p99>+10%", result(p99=10.0), result(p99=11.5), True),
    ("p99>+10%", result(p99=10.0), result(p99=10.9), False),
    ("ops<-5%", result(ops_per_s=1000), result(ops_per_s=940), True),
    ("ops<-5%", result(ops_per_s=1000), result(ops_per_s=960), False),
    ("ops<-5%", result(ops_per_s=1000), result(ops_per_s=2000), False),
    ("p99>50", result(), result(p99=51.0), True),
    ("p99 > 50", result(), result(p99=49.0), False),
    ("errors>0", result(), result(errors=1), True),
    ("errors>0", result(errors=5), result(errors=0), False),
    ("p99.9>+50%", result(), result(), False),
    ("errors>+10%", result(errors=0), result(errors=5), True),  # from 0: an infinite rise, not "no change"
    ("errors>+10%", result(errors=0), result(errors=0), False),
    ("errors<-10%", result(errors=0), result(errors=5), False),
    ("p99>+10%", result(), {**result(), "latency_ms": None}, True),  # NEW: not one op succeeded
    ("p99>50", result(), {**result(), "latency_ms": None}, True),
    ("p99<-10%", {**result(), "latency_ms": None}, result(), True),  # nothing to compare with
    ("errors>+10%", result(errors=0), result(errors=40), True),  # up from 0
    ("errors>+10%", result(errors=0), result(errors=0), False),
    ("ops<-5%", result(ops_per_s=0.0), result(ops_per_s=0.0), False),
])
def test_conditions(text, base, new, holds):
    comparison = compare_results(base, new, [parse_condition(text)])
    assert comparison["failed"] == ([text.strip()] if holds else [])


def test_a_condition_that_cannot_be_checked_says_why():
    comparison = compare_results(result(), {**result(), "latency_ms": None}, [parse_condition("p99>+10%")])
    assert comparison["notes"] == ["p99>+10%: NEW has no p99 (no operation succeeded)"]


def test_figures_and_changes():
    comparison = compare_results(result(ops_per_s=1000, p99=10.0), result(ops_per_s=1100, p99=8.0), [])
    rows = {row["figure"]: row for row in comparison["figures"]}
    assert rows["ops"]["change_pct"] == 10.0 and rows["p99"]["change_pct"] == -20.0
    assert rows["errors"]["change_pct"] is None  # from 0: no percentage


def test_open_loop_results_compare_their_corrected_latency():
    comparison = compare_results(result(corrected=100.0), result(corrected=300.0), [parse_condition("p99>+100%")])
    assert comparison["failed"] == ["p99>+100%"]
    assert compare_results(result(), result(corrected=300.0), [])["notes"]  # open vs closed: a note


@pytest.mark.parametrize("base, new, message", [
    (result(workload="get"), result(workload="set"), "different workloads"),
    (result(kind="redis"), result(kind="postgres"), "different backends"),
    ({"foo": 1}, result(), "BASE is not a storagectl bench result"),
])
def test_incomparable_results_are_usage_errors(base, new, message):
    with pytest.raises(UsageError, match=message):
        compare_results(base, new, [])


@pytest.mark.parametrize("text", ["p99", "p99=3", "latency>+5%", "ops<<3", "p99>ten%"])
def test_malformed_conditions(text):
    with pytest.raises(UsageError, match="is not FIGURE<VALUE or FIGURE>VALUE"):
        parse_condition(text)


@pytest.mark.parametrize("text", ["ops<-5", "p99>+10"])
def test_a_signed_value_without_percent_is_refused(text):
    """'ops<-5' (meant: -5 %) could never hold: a CI gate that passes whatever happens."""
    with pytest.raises(UsageError, match="a signed value is a change and needs '%'"):
        parse_condition(text)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_compare_exit_codes(cli, tmp_path):
    base = write(tmp_path, "base.json", result(p99=10.0))
    slower = write(tmp_path, "new.json", result(p99=12.0))
    other = write(tmp_path, "other.json", result(workload="set"))
    ok = cli("bench", "compare", base, slower, "--fail-if", "p99>+50%")
    assert ok.exit_code == 0 and "p99" in ok.stdout and "+20.0%" in ok.stdout
    assert "ops/s" in ok.stdout and "p99 (ms)" in ok.stdout  # units, and ops/s not to the thousandth
    failed = cli("bench", "compare", base, slower, "--fail-if", "p99>+10%", "--fail-if", "ops<-5%")
    assert failed.exit_code == 1 and "failed: p99>+10%" in failed.stderr and "ops<-5%" not in failed.stderr
    as_json = cli("-o", "json", "bench", "compare", base, slower, "--fail-if", "p99>+10%")
    assert as_json.exit_code == 1 and as_json.json()["failed"] == ["p99>+10%"]
    assert cli("bench", "compare", base, other).exit_code == 2
    assert cli("bench", "compare", base, slower, "--fail-if", "p99=1").exit_code == 2
    missing = cli("bench", "compare", base, tmp_path / "nope.json")
    assert missing.exit_code == 5 and "does not exist" in missing.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert cli("bench", "compare", garbage, base).exit_code == 2


def with_parameters(data, **changes):
    """A result with `bench run`'s parameters recorded (``result()`` has none): -c 4 -T 10s, defaults."""
    data["workload"].update({"data_size": 100, "keyspace": 1000, "ratio": "1:10", "pipeline": 1})
    data["load"].update({"clients": 4, "workers": 1, "duration_s": 10.0, "count": None, "warmup_s": 5.0,
                         "rate": None, "pipeline": 1})
    for key, value in changes.items():
        data["workload" if key in ("data_size", "keyspace", "ratio") else "load"][key] = value
    return data


def test_differing_run_parameters_are_noted_not_refused(cli, tmp_path):
    """Results of -c 4 -T 10s and -c 8 -n 5000 --keyspace 100000 were compared without a word."""
    base = with_parameters(result())
    new = with_parameters(result(), clients=8, keyspace=100000, duration_s=None, count=5000)
    comparison = compare_results(base, new, [])
    assert comparison["differing_parameters"] == [
        {"parameter": "keyspace", "base": 1000, "new": 100000}, {"parameter": "clients", "base": 4, "new": 8},
        {"parameter": "duration_s", "base": 10.0, "new": None}, {"parameter": "count", "base": None, "new": 5000}]
    assert comparison["notes"] == [
        "--keyspace differs: BASE 1000, NEW 100000", "--clients differs: BASE 4, NEW 8",
        "--duration differs: BASE 10s, NEW not set", "--count differs: BASE not set, NEW 5000"]
    same = compare_results(base, with_parameters(result(p99=30.0)), [])
    assert same["differing_parameters"] == [] and same["notes"] == []
    older = with_parameters(result(), workers=2)
    del older["load"]["workers"]  # a result written before load.workers existed: not compared
    assert compare_results(older, with_parameters(result(), workers=2), [])["differing_parameters"] == []
    shown = cli("bench", "compare", write(tmp_path, "base.json", base), write(tmp_path, "new.json", new))
    assert shown.exit_code == 0, shown.stderr
    assert "note: --clients differs: BASE 4, NEW 8\n" in shown.stderr
    as_json = cli("-o", "json", "bench", "compare", tmp_path / "base.json", tmp_path / "new.json")
    assert as_json.exit_code == 0 and len(as_json.json()["differing_parameters"]) == 4
