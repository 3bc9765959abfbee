"""Start-up proportional to the work: what quick commands must not import (issue 19).

Each command runs in a fresh interpreter (imports are per process); the test reads which modules
were loaded, never how long that took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
import typer.main

import storagectl

ROOT = Path(storagectl.__file__).resolve().parent.parent

PROBE = """
import json, sys
from storagectl.cli.main import run
code = run(sys.argv[1:])
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def modules_after(*args: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="200", PYTHONIOENCODING="utf-8")
    env.pop("STORAGECTL_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env,
                          check=True)
    report = json.loads(done.stdout.rstrip().rsplit("\n", 1)[-1])
    assert report["code"] == 0, done.stderr
    return set(report["modules"])


def loaded(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(name for name in modules if name.split(".")[0] in prefixes or name in prefixes)


HEAVY = ("pydantic", "rich", "psycopg", "sqlalchemy", "boto3", "botocore", "redis", "neo4j", "brotli", "pyrage",
         "alembic", "yaml")


def command_modules(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.startswith("storagectl.cli.") and name.endswith("_cmd"))


def test_help_imports_no_command_module_nor_anything_heavy():
    modules = modules_after("--help")
    assert loaded(modules, *HEAVY, "logging") == []
    assert command_modules(modules) == []
    assert "storagectl.config.models" not in modules


@pytest.mark.parametrize("command", [["diag"], ["backup"], ["backup", "list"], ["restore"], ["config", "validate"]])
def test_command_help_imports_only_its_module_and_nothing_heavy(command):
    # typer 0.29 checks option values with pydantic (even the root's --output left at its default
    # when --help follows): storagectl.cli.coercion answers the plain cases without it
    modules = modules_after(*command, "--help")
    assert loaded(modules, *HEAVY) == []
    assert "storagectl.config.models" not in modules and "storagectl.diag" not in modules
    assert f"storagectl.cli.{command[0]}_cmd" in modules
    assert not {"storagectl.cli.migrate_cmd", "storagectl.cli.inspect_cmd", "storagectl.cli.config_cmd"} - {
        f"storagectl.cli.{command[0]}_cmd"} & set(command_modules(modules))


def test_backup_list_loads_no_archive_backend_or_driver_machinery(write_config, tmp_path):
    config = write_config(f"""
        version: 1
        backends:
          pg: {{kind: postgres, url: "postgresql://app:secret@db.example:5433/app?sslmode=require"}}
          fields: {{kind: postgres, host: db.example, database: app}}
          cache: {{kind: redis, url: "redis://cache.example:6379/0"}}
          file: {{kind: sqlite, path: {tmp_path / 'app.db'}}}
        destinations:
          local: {{kind: local, path: {tmp_path / 'backups'}}}
    """)
    modules = modules_after("-c", str(config), "-o", "json", "backup", "list", "--from", "local")
    assert loaded(modules, "brotli", "pyrage", "boto3", "botocore", "rich", "psycopg", "redis", "sqlalchemy",
                  "neo4j", "alembic") == []
    assert not {"storagectl.backup.restore", "storagectl.backup.run", "storagectl.archive.reader",
                "storagectl.archive.writer", "storagectl.backends.postgres.archive"} & modules
    assert command_modules(modules) == []  # run without typer, storagectl.cli.quick


def test_backup_list_from_the_config_cache_loads_neither_yaml_nor_pydantic_nor_rich(write_config, tmp_path):
    """The second run finds the validated config in the cache (storagectl.config.cache), runs without
    typer (storagectl.cli.quick), and its table, piped, is drawn without rich."""
    config = write_config(f"""
        backends:
          pg: {{kind: postgres, url: "postgresql://app@db.example:5433/app", password_file: pw}}
        destinations:
          local: {{kind: local, path: {tmp_path / 'backups'}}}
    """)
    (tmp_path / "pw").write_text("pw\n")
    first = modules_after("-c", str(config), "backup", "list")
    assert "pydantic" in first and "yaml" in first  # validated, and remembered
    again = modules_after("-c", str(config), "backup", "list")
    assert loaded(again, "pydantic", "yaml", "rich", "typing_extensions", "asyncio", "typer", "click") == []
    (tmp_path / "pw").write_text("changed\n")
    assert "pydantic" in modules_after("-c", str(config), "backup", "list")  # a referenced file changed


def test_every_command_is_in_the_lazy_table():
    """A group added with app.add_typer() would be imported by every command, `--help` included."""
    from storagectl.cli.app import COMMANDS, app

    assert app.registered_groups == [] and app.registered_commands == []
    root = typer.main.get_command(app)
    assert list(root.commands) == list(COMMANDS)


def test_each_summary_is_the_first_sentence_of_its_commands_help():
    from storagectl.cli.app import COMMANDS, app
    from storagectl.cli.lazy import _Summary

    root = typer.main.get_command(app)
    for name, entry in COMMANDS.items():
        real = root.commands[name]
        for limit in (10, 30, 45, 60, 74, 100, 1000):
            assert _Summary(entry.summary).get_short_help_str(limit) == real.get_short_help_str(limit), name


@pytest.mark.parametrize("width", [60, 80, 200])
def test_help_lists_the_commands_as_when_they_are_loaded(width):
    """The command list comes from the table; with every command loaded it reads the same."""
    from typer._click import Context

    from storagectl.cli.app import app

    def help_text(root) -> str:
        return root.get_help(Context(root, info_name="storagectl", terminal_width=width))

    from_table = help_text(typer.main.get_command(app))
    root = typer.main.get_command(app)
    assert len(list(root.commands.values())) == len(root.commands)  # loads every command
    assert help_text(root) == from_table and "  backup  " in from_table


@pytest.mark.parametrize("first", ["import storagectl.backup.restore", "from storagectl.backup import verify_backup",
                                   "from storagectl.backup import list_backups"])
def test_backup_package_exports_the_function_restore_whatever_was_imported_first(first):
    check = (f"{first}\nimport types\nfrom storagectl.backup import restore, run_backup\n"
             "assert not isinstance(restore, types.ModuleType) and restore.__module__ == 'storagectl.backup.restore'\n"
             "assert callable(run_backup)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


# -- option values checked without pydantic: the same answers as typer's own coercion --------------
class Color(StrEnum):
    red = "red"
    dark_blue = "dark-blue"


def _probe_parser(value):
    """An option's own parser, as `inspect --budget` has: a number or a string of digits, else errors."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    if value == "abc":
        raise typer.BadParameter("not a number")
    return float(value)  # ValueError or TypeError for the rest


def _probe_command():
    probe = typer.Typer()

    @probe.command()
    def command(
        file: Annotated[Path | None, typer.Option(dir_okay=False)] = None,
        existing: Annotated[Path | None, typer.Option(exists=True, file_okay=False)] = None,
        resolved: Annotated[Path | None, typer.Option(resolve_path=True)] = None,
        color: Annotated[Color, typer.Option()] = Color.red,
        insensitive: Annotated[Color | None, typer.Option(case_sensitive=False)] = None,
        mode: Annotated[Literal["fast", "safe"], typer.Option()] = "safe",
        verbose: Annotated[int, typer.Option(count=True)] = 0,
        number: Annotated[int | None, typer.Option()] = None,
        ranged: Annotated[int | None, typer.Option(min=1, max=64)] = None,
        clamped: Annotated[int | None, typer.Option(min=1, max=5, clamp=True)] = None,
        seconds: Annotated[float, typer.Option(min=0.1)] = 10.0,
        name: Annotated[str | None, typer.Option()] = None,
        names: Annotated[list[str] | None, typer.Option()] = None,
        flag: Annotated[bool, typer.Option()] = False,
        parsed: Annotated[float | None, typer.Option(parser=_probe_parser)] = None,
    ) -> None:
        pass

    return typer.main.get_command(probe)


PROBE_VALUES = [None, "", "x", "red", "RED", "dark-blue", "fast", "0", "1", "7", "64", "65", "-3", "007", "+5", " 5",
                "1_000", "99999999999999999999", "1.5", "abc", 3, 0, 1.5, 0.05, True, "true", ".", "/", "/etc/hostname",
                "/nonexistent/x", "a\0b", ["a", "b"], ("a",)]


def _outcome(coercion, value, param, ctx):
    try:
        result = coercion.coerce(value, param=param, ctx=ctx)
    except Exception as exc:  # noqa: BLE001 - the error is part of the answer
        return ("error", type(exc).__name__, getattr(exc, "message", str(exc)))
    return ("value", type(result).__name__, result)


def test_quick_coercion_answers_as_typer_does():
    from typer._click import Context
    from typer._coercion import build_runtime_param

    from storagectl.cli.coercion import QuickCoercion

    command = _probe_command()
    ctx = Context(command, info_name="probe")
    for param in command.params:
        if param.name == "help":
            continue
        for value in PROBE_VALUES:
            typers = _outcome(build_runtime_param(param.type_descriptor), value, param, ctx)
            quick = _outcome(QuickCoercion(param.type_descriptor), value, param, ctx)
            assert quick == typers, (param.name, value)


def test_quick_coercion_takes_the_plain_cases_without_pydantic():
    """In a fresh interpreter: the values the quick commands see are checked without pydantic."""
    check = """
import sys
from tests.test_cli_startup import _probe_command
from storagectl.cli.coercion import install_quick_coercion
from typer._click import Context
command = _probe_command()
install_quick_coercion(command)
ctx = Context(command, info_name="probe")
plain = {"file": "/tmp/x", "existing": "/", "color": "dark-blue", "insensitive": "RED", "mode": "fast",
         "verbose": 2, "number": "-3", "ranged": "64", "seconds": 2.5, "name": "x", "names": None, "flag": False,
         "parsed": "2.5"}
for param in command.get_params(ctx):
    value = plain.get(param.name)
    param.process_value(ctx, value)
assert not [m for m in sys.modules if m.startswith("pydantic")], "pydantic imported"
"""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT}")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_a_group_builds_only_the_command_that_runs(write_config, tmp_path, capsys):
    from storagectl.cli.app import app

    config = write_config(f"destinations:\n  local: {{kind: local, path: {tmp_path}}}\n")
    root = typer.main.get_command(app)
    root.main(args=["-c", str(config), "-o", "json", "backup", "list"], prog_name="storagectl", standalone_mode=False)
    assert capsys.readouterr().out.strip() == "[]"
    backup = root.commands.loaded("backup")
    assert backup.commands.loaded("list") is not None
    assert [name for name in backup.commands if backup.commands.loaded(name)] == ["list"]


@pytest.mark.parametrize("width", [60, 200])
def test_a_group_built_on_demand_reads_as_typer_builds_it(width):
    """Same commands, same order, same help, as typer's own get_group_from_info."""
    from typer._click import Context
    from typer.main import get_group_from_info
    from typer.models import TyperInfo

    from storagectl.cli.app import COMMANDS, app

    root = typer.main.get_command(app)
    for name in COMMANDS:
        lazy = root.commands[name]
        if not hasattr(lazy, "commands"):
            continue
        module = __import__(COMMANDS[name].module, fromlist=["x"])
        eager = get_group_from_info(TyperInfo(getattr(module, COMMANDS[name].attribute), name=name),
                                    pretty_exceptions_short=True, rich_markup_mode=None, suggest_commands=True)
        parent = Context(root, info_name="storagectl", terminal_width=width)
        assert list(lazy.commands) == list(eager.commands), name
        assert lazy.get_help(Context(lazy, info_name=name, parent=parent)) == eager.get_help(
            Context(eager, info_name=name, parent=parent)), name
        for sub in eager.commands:
            assert lazy.commands[sub].get_help(Context(lazy.commands[sub], info_name=sub, parent=parent)) == \
                eager.commands[sub].get_help(Context(eager.commands[sub], info_name=sub, parent=parent)), (name, sub)


def test_log_lines_are_still_redacted(cli, write_config, tmp_path, capsys):
    """logging is imported when a command runs (not for `--help`); its lines stay masked."""
    import logging

    config = write_config(f"destinations:\n  local: {{kind: local, path: {tmp_path}}}\n")
    assert cli("-c", config, "-o", "json", "backup", "list").exit_code == 0
    logging.getLogger("storagectl.test").warning("to %s", "postgresql://u:hunter2@h/db")
    assert "postgresql://u:***@h/db" in capsys.readouterr().err


def test_commands_that_read_the_config_run_from_the_config_cache_without_pydantic(write_config, tmp_path,
                                                                                  pg_database, pg_target, redis_db):
    """A current cache entry gives `backup run`, `restore`, `inspect` and `backup list` plain settings
    objects (storagectl.config.cache): the backends, the destination and the job run without pydantic."""
    config = write_config(f"""
        backends:
          pg: {{kind: postgres, url: "{pg_database.url}"}}
          copy: {{kind: postgres, url: "{pg_target.url}"}}
          cache: {{kind: redis, url: "{redis_db.url}"}}
        destinations:
          local: {{kind: local, path: {tmp_path / 'backups'}}}
        jobs:
          tables: {{backends: [pg], destination: local, select: {{tables: [items]}}}}
          keys: {{backends: [cache], destination: local}}
    """)
    with pg_database.connect() as connection:
        connection.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        connection.execute("INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 50) i")
    assert "pydantic" in modules_after("-c", str(config), "config", "validate")  # validated, and remembered
    redis_db.client().set("key", "value")
    runs = [("backup", "run", "--job", "tables"), ("backup", "run", "--job", "keys"),
            ("backup", "run", "--backend", "cache", "--to", "local"), ("backup", "list"),
            ("inspect", "tables", "-b", "pg"),
            ("restore", "latest", "--job", "tables", "--backend", "pg", "--to", "copy", "--yes", "--validate")]
    for command in runs:
        assert loaded(modules_after("-c", str(config), "-o", "json", *command), "pydantic", "yaml") == [], command
    with pg_target.connect() as connection:
        assert connection.execute("SELECT count(*) FROM items").fetchone() == (50,)


def test_migrate_data_run_from_the_config_cache_loads_neither_yaml_nor_pydantic(write_config, tmp_path, pg_database):
    """`migrate data run` SQLite → PostgreSQL takes the config as the quick commands do: from a current
    cache entry, plain settings objects for both backends (peak RSS of the copy, issue 12)."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(tmp_path / "src.db")) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(1, 51)])
        conn.commit()
    config = write_config(f"""
        backends:
          lite: {{kind: sqlite, path: src.db}}
          pg: {{kind: postgres, url: "{pg_database.url}"}}
    """)
    run = ("-c", str(config), "-q", "migrate", "data", "run", "--from", "lite", "--to", "pg", "--yes")
    assert "pydantic" in modules_after(*run, "--dry-run")  # validated, and remembered
    assert loaded(modules_after(*run, "--no-verify"), "pydantic", "yaml") == []
    with pg_database.connect() as connection:
        assert connection.execute("SELECT count(*), sum(id) FROM items").fetchone() == (50, 1275)
