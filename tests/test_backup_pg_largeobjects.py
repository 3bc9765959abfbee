"""PostgreSQL large objects: backed up with content, owner, ACL and comment, restored with the same
OIDs into an empty database and over a non-empty one, and compared by ``restore --validate``."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storagectl.archive.api import BackupOptions, RestoreOptions
from storagectl.backends.postgres import archive as pg_archive
from storagectl.backends.postgres import largeobjects as pg_largeobjects
from storagectl.backends.postgres.archive import expected_summary
from storagectl.backends.postgres.largeobjects import CHUNK_BYTES, RECORD, RECORDS_MAGIC
from storagectl.errors import OperationFailed
from tests.test_backup_postgres import backend_for, backup_to, table_contents

BIG = 5 * CHUNK_BYTES + 123  # read, stored and written in six chunks


@pytest.fixture
def roles(postgres_admin_url) -> Iterator[tuple[str, str]]:
    """An owner and a reader role (cluster-wide, so they exist in the restore target too); requested
    before the databases, so dropped after them."""
    import psycopg

    token = uuid.uuid4().hex[:8]
    owner, reader = f"stctl_lo_owner_{token}", f"stctl_lo_reader_{token}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {owner}; CREATE ROLE {reader}")
    yield owner, reader
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {owner}; DROP ROLE IF EXISTS {reader}")


@pytest.fixture
def source(roles, pg_database):
    """Objects: one with a comment owned by another role with a GRANT, an empty one, one bigger than
    a few MiB, one of exactly one chunk, one readable by PUBLIC, one with an OID above 2**31; a
    table naming them by OID."""
    owner, reader = roles
    big = random.Random(7).randbytes(BIG)
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE files (name text PRIMARY KEY, data oid)")
        for name, content in (("small", b"hello\x00world"), ("empty", b""), ("big", big),
                              ("one-chunk", b"\x01" * CHUNK_BYTES), ("public", b"for everyone")):
            conn.execute("INSERT INTO files VALUES (%s, lo_from_bytea(0, %s))", [name, content])
        conn.execute("INSERT INTO files VALUES ('high', lo_from_bytea(3000000000, 'above int4'))")
        oids = dict(conn.execute("SELECT name, data FROM files").fetchall())
        conn.execute(f"ALTER LARGE OBJECT {oids['small']} OWNER TO {owner}")
        conn.execute(f"GRANT SELECT ON LARGE OBJECT {oids['small']} TO {reader}")
        conn.execute(f"COMMENT ON LARGE OBJECT {oids['small']} IS 'it''s a\nmultiline comment ☃'")
        conn.execute(f"GRANT SELECT ON LARGE OBJECT {oids['public']} TO PUBLIC")
        conn.execute(f"GRANT UPDATE ON LARGE OBJECT {oids['public']} TO {reader} WITH GRANT OPTION")
    return pg_database


def large_objects(database) -> dict[int, tuple]:
    """OID -> owner, ACL, comment, SHA-256 of the content (read whole: test objects are small)."""
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT m.oid, m.lomowner::regrole::text, m.lomacl::text, obj_description(m.oid, 'pg_largeobject'), "
            "lo_get(m.oid) FROM pg_largeobject_metadata m").fetchall()
    return {oid: (owner, acl, comment, hashlib.sha256(data).hexdigest()) for oid, owner, acl, comment, data in rows}


def test_round_trip_into_an_empty_database(source, pg_target, tmp_path, roles):
    archive = backup_to(tmp_path / "b", source)
    recorded = archive.metadata["large_objects"]
    assert archive.metadata["format"] == 4
    assert recorded["count"] == 6 and recorded["bytes"] == BIG + CHUNK_BYTES + 11 + 12 + 10
    assert b"lo_create" not in (tmp_path / "b" / "schema" / "pre-data.sql").read_bytes()  # pg_dump --no-blobs
    assert archive.counts(pg_largeobjects.METADATA) == {"objects": 6}

    restored = backend_for(pg_target)
    restored.restore(archive, RestoreOptions(parallel=3))

    assert large_objects(pg_target) == large_objects(source)
    small = next(v for v in large_objects(pg_target).values() if v[2])
    assert small[:2] == (roles[0], f"{{{roles[0]}=rw/{roles[0]},{roles[1]}=r/{roles[0]}}}")
    assert table_contents(pg_target) == table_contents(source)
    actual = restored.content_summary(expected_summary(archive.metadata))
    assert actual.counts[pg_largeobjects.UNIT] == 6
    assert actual.checksums == expected_summary(archive.metadata).checksums


def test_content_is_stored_in_chunks(source, tmp_path):
    archive = backup_to(tmp_path / "b", source)
    chunks = []
    for name in archive.metadata["large_objects"]["parts"]:
        with archive.open(name) as stream:
            chunks += [(c.oid, c.offset, len(c.data)) for c in pg_largeobjects.records(stream, name)]
    assert max(length for _oid, _offset, length in chunks) == CHUNK_BYTES
    big = [(offset, length) for _oid, offset, length in chunks if offset or length > CHUNK_BYTES // 2]
    assert (5 * CHUNK_BYTES, 123) in big and len(chunks) == 6 + 4  # big; small, one-chunk, public, high
    assert (3000000000, 0, 10) in chunks
    assert sum(archive.counts(name)["chunks"] for name in archive.metadata["large_objects"]["parts"]) == len(chunks)


def test_parts_load_in_parallel(source, pg_target, tmp_path, monkeypatch):
    monkeypatch.setattr(pg_archive, "PART_BYTES", CHUNK_BYTES)
    archive = backup_to(tmp_path / "b", source)
    parts = archive.metadata["large_objects"]["parts"]
    assert len(parts) >= 4 and parts[0] == "large-objects/data.0001.lo"
    backend_for(pg_target).restore(archive, RestoreOptions(parallel=4))
    assert large_objects(pg_target) == large_objects(source)


def test_restore_over_a_non_empty_database_is_staged(source, pg_target, tmp_path):
    archive = backup_to(tmp_path / "b", source)
    with pg_target.connect() as conn:
        conn.execute("SELECT lo_from_bytea(0, 'stale')")  # large objects alone make a database non-empty
    with pytest.raises(OperationFailed, match="not empty.*LARGE OBJECT"):
        backend_for(pg_target).restore(archive, RestoreOptions())
    backend_for(pg_target).restore(archive, RestoreOptions(replace_existing=True))
    assert large_objects(pg_target) == large_objects(source)


def test_failed_load_unlinks_the_large_objects(source, pg_target, tmp_path):
    archive = backup_to(tmp_path / "b", source)
    victim = archive.metadata["large_objects"]["parts"][-1]
    damaged = RECORDS_MAGIC + RECORD.pack(4_000_000_000, 0, 1) + b"x"  # an object the metadata never created
    (tmp_path / "b" / victim).write_bytes(damaged)
    archive.objects[victim]["sha256"] = hashlib.sha256(damaged).hexdigest()
    with pytest.raises(OperationFailed, match="large objects.*left empty"):
        backend_for(pg_target).restore(archive, RestoreOptions())
    assert backend_for(pg_target).is_empty() and large_objects(pg_target) == {}


def test_a_database_without_large_objects_is_backed_up_as_before(pg_database, tmp_path):
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    archive = backup_to(tmp_path / "b", pg_database)
    assert archive.metadata["format"] == 3 and "large_objects" not in archive.metadata
    assert not any(name.startswith("large-objects/") for name in archive.names())
    summary = expected_summary(archive.metadata)
    assert pg_largeobjects.UNIT not in summary.counts
    assert pg_largeobjects.UNIT not in backend_for(pg_database).content_summary(summary).counts


def test_checksum_catches_a_byte_a_missing_and_an_extra_object():
    def checksum(objects: dict[int, bytes]) -> str:
        result = pg_largeobjects.ContentChecksum()
        for oid, data in objects.items():
            result.add(pg_largeobjects.ObjectInfo(oid, "o", None, None))
            for offset in range(0, len(data), CHUNK_BYTES):
                result.add(pg_largeobjects.Chunk(oid, offset, data[offset:offset + CHUNK_BYTES]))
        return result.value()

    objects = {16401: b"abc" * 1000, 16402: b"", 16403: bytes(CHUNK_BYTES + 5)}
    base = checksum(objects)
    assert base == checksum(dict(reversed(objects.items())))  # independent of order
    changed = {**objects, 16403: bytes(CHUNK_BYTES + 4) + b"\x01"}
    assert checksum(changed) != base
    assert checksum({k: v for k, v in objects.items() if k != 16402}) != base  # the empty one, missing
    assert checksum({**objects, 16404: b""}) != base
    assert checksum({16401: objects[16401], 16402: b"", 16405: objects[16403]}) != base  # another OID


# -- through the CLI -----------------------------------------------------------------------------------
@pytest.fixture
def config(write_config, source, pg_target, tmp_path) -> Path:
    return write_config("version: 1\nbackends:\n" + source.backend_yaml("src") + pg_target.backend_yaml("dst")
                        + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")


def test_cli_round_trip_with_validate_empty_and_replacing(cli, config, source, pg_target):
    ran = cli("-c", config, "-o", "json", "backup", "run", "--backend", "src", "--to", "local")
    assert ran.exit_code == 0, ran.stderr
    backup_id = ran.json()[0]["id"]
    restored = cli("-c", config, "restore", backup_id, "--to", "dst", "--validate")
    assert restored.exit_code == 0, restored.stderr
    assert large_objects(pg_target) == large_objects(source)
    replaced = cli("-c", config, "restore", backup_id, "--to", "dst", "--validate", "--yes")
    assert replaced.exit_code == 0, replaced.stderr
    assert large_objects(pg_target) == large_objects(source)


def oid_of(database, name: str) -> int:
    with database.connect() as conn:
        return conn.execute("SELECT data FROM files WHERE name = %s", [name]).fetchone()[0]


FLIP_BYTE = ("SELECT lo_put({oid}, {offset}, "
             "set_byte('\\x00', 0, (get_byte(lo_get({oid}, {offset}, 1), 0) + 1) % 256))")
CHANGES = {
    "one byte": lambda source: FLIP_BYTE.format(oid=oid_of(source, "big"), offset=3 * CHUNK_BYTES + 17),
    "missing": lambda source: f"SELECT lo_unlink({oid_of(source, 'small')})",
    "missing empty": lambda source: f"SELECT lo_unlink({oid_of(source, 'empty')})",
    "extra": lambda source: "SELECT lo_create(0)",
}


@pytest.mark.parametrize("change", CHANGES)
def test_validate_catches_a_changed_missing_or_extra_object(cli, config, source, pg_target, monkeypatch, change):
    ran = cli("-c", config, "-o", "json", "backup", "run", "--backend", "src", "--to", "local")
    statement = CHANGES[change](source)
    original = pg_archive.load_large_objects

    def and_change(backend, conn, archive, load):
        original(backend, conn, archive, load)
        if not load.metadata:  # the only data part (64 MiB parts)
            conn.execute(statement)

    monkeypatch.setattr(pg_archive, "load_large_objects", and_change)
    result = cli("-c", config, "restore", ran.json()[0]["id"], "--to", "dst", "--validate")
    assert result.exit_code == 6, result.stderr
    assert "large objects" in result.stdout + result.stderr


def test_a_backup_role_without_select_on_a_large_object_gets_a_clear_error(roles, pg_database, tmp_path):
    from storagectl.backends import open_backend
    from storagectl.backends.postgres.backend import PostgresSettings
    from tests.test_backup_postgres import DirArchive

    with pg_database.connect() as conn:
        oid = conn.execute("SELECT lo_from_bytea(0, 'secret')").fetchone()[0]
        conn.execute(f"ALTER ROLE {roles[1]} LOGIN")
    settings = PostgresSettings(kind="postgres", host=pg_database.host, port=pg_database.port,
                                database=pg_database.name, user=roles[1])
    with pytest.raises(OperationFailed, match=f"backing up large objects failed: permission denied for large "
                                              f"object {oid}") as caught:
        open_backend("pg", settings).backup(DirArchive(tmp_path), BackupOptions())
    assert "\n" not in str(caught.value)
