"""SQLite backup and restore through the core API, proving every row comes back."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from storagectl.backup import list_backups, restore, run_backup, verify_backup
from storagectl.config import load_config
from storagectl.errors import IntegrityError, OperationFailed, UsageError

SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, avatar BLOB, score REAL, note TEXT);
CREATE TABLE "odd name" (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE INDEX users_name ON users(name);
CREATE VIEW top AS SELECT * FROM users WHERE score > 10;
CREATE TABLE empty (x);
"""


def make_database(path: Path, rows: int = 5000) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO users (name, avatar, score, note) VALUES (?, ?, ?, ?)",
                       [(f"user{i} é", bytes([i % 256]) * (i % 50), i / 7, None if i % 3 else "x")
                        for i in range(rows)])
        db.executemany('INSERT INTO "odd name" VALUES (?, ?)', [(f"k{i}", i * 1.5) for i in range(100)])


def dump_all(path: Path) -> dict[str, list]:
    with sqlite3.connect(path) as db:
        schema = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        tables = [r[1] for r in schema if r[0] == "table"]
        data = {t: db.execute(f'SELECT * FROM "{t.replace(chr(34), chr(34) * 2)}" ORDER BY 1').fetchall()
                for t in tables}
    return {"schema": schema, **data}


@pytest.fixture
def setup(tmp_path, write_config):
    source, copy = tmp_path / "app.db", tmp_path / "copy.db"
    make_database(source)
    config = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {source}, timeouts: {{connect: 0.5}}}}
          copy: {{kind: sqlite, path: {copy}, create_if_missing: true}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
        jobs:
          nightly: {{backends: [app], destination: local, compression: {{level: 5}}}}
    """)
    return load_config(config), source, copy


def test_round_trip_into_a_new_file_restores_every_row(setup):
    config, source, copy = setup
    [result] = run_backup(config, job="nightly")
    assert [b.id for b in list_backups(config)] == [result.manifest.id]
    assert verify_backup(config, result.manifest.id).ok
    outcome = restore(config, result.manifest.id, target="copy", validate=True)
    assert outcome.validation.ok and {c.unit for c in outcome.validation.checks} == {
        "users", "odd name", "empty", "database file"}
    assert dump_all(copy) == dump_all(source)
    assert sqlite3.connect(copy).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_restore_over_a_changed_database_needs_yes_and_brings_it_back(setup):
    config, source, _copy = setup
    before = dump_all(source)
    [result] = run_backup(config, backend="app", destination="local")
    with sqlite3.connect(source) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("DELETE FROM users WHERE id % 2 = 0")
        db.execute("UPDATE users SET name = 'changed'")
    with pytest.raises(UsageError, match="not empty"):
        restore(config, result.manifest.id)
    plan = restore(config, result.manifest.id, dry_run=True, replace=True)
    assert plan.dry_run and not plan.plan.target_empty
    assert dump_all(source) != before  # dry run touched nothing
    assert restore(config, result.manifest.id, replace=True, validate=True).validation.ok
    assert dump_all(source) == before
    assert not Path(f"{source}-wal").exists() or Path(f"{source}-wal").stat().st_size == 0


def test_restore_refuses_to_swap_a_database_in_use(setup):
    config, source, _copy = setup
    [result] = run_backup(config, backend="app", destination="local")
    with sqlite3.connect(source) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("UPDATE users SET name = 'changed'")
    before = dump_all(source)
    reader = sqlite3.connect(source, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM users").fetchone()  # an open read transaction pins the WAL
    with sqlite3.connect(source) as db:
        db.execute("UPDATE users SET name = 'changed again'")
    try:
        with pytest.raises(OperationFailed, match="in use"):
            restore(config, result.manifest.id, replace=True)
    finally:
        reader.close()
    assert dump_all(source) != before  # the writer's last change is there: the file was not swapped
    assert {name for (name,) in sqlite3.connect(source).execute("SELECT DISTINCT name FROM users")} == {
        "changed again"}


def _change_one_value_once_restored(monkeypatch, table: str, where: str) -> None:
    """One value of one row changes in the restored file after the archive was read back intact
    (a disk or a bug that the archive's own checksums cannot see): --validate must catch it."""
    from storagectl.backends.sqlite import SQLiteBackend

    original = SQLiteBackend._check_integrity

    def check_then_corrupt(self, path):
        original(self, path)
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute(f'UPDATE "{table}" SET {where}')
            db.commit()

    monkeypatch.setattr(SQLiteBackend, "_check_integrity", check_then_corrupt)


def test_validation_catches_one_changed_value(setup, monkeypatch):
    config, source, copy = setup
    [result] = run_backup(config, job="nightly")
    _change_one_value_once_restored(monkeypatch, "users", "score = score + 1e-9 WHERE id = 4321")
    copy.write_bytes(b"")  # an existing (empty) target file: a mismatch must leave it as it was
    with pytest.raises(IntegrityError, match="does not match the backup: database file; the target was left as it"):
        restore(config, result.manifest.id, target="copy", validate=True, replace=True)
    assert copy.read_bytes() == b"" and list(copy.parent.glob(f".{copy.name}.*")) == []


ROW_CHECKSUMS = Path(__file__).parent / "data" / "sqlite-row-checksums"  # see its README.md
ROW_CHECKSUMS_ID = "20261206T061324Z-38d508"


@pytest.fixture
def row_checksums_config(tmp_path, write_config):
    shutil.copytree(ROW_CHECKSUMS / "backups", tmp_path / "backups")
    return load_config(write_config(f"""
        backends:
          app: {{kind: sqlite, path: {tmp_path / "app.db"}, create_if_missing: true}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """)), tmp_path / "app.db"


def test_a_backup_with_per_table_row_checksums_restores_and_validates(row_checksums_config):
    config, target = row_checksums_config
    outcome = restore(config, ROW_CHECKSUMS_ID, target="app", validate=True)
    assert outcome.validation.ok
    assert {(c.unit, c.actual_count) for c in outcome.validation.checks} == {("users", 300), ("odd name", 50)}
    assert all(c.expected_checksum and c.expected_checksum == c.actual_checksum for c in outcome.validation.checks)


def test_a_backup_with_per_table_row_checksums_still_catches_one_changed_value(row_checksums_config, monkeypatch):
    config, target = row_checksums_config
    _change_one_value_once_restored(monkeypatch, "odd name", "v = 'x' WHERE k = 'k7'")
    with pytest.raises(IntegrityError, match="does not match the backup: odd name"):
        restore(config, ROW_CHECKSUMS_ID, target="app", validate=True)
    assert not target.exists() or target.stat().st_size == 0


def test_restore_over_a_file_keeps_its_owner_group_and_mode(setup):
    """A restore run as root must leave the file usable by the application that owns it."""
    import os

    config, source, _copy = setup
    [result] = run_backup(config, backend="app", destination="local")
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(source, 4321, 8765)
    os.chmod(source, 0o640)
    restore(config, result.manifest.id, replace=True, validate=True)
    stat = source.stat()
    assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o7777) == (4321, 8765, 0o640)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_new_file_gets_the_mode_the_umask_gives(setup, umask):
    import os

    config, source, copy = setup
    [result] = run_backup(config, backend="app", destination="local")
    previous = os.umask(umask)
    try:
        restore(config, result.manifest.id, target="copy")
    finally:
        os.umask(previous)
    assert copy.stat().st_mode & 0o7777 == 0o666 & ~umask


def test_restore_through_a_symlink_replaces_the_file_it_points_to(setup, tmp_path):
    config, source, _copy = setup
    [result] = run_backup(config, backend="app", destination="local")
    real = tmp_path / "real" / "app.db"
    real.parent.mkdir()
    source.rename(real)
    source.symlink_to(real)
    with sqlite3.connect(real) as db:
        db.execute("DELETE FROM users")
    restore(config, result.manifest.id, replace=True, validate=True)
    assert source.is_symlink() and source.resolve() == real
    assert sqlite3.connect(real).execute("SELECT count(*) FROM users").fetchone()[0] == 5000
