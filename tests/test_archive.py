"""The archive pipeline: round trips, parallel writers, corruption, truncation, encryption."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from pyrage import x25519

from storagectl.archive.manifest import BackupManifest
from storagectl.archive.reader import StoredArchive
from storagectl.archive.writer import ArchiveSession
from storagectl.destinations.local import LocalDestination
from storagectl.destinations.local_settings import LocalSettings
from storagectl.errors import AuthenticationFailed, IntegrityError, UsageError

MiB = 1024 * 1024


@pytest.fixture
def destination(tmp_path: Path) -> LocalDestination:
    return LocalDestination("local", LocalSettings(path=tmp_path / "dest"))


def payload(seed: int, size: int) -> bytes:
    """Half random, half repetitive: exercises both brotli paths."""
    rnd = os.urandom(size // 2)
    return rnd + bytes([seed % 256]) * (size - len(rnd))


def manifest_for(session: ArchiveSession, encrypted: bool = False) -> BackupManifest:
    return BackupManifest("20260101T000000Z-abcdef", "g", None, {"name": "b", "metadata": session.metadata},
                          "local", "s", "e", {}, {"scheme": "age"} if encrypted else None,
                          list(session.entries), "test")


def write_objects(session: ArchiveSession, objects: dict[str, bytes]) -> None:
    for name, data in objects.items():
        with session.create(name) as sink:
            for start in range(0, len(data), 100_000):
                sink.write(data[start:start + 100_000])
            sink.counts = {"rows": len(data) // 10}


def read_all(archive: StoredArchive, name: str) -> bytes:
    with archive.open(name) as stream:
        return b"".join(iter(lambda: stream.read(65536), b""))


@pytest.mark.parametrize("codec", ["brotli", "none"])
def test_round_trip_restores_every_byte(destination, codec):
    objects = {"data/a.copy": payload(1, 3 * MiB + 17), "empty": b"", "weird name/ü": payload(2, 5000)}
    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/", codec=codec, level=3)
    write_objects(session, objects)
    archive = StoredArchive(destination, manifest_for(session))
    for name, data in objects.items():
        assert read_all(archive, name) == data
        assert archive.counts(name) == {"rows": len(data) // 10}
    assert archive.names() == list(objects)


@pytest.mark.parametrize("size", [4099, 4 * MiB, -1])
def test_any_read_size_gives_back_every_byte(destination, size):
    data = payload(3, 2 * MiB + 5)
    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/", codec="brotli", level=3)
    write_objects(session, {"data/a.copy": data})
    with StoredArchive(destination, manifest_for(session)).open("data/a.copy") as stream:
        assert stream.read(0) == b""
        got = stream.read() if size < 0 else b"".join(iter(lambda: stream.read(size), b""))
    assert got == data


def test_create_is_safe_from_many_threads(destination):
    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/")
    objects = {f"table{i}": payload(i, 300_000 + i) for i in range(12)}
    threads = [threading.Thread(target=write_objects, args=(session, {n: d})) for n, d in objects.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    archive = StoredArchive(destination, manifest_for(session))
    assert sorted(archive.names()) == sorted(objects)
    assert all(read_all(archive, name) == data for name, data in objects.items())


def test_failed_object_leaves_nothing(destination):
    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/")
    with pytest.raises(RuntimeError), session.create("broken") as sink:
        sink.write(b"x" * 3 * MiB)
        raise RuntimeError("backend died")
    assert list(destination.list()) == [] and session.entries == []


def stored_path(destination: LocalDestination, session: ArchiveSession) -> Path:
    return destination.root / session.entries[0].key


def test_bit_flip_is_an_integrity_error_naming_the_object(destination):
    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/")
    write_objects(session, {"users": payload(3, MiB)})
    path = stored_path(destination, session)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="'users'"):
        read_all(StoredArchive(destination, manifest_for(session)), "users")


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_object_is_an_integrity_error(destination, keep):
    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/")
    write_objects(session, {"users": payload(4, MiB)})
    path = stored_path(destination, session)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(IntegrityError, match="users"):
        read_all(StoredArchive(destination, manifest_for(session)), "users")


def test_missing_object_is_an_integrity_error(destination):
    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/")
    write_objects(session, {"users": b"abc"})
    stored_path(destination, session).unlink()
    with pytest.raises(IntegrityError, match="missing"):
        read_all(StoredArchive(destination, manifest_for(session)), "users")


def test_encrypted_round_trip_and_wrong_identity(destination):
    identity = x25519.Identity.generate()
    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/", recipients=[identity.to_public()])
    data = payload(5, 2 * MiB + 3)
    write_objects(session, {"secret": data})
    assert b"\x05" * 1000 not in stored_path(destination, session).read_bytes()
    assert stored_path(destination, session).read_bytes().startswith(b"age-encryption.org/v1")
    manifest = manifest_for(session, encrypted=True)
    assert read_all(StoredArchive(destination, manifest, [identity]), "secret") == data
    with pytest.raises(AuthenticationFailed, match="identity does not match"):
        read_all(StoredArchive(destination, manifest, [x25519.Identity.generate()]), "secret")
    with pytest.raises(UsageError, match="encrypted"):
        StoredArchive(destination, manifest, [])


def test_encrypted_bit_flip_is_an_integrity_error(destination):
    identity = x25519.Identity.generate()
    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/", recipients=[identity.to_public()])
    write_objects(session, {"secret": payload(6, MiB)})
    path = stored_path(destination, session)
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="secret"):
        read_all(StoredArchive(destination, manifest_for(session, encrypted=True), [identity]), "secret")


def test_decoding_memory_is_bounded_for_highly_compressible_data(destination):
    import resource

    session = ArchiveSession(destination, "g/20260101T000000Z-abcdef/", level=5)
    with session.create("zeros") as sink:
        chunk = bytes(MiB)
        for _ in range(400):
            sink.write(chunk)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    archive = StoredArchive(destination, manifest_for(session))
    assert archive.verify("zeros") == 400 * MiB
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"peak RSS grew {grown_mib:.0f} MiB decoding a 400 MiB object"
