"""Leftovers of killed runs: local folders holding only temp files, S3 multipart uploads never
completed. `backup prune`, `backup run --prune` (and a run's own clean-up) remove the stale ones and
say so; fresh ones, running backups and anything outside the job's folder are kept.

Killed runs are reproduced by what they leave: a temp file named as the local destination names
them, a multipart upload created on the moto S3 server. Ages are set with file mtimes locally and
with the injected clock of ``prune_job`` for S3 (moto reports a fixed ``Initiated`` date, so the
parts' times are what makes an upload fresh there).
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storagectl.archive.lease import LEASE_NAME, LEASE_TTL
from storagectl.archive.manifest import new_backup_id
from storagectl.config import load_config
from storagectl.destinations import open_destination
from storagectl.prune import job_backups, prune_job
from tests.test_prune import store_backup

MIB = 1024 * 1024


@pytest.fixture
def local_job(tmp_path, write_config, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE t (x)")
    path = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {tmp_path / "app.db"}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
        jobs:
          nightly:
            backends: [app]
            destination: local
            retention: {{keep_last: 1, partial_after: 1h}}
    """)
    config = load_config(path)
    return path, config, open_destination("local", config.destination("local"))


def killed_local_run(root: Path, started: datetime, idle_since: datetime, size: int = MIB) -> tuple[str, Path]:
    """What `kill -9` during the first object leaves at a local destination: a folder with one temp file."""
    backup_id = new_backup_id(started)
    folder = root / "nightly" / backup_id
    folder.mkdir(parents=True)
    temp = folder / ".00001-app.sqlite.br.k1ll3d9x.tmp"
    temp.write_bytes(b"\0" * size)
    os.utime(temp, (idle_since.timestamp(), idle_since.timestamp()))
    return backup_id, temp


def test_prune_removes_stale_tmp_only_folders_and_keeps_fresh_ones(cli, local_job):
    config_path, config, destination = local_job
    root = Path(destination.location())
    now = datetime.now(UTC)
    complete = store_backup(destination, "nightly", now - timedelta(days=1))
    stale, stale_temp = killed_local_run(root, now - timedelta(hours=5), now - timedelta(hours=5))
    fresh, fresh_temp = killed_local_run(root, now - timedelta(minutes=10), now - timedelta(minutes=10))

    preview = cli("-c", config_path, "-o", "json", "backup", "prune", "--dry-run")
    assert preview.exit_code == 0, preview.stderr
    [plan] = preview.json()
    decisions = {b["id"]: b for b in plan["backups"]}
    assert decisions[stale] | {"action": "remove", "reasons": ["partial"], "objects": 0, "unfinished_uploads": 1,
                               "bytes": MIB} == decisions[stale]
    assert decisions[fresh]["action"] == "keep" and decisions[complete]["action"] == "keep"
    assert plan["partial_removed"] == [stale] and plan["bytes_removed"] == MIB
    assert [u["key"] for u in plan["aborted_uploads"]] == [f"nightly/{stale}/00001-app.sqlite.br"]
    assert stale_temp.exists() and fresh_temp.exists()  # a dry run removes nothing

    table = cli("-c", config_path, "backup", "prune", "--dry-run")
    assert "0 object(s), 1.0 MiB + 1 unfinished" in table.stdout
    assert f"nightly/{stale}/00001-app.sqlite.br" in table.stdout
    assert "would remove 1 backup(s) (1 partial), would abort 1 unfinished upload(s)" in table.stderr

    done = cli("-c", config_path, "-o", "json", "backup", "prune", "--yes")
    assert done.exit_code == 0, done.stderr
    assert done.json()[0]["partial_removed"] == [stale]
    assert not (root / "nightly" / stale).exists()  # the folder is gone, not only the file
    assert fresh_temp.exists() and (root / "nightly" / complete).is_dir()


def test_prune_removes_a_stale_partial_folder_with_its_temp_files(local_job):
    config_path, config, destination = local_job
    root = Path(destination.location())
    now = datetime.now(UTC)
    store_backup(destination, "nightly", now - timedelta(days=1))
    partial = store_backup(destination, "nightly", now - timedelta(hours=5), complete=False,
                           last_written=now - timedelta(hours=5))
    temp = root / "nightly" / partial / ".00002-more.k1ll3d9x.tmp"
    temp.write_bytes(b"half")
    os.utime(temp, (now.timestamp() - 5 * 3600,) * 2)

    result = prune_job(config, "nightly", now)
    assert result.removed == [partial]
    assert not (root / "nightly" / partial).exists()  # was left behind, non-empty, before


