"""The CLI shell: global options, config commands, help/README kept in step (completion: test_complete)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import typer

from storagectl import __version__
from storagectl.cli.app import app

ROOT = Path(__file__).resolve().parents[1]


def all_commands() -> list[tuple[str, object]]:
    """Every command path ("backup run", "diag", ...) in the assembled app."""
    root = typer.main.get_command(app)
    found: list[tuple[str, object]] = []

    def walk(command, path: str) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
        else:
            found.append((path, command))

    walk(root, "")
    return found


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"storagectl {__version__}"


def test_every_command_has_help_and_a_readme_entry():
    readme = (ROOT / "README.md").read_text()
    for path, command in all_commands():
        assert (command.help or "").strip(), f"`storagectl {path}` has no help text"
        assert f"storagectl {path}" in readme, f"README has no entry for `storagectl {path}`"


def test_missing_config(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    result = cli("backends")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no config file found")
    assert "Try: storagectl config init" in result.stderr
    explicit = cli("-c", tmp_path / "nope.yaml", "backends")
    assert explicit.exit_code == 2 and "nope.yaml does not exist" in explicit.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backends:\n  a:\n    kind: [sqlite\n", ":4 invalid YAML: while parsing a flow sequence (line 3)"),
        ("backends:\n  a:\n    kind: sqlite\n    path: a.db\n    pth: b\n",
         ":5 backends.a.pth: unknown key (did you mean path?)"),
        ("backends:\n  a:\n    kind: mysql\n", ":3 backends.a.kind: unknown backend kind 'mysql'"),
        ("backends:\n  a:\n    kind: redis\n    password: ${UNSET_FOR_TEST}\n",
         ":4 backends.a.password: environment variable UNSET_FOR_TEST is not set"),
    ],
    ids=["broken-yaml", "unknown-key", "unknown-kind", "undefined-env-var"],
)
def test_invalid_config_exits_2_with_one_line_per_problem(cli, write_config, text, message):
    path = write_config(text)
    for command in (["config", "validate"], ["diag"], ["backends"]):
        result = cli("-c", path, *command)
        assert result.exit_code == 2
        first = result.stderr.splitlines()[0]
        assert first.startswith(f"error: {path}") and message in first
        assert "Traceback" not in result.stderr


def test_config_validate_ok(cli, write_config):
    path = write_config("backends:\n  a: {kind: sqlite, path: a.db}\n")
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 0 and "OK (1 backend, 0 destinations, 0 jobs)" in result.stdout
    assert cli("-c", path, "-o", "json", "config", "validate").json()["valid"] is True


def test_config_via_environment_variable(cli, write_config, monkeypatch):
    path = write_config("backends:\n  a: {kind: sqlite, path: a.db}\n")
    monkeypatch.setenv("STORAGECTL_CONFIG", str(path))
    assert cli("config", "validate").exit_code == 0


def test_config_show_masks_every_secret(cli, write_config, tmp_path):
    (tmp_path / "pw").write_text("file-secret-value\n")
    path = write_config("""\
        backends:
          pg: {kind: postgres, url: "postgresql://app:url-secret-value@db:5432/app"}
          pg2: {kind: postgres, password_file: pw}
          r: {kind: redis, password: inline-secret-value}
          s: {kind: s3, bucket: b, access_key_id: AKIAEXAMPLE, secret_access_key: s3-secret-value}
        """)
    for output in ("table", "json"):
        result = cli("-c", path, "-o", output, "config", "show")
        assert result.exit_code == 0
        assert not re.search(r"(url|file|inline|s3)-secret-value", result.stdout)
        assert "***" in result.stdout
    shown = cli("-c", path, "-o", "json", "config", "show").json()
    assert shown["backends"]["pg"]["url"] == "postgresql://app:***@db:5432/app"
    assert shown["backends"]["r"]["password"] == "***"
    assert shown["backends"]["pg"]["pool"]["max_size"] == 5  # defaults filled in
    assert shown["backends"]["pg"]["pool"]["idle_timeout"] == 300.0  # scripts get seconds


def test_config_show_prints_durations_as_written(cli, write_config):
    path = write_config("""\
        backends:
          pg: {kind: postgres, url: "postgresql://app@db:5432/app", timeouts: {statement: 90}}
        destinations:
          local: {kind: local, path: backups}
        jobs:
          nightly: {backends: [pg], destination: local, retention: {keep_last: 3, keep_within: 2d}}
        """)
    result = cli("-c", path, "config", "show")
    assert result.exit_code == 0, result.stderr
    assert "idle_timeout: 5m" in result.stdout and "statement: 1m30s" in result.stdout
    assert "keep_within: 2d" in result.stdout and "initial: 0.2s" in result.stdout
    assert "300.0" not in result.stdout
    validated = cli("-c", path, "config", "validate")
    assert "OK (1 backend, 1 destination, 1 job)" in validated.stdout


def test_config_init_writes_a_valid_starter_and_refuses_to_overwrite(cli, tmp_path):
    target = tmp_path / "storagectl.yaml"
    assert cli("config", "init", target).exit_code == 0
    assert cli("-c", target, "config", "validate").exit_code == 0
    again = cli("config", "init", target)
    assert again.exit_code == 2 and "already exists" in again.stderr and "--force" in again.stderr
    target.write_text("changed")
    assert cli("config", "init", "--force", target).exit_code == 0
    assert "backends:" in target.read_text()


def test_backends_table_and_json(cli, write_config):
    path = write_config("""\
        backends:
          lite: {kind: sqlite, path: a.db, description: Local cache}
          cache: {kind: redis, url: "redis://:pw-value@127.0.0.1:6379/2"}
        """)
    table = cli("-c", path, "backends")
    assert table.exit_code == 0 and "Local cache" in table.stdout and "pw-value" not in table.stdout
    rows = cli("-c", path, "-o", "json", "backends").json()
    assert [(r["name"], r["kind"]) for r in rows] == [("lite", "sqlite"), ("cache", "redis")]
    assert rows[1]["endpoint"] == "redis://:***@127.0.0.1:6379/2"


def test_quickstart_diag_runs(cli, tmp_path):
    from storagectl.config.starter import write_starter_config

    path = write_starter_config(tmp_path / "storagectl.yaml")
    result = cli("-c", path, "-o", "json", "diag")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert (tmp_path / "storagectl-data" / "app.db").is_file()


def test_usage_error_exit_code(cli):
    result = cli("diag", "--no-such-option")
    assert result.exit_code == 2 and "No such option" in result.stderr


def test_the_readme_quick_start_runs_as_written(tmp_path):
    """The first command of the README's quick start, less its `pip install`, in a copy of configs/:
    backup and `restore --validate` of the demo rows must succeed and show the match."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    quick_start = (root / "README.md").read_text().split("## Quick start", 1)[1]
    command = re.search(r"```sh\n(.+?)\n```", quick_start, re.S)[1]
    steps = command.split(" && ")
    assert steps[0] == "python3 -m pip install -e ."
    # Only the shipped files: a quick start already run in the working tree leaves its data there.
    shutil.copytree(root / "configs", tmp_path / "configs", ignore=shutil.ignore_patterns("storagectl-data"))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    for _run in ("first", "again"):  # rerunnable: the second run finds the first one's data
        done = subprocess.run(["bash", "-c", " && ".join(steps[1:])], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert re.search(r"database file\s*│\s*-\s*│\s*-\s*│\s*match\s*│\s*OK", done.stdout), done.stdout
        assert re.search(r"notes\s*│\s*1000\s*│\s*1000\s*│\s*-\s*│\s*OK", done.stdout), done.stdout


# Placeholders typer invents when no metavar is given: {backup_id}, <int range>, <list[str]>.
_RAW_PLACEHOLDER = re.compile(r"\{\w+\}|<[a-z][\w\[\], |]*>")


def test_every_option_and_argument_has_a_readable_metavar():
    import click

    root = typer.main.get_command(app)
    for path, command in [("", root), *all_commands()]:
        ctx = click.Context(command, info_name=f"storagectl {path}", parent=click.Context(root))
        for param in command.params:
            if getattr(param, "is_flag", False) or getattr(param, "count", False) or param.name == "help":
                continue
            metavar = param.metavar or ""
            assert re.fullmatch(r"[A-Z][A-Z0-9_:]*", metavar), f"`storagectl {path}` {param.name}: no metavar"
        help_text = command.get_help(ctx)
        usage, rest = help_text.split("\n", 1)
        text = usage + rest[min(i for i in (rest.find("\nArguments:"), rest.find("\nOptions:")) if i >= 0):]
        assert not _RAW_PLACEHOLDER.search(text), f"`storagectl {path} --help`: {_RAW_PLACEHOLDER.search(text)[0]}"


def documented_json_shapes() -> dict[str, str]:
    """README "JSON output": command -> "list" or "object"."""
    section = (ROOT / "README.md").read_text().split("## JSON output", 1)[1].split("\n## ", 1)[0]
    shapes = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            commands, shape = line.split("|")[1:3]
            for command in re.findall(r"`([a-z][a-z ]*[a-z])", commands):
                shapes[command] = "list" if shape.strip().startswith("list") else "object"
    return shapes


def test_every_json_output_has_one_documented_shape():
    shapes = documented_json_shapes()
    for path, command in all_commands():
        if any(param.name == "output" for param in command.params):
            assert path in shapes, f"README \"JSON output\" does not document `storagectl {path} -o json`"


def test_config_show_does_not_pair_a_url_with_the_defaults_it_replaces(cli, write_config):
    """A backend given by url showed ``host: localhost`` and ``database: postgres`` beside it: the
    defaults the url replaces, read by an operator as the database in use."""
    path = write_config("""\
        backends:
          pg: {kind: postgres, url: "postgresql://app@db.internal:5433/appdb"}
          fields: {kind: postgres, host: db2, database: other}
          cache: {kind: redis, url: "redis://cache.internal:6380/3"}
        """)
    shown = cli("-c", path, "-o", "json", "config", "show").json()["backends"]
    assert shown["pg"]["url"] == "postgresql://app@db.internal:5433/appdb"
    assert not {"host", "port", "database", "user"} & set(shown["pg"])
    assert not {"host", "port", "db", "username"} & set(shown["cache"])
    assert (shown["fields"]["host"], shown["fields"]["database"], shown["fields"]["port"]) == ("db2", "other", 5432)
    lines = [line.strip() for line in cli("-c", path, "config", "show").stdout.splitlines()]
    assert "host: localhost" not in lines and "database: postgres" not in lines
