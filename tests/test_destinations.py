"""Destinations: local directory (atomic, disk full) and S3 via the moto server (multipart, abort)."""

from __future__ import annotations

import os

import pytest

from storagectl.destinations import open_destination
from storagectl.destinations.local import LocalDestination
from storagectl.destinations.local_settings import LocalSettings
from storagectl.destinations.s3 import S3Destination, S3DestinationSettings
from storagectl.errors import NotFound, OperationFailed

MiB = 1024 * 1024


def exercise(destination) -> None:
    with destination.put_stream("grp/id1/a.bin") as stream:
        stream.write(b"hello ")
        stream.write(b"world")
    with destination.put_stream("grp/id1/manifest.json") as stream:
        stream.write(b"{}")
    assert destination.exists("grp/id1/a.bin") and not destination.exists("grp/id1/nope")
    with destination.open_read("grp/id1/a.bin") as stream:
        assert stream.read() == b"hello world"
    listed = {o.key: o.size for o in destination.list("grp/")}
    assert listed == {"grp/id1/a.bin": 11, "grp/id1/manifest.json": 2}
    with pytest.raises(RuntimeError), destination.put_stream("grp/id2/b.bin") as stream:
        stream.write(b"partial")
        raise RuntimeError("producer failed")
    assert not destination.exists("grp/id2/b.bin")
    destination.delete(["grp/id1/a.bin", "grp/id1/manifest.json", "grp/id1/already-gone"])
    assert list(destination.list()) == []
    with pytest.raises(NotFound):
        destination.open_read("grp/id1/a.bin").__enter__()


def test_local_destination(tmp_path):
    destination = LocalDestination("local", LocalSettings(path=tmp_path / "backups"))
    exercise(destination)
    assert list((tmp_path / "backups").iterdir()) == []  # empty folders removed with their backups


def test_local_listing_of_a_prefix_walks_only_its_folder(tmp_path, monkeypatch):
    """A backup lists its own keys several times per run: with thousands of backups beside it the
    walk must not cover them all."""
    from storagectl.destinations import local

    destination = LocalDestination("local", LocalSettings(path=tmp_path))
    for key in ("db/2026/one/a.bin", "db/2026/two/b.bin", "db/2025/old/c.bin", "other/d.bin", "top.bin"):
        with destination.put_stream(key) as stream:
            stream.write(b"x")
    walked = []
    walk = os.walk
    monkeypatch.setattr(local.os, "walk", lambda top, *args: walked.append(top) or walk(top, *args))
    assert [o.key for o in destination.list("db/2026/one/")] == ["db/2026/one/a.bin"]
    assert sorted(o.key for o in destination.list("db/2026/")) == ["db/2026/one/a.bin", "db/2026/two/b.bin"]
    assert sorted(o.key for o in destination.list("db/20")) == ["db/2025/old/c.bin", "db/2026/one/a.bin",
                                                                "db/2026/two/b.bin"]
    assert len(list(destination.list())) == 5 and list(destination.list_unfinished("db/2026/one/")) == []
    assert walked == [tmp_path / "db/2026/one", tmp_path / "db/2026", tmp_path / "db", tmp_path,
                      tmp_path / "db/2026/one"]
    assert list(destination.list("nothing/here/")) == [] and list(destination.list("../")) == []


def test_local_rejects_keys_escaping_the_root(tmp_path):
    from storagectl.errors import IntegrityError

    destination = LocalDestination("local", LocalSettings(path=tmp_path))
    with pytest.raises(IntegrityError):
        destination.put_stream("../evil").__enter__()


def s3_destination(bucket, **extra) -> S3Destination:
    settings = S3DestinationSettings(bucket=bucket.name, endpoint_url=bucket.endpoint, region="us-east-1",
                                     addressing_style="path", access_key_id="testing",
                                     secret_access_key="testing", prefix="backups/", **extra)
    return open_destination("offsite", settings)


def test_s3_destination(s3_bucket):
    exercise(s3_destination(s3_bucket))


def test_s3_multipart_upload_with_small_parts(s3_bucket):
    destination = s3_destination(s3_bucket, part_size="5MiB", concurrency=2, storage_class="STANDARD_IA",
                                 server_side_encryption="AES256")
    data = os.urandom(12 * MiB + 123)
    with destination.put_stream("grp/id/big.bin") as stream:
        for start in range(0, len(data), MiB):
            stream.write(data[start:start + MiB])
    head = s3_bucket.client().head_object(Bucket=s3_bucket.name, Key="backups/grp/id/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert head["ServerSideEncryption"] == "AES256" and head["StorageClass"] == "STANDARD_IA"
    with destination.open_read("grp/id/big.bin") as stream:
        assert stream.read() == data


def test_s3_failure_aborts_the_multipart_upload(s3_bucket):
    destination = s3_destination(s3_bucket, part_size="5MiB", concurrency=2)
    with pytest.raises(RuntimeError), destination.put_stream("grp/id/big.bin") as stream:
        stream.write(os.urandom(11 * MiB))  # two parts already uploaded
        raise RuntimeError("backend died mid-object")
    client = s3_bucket.client()
    assert client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=s3_bucket.name).get("KeyCount") == 0


def test_s3_unreachable_endpoint_is_unavailable():
    from storagectl.errors import BackendUnavailable
    from tests.conftest import free_port

    settings = S3DestinationSettings(bucket="b", endpoint_url=f"http://127.0.0.1:{free_port()}",
                                     region="us-east-1", access_key_id="k", secret_access_key="s",
                                     retry={"attempts": 1})
    with pytest.raises(BackendUnavailable, match="unreachable"), \
            S3Destination("offsite", settings).put_stream("a/b/c") as stream:
        stream.write(b"x")


def test_local_disk_full_is_a_clean_error_and_leaves_no_temp(tiny_disk):
    destination = LocalDestination("local", LocalSettings(path=tiny_disk))
    with pytest.raises(OperationFailed, match="no space left"), destination.put_stream("g/i/big") as stream:
        for _ in range(4):
            stream.write(os.urandom(MiB))
    assert list(tiny_disk.rglob("*.*")) == [] and list(destination.list()) == []
