"""Config loading: every bad-input case names file, line and key path, exits 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from storagectl.config import load_config, parse_config
from storagectl.errors import ConfigError, ExitCode


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("storagectl.yaml"), environ or {})
    assert caught.value.exit_code == ExitCode.USAGE
    return caught.value.problems


def test_unknown_key_names_line_path_and_suggestion():
    text = """\
backends:
  app:
    kind: postgres
    host: db.internal
    pool:
      max_sise: 10
"""
    assert problems_of(text) == [
        "storagectl.yaml:6 backends.app.pool.max_sise: unknown key (did you mean max_size?)"
    ]


def test_unknown_top_level_key_lists_valid_keys():
    (problem,) = problems_of("backend:\n  x: {}\n")
    assert problem.startswith("storagectl.yaml:1 backend: unknown key (did you mean backends?)")


def test_unknown_kind_lists_valid_kinds():
    (problem,) = problems_of("backends:\n  app:\n    kind: postgress\n")
    assert problem.startswith("storagectl.yaml:3 backends.app.kind: unknown backend kind 'postgress'")
    assert "did you mean postgres?" in problem and "sqlite" in problem


def test_broken_yaml_names_the_line():
    (problem,) = problems_of("backends:\n  app:\n    kind: [postgres\n    host: x\n")
    assert problem.startswith("storagectl.yaml:") and "invalid YAML" in problem


def test_duplicate_key_is_an_error():
    (problem,) = problems_of("backends:\n  a: {kind: sqlite, path: x.db}\n  a: {kind: sqlite, path: y.db}\n")
    assert problem.startswith("storagectl.yaml:3 backends.a: duplicate key")


def test_undefined_env_var_names_variable_and_fix():
    (problem,) = problems_of("backends:\n  app:\n    kind: postgres\n    password: ${APP_DB_PASSWORD}\n")
    assert problem == (
        "storagectl.yaml:4 backends.app.password: environment variable APP_DB_PASSWORD is not set "
        "(export APP_DB_PASSWORD=..., or write ${APP_DB_PASSWORD:-default})"
    )


def test_env_interpolation_and_defaults():
    text = (
        "backends:\n  app:\n    kind: postgres\n    host: ${DB_HOST}\n"
        "    port: ${DB_PORT:-6543}\n    password: $${literal}\n"
    )
    config = parse_config(text, Path("c.yaml"), {"DB_HOST": "db1"})
    app = config.backend("app")
    assert (app.host, app.port) == ("db1", 6543)
    assert app.password.get_secret_value() == "${literal}"


def test_password_file(tmp_path: Path):
    (tmp_path / "pw").write_text("s3cret\n")
    path = tmp_path / "c.yaml"
    path.write_text("backends:\n  app:\n    kind: postgres\n    password_file: pw\n")
    config = load_config(path)
    assert config.backend("app").password.get_secret_value() == "s3cret"


def test_missing_password_file_is_reported(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("backends:\n  app:\n    kind: postgres\n    password_file: nope\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "cannot read password_file" in caught.value.problems[0]
    assert f"{path}:4 backends.app.password_file: cannot read" in caught.value.problems[0]


def test_several_problems_reported_together():
    text = """\
backends:
  app: {kind: sqlite}
  db: {kind: postgres, port: abc}
jobs:
  nightly:
    backends: [app, nope]
    destination: missing
    schedule: "61 * * * *"
    timezone: Mars/Olympus
    retention: {}
"""
    problems = problems_of(text)
    joined = "\n".join(problems)
    assert "storagectl.yaml:2 backends.app.path: required key is missing" in joined
    assert "storagectl.yaml:3 backends.db.port:" in joined and "'abc'" in joined
    assert "jobs.nightly.schedule: '61 * * * *' is not a valid cron expression" in joined
    assert "jobs.nightly.timezone: unknown timezone 'Mars/Olympus'" in joined
    assert "jobs.nightly.retention: retention keeps nothing" in joined
    assert "storagectl.yaml:6 jobs.nightly.backends.1: unknown backend 'nope'" in joined
    assert "storagectl.yaml:7 jobs.nightly.destination: unknown destination 'missing'" in joined


def test_lock_backend_must_be_redis():
    text = """\
backends:
  db: {kind: sqlite, path: a.db}
destinations:
  local: {kind: local, path: b}
jobs:
  j: {backends: [db], destination: local, lock: {backend: db}}
"""
    (problem,) = problems_of(text)
    assert "jobs.j.lock.backend: lock backend 'db' is a sqlite backend; it must be redis" in problem


def test_url_and_fields_conflict():
    (problem,) = problems_of("backends:\n  app:\n    kind: postgres\n    url: postgresql://h/db\n    host: x\n")
    assert "give either url or host, not both" in problem


def test_secret_value_never_echoed_in_errors():
    problems = problems_of("backends:\n  app:\n    kind: redis\n    password: [hunter2]\n")
    assert not any("hunter2" in p for p in problems)


def test_relative_paths_resolve_against_config_dir(tmp_path: Path):
    path = tmp_path / "conf" / "c.yaml"
    path.parent.mkdir()
    path.write_text("backends:\n  lite: {kind: sqlite, path: data/app.db}\n")
    assert load_config(path).backend("lite").path == tmp_path / "conf" / "data" / "app.db"


def test_search_order(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STORAGECTL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with pytest.raises(ConfigError, match="no config file found"):
        load_config()
    user = tmp_path / "xdg" / "storagectl" / "storagectl.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("backends: {}\n")
    assert load_config().path == user
    (tmp_path / "storagectl.yaml").write_text("backends: {}\n")
    assert load_config().path == Path("storagectl.yaml")
    other = tmp_path / "other.yaml"
    other.write_text("backends: {}\n")
    monkeypatch.setenv("STORAGECTL_CONFIG", str(other))
    assert load_config().path == other
    assert load_config(user).path == user


@pytest.mark.parametrize("name", ["quickstart.yaml", "example.yaml"])
def test_shipped_configs_are_valid(name: str):
    root = Path(__file__).resolve().parents[1]
    env = {"PG_PASSWORD": "x", "REDIS_PASSWORD": "x", "NEO4J_PASSWORD": "x", "AGE_RECIPIENT": "age1x"}
    config = parse_config((root / "configs" / name).read_text(), root / "configs" / name, env)
    assert config.backends


def test_quickstart_is_the_embedded_starter():
    from storagectl.config.starter import starter_config_text

    root = Path(__file__).resolve().parents[1]
    assert (root / "configs" / "quickstart.yaml").read_text() == starter_config_text()


def test_malformed_age_recipient_is_a_config_error():
    text = """\
backends:
  app: {kind: sqlite, path: a.db}
destinations:
  local: {kind: local, path: b}
jobs:
  sealed:
    backends: [app]
    destination: local
    encryption: {recipients: ["age1bogus"]}
"""
    (problem,) = problems_of(text)
    assert problem.startswith("storagectl.yaml:9 jobs.sealed.encryption.recipients: invalid age recipient 'age1bogus'")
