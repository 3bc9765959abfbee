"""Progress: the pure model (totals, percentage, ETA, collapse, throttling), its two renderers'
bounded output, and backup/restore/verify through the CLI on a forced terminal."""

from __future__ import annotations

import io
import itertools

import pytest
from rich.console import Console

from storagectl.archive.progress import MAX_LIVE, Estimate, ProgressEvent, ProgressModel, Throttle
from storagectl.cli.progress import ProgressDisplay, live_progress, plain_progress, progress_line


class Clock:
    def __init__(self, step: float = 0.0) -> None:
        self.now = 0.0
        self.step = step  # seconds that pass at every reading

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def feed_objects(callback, count: int, action: str = "backup", size: int = 1000, open_at_end: int = 0) -> None:
    """``count`` objects started, advanced and finished; the last ``open_at_end`` stay in flight."""
    for index in range(count):
        name = f"data/{index:05d}-public.t{index}.0001.copy"
        callback(ProgressEvent(action, "start", name, 0, size))
        callback(ProgressEvent(action, "advance", name, size // 2, size))
        if index < count - open_at_end:
            callback(ProgressEvent(action, "finish", name, size, size))


# -- the model ----------------------------------------------------------------------------------
def test_totals_percentage_rate_and_eta_follow_the_injected_clock():
    clock = Clock()
    model = ProgressModel(clock)
    model.update(Estimate(4000, 4).plan("restore"))
    model.update(ProgressEvent("restore", "start", "a", 0, 1000))
    model.update(ProgressEvent("restore", "finish", "a", 1000, 1000))
    model.update(ProgressEvent("restore", "advance", "b", 500, 1000))
    clock.now = 10.0
    [view] = model.views()
    assert (view.done, view.total, view.finished, view.expected) == (1500, 4000, 1, 4)
    assert view.fraction == pytest.approx(0.375) and view.rate == pytest.approx(150.0)
    assert view.eta == pytest.approx(2500 / 150)
    assert progress_line(view) == "restore: 38% 1.5 KiB of 3.9 KiB, 1/4 objects, 150 B/s, ETA 17s"


def test_a_short_estimate_never_shows_done_before_the_end_and_end_completes():
    clock = Clock()
    model = ProgressModel(clock)
    model.update(Estimate(1000, 1).plan("backup"))
    model.update(ProgressEvent("backup", "advance", "a", 5000))
    clock.now = 1.0
    [view] = model.views()
    assert view.total == 5000 and view.fraction == 0.99 and not view.complete
    model.update(ProgressEvent("backup", "finish", "a", 6000, 6000))
    model.update(ProgressEvent("backup", "start", "b"))  # more objects than the estimate said
    model.end()
    [view] = model.views()
    assert view.complete and view.fraction == 1.0 and view.eta is None and view.expected == 2


def test_without_byte_totals_objects_give_the_fraction_and_without_either_there_is_none():
    model = ProgressModel(Clock(0.5))
    model.update(Estimate(None, 4).plan("backup"))
    model.update(ProgressEvent("backup", "finish", "a", 10, 10))
    assert model.views()[0].fraction == 0.25 and model.views()[0].eta is None
    never_analyzed = ProgressModel(Clock(0.5))
    never_analyzed.update(Estimate(0, 2).plan("backup"))
    never_analyzed.update(ProgressEvent("backup", "finish", "a", 10, 10))
    assert never_analyzed.views()[0].fraction == 0.5 and never_analyzed.views()[0].total is None
    unknown = ProgressModel(Clock(0.5))
    unknown.update(Estimate().plan("backup"))
    unknown.update(ProgressEvent("backup", "advance", "a", 10))
    assert unknown.views()[0].fraction is None and unknown.views()[0].total is None


def test_finished_objects_collapse_to_a_count_and_live_ones_are_capped():
    model = ProgressModel(Clock(0.001))
    feed_objects(model.update, 2000, open_at_end=MAX_LIVE + 2)
    [view] = model.views()
    assert view.finished == 2000 - MAX_LIVE - 2
    assert len(view.live) == MAX_LIVE and view.more_live == 2


def test_a_new_action_or_plan_starts_a_phase_and_completes_the_one_before():
    model = ProgressModel(Clock(0.1))
    model.update(Estimate(10, 1).plan("verify"))
    model.update(ProgressEvent("verify", "finish", "a", 10, 10))
    model.update(ProgressEvent("restore", "start", "a", 0, 10))
    verify, restore = model.views()
    assert verify.complete and verify.fraction == 1.0 and not restore.complete
    model.update(Estimate(10, 1).plan("restore"))  # a plan after work began: the next backend's phase
    assert len(model.views()) == 3 and model.views()[1].complete


def test_throttle_allows_one_ready_per_interval_of_the_injected_clock():
    clock = Clock()
    throttle = Throttle(10.0, clock)
    answers = []
    for now in (1, 9.9, 10, 10.5, 19.9, 20.1, 20.2):
        clock.now = now
        answers.append(throttle.ready())
    assert answers == [False, False, True, False, False, True, False]


def test_an_interrupted_phase_is_not_shown_complete():
    clock = Clock()
    model = ProgressModel(clock)
    model.update(ProgressEvent("invalidate", "plan", "", total=1000, unit="keys"))
    model.update(ProgressEvent("invalidate", "advance", "keys", done=250, total=1000))
    model.update(ProgressEvent("invalidate", "stop", ""))
    model.end()
    [view] = model.views()
    assert not view.complete and view.fraction == 0.25 and view.eta is None
    other = ProgressModel(clock)
    other.update(Estimate(1000, 1).plan("backup"))
    other.update(ProgressEvent("backup", "advance", "a", 400, 1000))
    other.end(complete=False)
    [view] = other.views()
    assert not view.complete and view.fraction == 0.4


def test_live_progress_interrupted_keeps_the_fraction_reached():
    console, _ = terminal()
    with pytest.raises(KeyboardInterrupt), live_progress(console, auto_refresh=False) as callback:
        callback(ProgressEvent("invalidate", "plan", "", total=1000, unit="keys"))
        callback(ProgressEvent("invalidate", "advance", "keys", done=300, total=1000))
        raise KeyboardInterrupt
    model = callback.__self__
    [view] = model.views()
    assert not view.complete and view.fraction == 0.3


def test_counted_units_are_not_shown_as_bytes():
    console, buffer = terminal()
    model = ProgressModel(Clock(0.5))
    model.update(ProgressEvent("invalidate", "plan", "", total=1_000_000, unit="keys"))
    model.update(ProgressEvent("invalidate", "advance", "keys", done=48_000, total=1_000_000))
    console.print(ProgressDisplay(model))
    text = buffer.getvalue()
    assert "KiB" not in text and "48,000 of 1,000,000 keys" in text


# -- the renderers --------------------------------------------------------------------------------
def terminal(width: int = 100) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=width, color_system="truecolor"), buffer


@pytest.mark.parametrize("width", [80, 60, 100, 200])
def test_rate_and_eta_stay_on_the_bar_line_of_a_narrow_terminal(width):
    """On 80 columns the bar line was cut before its rate and ETA (``... 807.1 …``)."""
    console, buffer = terminal(width)
    clock = Clock()
    model = ProgressModel(clock)
    model.update(Estimate(601_500, 154).plan("restore"))
    for index in range(75):
        model.update(ProgressEvent("restore", "start", f"o{index}", 0, 4_236))
        model.update(ProgressEvent("restore", "finish", f"o{index}", 4_236, 4_236))
    clock.now = 0.39
    console.print(ProgressDisplay(model))
    first = buffer.getvalue().splitlines()[0]
    assert first.rstrip().endswith("ETA 0s") and "KiB/s" in first and "…" not in first, first
    assert ("objects" in first) == (width >= 80)  # narrower: the words go first, then the bar
    assert first.count("━") == {60: 0, 80: 8, 100: 20, 200: 20}[width]


@pytest.mark.parametrize("count", [10, 2000])
def test_the_display_of_2000_objects_is_as_small_as_that_of_10(count):
    console, buffer = terminal()
    model = ProgressModel(Clock(0.01))
    model.update(Estimate(count * 1000, count).plan("backup"))
    feed_objects(model.update, count, open_at_end=5)
    console.print(ProgressDisplay(model))
    text = buffer.getvalue()
    assert text.count("\n") == 1 + MAX_LIVE + 1  # bar, live objects, "and 2 more"
    assert len(text.encode()) < 2000 and "and 2 more" in text and f"/{count} objects" in text


def test_live_progress_output_does_not_grow_with_the_number_of_objects():
    sizes = {}
    for count in (10, 2000):
        console, buffer = terminal()
        with live_progress(console, auto_refresh=False) as callback:
            callback(Estimate(count * 1000, count).plan("restore"))
            feed_objects(callback, count)
        sizes[count] = len(buffer.getvalue().encode())
    assert sizes[2000] <= sizes[10] + 100  # the same few lines; only the digits differ


def test_plain_lines_are_periodic_not_per_object():
    console = Console(file=io.StringIO(), width=200)
    clock = Clock(0.001)  # 2,000 objects x 3 events x 1 ms: 6 s of work
    with plain_progress(console, clock, interval=1.0) as callback:
        callback(Estimate(2_000_000, 2000).plan("backup"))
        feed_objects(callback, 2000)
    lines = console.file.getvalue().splitlines()
    assert 4 <= len(lines) <= 7  # one a second; 2,000 without the throttle
    assert all(line.startswith("backup: ") and "/2000 objects" in line for line in lines)
    assert "ETA" in lines[0]


def test_plain_mode_prints_nothing_for_work_shorter_than_the_interval():
    console = Console(file=io.StringIO(), width=200)
    with plain_progress(console, Clock(), interval=10.0) as callback:
        feed_objects(callback, 2000)
    assert console.file.getvalue() == ""


class FakeTimer:
    """threading.Timer whose firing the test decides."""
    made: list[FakeTimer] = []

    def __init__(self, delay, function):
        self.delay, self.function, self.cancelled, self.daemon = delay, function, False, False
        FakeTimer.made.append(self)

    def start(self):
        pass

    def cancel(self):
        self.cancelled = True

    def fire(self):
        self.function()


@pytest.fixture
def fake_timer(monkeypatch):
    from storagectl.cli import progress

    FakeTimer.made = []
    monkeypatch.setattr(progress.threading, "Timer", FakeTimer)
    return FakeTimer.made


def test_a_terminal_shows_no_bars_for_work_shorter_than_the_delay(fake_timer):
    """A half-second command spent ~30 ms of CPU on rich's live display it never needed."""
    console, buffer = terminal()
    with live_progress(console, auto_refresh=False, delay=0.5) as callback:
        feed_objects(callback, 10)
    assert buffer.getvalue() == ""
    [timer] = fake_timer
    assert timer.delay == 0.5 and timer.cancelled
    timer.fire()  # a timer that fires after the end (cancel came too late) starts nothing
    assert buffer.getvalue() == ""


def test_a_terminal_shows_the_bars_once_the_delay_has_passed(fake_timer):
    console, buffer = terminal()
    with live_progress(console, auto_refresh=False, delay=0.5) as callback:
        callback(Estimate(4000, 4).plan("restore"))
        feed_objects(callback, 2, action="restore")
        fake_timer[0].fire()
        feed_objects(callback, 2, action="restore")
    text = buffer.getvalue()
    assert "restore" in text and "4/4 objects" in text  # counted from the start, not from the delay


def test_a_display_that_cannot_start_costs_the_work_nothing(fake_timer, capsys):
    def no_console():
        raise OSError("stderr went away")

    with live_progress(no_console, auto_refresh=False, delay=0.5) as callback:
        feed_objects(callback, 3)
        fake_timer[0].fire()  # in the timer thread this would have printed a traceback
        feed_objects(callback, 3)
    assert capsys.readouterr().err == ""


# -- through the CLI, on a forced terminal ------------------------------------------------------------
def test_backup_restore_verify_work_with_progress_on_a_terminal(cli, write_config, pg_database, pg_target,
                                                                 tmp_path, monkeypatch):
    with pg_database.connect() as conn:
        for index in range(30):
            conn.execute(f"CREATE TABLE t{index} AS SELECT g AS id, md5(g::text) AS note "
                         "FROM generate_series(1, 200) g")
        conn.execute("ANALYZE")
    config = write_config("version: 1\nbackends:\n" + pg_database.backend_yaml("src") + pg_target.backend_yaml("dst")
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich treats stderr as a terminal
    monkeypatch.setattr("storagectl.cli.progress.LIVE_AFTER", 0.0)  # these runs are shorter than the delay
    ran = cli("-c", config, "backup", "run", "--backend", "src", "--to", "local")
    assert ran.exit_code == 0, ran.stderr
    backup_id = ran.stdout.strip()
    assert "\x1b[" in ran.stderr  # the live display ran (and was cleared)
    verified = cli("-c", config, "backup", "verify", backup_id)
    assert verified.exit_code == 0, verified.stderr
    restored = cli("-c", config, "restore", backup_id, "--to", "dst", "--validate")
    assert restored.exit_code == 0, restored.stderr
    with pg_target.connect() as conn:
        counts = [conn.execute(f"SELECT count(*) FROM t{index}").fetchone()[0] for index in range(30)]
    assert counts == list(itertools.repeat(200, 30))


# -- totals: catalog estimates for backups, the manifest for verify and restore ---------------------
def test_backup_plans_with_the_catalog_estimate_verify_and_restore_with_the_manifest(write_config, pg_database,
                                                                                     pg_target, tmp_path):
    from storagectl.backup import restore, run_backup, verify_backup
    from storagectl.config import load_config

    with pg_database.connect() as conn:
        for index in range(5):
            conn.execute(f"CREATE TABLE t{index} AS SELECT g AS id, md5(g::text) AS note, g * 1.5 AS n "
                         "FROM generate_series(1, 2000) g")
        conn.execute("ANALYZE")
    config = load_config(write_config("version: 1\nbackends:\n" + pg_database.backend_yaml("src")
                                      + pg_target.backend_yaml("dst")
                                      + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'b'}}}\n"))
    events: list[ProgressEvent] = []
    [result] = run_backup(config, backend="src", destination="local", progress=events.append)
    manifest = result.manifest
    assert events[0].stage == "plan" and events[0].objects == 5 + 2 == len(manifest.objects)
    assert manifest.raw_size / 2 <= events[0].total <= manifest.raw_size * 2  # statistics, not a count
    events.clear()
    verify_backup(config, manifest.id, progress=events.append)
    plans = [(e.action, e.total, e.objects) for e in events if e.stage == "plan"]
    assert plans == [("verify", manifest.raw_size, 7)]
    events.clear()
    restore(config, manifest.id, target="dst", progress=events.append)
    plans = [(e.action, e.total, e.objects) for e in events if e.stage == "plan"]
    assert plans == [("verify", manifest.size, 7), ("restore", manifest.raw_size, 7)]  # stored bytes checked first


def test_redis_and_sqlite_estimates(own_redis, tmp_path):
    """On a server of the test's own: the estimate is a share of the whole server's dataset memory,
    which other tests' keys on a shared server would inflate."""
    import sqlite3

    from storagectl.backends import open_backend
    from storagectl.backends.redis import RedisSettings
    from storagectl.backends.sqlite_settings import SQLiteSettings

    client = own_redis.client()
    client.mset({f"key:{index}": "x" * 100 for index in range(2000)})
    cache = open_backend("cache", RedisSettings(kind="redis", url=f"redis://127.0.0.1:{own_redis.port}/0"))
    with cache.connect() as connection:
        estimate = cache.backup_estimate(connection)
    assert estimate.objects == 1 and 2000 * 100 / 4 <= estimate.bytes <= 2000 * 1000
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO t (v) VALUES (?)", [("v" * 50,)] * 1000)
    app = open_backend("app", SQLiteSettings(kind="sqlite", path=path))
    with app.connect() as connection:
        assert app.backup_estimate(connection) == Estimate(path.stat().st_size, 1)
