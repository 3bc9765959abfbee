"""A backup run racing `backup prune`: the run's folder is protected while it is written, and a run
never writes a manifest naming an object that is not there.

Prune is driven between two object writes of a real PostgreSQL backup (from the run's progress
callback), at a local directory and at the moto S3 server; the clock prune judges by is injected, so
"idle for longer than partial_after" needs no sleeping. The last test races real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storagectl.archive.progress import ProgressEvent
from storagectl.backup import list_backups, run_backup, verify_backup
from storagectl.config import load_config
from storagectl.errors import IntegrityError
from storagectl.prune import job_backups, prune_job

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["local", "s3"])
def race_job(request, tmp_path, write_config, pg_database, monkeypatch):
    """A job backing up a small PostgreSQL database (several objects) with `keep_last: 1, partial_after: 1s`."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE a (x int); INSERT INTO a SELECT generate_series(1, 100);"
                     "CREATE TABLE b (y text); INSERT INTO b VALUES ('one'), ('two');")
    if request.param == "local":
        destination = f"{{kind: local, path: {tmp_path / 'backups'}}}"
    else:
        bucket = request.getfixturevalue("s3_bucket")
        pad = " " * 14  # dest's fields, before write_config dedents the text by 8
        destination = f"\n{pad}kind: s3\n{pad}prefix: backups/\n" + bucket.yaml_fields(14).rstrip("\n")
    path = write_config(f"""
        version: 1
        backends:
          app: {{kind: postgres, url: "{pg_database.url}"}}
        destinations:
          dest: {destination}
        jobs:
          nightly:
            backends: [app]
            destination: dest
            parallel: 1  # one object at a time: prune runs between two writes, none in flight
            retention: {{keep_last: 1, partial_after: 1s}}
    """)
    return path, load_config(path)


class PruneBetweenWrites:
    """A progress callback that runs prune (at ``now() + ahead``) once the run's first object is written."""

    def __init__(self, config, ahead: timedelta) -> None:
        self.config = config
        self.ahead = ahead
        self.results = []

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage == "finish" and not self.results:
            self.results.append(prune_job(self.config, "nightly", datetime.now(UTC) + self.ahead))
            assert self.results[0].entries, "prune saw the running backup's folder"


def test_prune_between_object_writes_leaves_the_running_backup_alone(race_job):
    config_path, config = race_job
    prune = PruneBetweenWrites(config, timedelta(seconds=30))  # idle for 30 s > partial_after 1 s
    [result] = run_backup(config, job="nightly", progress=prune)
    [pruned] = prune.results
    [entry] = pruned.entries
    assert entry.backup.folder.id == result.manifest.id
    assert (entry.decision.action, entry.decision.reasons) == ("keep", ("in progress",))
    assert pruned.removed == []
    assert verify_backup(config, result.manifest.id).ok
    assert [b.id for b in list_backups(config, job="nightly")] == [result.manifest.id]


def test_a_run_whose_objects_were_pruned_fails_and_leaves_nothing(race_job):
    """A writer stalled past its lease (simulated by a prune an hour ahead) loses its objects to prune:
    the run must fail clearly instead of writing a manifest naming missing objects."""
    config_path, config = race_job
    prune = PruneBetweenWrites(config, timedelta(hours=1))
    with pytest.raises(IntegrityError) as failure:
        run_backup(config, job="nightly", progress=prune)
    assert prune.results[0].removed  # prune did take the folder: the run noticed
    assert "missing" in failure.value.message and "manifest" in failure.value.message
    assert failure.value.exit_code == 6
    assert list_backups(config, job="nightly") == []
    assert job_backups(config, "nightly") == []  # the run cleaned up what it had written


def test_backup_run_racing_prune_processes_verifies_or_fails_clearly(race_job, cli):
    """The issue's reproduction with real processes: `backup run` while `backup prune --yes` loops."""
    config_path, config = race_job
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, "-m", "storagectl", "-c", str(config_path), "-o", "json",
                            "backup", "run", "--job", "nightly"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    for _ in range(200):  # bounded: the loop ends with the run or after 200 prunes
        pruned = cli("-c", config_path, "backup", "prune", "--yes", "--job", "nightly")
        assert pruned.exit_code == 0, pruned.stderr
        if run.poll() is not None:
            break
    out, err = run.communicate(timeout=300)
    backups = list_backups(config, job="nightly")
    if run.returncode == 0:
        assert [b.id for b in backups] == [json.loads(out)[0]["id"]]
        assert verify_backup(config, backups[0].id).ok
    else:
        assert run.returncode == 6 and "missing" in err, err
        assert backups == []


def test_the_lease_is_renewed_while_held_and_removed_after(tmp_path):
    import time

    from storagectl.archive.lease import LEASE_NAME, BackupLease
    from storagectl.destinations import open_destination
    from storagectl.destinations.local_settings import LocalSettings

    destination = open_destination("local", LocalSettings(path=tmp_path))
    key = f"nightly/20261206T000000Z-abcdef/{LEASE_NAME}"

    def renewed_at() -> str:
        with destination.open_read(key) as stream:
            return json.loads(stream.read())["renewed_at"]

    with BackupLease(destination, "nightly/20261206T000000Z-abcdef/", renew_every=0.01):
        first = renewed_at()
        deadline = time.monotonic() + 30
        while renewed_at() == first and time.monotonic() < deadline:
            time.sleep(0.01)
        assert renewed_at() != first  # rewritten by the renewing thread
    assert not destination.exists(key)
    assert list(destination.list_unfinished()) == []
