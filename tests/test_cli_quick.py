"""`backup list` without typer (storagectl.cli.quick) prints what the typer command prints, and every
command line it does not take is left to typer."""

from __future__ import annotations

import sqlite3

import pytest

from storagectl.cli.main import run
from storagectl.cli.quick import run_quickly

COMMAND_LINES = [
    [], ["-o", "json"], ["--output=json"], ["-ojson"], ["-v"], ["-vv"], ["-v", "--verbose"], ["-q"], ["--quiet"],
    ["--no-color"], ["--debug"], ["-q", "--no-color", "--debug", "-o", "table"],
]
LIST_OPTIONS = [
    [], ["-o", "json"], ["--output", "table"], ["--from", "local"], ["--from=local"], ["--from", "nowhere"],
    ["--job", "nightly"], ["-j", "nope"], ["--backend", "app"], ["-b", "other"], ["-bapp"], ["--job", "nightly",
    "-b", "app", "-o", "json", "--from", "local"],
]
LEFT_TO_TYPER = [
    ["backup", "list", "--help"], ["--help", "backup", "list"], ["backup", "list", "-h"], ["--version"],
    ["backup", "list", "--bogus"], ["backup", "list", "extra"], ["backup", "list", "-o", "yaml"],
    ["-o", "JSON", "backup", "list"], ["backup", "list", "--from"], ["backup", "list", "--from", "-x"],
    ["backup", "list", "--from", "a", "--from", "b"], ["-q", "-q", "backup", "list"], ["-vq", "backup", "list"],
    ["backup", "list", "-c", "x"], ["backup", "show", "x"], ["backup", "--help"], ["backup"], ["diag"],
    ["-c", "", "backup", "list"], ["--", "backup", "list"], ["backup", "list", "--"], ["-", "backup", "list"],
    ["--quiet=1", "backup", "list"], ["backup", "list", "--from="],
]


@pytest.fixture
def catalog(cli, write_config, tmp_path):
    """A config with one backup of a SQLite database and a partial one, in a local destination."""
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO items (name) VALUES (?)", [(f"item {i}",) for i in range(50)])
    config = write_config(f"""
        backends:
          app: {{kind: sqlite, path: {tmp_path / 'app.db'}}}
        destinations:
          local: {{kind: local, path: {tmp_path / 'backups'}}}
        jobs:
          nightly: {{backends: [app], destination: local}}
    """)
    assert cli("-c", config, "backup", "run", "--job", "nightly").exit_code == 0
    assert cli("-c", config, "backup", "run", "-b", "app", "--to", "local", "--table", "items").exit_code == 0
    return config


def both_ways(capsys, args: list[str]) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    capsys.readouterr()
    quick = run(args)
    quick_out = capsys.readouterr()
    typer = run(args, quick=False)
    typer_out = capsys.readouterr()
    return (quick, quick_out.out, quick_out.err), (typer, typer_out.out, typer_out.err)


def test_backup_list_prints_as_the_typer_command(catalog, capsys):
    for global_options in COMMAND_LINES:
        for list_options in LIST_OPTIONS:
            args = ["-c", str(catalog), *global_options, "backup", "list", *list_options]
            assert _taken(args), args
            quick, typer = both_ways(capsys, args)
            if "--debug" in args and quick[0] != 0:  # the tracebacks differ in their frames; the errors do not
                assert "Traceback" in quick[2] and "Traceback" in typer[2], args
                quick, typer = [(code, out, err[err.index("error:"):]) for code, out, err in (quick, typer)]
            assert quick == typer, args
            assert (quick[0] != 0) == ("nowhere" in args), args
            if not {"nowhere", "nope", "other", "--job", "-j"} & set(args):  # both backups: the partial one's table
                assert "items" in quick[1], args


def _taken(args: list[str]) -> bool:
    from storagectl.cli.quick import _backup_list_options

    return _backup_list_options(args) is not None


@pytest.mark.parametrize("args", LEFT_TO_TYPER)
def test_every_other_command_line_is_left_to_typer(args):
    from storagectl.cli.quick import _backup_list_options

    assert _backup_list_options(args) is None


def test_errors_read_as_the_typer_command(write_config, tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    bad = write_config("destinations:\n  local: {kind: local, path: b, retry: {attempts: x}}\n", name="bad.yaml")
    for args in (["-c", str(missing), "backup", "list"], ["-c", str(bad), "backup", "list"],
                 ["-c", str(bad), "--debug", "backup", "list"], ["-c", str(tmp_path), "backup", "list"]):
        quick, typer = both_ways(capsys, args)
        assert quick[0] == typer[0] != 0 and quick[1] == typer[1], args
        if "--debug" in args:  # the tracebacks differ in their frames; the error lines do not
            assert "Traceback" in quick[2] and "Traceback" in typer[2]
            quick, typer = [(code, out, err[err.index("error:"):]) for code, out, err in (quick, typer)]
        assert quick[2] == typer[2], args
    assert _taken(["-c", str(missing), "backup", "list"]) and not _taken(["-c", str(tmp_path), "backup", "list"])


def test_a_reader_that_goes_away_is_exit_1_without_an_error(catalog, monkeypatch):
    class ClosedPipe:
        encoding = "utf-8"

        def write(self, text: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert run_quickly(["-c", str(catalog), "-o", "json", "backup", "list"]) == 1
    import sys

    sys.stdout.flush()  # what Python does at exit: nothing raised


def test_shell_completion_is_left_to_typer(catalog, monkeypatch):
    monkeypatch.setenv("_STORAGECTL_COMPLETE", "bash_complete")
    assert run_quickly(["-c", str(catalog), "backup", "list"]) is None


def test_it_knows_exactly_the_options_of_the_typer_commands():
    """An option added, renamed or removed in backup_cmd.py or app.py fails here until quick.py agrees."""
    import typer

    from storagectl.cli.app import app
    from storagectl.cli.quick import GLOBAL_FLAGS, GLOBAL_VALUES, LIST_VALUES

    def options(command, kind: str) -> set[str]:
        chosen = {"value": lambda p: not p.is_flag and not p.count, "count": lambda p: p.count,
                  "flag": lambda p: p.is_flag and not p.is_eager}[kind]
        return {name for param in command.params if param.param_type_name == "option" and chosen(param)
                for name in param.opts}

    root = typer.main.get_command(app)
    backup_list = root.commands["backup"].commands["list"]
    assert options(root, "value") == set(GLOBAL_VALUES)
    typers_own = {"--install-completion", "--show-completion"}  # left to typer
    assert options(root, "flag") - typers_own == set(GLOBAL_FLAGS)
    assert options(root, "count") == {"-v", "--verbose"}
    assert options(backup_list, "value") == set(LIST_VALUES)
    assert options(backup_list, "flag") | options(backup_list, "count") == set()
    assert [param.name for param in backup_list.params if param.param_type_name == "argument"] == []
