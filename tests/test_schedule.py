"""`backup schedule`: fire times, overruns, catch-up, --once, locks across schedulers, signals.

The scheduler's clock is injected: no test sleeps for real time. Unit tests use an in-memory job
runner; the end-to-end tests run real backups of SQLite into a local destination, with real Redis
locks and real subprocesses for the signal tests.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from storagectl.config import load_config
from storagectl.errors import Interrupted, OperationFailed
from storagectl.locks import FileLock, RedisLock
from storagectl.schedule import (
    ABORTED,
    FAILURE,
    NOT_DUE,
    SKIPPED,
    SUCCESS,
    BackupJobRunner,
    Scheduler,
    TakenBackup,
    job_schedules,
)
from tests.conftest import free_port

BERLIN = ZoneInfo("Europe/Berlin")


# -- fakes: a clock and an in-memory job runner (the real ones are exercised further down) ------
class FakeClock:
    """Time moves only when a job waits for its next fire (or a fake backup takes time)."""

    def __init__(self, start: datetime, horizon: datetime | None = None) -> None:
        self.current = start.astimezone(UTC)
        self.horizon = horizon
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self.current

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.current += timedelta(seconds=seconds)

    def wait_until(self, moment: datetime, stop: threading.Event) -> bool:
        if stop.is_set() or (self.horizon is not None and moment > self.horizon):
            return False
        with self._lock:
            self.current = max(self.current, moment.astimezone(UTC))
        return not stop.is_set()


@dataclass
class FakeRunner:
    """Backups are (job, start) pairs in a list shared like a destination; a backup may take time."""

    clock: FakeClock
    taken: list[tuple[str, datetime]] = field(default_factory=list)
    takes: float = 0.0  # fake seconds each backup lasts
    fail: bool = False
    block: threading.Event | None = None  # backup waits for this (or for cancel)
    started: threading.Event = field(default_factory=threading.Event)

    def newest_backup_start(self, job: str) -> datetime | None:
        starts = [start for name, start in self.taken if name == job]
        return max(starts) if starts else None

    def backup(self, job: str, fire: datetime,
               cancel: threading.Event) -> tuple[list[TakenBackup], OperationFailed | None]:
        start = self.clock.now()
        self.started.set()
        if self.block is not None:
            while not self.block.wait(0.01):
                if cancel.is_set():
                    raise Interrupted("aborted")
        if self.fail:
            raise OperationFailed("backend is down")
        time.sleep(0.01)  # real overlap, so concurrent schedulers race for real
        self.clock.advance(self.takes)
        self.taken.append((job, start))
        return [TakenBackup(f"{job}-{len(self.taken)}", 100)], None

    def apply_retention(self, job: str, now: datetime) -> list[str]:
        return []

    def fires(self, job: str = "nightly") -> list[datetime]:
        return [start for name, start in self.taken if name == job]


def config_with(write_config, tmp_path: Path, jobs: str):
    path = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {tmp_path / "app.db"}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
        jobs:
        {jobs}
    """)
    return load_config(path)


def job_yaml(name: str, schedule: str, timezone: str = "UTC", extra: str = "") -> str:
    return f"""  {name}:
            backends: [app]
            destination: local
            schedule: "{schedule}"
            timezone: {timezone}
            {extra}
        """


def scheduler(config, clock, runner, tmp_path, **kwargs) -> Scheduler:
    def file_lock(job: str) -> FileLock:
        return FileLock(tmp_path / "locks" / f"{job}.lock", job)

    return Scheduler(config, runner, clock=clock, lock_for=file_lock, **kwargs)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)


def run_schedule(write_config, tmp_path, jobs: str, start: datetime, horizon: datetime,
                 **runner_args) -> FakeRunner:
    config = config_with(write_config, tmp_path, jobs)
    clock = FakeClock(start, horizon)
    runner = FakeRunner(clock, **runner_args)
    scheduler(config, clock, runner, tmp_path).run_forever(list(config.jobs))
    return runner


