"""`backup prune` and `backup run --prune`: retention over what a real destination holds.

Backup folders are written with the real archive writer (ArchiveSession + manifest) into a local
directory or a moto S3 bucket; nothing of our storage code is mocked.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from storagectl.archive.manifest import BackupManifest, backup_prefix, new_backup_id
from storagectl.archive.writer import ArchiveSession
from storagectl.config import load_config
from storagectl.destinations import open_destination
from storagectl.prune import job_backups, newest_complete_start

NEW_YORK = ZoneInfo("America/New_York")


def store_backup(destination, job: str, started: datetime, *, backend: str = "app", complete: bool = True,
                 last_written: datetime | None = None, selection: dict | None = None) -> str:
    """One backup folder through the real archive writer; without a manifest when not complete."""
    backup_id = new_backup_id(started)
    session = ArchiveSession(destination, backup_prefix(job, backup_id), codec="none")
    with session.create("data") as sink:
        sink.write(b"rows")
    if complete:
        session.write_manifest(BackupManifest(
            id=backup_id, group=job, job=job, backend={"name": backend, "kind": "sqlite"},
            destination=destination.name, started_at=started.isoformat(),
            finished_at=(started + timedelta(minutes=1)).isoformat(), compression={"codec": "none", "level": 0},
            encryption=None, objects=list(session.entries), tool_version="test", selection=selection))
    if last_written is not None:  # a local destination reports file mtimes as write times
        stamp = last_written.timestamp()
        for path in Path(destination.location(), job, backup_id).iterdir():
            os.utime(path, (stamp, stamp))
    return backup_id


@pytest.fixture
def local_job(tmp_path, write_config, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    def make(retention: str, backends: str = "[app]", timezone: str = "UTC"):
        path = write_config(f"""
            version: 1
            backends:
              app: {{kind: sqlite, path: {tmp_path / "app.db"}}}
              other: {{kind: sqlite, path: {tmp_path / "other.db"}}}
            destinations:
              local: {{kind: local, path: {tmp_path / "backups"}}}
            jobs:
              nightly:
                backends: {backends}
                destination: local
                timezone: {timezone}
                retention: {retention}
        """)
        config = load_config(path)
        return path, config, open_destination("local", config.destination("local"))

    return make


def restic_oracle(starts: list[datetime], last: int, daily: int, weekly: int, monthly: int,
                  tz: ZoneInfo) -> set[datetime]:
    """An independent reading of restic's rules: newest of each of the N newest periods with backups."""
    ordered = sorted(starts, reverse=True)
    kept = {ordered[0], *ordered[:last]}
    periods = ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2]),
               (monthly, lambda t: (t.year, t.month)))
    for count, period_of in periods:
        seen: list = []
        for start in ordered:
            period = period_of(start.astimezone(tz))
            if period not in seen:
                if len(seen) == count:
                    break
                seen.append(period)
                kept.add(start)
    return kept


def test_prune_of_a_long_history_keeps_exactly_the_policy(cli, local_job):
    config_path, config, destination = local_job(
        "{keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 3, partial_after: 6h}",
        timezone="America/New_York")
    rng = random.Random(4)
    now = datetime.now(UTC).replace(microsecond=0)
    complete, stale_partials = {}, set()
    for step in range(360):  # ~90 days, every 6 h, with jitter and some failed runs
        started = now - timedelta(hours=6 * step + 1, minutes=rng.randrange(0, 50))
        if rng.random() < 0.1:
            stale_partials.add(store_backup(destination, "nightly", started, complete=False,
                                            last_written=started + timedelta(minutes=5)))
        else:
            complete[store_backup(destination, "nightly", started)] = started
    running = store_backup(destination, "nightly", now - timedelta(minutes=2), complete=False)
    expected = restic_oracle(list(complete.values()), 3, 7, 4, 3, NEW_YORK)

    preview = cli("-c", config_path, "-o", "json", "backup", "prune", "--dry-run")
    assert preview.exit_code == 0, preview.stderr
    assert len(job_backups(config, "nightly")) == len(complete) + len(stale_partials) + 1  # nothing deleted

    result = cli("-c", config_path, "-o", "json", "backup", "prune", "--yes")
    assert result.exit_code == 0, result.stderr
    [report] = result.json()
    decisions = {b["id"]: b for b in report["backups"]}
    assert report["backups"] == preview.json()[0]["backups"]
    assert {i for i, b in decisions.items() if b["action"] == "keep" and b["complete"]} == {
        i for i, started in complete.items() if started in expected}
    assert decisions[running]["reasons"] == ["in progress"]
    assert all(decisions[i]["reasons"] == ["partial"] and decisions[i]["action"] == "remove" for i in stale_partials)
    newest = max(complete, key=complete.get)
    assert decisions[newest]["reasons"][0] == "newest"
    remaining = {backup.folder.id for backup in job_backups(config, "nightly")}
    assert remaining == {i for i, started in complete.items() if started in expected} | {running}
    assert 10 < len(expected) < 25  # the policy really thinned the history