def test_a_live_lease_keeps_an_idle_folder_and_an_expired_one_does_not(local_job):
    config_path, config, destination = local_job
    root = Path(destination.location())
    now = datetime.now(UTC)
    store_backup(destination, "nightly", now - timedelta(days=1))
    ids = {}
    for name, lease_age in (("live", 10), ("expired", 2 * 3600)):  # the lease counts as a write too
        ids[name] = store_backup(destination, "nightly", now - timedelta(hours=5), complete=False,
                                 last_written=now - timedelta(hours=5))
        lease = root / "nightly" / ids[name] / LEASE_NAME
        lease.write_text("{}")
        os.utime(lease, (now.timestamp() - lease_age,) * 2)

    result = prune_job(config, "nightly", now)
    decisions = {entry.backup.folder.id: entry.decision for entry in result.entries}
    assert decisions[ids["live"]].reasons == ("in progress",)
    assert result.removed == [ids["expired"]]


def test_backup_run_and_run_prune_say_what_they_cleaned(cli, local_job):
    config_path, config, destination = local_job
    root = Path(destination.location())
    now = datetime.now(UTC)
    stale, _ = killed_local_run(root, now - timedelta(hours=5), now - timedelta(hours=5))
    fresh, fresh_temp = killed_local_run(root, now - timedelta(minutes=1), now - timedelta(minutes=1))
    run = cli("-c", config_path, "-o", "json", "backup", "run", "--job", "nightly")
    assert run.exit_code == 0, run.stderr
    assert run.json()[0]["partial_removed"] == [stale]
    assert run.json()[0]["aborted_uploads"] == [f"nightly/{stale}/00001-app.sqlite.br"]
    assert not (root / "nightly" / stale).exists() and fresh_temp.exists()

    again, _ = killed_local_run(root, now - timedelta(hours=4), now - timedelta(hours=4))
    pruned = cli("-c", config_path, "backup", "run", "--job", "nightly", "--prune")
    assert pruned.exit_code == 0, pruned.stderr
    assert f"removed stale partial backup(s): {again}" in pruned.stderr
    assert not (root / "nightly" / again).exists() and fresh_temp.exists()
    assert sum(b.complete for b in job_backups(config, "nightly")) == 1  # keep_last: 1


# -- S3 -------------------------------------------------------------------------------------------
@pytest.fixture
def s3_job(tmp_path, write_config, s3_bucket):
    """A job at an S3 destination with prefix ``backups/``: (config, destination, boto3 client)."""

    def make(partial_after: str = "1h"):
        path = write_config(f"""
            version: 1
            backends:
              app: {{kind: sqlite, path: {tmp_path / "app.db"}}}
            destinations:
              bucket:
                kind: s3
                prefix: backups/
{s3_bucket.yaml_fields(16)}
            jobs:
              nightly:
                backends: [app]
                destination: bucket
                retention: {{keep_last: 1, partial_after: {partial_after}}}
        """)
        config = load_config(path)
        return config, open_destination("bucket", config.destination("bucket")), client

    client = s3_bucket.client()
    yield make
    for upload in client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []):
        client.abort_multipart_upload(Bucket=s3_bucket.name, Key=upload["Key"], UploadId=upload["UploadId"])


