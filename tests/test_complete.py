"""Shell completion of values: config names, backup ids (bounded, cached), kinds, output formats.

Driven through the protocol the scripts in completions/ speak (``_STORAGECTL_COMPLETE=complete_bash``
with COMP_WORDS/COMP_CWORD, ``complete_zsh``/``complete_fish`` with _TYPER_COMPLETE_ARGS), in-process,
and once through bash itself with completions/storagectl.bash sourced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from storagectl.cli import complete
from storagectl.cli.main import run

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"bash": "storagectl.bash", "zsh": "_storagectl", "fish": "storagectl.fish"}

CONFIG = """
backends:
  app:
    kind: sqlite
    path: app.db
    description: the app database
  other:
    kind: sqlite
    path: other.db
destinations:
  local:
    kind: local
    path: backups
  spare:
    kind: local
    path: spare
jobs:
  nightly:
    backends: [app]
    destination: local
  weekly:
    backends: [other]
    destination: spare
data_migrations:
  edge-copy:
    source: app
    target: other
"""


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """Each test its own user cache dir (platformdirs honours XDG_CACHE_HOME)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STORAGECTL_CONFIG", raising=False)
    return tmp_path / "cache" / "storagectl"


@pytest.fixture
def config(tmp_path, write_config) -> Path:
    for name in ("app", "other"):
        with sqlite3.connect(tmp_path / f"{name}.db") as db:
            db.execute("CREATE TABLE t (x)")
    return write_config(CONFIG)


@pytest.fixture
def backups(cli, config) -> dict[str, list[str]]:
    """Two backups of job nightly at `local`, one of weekly at `spare`: {destination: ids}."""
    taken = {"local": [], "spare": []}
    for job, destination in (("nightly", "local"), ("nightly", "local"), ("weekly", "spare")):
        result = cli("-q", "-c", config, "backup", "run", "--job", job)
        assert result.exit_code == 0, result.stderr
        taken[destination].append(result.stdout.strip())
    return taken