# -- fire times ------------------------------------------------------------------------------------
def test_fixed_time_job_across_spring_forward_fires_after_the_gap(write_config, tmp_path):
    runner = run_schedule(write_config, tmp_path, job_yaml("nightly", "30 2 * * *", "Europe/Berlin"),
                          local(BERLIN, 2025, 3, 28, 12), local(BERLIN, 2025, 4, 1, 12))
    assert runner.fires() == [
        local(BERLIN, 2025, 3, 29, 2, 30),
        local(BERLIN, 2025, 3, 30, 3, 0),  # 02:30 does not exist that night: first instant after the gap
        local(BERLIN, 2025, 3, 31, 2, 30),
        local(BERLIN, 2025, 4, 1, 2, 30),
    ]


def test_fixed_time_job_across_fall_back_fires_once(write_config, tmp_path):
    runner = run_schedule(write_config, tmp_path, job_yaml("nightly", "30 2 * * *", "Europe/Berlin"),
                          local(BERLIN, 2025, 10, 25, 12), local(BERLIN, 2025, 10, 27, 12))
    assert runner.fires() == [local(BERLIN, 2025, 10, 26, 2, 30, fold=0), local(BERLIN, 2025, 10, 27, 2, 30)]


def test_hourly_job_follows_the_clock_on_both_dst_days(write_config, tmp_path):
    for day, next_day, expected in (((2025, 3, 30), (2025, 3, 31), 23), ((2025, 10, 26), (2025, 10, 27), 25)):
        runner = run_schedule(write_config, tmp_path, job_yaml("nightly", "@hourly", "Europe/Berlin"),
                              local(BERLIN, *day) - timedelta(seconds=1),
                              local(BERLIN, *next_day) - timedelta(seconds=1))
        fires = runner.fires()
        assert len(fires) == expected
        assert len(set(fires)) == expected  # the repeated hour fires twice, at two instants


def test_month_ends_and_29_february(write_config, tmp_path):
    leap = run_schedule(write_config, tmp_path, job_yaml("nightly", "0 6 29 2 *", "America/New_York"),
                        utc(2025, 1, 1), utc(2033, 1, 1))
    zone = ZoneInfo("America/New_York")
    assert leap.fires() == [local(zone, 2028, 2, 29, 6), local(zone, 2032, 2, 29, 6)]
    month_end = run_schedule(write_config, tmp_path, job_yaml("nightly", "0 23 31 * *"),
                             utc(2025, 1, 1), utc(2025, 12, 31, 23, 30))
    assert [fire.month for fire in month_end.fires()] == [1, 3, 5, 7, 8, 10, 12]