def start_upload(client, bucket: str, key: str) -> str:
    """A multipart upload with one part written now, never completed: what a killed run leaves."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1000)
    return upload_id


def open_uploads(client, bucket: str) -> set[str]:
    return {upload["Key"] for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def test_prune_aborts_stale_multipart_uploads_under_the_job_only(s3_job, s3_bucket):
    config, destination, client = s3_job()
    now = datetime.now(UTC)
    complete = store_backup(destination, "nightly", now - timedelta(days=1))
    killed = new_backup_id(now - timedelta(hours=3))
    ours = {f"backups/nightly/{killed}/00001-app.sqlite.br",  # a folder holding nothing else
            f"backups/nightly/{complete}/00007-stray"}  # a stray upload in a backup that is kept
    theirs = {f"elsewhere/nightly/{killed}/00001-app.sqlite.br",  # outside the destination's prefix
              f"backups/weekly/{killed}/00001-app.sqlite.br"}  # another job's folder
    for key in ours | theirs:
        start_upload(client, s3_bucket.name, key)

    fresh = prune_job(config, "nightly", now)  # parts written just now: younger than partial_after
    assert fresh.aborted_uploads == [] and fresh.removed == []
    assert open_uploads(client, s3_bucket.name) == ours | theirs

    later = now + timedelta(hours=2)
    preview = prune_job(config, "nightly", later, dry_run=True)
    assert {"backups/" + up.key for up in preview.aborted_uploads} == ours
    assert preview.removed == [killed]
    assert open_uploads(client, s3_bucket.name) == ours | theirs  # a dry run aborts nothing

    result = prune_job(config, "nightly", later)
    report = result.to_dict()
    assert report["partial_removed"] == [killed]
    assert {"backups/" + up["key"] for up in report["aborted_uploads"]} == ours
    assert report["bytes_removed"] == 2000
    assert open_uploads(client, s3_bucket.name) == theirs
    assert [b.folder.id for b in job_backups(config, "nightly")] == [complete]


def test_prune_leaves_the_uploads_of_a_running_backup_alone(s3_job, s3_bucket):
    """An upload idle for longer than partial_after (a big part in flight) is not a leftover while its
    run renews the lease."""
    config, destination, client = s3_job(partial_after="1m")
    now = datetime.now(UTC)
    store_backup(destination, "nightly", now - timedelta(days=1))
    running = new_backup_id(now - timedelta(hours=3))
    start_upload(client, s3_bucket.name, f"backups/nightly/{running}/00001-app.sqlite.br")
    with destination.put_stream(f"nightly/{running}/{LEASE_NAME}") as stream:  # the run's lease, renewed now
        stream.write(b"{}")

    later = now + timedelta(seconds=LEASE_TTL / 2)  # the upload idle for 2.5 min > 1 min; the lease live
    result = prune_job(config, "nightly", later)
    assert [e.decision.reasons for e in result.entries if e.backup.folder.id == running] == [("in progress",)]
    assert result.aborted_uploads == [] and result.removed == []
    assert len(open_uploads(client, s3_bucket.name)) == 1
    expired = prune_job(config, "nightly", now + timedelta(seconds=LEASE_TTL + 60))  # the run died
    assert expired.removed == [running] and open_uploads(client, s3_bucket.name) == set()


def test_a_leftover_is_looked_at_again_before_it_is_removed(local_job):
    """A run that was only stalled when prune listed its folder renews its lease before the removal."""
    from storagectl.backup.catalog import backup_folders, looked_at_again

    config_path, config, destination = local_job
    now = datetime.now(UTC)
    stalled = store_backup(destination, "nightly", now - timedelta(hours=5), complete=False,
                           last_written=now - timedelta(hours=5))
    [folder] = backup_folders(destination, "nightly", unfinished=True)
    assert folder.id == stalled and folder.is_leftover(now, 3600)
    with destination.put_stream(f"nightly/{stalled}/{LEASE_NAME}") as stream:  # the run wakes up
        stream.write(b"{}")
    assert not looked_at_again(folder).is_leftover(now, 3600)


# -- backup delete: leftovers it can name, backups still being written -----------------------------
def test_delete_removes_a_folder_holding_only_temp_files(cli, local_job):
    """A run killed during its first object leaves a folder with one temp file: `backup list` does
    not show it, but its id is enough to delete it (before: "not found", exit 5)."""
    config_path, config, destination = local_job
    root = Path(destination.location())
    now = datetime.now(UTC)
    leftover, temp = killed_local_run(root, now - timedelta(hours=5), now - timedelta(hours=5))

    preview = cli("-c", config_path, "-o", "json", "backup", "delete", leftover, "--dry-run")
    assert preview.exit_code == 0, preview.stderr
    expected = {"id": leftover, "complete": False, "objects_removed": 0, "unfinished_removed": 1,
                "bytes_removed": MIB, "dry_run": True}
    assert preview.json() | expected == preview.json() and temp.exists()
    deleted = cli("-c", config_path, "backup", "delete", leftover, "--yes")
    assert deleted.exit_code == 0, deleted.stderr
    assert "removed backup" in deleted.stderr and "0 object(s), 1 unfinished write(s), 1.0 MiB" in deleted.stderr
    assert not (root / "nightly" / leftover).exists()


def test_delete_refuses_a_backup_still_being_written_and_removes_it_once_its_lease_expired(cli, local_job):
    config_path, config, destination = local_job
    root = Path(destination.location())
    now = datetime.now(UTC)
    running = store_backup(destination, "nightly", now - timedelta(hours=2), complete=False,
                           last_written=now - timedelta(hours=2))
    temp = root / "nightly" / running / ".00002-app.sqlite.br.wr1t1ng9.tmp"  # the object being written
    temp.write_bytes(b"rows")
    lease = root / "nightly" / running / LEASE_NAME
    lease.write_text('{"host": "db1", "pid": 4242}')
    os.utime(lease, (now.timestamp() - 30,) * 2)  # renewed half a minute ago

    for how in (("--yes",), ("--dry-run",), ()):
        refused = cli("-c", config_path, "backup", "delete", running, *how)
        assert refused.exit_code == 7, (how, refused.stderr)
        assert f"is still being written: its lease nightly/{running}/{LEASE_NAME} was renewed" in refused.stderr
        assert "nothing was deleted" in refused.stderr and "its lease expires 300s after" in refused.stderr
    assert lease.exists() and temp.exists()

    os.utime(lease, (now.timestamp() - LEASE_TTL - 60,) * 2)  # the run died: the lease was not renewed
    deleted = cli("-c", config_path, "backup", "delete", running, "--yes")
    assert deleted.exit_code == 0, deleted.stderr
    assert not (root / "nightly" / running).exists()