def completions(monkeypatch, capsys, line: str, shell: str = "bash") -> list[str]:
    """The values the shell would offer for ``line`` (its last word is the one being completed)."""
    words = line.split(" ")
    env = {"bash": {"COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)},
           "zsh": {"_TYPER_COMPLETE_ARGS": line},
           "fish": {"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}}[shell]
    monkeypatch.setenv("_STORAGECTL_COMPLETE", f"complete_{shell}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run([])
    out, err = capsys.readouterr()
    assert err == ""
    return _values(shell, out)


def emitted(monkeypatch, capsys, instruction: str) -> str:
    monkeypatch.setenv("_STORAGECTL_COMPLETE", instruction)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run([])
    return capsys.readouterr().out


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
def test_completion_scripts_are_what_the_program_emits(monkeypatch, capsys, shell):
    """completions/ holds what `storagectl --show-completion` prints for each shell (trimmed: zsh needs
    #compdef on the first line)."""
    expected = emitted(monkeypatch, capsys, f"source_{shell}").strip() + "\n"
    path = ROOT / "completions" / SCRIPTS[shell]
    if os.environ.get("STORAGECTL_REGENERATE_COMPLETIONS"):
        path.write_text(expected)
    assert path.read_text() == expected, "run STORAGECTL_REGENERATE_COMPLETIONS=1 pytest tests/test_complete.py"


def test_commands_complete(monkeypatch, capsys):
    assert completions(monkeypatch, capsys, "storagectl con") == ["config"]
    assert completions(monkeypatch, capsys, "storagectl backup ")[:3] == ["run", "list", "show"]


def _values(shell: str, out: str) -> list[str]:
    if shell == "zsh":  # _arguments '*: :(("value":"help" ...))', or _files when there is nothing
        return re.findall(r'^\(?\(?"([^"]*)"', out.removeprefix("_arguments '*: :"), flags=re.M)
    return [line.split("\t")[0] for line in out.splitlines() if line]


@pytest.mark.parametrize(("words", "expected"), [
    ("backup run --job ", ["nightly", "weekly"]),
    ("backup run --backend ", ["app", "other"]),
    ("backup run --to ", ["local", "spare"]),
    ("backup list --from ", ["local", "spare"]),
    ("backup list -j ", ["nightly", "weekly"]),
    ("backup list -b o", ["other"]),
    ("backup show 1 --from ", ["local", "spare"]),
    ("backup prune --job ", ["nightly", "weekly"]),
    ("backup schedule --once -j ", ["nightly", "weekly"]),
    ("restore latest --to ", ["app", "other"]),
    ("restore latest --from s", ["spare"]),
    ("diag -b app -b ", ["app", "other"]),
    ("migrate up --backend ", ["app", "other"]),
    ("migrate status -b a", ["app"]),
    ("inspect -b app -b ", ["app", "other"]),
    ("inspect tables -b a", ["app"]),
    ("backup list -o ", ["table", "json"]),
    ("backup run --type s", ["string", "set", "stream"]),
    ("restore latest --type ", ["string", "list", "set", "zset", "hash", "stream"]),
    ("migrate data run ", ["edge-copy"]),
    ("migrate data plan --from ", ["app", "other"]),
], ids=lambda value: value if isinstance(value, str) else None)
def test_names_come_from_the_config(monkeypatch, capsys, config, words, expected):
    assert completions(monkeypatch, capsys, f"storagectl -c {config} {words}") == expected


def test_output_formats(monkeypatch, capsys):
    assert completions(monkeypatch, capsys, "storagectl -o ") == ["table", "json"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_backup_ids_newest_first_from_every_destination(monkeypatch, capsys, config, backups, shell):
    every = sorted(backups["local"] + backups["spare"], reverse=True)
    assert completions(monkeypatch, capsys, f"storagectl -c {config} backup delete ", shell) == every
    for command in ("backup show", "backup verify", "restore"):  # `latest` too, as the README says
        assert completions(monkeypatch, capsys, f"storagectl -c {config} {command} ", shell) == ["latest", *every]


def test_backup_ids_of_the_destination_named_earlier(monkeypatch, capsys, config, backups):
    line = f"storagectl -c {config} backup delete --from spare "
    assert completions(monkeypatch, capsys, line) == backups["spare"]


def test_help_text_says_where_a_backup_is(monkeypatch, capsys, config, backups):
    monkeypatch.setenv("_STORAGECTL_COMPLETE", "complete_fish")
    monkeypatch.setenv("_TYPER_COMPLETE_FISH_ACTION", "get-args")
    monkeypatch.setenv("_TYPER_COMPLETE_ARGS", f"storagectl -c {config} backup delete --from spare ")
    with pytest.raises(SystemExit):
        run([])
    assert capsys.readouterr().out.splitlines() == [f"{backups['spare'][0]}\tweekly at spare"]


def test_the_config_comes_from_dash_c_then_the_environment(monkeypatch, capsys, config, write_config, tmp_path):
    elsewhere = write_config("backends:\n  elsewhere:\n    kind: sqlite\n    path: e.db\n", name="other.yaml")
    monkeypatch.setenv("STORAGECTL_CONFIG", str(elsewhere))
    assert completions(monkeypatch, capsys, "storagectl diag -b ") == ["elsewhere"]
    assert completions(monkeypatch, capsys, f"storagectl -c {config} diag -b ") == ["app", "other"]


def test_variables_this_shell_lacks_do_not_stop_completion(monkeypatch, capsys, config, backups):
    """Secrets exported only where storagectl runs for real (systemd, CronJob) are not needed to TAB."""
    monkeypatch.delenv("PG_PASSWORD_FOR_COMPLETION", raising=False)
    pg = "  pg:\n    kind: postgres\n    url: postgresql://app:${PG_PASSWORD_FOR_COMPLETION}@db/app\n"
    config.write_text(config.read_text().replace("destinations:", pg + "destinations:"))
    assert completions(monkeypatch, capsys, f"storagectl -c {config} diag -b ") == ["app", "other", "pg"]
    line = f"storagectl -c {config} backup delete --from spare "
    assert completions(monkeypatch, capsys, line) == backups["spare"]


def test_backup_ids_are_cached_per_config_version(monkeypatch, capsys, config, backups, tmp_path):
    line = f"storagectl -c {config} backup delete --from spare "
    assert completions(monkeypatch, capsys, line) == backups["spare"]
    shutil.rmtree(tmp_path / "spare" / "weekly")
    assert completions(monkeypatch, capsys, line) == backups["spare"], "answered from the cache"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert completions(monkeypatch, capsys, line) == [], "an edited config starts a new cache"


def test_cached_backup_ids_expire(monkeypatch, capsys, config, backups, tmp_path):
    line = f"storagectl -c {config} backup delete --from spare "
    assert completions(monkeypatch, capsys, line) == backups["spare"]
    shutil.rmtree(tmp_path / "spare" / "weekly")
    monkeypatch.setattr(complete, "BACKUP_IDS_CACHE_SECONDS", 0.0)
    assert completions(monkeypatch, capsys, line) == []


def test_backup_ids_from_s3(monkeypatch, capsys, cli, tmp_path, write_config, s3_bucket):
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE t (x)")
    path = write_config(f"backends:\n  app:\n    kind: sqlite\n    path: app.db\n"
                        f"destinations:\n  bucket:\n    kind: s3\n{s3_bucket.yaml_fields()}")
    taken = cli("-q", "-c", path, "backup", "run", "--backend", "app", "--to", "bucket").stdout.strip()
    assert completions(monkeypatch, capsys, f"storagectl -c {path} backup delete ") == [taken]


@pytest.mark.parametrize("text", ["backends: [unclosed\n", "backends:\n  a:\n    kind: mysql\n", "- a list\n"],
                         ids=["broken-yaml", "unknown-kind", "not-a-mapping"])
def test_a_broken_config_completes_nothing_silently(monkeypatch, capsys, write_config, text):
    path = write_config(text)
    for words in ("diag -b ", "backup show ", "restore latest --to ", "backup run --job "):
        assert completions(monkeypatch, capsys, f"storagectl -c {path} {words}") == []  # and stderr empty


def test_a_missing_config_completes_nothing_silently(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert completions(monkeypatch, capsys, "storagectl diag -b ") == []
    assert completions(monkeypatch, capsys, f"storagectl -c {tmp_path}/nope.yaml backup show ") == []


def test_unreachable_destinations_leave_the_others_and_stay_silent(monkeypatch, capsys, config, backups,
                                                                  write_config, cache_dir):
    """A hung endpoint and a down host: the listing gives up after BACKUP_IDS_TIMEOUT (set short
    here), their ids are missing, nothing is printed to stderr, and nothing is cached for them."""
    from tests.fakes.servers import DownHost, SilentServer

    monkeypatch.setattr(complete, "BACKUP_IDS_TIMEOUT", 0.5)
    with SilentServer() as hung, DownHost() as down:
        s3 = "    kind: s3\n    bucket: b\n    region: us-east-1\n    access_key_id: x\n    secret_access_key: y\n"
        unreachable = (f"  hung:\n{s3}    endpoint_url: http://127.0.0.1:{hung.port}\n"
                       f"  down:\n{s3}    endpoint_url: http://127.0.0.1:{down.port}\n")
        path = write_config(CONFIG.replace("jobs:", unreachable + "jobs:"))
        found = completions(monkeypatch, capsys, f"storagectl -c {path} backup delete ")
    assert found == sorted(backups["local"] + backups["spare"], reverse=True)
    cached = json.loads((cache_dir / complete.CACHE_FILE).read_text())["destinations"]
    assert sorted(cached) == ["local", "spare"]


def test_backend_kinds_come_from_the_registry():
    from storagectl.backends import available_kinds

    assert [kind for kind, _ in complete.backend_kinds(None, "")] == available_kinds()


def test_bash_itself_completes_backup_ids(config, backups, tmp_path, cache_dir):
    """completions/storagectl.bash sourced into a real bash, the way a user installs it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "storagectl"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m storagectl \"$@\"\n")
    wrapper.chmod(0o755)
    script = (f"source {ROOT / 'completions' / 'storagectl.bash'}\n"
              f"COMP_WORDS=(storagectl -c {config} restore --from local ''); COMP_CWORD=6\n"
              "_storagectl_completion storagectl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "XDG_CACHE_HOME": str(cache_dir.parent)}
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.stderr == ""
    assert done.stdout.split() == ["latest", *sorted(backups["local"], reverse=True)]


def test_every_name_option_has_a_completer():
    """A new --backend/--job/--from option or backup id argument must not ship without completion."""
    import typer

    from storagectl.cli.app import app

    def params(command, path=""):
        for param in command.params:
            yield path, param
        for name, sub in getattr(command, "commands", {}).items():
            yield from params(sub, f"{path} {name}".strip())

    missing = [f"{path} {param.opts[0] if param.opts else param.name}"
               for path, param in params(typer.main.get_command(app))
               if {"--backend", "--job", "--from"} & set(param.opts) or param.name == "backup_id"
               if getattr(param, "_custom_shell_complete", None) is None]
    assert missing == []