# -- overrun, catch-up, --once ---------------------------------------------------------------------
@pytest.fixture
def schedule_log():
    """What the scheduler logs, whatever an earlier in-process CLI run did to the logging setup."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("storagectl.schedule")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    yield lines
    logger.handlers[:], logger.level, logger.propagate = saved


def test_overrunning_run_skips_missed_fires_and_logs_it(write_config, tmp_path, schedule_log):
    config = config_with(write_config, tmp_path, job_yaml("nightly", "*/10 * * * *"))
    clock = FakeClock(utc(2025, 1, 1, 0, 5), utc(2025, 1, 1, 1, 0))
    runner = FakeRunner(clock, takes=25 * 60)
    scheduler(config, clock, runner, tmp_path).run_forever(["nightly"])
    # 00:10 runs until 00:35: 00:20 and 00:30 are skipped, not piled up; 00:40 runs until 01:05.
    assert runner.fires() == [utc(2025, 1, 1, 0, 10), utc(2025, 1, 1, 0, 40)]
    assert any("overran; skipped 2 fire(s)" in line for line in schedule_log)


@pytest.mark.parametrize("catchup", [True, False])
def test_catchup_runs_a_missed_fire_once_at_start(write_config, tmp_path, catchup):
    extra = f"catchup: {str(catchup).lower()}"
    config = config_with(write_config, tmp_path, job_yaml("nightly", "@daily", extra=extra))
    clock = FakeClock(utc(2025, 1, 3, 10), utc(2025, 1, 4, 12))
    runner = FakeRunner(clock, taken=[("nightly", utc(2025, 1, 1, 0, 0, 1))])  # 2 Jan was missed
    scheduler(config, clock, runner, tmp_path).run_forever(["nightly"])
    caught_up = [utc(2025, 1, 3, 10)] if catchup else []
    assert runner.fires() == [utc(2025, 1, 1, 0, 0, 1), *caught_up, utc(2025, 1, 4)]


def test_catchup_does_nothing_when_the_latest_fire_has_its_backup(write_config, tmp_path):
    config = config_with(write_config, tmp_path, job_yaml("nightly", "@daily", extra="catchup: true"))
    clock = FakeClock(utc(2025, 1, 3, 10), utc(2025, 1, 3, 23))
    runner = FakeRunner(clock, taken=[("nightly", utc(2025, 1, 3, 0, 0, 5))])
    scheduler(config, clock, runner, tmp_path).run_forever(["nightly"])
    assert runner.fires() == [utc(2025, 1, 3, 0, 0, 5)]


def test_once_runs_only_jobs_whose_latest_fire_has_no_backup(write_config, tmp_path):
    jobs = job_yaml("fresh", "@daily") + job_yaml("served", "@daily") + job_yaml("stale", "0 * * * *")
    config = config_with(write_config, tmp_path, jobs)
    clock = FakeClock(utc(2025, 6, 1, 10, 30))
    runner = FakeRunner(clock, taken=[("served", utc(2025, 6, 1, 0, 0, 2)), ("stale", utc(2025, 6, 1, 9, 0, 3))])
    runs = scheduler(config, clock, runner, tmp_path).run_due(["fresh", "served", "stale"])
    assert [(run.job, run.status) for run in runs] == [("fresh", SUCCESS), ("served", NOT_DUE), ("stale", SUCCESS)]
    assert runs[2].fire == utc(2025, 6, 1, 10)
    # Run again at the same time: everything has its backup now.
    again = scheduler(config, clock, runner, tmp_path).run_due(["fresh", "served", "stale"])
    assert {run.status for run in again} == {NOT_DUE}


def test_failed_run_writes_metrics_and_runs_the_failure_hook(write_config, tmp_path):
    metrics, marker = tmp_path / "metrics.prom", tmp_path / "hook.txt"
    extra = (f"metrics_file: {metrics}\n            on_failure: 'echo \"$STORAGECTL_STATUS $STORAGECTL_ERROR\" "
             f"> {marker}'")
    config = config_with(write_config, tmp_path, job_yaml("nightly", "@daily", extra=extra))
    clock = FakeClock(utc(2025, 6, 1, 10))
    [run] = scheduler(config, clock, FakeRunner(clock, fail=True), tmp_path).run_due(["nightly"])
    assert (run.status, run.error) == (FAILURE, "backend is down")
    assert 'storagectl_backup_last_status{job="nightly"} 0' in metrics.read_text()
    assert marker.read_text().strip() == "failure backend is down"


# -- one job never twice at once -------------------------------------------------------------------
def test_a_job_never_runs_twice_at_once_but_jobs_run_concurrently(write_config, tmp_path):
    config = config_with(write_config, tmp_path, job_yaml("nightly", "@daily") + job_yaml("other", "@daily"))
    clock = FakeClock(utc(2025, 6, 1, 10))
    release = threading.Event()
    runner = FakeRunner(clock, block=release)
    sched = scheduler(config, clock, runner, tmp_path)
    first = threading.Thread(target=sched.run_job, args=("nightly", utc(2025, 6, 1)))
    first.start()
    assert runner.started.wait(5)
    assert sched.run_job("nightly", utc(2025, 6, 1)).status == SKIPPED  # same job: refused
    other = scheduler(config, clock, FakeRunner(clock), tmp_path)
    assert other.run_job("nightly", utc(2025, 6, 1)).status == SKIPPED  # another scheduler: file lock
    assert other.run_job("other", utc(2025, 6, 1)).status == SUCCESS  # another job: runs meanwhile
    release.set()
    first.join(5)
    assert runner.fires() == [utc(2025, 6, 1, 10)]


def test_lost_lock_lease_aborts_the_run_and_skips_retention(write_config, tmp_path, redis_db):
    config = config_with(write_config, tmp_path, job_yaml("nightly", "@hourly"))
    clock = FakeClock(utc(2025, 6, 1, 1))
    client = redis_db.client()
    locks: list[RedisLock] = []

    def redis_lock(job: str) -> RedisLock:
        locks.append(RedisLock(client, job, 30))
        return locks[-1]

    runner = FakeRunner(clock, block=threading.Event())
    sched = Scheduler(config, runner, clock=clock, lock_for=redis_lock)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(sched.run_job("nightly", utc(2025, 6, 1, 1))))
    thread.start()
    assert runner.started.wait(5)
    client.set(locks[0].key, "another-replica")  # our lease expired and another replica took the job
    assert not locks[0].renew()
    thread.join(5)
    assert result[0].status == ABORTED
    assert runner.fires() == []
    assert client.get(locks[0].key) == b"another-replica"


def test_two_schedulers_on_one_redis_run_each_fire_exactly_once(write_config, tmp_path, redis_db):
    config = config_with(write_config, tmp_path, job_yaml("nightly", "@hourly"))
    clock = FakeClock(utc(2025, 6, 1))
    runner = FakeRunner(clock)  # one list of backups: the shared destination
    client = redis_db.client()
    schedulers = [Scheduler(config, runner, clock=clock, lock_for=lambda job: RedisLock(client, job, 10))
                  for _ in range(2)]
    for hour in range(1, 9):
        fire = utc(2025, 6, 1, hour)
        clock.wait_until(fire, threading.Event())
        start = threading.Barrier(2)
        statuses: list[str] = []

        def race(sched: Scheduler, fire: datetime = fire, start: threading.Barrier = start,
                 statuses: list[str] = statuses) -> None:
            start.wait()
            statuses.append(sched.run_job("nightly", fire).status)

        threads = [threading.Thread(target=race, args=(s,)) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(statuses) == [SKIPPED, SUCCESS]
    assert runner.fires() == [utc(2025, 6, 1, hour) for hour in range(1, 9)]


# -- stopping --------------------------------------------------------------------------------------
def test_stop_with_grace_aborts_the_running_job_and_returns(write_config, tmp_path):
    config = config_with(write_config, tmp_path, job_yaml("nightly", "@daily", extra="catchup: true"))
    clock = FakeClock(utc(2025, 6, 1, 10))
    runner = FakeRunner(clock, block=threading.Event())  # never finishes by itself
    sched = scheduler(config, clock, runner, tmp_path, grace=0)
    loop = threading.Thread(target=sched.run_forever, args=(["nightly"],))
    loop.start()
    assert runner.started.wait(5)
    sched.stop()
    loop.join(5)
    assert not loop.is_alive()
    assert runner.fires() == []


def test_stop_without_grace_lets_the_running_job_finish(write_config, tmp_path):
    config = config_with(write_config, tmp_path, job_yaml("nightly", "@daily", extra="catchup: true"))
    clock = FakeClock(utc(2025, 6, 1, 10))
    release = threading.Event()
    runner = FakeRunner(clock, block=release)
    sched = scheduler(config, clock, runner, tmp_path)
    loop = threading.Thread(target=sched.run_forever, args=(["nightly"],))
    loop.start()
    assert runner.started.wait(5)
    sched.stop()
    release.set()
    loop.join(5)
    assert not loop.is_alive()
    assert runner.fires() == [utc(2025, 6, 1, 10)]  # finished; nothing new started after stop


# -- end to end: real backups, real locks, real processes ------------------------------------------
def make_database(path: Path, megabytes: float = 0.01) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, data BLOB)")
        chunk = 64 * 1024
        db.executemany("INSERT INTO items (data) VALUES (?)",
                       [(os.urandom(chunk),) for _ in range(max(1, int(megabytes * 1024 * 1024 / chunk)))])


@pytest.fixture
def e2e(tmp_path, write_config, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # file locks in the test's dir
    make_database(tmp_path / "app.db")

    def write(job_extra: str = "", schedule: str = "@daily", backends: str = "",
              database: Path | None = None) -> Path:
        return write_config(f"""
            version: 1
            backends:
              app: {{kind: sqlite, path: {database or tmp_path / "app.db"}}}
            {backends}
            destinations:
              local: {{kind: local, path: {tmp_path / "backups"}}}
            jobs:
              nightly:
                backends: [app]
                destination: local
                schedule: "{schedule}"
                {job_extra}
        """)

    return write


def complete_backups(cli, config: Path) -> list[dict]:
    result = cli("-c", config, "-o", "json", "backup", "list")
    assert result.exit_code == 0, result.stderr
    return result.json()


def test_cli_once_runs_due_job_then_finds_it_served(cli, e2e, tmp_path):
    config = e2e(f"metrics_file: {tmp_path / 'metrics.prom'}")
    first = cli("-c", config, "-o", "json", "backup", "schedule", "--once")
    assert first.exit_code == 0, first.stderr
    [run] = first.json()
    assert run["status"] == "success" and len(run["backups"]) == 1
    assert "job nightly: starting" in first.stderr and "succeeded" in first.stderr
    assert 'storagectl_backup_last_status{job="nightly"} 1' in (tmp_path / "metrics.prom").read_text()
    second = cli("-c", config, "-o", "json", "backup", "schedule", "--once")
    assert second.exit_code == 0 and second.json()[0]["status"] == "not due"
    assert [b["id"] for b in complete_backups(cli, config)] == run["backups"]


def test_cli_once_exits_non_zero_when_a_job_fails(cli, e2e, tmp_path):
    config = e2e(database=tmp_path / "missing" / "app.db")
    result = cli("-c", config, "backup", "schedule", "--once")
    assert result.exit_code == 1
    assert "1 job(s) failed: nightly" in result.stderr


def test_cli_list_prints_next_five_fires_with_offsets(cli, e2e, write_config, tmp_path):
    config = e2e('timezone: "Europe/Berlin"', schedule="30 2 * * *")
    result = cli("-c", config, "-o", "json", "backup", "schedule", "--list")
    assert result.exit_code == 0, result.stderr
    [entry] = result.json()
    assert (entry["job"], entry["cron"], entry["timezone"]) == ("nightly", "30 2 * * *", "Europe/Berlin")
    fires = [datetime.fromisoformat(text) for text in entry["next"]]
    assert len(fires) == 5 and all(f.utcoffset() is not None for f in fires)
    assert all(f.astimezone(BERLIN).strftime("%H:%M") in ("02:30", "03:00") for f in fires)
    table = cli("-c", config, "backup", "schedule", "--list")
    assert "Europe/Berlin" in table.stdout and "30 2 * * *" in table.stdout


def test_job_schedules_lists_jobs_without_schedule(e2e, write_config, tmp_path):
    config = load_config(e2e())
    [entry] = job_schedules(config, ["nightly"], utc(2025, 3, 29, 12))
    assert [fire.isoformat() for fire in entry.next][:2] == ["2025-03-30T00:00:00+00:00",
                                                           "2025-03-31T00:00:00+00:00"]


@pytest.mark.parametrize("bad, message", [
    ('schedule: "61 * * * *"', "not a valid cron expression"),
    ("timezone: Mars/Olympus", "unknown timezone"),
    ("retention: {partial_after: 1h}", "retention keeps nothing"),
    ("lock: {backend: nowhere}", "nowhere"),
])
def test_bad_schedule_config_is_rejected_before_anything_runs(cli, write_config, tmp_path, bad, message):
    config = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {tmp_path / "app.db"}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
        jobs:
          nightly:
            backends: [app]
            destination: local
            {bad}
    """)
    for command in (["config", "validate"], ["backup", "schedule", "--once"]):
        result = cli("-c", config, *command)
        assert result.exit_code == 2, (command, result.stderr)
        assert message in result.stderr
    assert not (tmp_path / "backups").exists()


