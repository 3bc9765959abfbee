"""Malformed and hostile config files: every one is exit 2 with one ``file:line`` line per problem.

Work is bounded by structure, not by time: the loader refuses nesting deeper than MAX_DEPTH and
documents that expand to more than MAX_VALUES values, so these tests need no timing assertions.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from storagectl.config.document import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES

# Hypothesis caches in ./.hypothesis by default; nothing of a test run may land in the working tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "storagectl-hypothesis")

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [(ROOT / "configs" / name).read_bytes() for name in ("quickstart.yaml", "example.yaml")]
ENV = {"PG_PASSWORD": "x", "REDIS_PASSWORD": "x", "NEO4J_PASSWORD": "x"}

# Fragments that reach the loader's edge cases: anchors, aliases, merge keys, tags, nesting,
# control and non-UTF-8 bytes, huge numbers, interpolation, bad dates, keys that look like tags.
FRAGMENTS = [
    b"&a ", b"*a", b"<<: *a\n", b"<<: [*a, *a]\n", b"[", b"]", b"{", b"}", b"[[[[[[[[", b"- ", b": ",
    b"\n", b"\t", b"  ", b"#", b"'", b'"', b"\\", b"\x00", b"\x01", b"\x7f", b"\xff", b"\xc3", b"\xef\xbb\xbf",
    b"!!int ", b"!!bool ", b"!!binary ", b"!!timestamp ", b"!!python/object:os.system ", b"? ", b"---\n",
    b"9" * 4400, b"1e999", b"2024-13-45", b"${PG_PASSWORD}", b"${UNSET_X}", b"$$", b"backend[s]",
    b"function-after", b"~", b"null", b"yes", b"0x", b"0o8", b"redis://h:notaport/13x", b"kind: redis\n",
]


@st.composite
def mutated_config(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["insert", "delete", "duplicate", "byte"]))
        if operation == "insert":
            data[at:at] = draw(st.sampled_from(FRAGMENTS))
        elif operation == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        elif operation == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 200))]
        else:
            data[at:at + 1] = bytes([draw(st.integers(0, 255))])
    return bytes(data)


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=mutated_config())
def test_mutated_configs_exit_0_or_2_with_file_line_messages(cli, tmp_path, monkeypatch, text):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text)
    result = cli("-c", path, "config", "validate")
    assert result.exit_code in (0, 2), result.stderr
    if result.exit_code == 2:
        assert_file_line_problems(result.stderr, path)


def assert_file_line_problems(stderr: str, path: Path) -> None:
    """Each problem on one line, ``error: FILE:LINE ...``, then the hint; nothing else."""
    *errors, hint = stderr.splitlines()
    assert errors and hint.startswith("Try: "), stderr
    pattern = re.compile(rf"error: {re.escape(str(path))}:\d+ \S")
    assert all(pattern.match(line) for line in errors), stderr


def validate(cli, write_config, text: str):
    path = write_config(text)
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert_file_line_problems(result.stderr, path)
    return result.stderr.splitlines()[0].removeprefix(f"error: {path}")


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# -- one regression test per class the fuzzing found --------------------------------------------
def test_non_utf8_bytes(cli, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"backends:\n  a: {kind: sqlite, path: \"\xff\xfe\"}\n")
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}:2 the file is not UTF-8 text (byte 0xff at column 28)")


def test_file_too_large_to_be_a_config(cli, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}:1 the file is larger than 1024 KiB")


def test_control_character(cli, write_config):
    first = validate(cli, write_config, 'backends:\n  a: {kind: sqlite, path: "x\x01y"}\n')
    assert first.startswith(":2 invalid YAML: control character #x0001 is not allowed")


def test_ten_thousand_levels_of_nesting(cli, write_config):
    first = validate(cli, write_config, "a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert first == f":1 invalid YAML: nested deeper than {MAX_DEPTH} levels"


def test_key_that_looks_like_a_pydantic_tag(cli, write_config):
    assert validate(cli, write_config, "backend[s]: {}\n") == ":1 backend[s]: unknown key (did you mean backends?)"
    first = validate(cli, write_config, "backends:\n  a:\n    kind: sqlite\n    path: a.db\n    function-x: 1\n")
    assert first.startswith(":5 backends.a.function-x: unknown key")


def test_integer_beyond_pythons_digit_limit(cli, write_config):
    first = validate(cli, write_config, "backends:\n  a: {kind: redis, port: " + "9" * 4400 + "}\n")
    assert first == ":2 invalid YAML: value has too many digits"


@pytest.mark.parametrize(("text", "message"), [
    ("backends:\n  a: {kind: redis, port: !!int abc}\n", ":2 invalid YAML: value is not a valid int"),
    ("backends:\n  a: {kind: redis, port: !!bool maybe}\n", ":2 invalid YAML: value is not a valid bool"),
    ("backends:\n  a: {kind: redis, description: 2024-13-45}\n", ":2 invalid YAML: value is not a valid timestamp"),
    ("backends:\n  a: {kind: redis, description: !!timestamp x}\n", ":2 invalid YAML: value is not a valid timestamp"),
    ("backends:\n  ? [a, b]\n  : {kind: redis}\n", ":2 invalid YAML: a key must be a plain value"),
    ("backends:\n  a:\n    <<: 1\n", ":3 invalid YAML: << (merge key) needs a mapping"),
    ("backends:\n  a: !!python/object:os.system {}\n", ":2 invalid YAML: tag !!python/object:os.system is not"),
    ("backends:\n  a: !!python/name:os.system x\n", ":2 invalid YAML: could not determine a constructor"),
    ("backends: !!set {a}\n", ":1 invalid YAML: tag !!set is not supported"),
], ids=["int-tag", "bool-tag", "bad-date", "timestamp-tag", "sequence-key", "merge-scalar", "python-mapping",
        "python-scalar", "set"])
def test_unreadable_scalars_and_keys(cli, write_config, text, message):
    assert validate(cli, write_config, text).startswith(message)


def test_alias_bomb_stops_at_the_value_budget(cli, write_config):
    first = validate(cli, write_config, billion_laughs())
    assert first == f":5 a4: more than {MAX_VALUES} values once aliases are expanded; use fewer aliases"


@pytest.mark.parametrize("first_mapping", ["{k0: 1, k1: 2, k2: 3}", "{}"], ids=["with-values", "empty"])
def test_merge_key_bomb_stops_at_the_value_budget(cli, write_config, first_mapping):
    lines = [f"m0: &m0 {first_mapping}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, 12)]
    first = validate(cli, write_config, "\n".join(lines) + "\n")
    assert f"more than {MAX_VALUES} values once aliases are expanded" in first


def test_recursive_alias_stops_at_the_depth_limit(cli, write_config):
    assert validate(cli, write_config, "a: &a [*a]\n") == (
        f":1 a: nested deeper than {MAX_DEPTH} levels once aliases are expanded; use fewer aliases")


def test_control_character_in_a_key_stays_on_one_line(cli, write_config):
    first = validate(cli, write_config, 'backends:\n  "a\\nb": {kind: sqlite, path: a.db}\n')
    assert first.startswith(":2 backends.a\\nb: invalid name")


# -- anchors, aliases and merge keys keep working ------------------------------------------------
def test_anchors_aliases_and_merge_keys(cli, write_config):
    path = write_config("""
        x-postgres: &pg
          kind: postgres
          host: db.internal
          port: 5433
          pool: {max_size: 3}
        x-retry: &retry {attempts: 5, initial: 1s}
        backends:
          primary:
            <<: *pg
            port: 5434            # a key written here wins over the merged one
          replica:
            <<: [*pg, {host: other, user: ro}]   # of merged mappings, the first wins
            retry: *retry
          lite: {kind: sqlite, path: a.db, retry: *retry}
        destinations:
          local: {kind: local, path: backups}
        jobs:
          nightly: &job {backends: [primary, lite], destination: local}
          hourly: {<<: *job, schedule: "@hourly"}
    """)
    result = cli("-c", path, "-o", "json", "config", "show")
    assert result.exit_code == 0, result.stderr
    backends = result.json()["backends"]
    assert (backends["primary"]["port"], backends["primary"]["host"], backends["primary"]["pool"]["max_size"]) == (
        5434, "db.internal", 3)
    assert (backends["replica"]["host"], backends["replica"]["user"], backends["replica"]["port"]) == (
        "db.internal", "ro", 5433)
    assert backends["replica"]["retry"]["attempts"] == backends["lite"]["retry"]["attempts"] == 5
    assert result.json()["jobs"]["hourly"]["backends"] == ["primary", "lite"]


def test_problem_in_a_merged_mapping_names_its_line(cli, write_config):
    first = validate(cli, write_config, """
        x-defaults: &defaults
          kind: postgres
          pool: {max_sise: 4}
        backends:
          a: {<<: *defaults}
          b: {<<: *defaults}
    """)
    assert first == ":3 backends.a.pool.max_sise: unknown key (did you mean max_size?)"


def test_duplicate_key_still_an_error_next_to_a_merge(cli, write_config):
    first = validate(cli, write_config, "x: &x {a: 1}\nbackends:\n  a: {<<: *x, kind: sqlite, kind: redis}\n")
    assert first.startswith(":3 backends.a.kind: duplicate key")


@pytest.mark.parametrize("key", ["~", "null", "''"])
def test_a_null_key_is_no_name(cli, write_config, key):
    path = write_config(f"backends:\n  {key}: {{kind: sqlite, path: x.db}}\n")
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 2 and f"{path}:2" in result.stderr, result.stderr


def test_a_key_that_yaml_reads_as_a_boolean_keeps_its_name(cli, write_config):
    path = write_config("backends:\n  on: {kind: sqlite, path: x.db, create_if_missing: true}\n")
    result = cli("-c", path, "-o", "json", "backends")
    assert result.exit_code == 0 and [b["name"] for b in result.json()] == ["on"], result.stdout + result.stderr


@pytest.mark.parametrize(("entry", "key"), [
    ("{kind: redis, url: 'redis://127.0.0.1:6379/0', timeouts: {connect: 1" + "0" * 400 + "s}}", "timeouts.connect"),
    ("{kind: redis, url: 'redis://127.0.0.1:6379/0', timeouts: {connect: 1" + "0" * 400 + "}}", "timeouts.connect"),
    ("{kind: redis, url: 'redis://127.0.0.1:6379/0', timeouts: {connect: .inf}}", "timeouts.connect"),
    ("{kind: redis, url: 'redis://127.0.0.1:6379/99999999999'}", "url"),
    ("{kind: redis, db: 99999999999}", "db"),
    ("{kind: sqlite, path: x.db, pool: {max_size: 9999999999}}", "pool.max_size"),
])
def test_numbers_out_of_range_are_refused_at_validation(cli, write_config, entry, key):
    """They used to pass `config validate` and fail only when used (time_t overflow, a C int)."""
    path = write_config(f"backends:\n  a: {entry}\n")
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 2 and f"{path}:2 backends.a.{key}:" in result.stderr, result.stderr
