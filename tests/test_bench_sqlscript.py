"""pgbench-style scripts: \\set lines, :variables as bound parameters, and nothing evaluated as Python."""

from __future__ import annotations

import random

import pytest

from storagectl.errors import UsageError
from storagectl.loadgen.sqlscript import BUILTIN_SCRIPTS, parse_script

CONSTANTS = {"scale": 10, "keyspace": 1_000_000}


def test_pgbench_tpcb_script_parses_with_parameters_in_order():
    script = parse_script(BUILTIN_SCRIPTS["tpcb-like"], CONSTANTS)
    assert script.transactional and len(script.statements) == 7
    insert = script.statements[5]
    assert insert.variables == ("tid", "bid", "aid", "delta")
    assert insert.numbered(lambda i: f"${i}").endswith("VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)")
    ranges = {draw.name: (draw.low, draw.high) for draw in script.draws}
    assert ranges == {"aid": (1, 1_000_000), "bid": (1, 10), "tid": (1, 100), "delta": (-5000, 5000)}


def test_values_stay_in_their_ranges_and_cover_them():
    script = parse_script("\\set n random(3, 5)\nSELECT :n;\n", CONSTANTS)
    seen = {script.values(random.Random(seed))["n"] for seed in range(200)}
    assert seen == {3, 4, 5}


def test_constants_and_expressions():
    script = parse_script("\\set half (:keyspace + 1) / 2\n\\set x -:scale * 3\nSELECT :half, :x, :scale;\n",
                          CONSTANTS)
    assert script.values(random.Random(0)) == {"scale": 10, "half": 500_000, "x": -30}


def test_casts_and_strings_are_not_variables():
    script = parse_script("SELECT now()::date, 'a:b';\n", CONSTANTS)
    assert script.statements[0].variables == ()


@pytest.mark.parametrize("text, message", [
    ("SELECT :nope;", ":nope is used but never \\set"),
    ("\\set x random(5, 1)\nSELECT :x;", "random(5, 1) is an empty range"),
    ("\\set x __import__('os').getpid()\nSELECT :x;", "is not integer arithmetic"),
    ("\\set x 1 / 0\nSELECT :x;", "is not integer arithmetic"),
    ("\\set x :y + 1\nSELECT :x;", ":y is not set"),
    # pgbench draws :y per transaction; here it was evaluated once at 10, and every op got x = 20
    ("\\set y random(1, 10)\n\\set x :y * 2\nSELECT :x;", ":y is drawn at random"),
    ("\\set y random(1, 10)\n\\set x random(:y, 20)\nSELECT :x;", ":y is drawn at random"),
    ("\\sleep 10 ms\nSELECT 1;", "expected \\set NAME"),
    ("\\set x 1\n", "no SQL statement"),
])
def test_bad_scripts_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")):
        parse_script(text, CONSTANTS, "f.sql")
