"""Start-up proportional to the work: what quick commands must not import (issue 19).

Each command runs in a fresh interpreter (imports are per process); the test reads which modules
were loaded, never how long that took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import storagectl

ROOT = Path(storagectl.__file__).resolve().parent.parent

PROBE = """
import json, sys
from storagectl.cli.main import run
code = run(sys.argv[1:])
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def modules_after(*args: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    env.pop("STORAGECTL_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env,
                          check=True)
    report = json.loads(done.stdout.rstrip().rsplit("\n", 1)[-1])
    assert report["code"] == 0, done.stderr
    return set(report["modules"])


def loaded(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(name for name in modules if name.split(".")[0] in prefixes or name in prefixes)


def test_help_imports_neither_pydantic_rich_nor_drivers():
    modules = modules_after("--help")
    assert loaded(modules, "pydantic", "rich", "psycopg", "redis", "boto3", "brotli") == []
    assert "storagectl.config.models" not in modules


@pytest.mark.parametrize("command", ["diag", "backup", "restore"])
def test_command_help_loads_no_rich_drivers_or_config(command):
    # typer 0.29 validates every non-flag option value with pydantic (here the root's --output and
    # --config, even for --help): only what storagectl imports is checked
    modules = modules_after(command, "--help")
    assert loaded(modules, "rich", "psycopg", "redis", "boto3", "neo4j") == []
    assert "storagectl.config.models" not in modules and "storagectl.diag" not in modules


def test_backup_list_loads_no_archive_or_backend_machinery(write_config, tmp_path):
    config = write_config(f"""
        version: 1
        destinations:
          local: {{kind: local, path: {tmp_path / 'backups'}}}
    """)
    modules = modules_after("-c", str(config), "-o", "json", "backup", "list")
    assert loaded(modules, "brotli", "pyrage", "boto3", "rich") == []
    assert not {"storagectl.backup.restore", "storagectl.backup.run", "storagectl.archive.reader",
                "storagectl.archive.writer", "storagectl.backends.postgres.archive"} & modules


@pytest.mark.parametrize("first", ["import storagectl.backup.restore", "from storagectl.backup import verify_backup",
                                   "from storagectl.backup import list_backups"])
def test_backup_package_exports_the_function_restore_whatever_was_imported_first(first):
    check = (f"{first}\nimport types\nfrom storagectl.backup import restore, run_backup\n"
             "assert not isinstance(restore, types.ModuleType) and restore.__module__ == 'storagectl.backup.restore'\n"
             "assert callable(run_backup)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