def test_unreachable_lock_backend_exits_3_before_anything_runs(cli, e2e, tmp_path):
    backend = f"  locks: {{kind: redis, url: 'redis://127.0.0.1:{free_port()}/0', retry: {{attempts: 1}}}}"
    config = e2e("lock: {backend: locks}", backends=backend)
    for command in (["backup", "schedule", "--once"], ["backup", "schedule"]):
        result = cli("-c", config, *command)
        assert result.exit_code == 3, result.stderr
        assert "connection refused" in result.stderr
    assert not (tmp_path / "backups").exists()


def test_schedule_usage_errors(cli, e2e):
    config = e2e()
    assert cli("-c", config, "backup", "schedule", "--list", "--once").exit_code == 2
    unknown = cli("-c", config, "backup", "schedule", "--once", "--job", "nightlly")
    assert unknown.exit_code == 2 and "did you mean nightly" in unknown.stderr


def test_two_real_schedulers_take_one_backup_per_fire(e2e, redis_db, tmp_path):
    backend = redis_db.backend_yaml("locks").replace("\n", "\n            ").rstrip()
    config = load_config(e2e("lock: {backend: locks}", schedule="* * * * *", backends=backend))
    fire = datetime.now(UTC).replace(second=0, microsecond=0)  # backups start after it, in real time
    clock = FakeClock(fire - timedelta(seconds=30), horizon=fire)
    schedulers = [Scheduler(config, BackupJobRunner(config), clock=clock) for _ in range(2)]
    threads = [threading.Thread(target=s.run_forever, args=(["nightly"],)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    from storagectl.backup import list_backups

    assert len(list_backups(config, job="nightly")) == 1


def test_two_processes_with_once_take_one_backup(e2e, redis_db, tmp_path):
    backend = redis_db.backend_yaml("locks").replace("\n", "\n            ").rstrip()
    config = e2e("lock: {backend: locks}", backends=backend)
    command = [sys.executable, "-m", "storagectl", "-c", str(config), "-o", "json", "backup", "schedule", "--once"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")})
                 for _ in range(2)]
    outcomes = [process.communicate(timeout=60) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outcomes]
    import json

    statuses = [json.loads(out)[0]["status"] for out, _ in outcomes]
    assert statuses.count("success") == 1
    assert set(statuses) - {"success"} <= {"not due", "skipped"}
    from storagectl.backup import list_backups

    assert len(list_backups(load_config(config), job="nightly")) == 1


def start_scheduler(config: Path, tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    log_path = tmp_path / "scheduler.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "storagectl", "-c", str(config), "backup", "schedule", *args],
        stdout=subprocess.DEVNULL, stderr=log_path.open("w"),
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "NO_COLOR": "1"})
    return process, log_path


def wait_for(log_path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log_path.read_text():
        assert time.monotonic() < deadline, f"{text!r} not logged: {log_path.read_text()}"
        time.sleep(0.05)


def test_sigterm_aborts_a_running_backup_cleanly_and_exits_0(cli, e2e, tmp_path):
    make_database(tmp_path / "big.db", megabytes=8)  # ~10 s at brotli level 11: still running at SIGTERM
    config = e2e("catchup: true\n                compression: {level: 11}", schedule="0 0 1 1 *",
                 database=tmp_path / "big.db")
    process, log_path = start_scheduler(config, tmp_path, "--grace", "0")
    wait_for(log_path, "job nightly: starting")
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, log_path.read_text()
    assert "aborted" in log_path.read_text()
    assert complete_backups(cli, config) == []
    leftovers = [p for p in (tmp_path / "backups").rglob("*") if p.is_file()]
    assert leftovers == []


def test_sigterm_lets_the_running_job_finish_and_exits_0(cli, e2e, tmp_path):
    marker = tmp_path / "hook-done"
    config = e2e(f"catchup: true\n                on_success: 'sleep 1.5; touch {marker}'", schedule="0 0 1 1 *")
    process, log_path = start_scheduler(config, tmp_path)
    wait_for(log_path, "job nightly: starting")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, log_path.read_text()
    assert marker.exists()
    assert len(complete_backups(cli, config)) == 1


def test_stop_abort_through_the_real_backup_layer_leaves_nothing(e2e, tmp_path):
    make_database(tmp_path / "big.db", megabytes=4)
    config = load_config(e2e("compression: {level: 11}", database=tmp_path / "big.db"))
    sched = Scheduler(config, BackupJobRunner(config), clock=FakeClock(datetime.now(UTC)))
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(sched.run_due(["nightly"])))
    worker.start()
    time.sleep(1.0)
    sched.abort()
    worker.join(20)
    assert outcome[0][0].status == ABORTED
    assert [p for p in (tmp_path / "backups").rglob("*") if p.is_file()] == []


def test_a_down_backend_fails_the_run_and_retention_waits(cli, e2e, tmp_path):
    """A run that missed a backend applies no retention (it would count a backup set that lacks one).
    The healthy backend already has two backups since today's fire: it is not backed up again, and
    keep_last: 1 would remove one of them, had retention run."""
    hook_log = tmp_path / "hook.log"
    monitored = (f"retention: {{keep_last: 1}}\n                metrics_file: {tmp_path / 'metrics.prom'}\n"
                 f"                on_failure: 'echo \"$STORAGECTL_STATUS $STORAGECTL_BACKUP_IDS\" >> {hook_log}'")
    for _ in range(2):
        earlier = cli("-c", e2e(monitored), "backup", "run", "--job", "nightly")
        assert earlier.exit_code == 0, earlier.stderr
    down = (f"  down: {{kind: postgres, url: 'postgresql://app:pw@127.0.0.1:{free_port()}/app', "
            "retry: {attempts: 1}, timeouts: {connect: 1s}}")
    config = e2e(monitored, backends=down).read_text().replace("backends: [app]", "backends: [down, app]")
    config_path = tmp_path / "down-first.yaml"
    config_path.write_text(config)
    result = cli("-c", config_path, "-o", "json", "backup", "schedule", "--once")
    assert result.exit_code == 1, result.stderr
    [run] = result.json()
    assert run["status"] == "failure" and "backend 'down'" in run["error"] and run["removed"] == []
    assert run["backups"] == []
    assert hook_log.read_text() == "failure \n"
    assert 'storagectl_backup_last_status{job="nightly"} 0' in (tmp_path / "metrics.prom").read_text()
    assert len(complete_backups(cli, config_path)) == 2  # retention did not run


def test_an_aborted_run_still_lists_the_backups_it_finished(cli, e2e, tmp_path, monkeypatch):
    """The scheduler stopping during the second backend: the first one's backup is complete and kept,
    so the run's record (and hook, metrics) lists it instead of no backup at all."""
    from storagectl.backup import run as run_module
    from storagectl.errors import Interrupted

    down = (f"  down: {{kind: postgres, url: 'postgresql://app:pw@127.0.0.1:{free_port()}/app', "
            "retry: {attempts: 1}, timeouts: {connect: 1s}}")
    config_path = tmp_path / "two.yaml"
    config_path.write_text(e2e("", backends=down).read_text().replace("backends: [app]", "backends: [app, down]"))
    real_run_plan, calls = run_module.run_plan, []

    def aborted_second(*args, **kwargs):
        calls.append(args[1].backend)
        if len(calls) == 2:
            raise Interrupted("job 'nightly': backup aborted (the scheduler is stopping)")
        return real_run_plan(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_plan", aborted_second)
    result = cli("-c", config_path, "-o", "json", "backup", "schedule", "--once")
    [run] = result.json()
    assert run["status"] == "aborted" and calls == ["app", "down"], result.stderr
    [taken] = run["backups"]
    assert [found["id"] for found in complete_backups(cli, config_path)] == [taken]


def test_once_after_a_failed_run_backs_up_only_the_backends_the_fire_still_lacks(cli, e2e, tmp_path):
    """`schedule --once` from cron every few minutes while one database is down must not take a new
    backup of the healthy ones each time: the fire is served backend by backend."""
    other = tmp_path / "later" / "other.db"  # its directory does not exist yet: the backend is down
    config = tmp_path / "two.yaml"
    config.write_text(e2e(backends=f"  other: {{kind: sqlite, path: {other}}}").read_text()
                      .replace("backends: [app]", "backends: [other, app]"))
    first = cli("-c", config, "-o", "json", "backup", "schedule", "--once")
    assert first.exit_code == 1, first.stderr
    [failed] = first.json()
    assert failed["status"] == "failure" and "other" in failed["error"]
    [app_backup] = failed["backups"]

    other.parent.mkdir()
    make_database(other)
    second = cli("-c", config, "-o", "json", "backup", "schedule", "--once")
    assert second.exit_code == 0, second.stderr
    [run] = second.json()
    assert run["status"] == "success" and len(run["backups"]) == 1 and app_backup not in run["backups"]
    assert "backend app already has its backup for the fire" in second.stderr
    backups = {b["id"]: b["backend"] for b in complete_backups(cli, config)}
    assert backups == {app_backup: "app", run["backups"][0]: "other"}
    third = cli("-c", config, "-o", "json", "backup", "schedule", "--once")
    assert third.exit_code == 0 and third.json()[0]["status"] == "not due"