def test_failed_runs_never_count_toward_keep_rules(local_job):
    config_path, config, destination = local_job("{keep_last: 2, partial_after: 1h}")
    now = datetime.now(UTC)
    good = [store_backup(destination, "nightly", now - timedelta(days=d)) for d in (5, 4)]
    for hours in (70, 50, 30):  # three failed runs, newer than every good backup
        store_backup(destination, "nightly", now - timedelta(hours=hours), complete=False,
                     last_written=now - timedelta(hours=hours))
    from storagectl.prune import prune_job

    result = prune_job(config, "nightly", now)
    assert sorted(b.folder.id for b in job_backups(config, "nightly")) == sorted(good)
    assert len(result.removed) == 3


def test_retention_applies_per_backend_of_a_job(local_job):
    config_path, config, destination = local_job("{keep_last: 2}", backends="[app, other]")
    now = datetime.now(UTC)
    for hours in range(1, 5):
        for backend in ("app", "other"):
            store_backup(destination, "nightly", now - timedelta(hours=hours, seconds=len(backend)),
                         backend=backend)
    from storagectl.prune import prune_job

    prune_job(config, "nightly", now)
    left = [b.backend for b in job_backups(config, "nightly")]
    assert sorted(left) == ["app", "app", "other", "other"]
    # The job's newest run is the older of its backends' newest backups.
    assert newest_complete_start(config, "nightly") == now - timedelta(hours=1, seconds=5)


def test_a_partial_backup_never_takes_the_place_of_a_full_one(local_job):
    """keep_last 2 over a job whose runs were full and then partial (or a partial one stored beside):
    each selection keeps its own 2, and the job's last run counts only backups of its own selection."""
    config_path, config, destination = local_job("{keep_last: 2}")
    now = datetime.now(UTC)
    full = [store_backup(destination, "nightly", now - timedelta(hours=hours)) for hours in (6, 5, 4)]
    partial = [store_backup(destination, "nightly", now - timedelta(hours=hours),
                            selection={"tables": ["users"], "matched": {"users": 3}}) for hours in (3, 2, 1)]
    from storagectl.prune import prune_job

    result = prune_job(config, "nightly", now)
    assert sorted(result.removed) == sorted([full[0], partial[0]])
    assert {entry["id"]: entry["partial"] for entry in result.to_dict()["backups"]} == {
        full[2]: False, full[1]: False, partial[2]: True, partial[1]: True, full[0]: False, partial[0]: True}
    assert newest_complete_start(config, "nightly") == now - timedelta(hours=4)


def test_prune_needs_yes_and_shows_the_plan(cli, local_job):
    config_path, config, destination = local_job("{keep_last: 1}")
    now = datetime.now(UTC)
    ids = [store_backup(destination, "nightly", now - timedelta(hours=h)) for h in (3, 2, 1)]
    result = cli("-c", config_path, "backup", "prune")
    assert result.exit_code == 2 and "without --yes" in result.stderr
    assert "REMOVE" in result.stdout and "newest, last" in result.stdout
    assert len(job_backups(config, "nightly")) == 3
    done = cli("-c", config_path, "backup", "prune", "--yes", "--job", "nightly")
    assert done.exit_code == 0, done.stderr
    assert [b.folder.id for b in job_backups(config, "nightly")] == [ids[-1]]


def test_unreadable_manifest_is_left_alone(local_job):
    config_path, config, destination = local_job("{keep_last: 1}")
    now = datetime.now(UTC)
    broken = store_backup(destination, "nightly", now - timedelta(days=3))
    Path(destination.location(), "nightly", broken, "manifest.json").write_text("{not json")
    store_backup(destination, "nightly", now - timedelta(days=1))
    from storagectl.prune import prune_job

    result = prune_job(config, "nightly", now)
    assert Path(destination.location(), "nightly", broken, "manifest.json").exists()
    assert list(result.unreadable) == [broken]


