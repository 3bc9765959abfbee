"""The hot commands without typer (storagectl.cli.quick: `backup list`, `backup run`, `restore`,
`inspect` and its views) print what the typer commands print, exit as they exit, and every command line
the quick path does not take is left to typer; its table (storagectl/cli/quick_table.py) is the one
storagectl.cli.gen_quick writes from the typer app."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

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
    # the other quick commands: help, missing or extra arguments and options, values typer refuses or alone reads
    ["restore"], ["restore", "a", "b"], ["restore", "--help"], ["restore", "x", "--yes", "--yes"],
    ["restore", "x", "-p", "65"], ["restore", "x", "-p", "0"], ["restore", "x", "--db", "x"], ["restore", "x", "-yT"],
    ["restore", "x", "--no-owner=1"], ["restore", "--", "x"], ["restore", "x", "--from", "a", "--from", "b"],
    ["backup", "run", "--prune=yes"], ["backup", "run", "-j"], ["backup", "run", "--table"], ["backup", "run", "x"],
    ["inspect", "tables"], ["inspect", "tables", "--help"], ["inspect", "--help"], ["inspect", "bogus"],
    ["inspect", "tables", "-b", "app", "--top", "0"], ["inspect", "tables", "-b", "app", "--top", "ten"],
    ["inspect", "tables", "-b", "app", "--sort", "SIZE"], ["inspect", "keys", "-b", "app", "-i", "0.5"],
    ["inspect", "--budget", "5x"], ["inspect", "--budget", "5s", "--budget", "6s"], ["inspect", "-b"],
    ["inspect", "tables", "-b", "app", "-b", "app"], ["inspect", "-o", "yaml"], ["inspect", "tables", "-b", "app", "x"],
    ["inspect", "schema", "-b", "app"], ["backup", "show", "x"], ["backup", "verify", "x"],
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
    from storagectl.cli.quick import _NotPlain, parsed_command_line

    try:
        parsed_command_line(args)
    except _NotPlain:
        return False
    return True


@pytest.mark.parametrize("args", LEFT_TO_TYPER)
def test_every_other_command_line_is_left_to_typer(args):
    assert not _taken(args)


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


def test_the_quick_table_is_what_the_generator_writes_from_the_typer_app():
    """An option added, renamed or removed in a quick command fails here until
    `python -m storagectl.cli.gen_quick` has written the table again."""
    from storagectl.cli.gen_quick import TABLE_FILE, render

    assert TABLE_FILE.read_text() == render(), "run: python -m storagectl.cli.gen_quick"


# -- backup run, restore, inspect: both ways ---------------------------------------------------------------
def normalized(outcome: tuple[int, str, str]) -> tuple[int, str, str]:
    """Without what differs from run to run: ids, times, durations, sizes of new archives (digits)."""
    code, out, err = outcome
    return code, *(re.sub(r"[0-9]+", "N", re.sub(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}", "ID", text)) for text in (out, err))


def assert_same_both_ways(capsys, args: list[str]) -> tuple[int, str, str]:
    assert _taken(args), args
    quick, typer = both_ways(capsys, args)
    if "--debug" in args and quick[0] != 0:
        assert "Traceback" in quick[2] and "Traceback" in typer[2], args
        quick, typer = [(code, out, err[err.index("error:"):]) for code, out, err in (quick, typer)]
    assert normalized(quick) == normalized(typer), args
    return quick


RUN_LINES = [
    (["backup", "run", "-o", "json"], 0), (["backup", "run", "--job", "nightly", "--no-hooks"], 0),
    (["-q", "backup", "run", "-b", "app", "--to", "local", "-t", "items", "--table=it*", "-o", "json"], 0),
    (["backup", "run", "--job", "nope"], 2), (["backup", "run", "-b", "app"], 2),
    (["backup", "run", "-b", "app", "--to", "nowhere"], 2), (["--debug", "backup", "run", "-j", "nope"], 2),
    (["backup", "run", "-b", "app", "--to", "local", "--pattern", "x*"], None),
    (["backup", "run", "--prune", "-b", "app", "--to", "local"], 2),
]
RESTORE_LINES = [
    (["restore", "latest", "--to", "app", "--dry-run"], 0), (["restore", "latest", "--to", "app", "--yes"], 0),
    (["-o", "json", "restore", "latest", "--to", "app", "--yes", "--validate", "-p", "2"], 0),
    (["restore", "latest", "--backend", "app", "--to", "app", "-t", "items", "--yes", "-o", "json"], 0),
    (["restore", "latest", "--to", "app"], None), (["restore", "nope", "--to", "app", "--yes"], None),
    (["restore", "latest", "--to", "nowhere", "--yes"], None),
    (["restore", "latest", "-j", "nope", "--to", "app"], None),
    (["restore", "latest", "--to", "app", "--identity", "/nonexistent/id.txt", "--yes"], None),
]
INSPECT_LINES = [
    (["inspect"], 0), (["inspect", "-o", "json"], 0), (["-o", "json", "inspect", "-b", "app", "--budget", "5s"], 0),
    (["inspect", "-b", "nope"], None), (["inspect", "tables", "-b", "app"], 0),
    (["inspect", "-o", "json", "tables", "-b", "app", "--sort", "name", "--top", "1", "--exact"], 0),
    (["inspect", "indexes", "--backend=app", "-n", "3"], 0), (["inspect", "tables", "-b", "nope"], None),
    (["inspect", "keys", "-b", "app"], None), (["inspect", "queries", "-b", "app", "--sort", "calls"], None),
    (["inspect", "graph", "-b", "app"], None), (["inspect", "objects", "-b", "app", "--depth", "2"], None),
    (["inspect", "tables", "-b", "app", "--budget", "2m", "--schema", "main", "--chunks"], 0),
]


@pytest.mark.parametrize(("args", "code"), RUN_LINES + RESTORE_LINES + INSPECT_LINES)
def test_backup_run_restore_and_inspect_print_as_the_typer_commands(catalog, capsys, args, code):
    """Each line runs both ways (so a run takes two backups, a restore restores twice); ``code``: the
    exit code expected, None: an error of any code."""
    quick = assert_same_both_ways(capsys, ["-c", str(catalog), *args])
    assert quick[0] == code if code is not None else quick[0] != 0, quick


def test_the_quick_commands_import_neither_typer_nor_the_typer_commands(catalog):
    for args in (["inspect", "tables", "-b", "app"], ["backup", "run", "-j", "nightly"],
                 ["restore", "latest", "--to", "app", "--yes"], ["backup", "list"]):
        script = ("import sys; from storagectl.cli.main import run; code = run(sys.argv[1:]); "
                  "print(code, sorted(m for m in sys.modules if m.split('.')[0] == 'typer' or m.endswith('_cmd')))")
        done = subprocess.run([sys.executable, "-c", script, "-c", str(catalog), *args], capture_output=True,
                              text=True, check=True)
        assert done.stdout.splitlines()[-1] == "0 []", (args, done.stdout, done.stderr)