def test_prune_exits_non_zero_when_it_leaves_an_unreadable_backup(cli, local_job):
    """Retention can't judge a backup it can't read: the run says so (exit 6) after pruning the rest."""
    config_path, config, destination = local_job("{keep_last: 1}")
    now = datetime.now(UTC)
    broken = store_backup(destination, "nightly", now - timedelta(days=3))
    Path(destination.location(), "nightly", broken, "manifest.json").write_text("{not json")
    old = store_backup(destination, "nightly", now - timedelta(days=2))
    store_backup(destination, "nightly", now - timedelta(days=1))
    result = cli("-c", config_path, "-o", "json", "backup", "prune", "--yes", "--job", "nightly")
    assert result.exit_code == 6, result.stderr
    assert "1 backup(s) with an unreadable manifest were left alone" in result.stderr and broken in result.stderr
    assert result.json()[0]["removed"] == [old]
    assert result.json()[0]["unreadable"][0]["id"] == broken
    assert Path(destination.location(), "nightly", broken, "manifest.json").exists()
    assert f"backup delete {broken} --yes" in result.stderr  # and that fix works:
    assert cli("-c", config_path, "backup", "delete", broken, "--yes").exit_code == 0
    assert not Path(destination.location(), "nightly", broken).exists()


def test_job_without_retention_is_a_usage_error(cli, write_config, tmp_path):
    config = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {tmp_path / "app.db"}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
        jobs:
          nightly: {{backends: [app], destination: local}}
    """)
    result = cli("-c", config, "backup", "prune", "--job", "nightly")
    assert result.exit_code == 2 and "no retention policy" in result.stderr
    run = cli("-c", config, "backup", "run", "--job", "nightly", "--prune")
    assert run.exit_code == 2 and not (tmp_path / "backups").exists()  # rejected before the backup


def test_backup_run_with_prune_applies_retention(cli, local_job, tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE t (x)")
    config_path, config, destination = local_job("{keep_last: 2}")
    for _ in range(3):
        result = cli("-c", config_path, "backup", "run", "--job", "nightly", "--prune")
        assert result.exit_code == 0, result.stderr
    assert "retention of job nightly" in result.stderr
    assert len(job_backups(config, "nightly")) == 2
    bad = cli("-c", config_path, "backup", "run", "--backend", "app", "--to", "local", "--prune")
    assert bad.exit_code == 2 and "--prune" in bad.stderr


def test_delete_refused_by_s3_is_an_error(cli, write_config, tmp_path, s3_bucket):
    """S3 refuses the deletes (as a bucket policy denying s3:DeleteObject does, per key inside a
    200 DeleteObjects answer): prune reports it with exit 4 and every backup stays listed."""
    from tests.fakes.s3_deny_delete import DenyDeleteS3Proxy

    def config_for(endpoint: str, name: str) -> Path:
        return write_config(f"""
            version: 1
            backends:
              app: {{kind: sqlite, path: {tmp_path / "app.db"}}}
            destinations:
              bucket:
                kind: s3
                retry: {{attempts: 1}}
                bucket: {s3_bucket.name}
                endpoint_url: {endpoint}
                region: us-east-1
                addressing_style: path
                access_key_id: testing
                secret_access_key: "not-shown-anywhere"
            jobs:
              nightly: {{backends: [app], destination: bucket, retention: {{keep_last: 1}}}}
        """, name=name)

    config = load_config(config_for(s3_bucket.endpoint, "direct.yaml"))
    destination = open_destination("bucket", config.destination("bucket"))
    now = datetime.now(UTC)
    for hours in (3, 2, 1):
        store_backup(destination, "nightly", now - timedelta(hours=hours))
    with DenyDeleteS3Proxy(s3_bucket.endpoint) as proxy:
        result = cli("-c", config_for(proxy.endpoint, "denied.yaml"), "backup", "prune", "--yes")
    assert proxy.refused, "prune never asked S3 to delete anything"
    assert result.exit_code == 4, result.stderr
    assert "could not remove backup" in result.stderr and "access denied" in result.stderr
    assert "not-shown-anywhere" not in result.stderr + result.stdout
    assert len(job_backups(config, "nightly")) == 3


def test_prune_on_a_terminal_shows_the_plan_and_asks(cli, local_job, monkeypatch):
    import io

    from storagectl.cli.state import AppState

    config_path, config, destination = local_job("{keep_last: 1}")
    now = datetime.now(UTC)
    ids = [store_backup(destination, "nightly", now - timedelta(hours=h)) for h in (3, 2, 1)]
    monkeypatch.setattr(AppState, "interactive", property(lambda self: True))
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    declined = cli("-c", config_path, "backup", "prune", "--job", "nightly")
    assert declined.exit_code == 1 and "Remove 2 backup(s)? [y/N]" in declined.stderr
    assert "REMOVE" in declined.stdout and len(job_backups(config, "nightly")) == 3
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    done = cli("-c", config_path, "backup", "prune", "--job", "nightly")
    assert done.exit_code == 0, done.stderr
    assert [b.folder.id for b in job_backups(config, "nightly")] == [ids[-1]]
