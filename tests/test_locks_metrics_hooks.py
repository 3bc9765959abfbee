"""Job locks against real Redis and files; metrics file format; hooks."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from storagectl.errors import LockHeld
from storagectl.hooks import HookEvent, run_hook
from storagectl.locks import FileLock, RedisLock, held
from storagectl.metrics import JobRunMetrics, read_previous, render_metrics, write_job_metrics


def test_redis_lock_is_exclusive_and_released(redis_db):
    first = RedisLock(redis_db.client(), "job-a", ttl_seconds=30)
    second = RedisLock(redis_db.client(), "job-a", ttl_seconds=30)
    with held(first, "job 'job-a'"):
        assert not second.acquire()
        with pytest.raises(LockHeld, match="job 'job-a' is already running elsewhere"), held(second, "job 'job-a'"):
            pass
    assert second.acquire()
    second.release()
    assert redis_db.client().get(second.key) is None


def test_redis_lock_renewal_extends_the_lease_and_detects_loss(redis_db):
    client = redis_db.client()
    lock = RedisLock(client, "job-b", ttl_seconds=30)
    assert lock.acquire()
    try:
        client.pexpire(lock.key, 50)
        assert lock.renew() and client.pttl(lock.key) > 20_000
        client.set(lock.key, "someone-else")  # our lease expired and another replica took it
        assert not lock.renew() and lock.lost
    finally:
        lock.release()
    assert client.get(lock.key) == b"someone-else"  # release never deletes another holder's lock


def test_file_lock(tmp_path):
    first, second = FileLock(tmp_path / "j.lock", "j"), FileLock(tmp_path / "j.lock", "j")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_metrics_keep_last_success_across_a_failure(tmp_path):
    path = tmp_path / "m.prom"
    write_job_metrics(path, JobRunMetrics("nightly", 1000.0, 12.5, True, size=4096))
    write_job_metrics(path, JobRunMetrics("nightly", 2000.0, 3.0, False))
    text = path.read_text()
    assert 'storagectl_backup_last_success_timestamp_seconds{job="nightly"} 1000' in text
    assert 'storagectl_backup_last_run_timestamp_seconds{job="nightly"} 2000' in text
    assert 'storagectl_backup_last_status{job="nightly"} 0' in text
    assert 'storagectl_backup_last_size_bytes{job="nightly"} 4096' in text
    assert "# TYPE storagectl_backup_last_status gauge" in text
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_metrics_keep_every_digit_of_times_and_sizes(tmp_path):
    """Six significant digits put a Unix time up to ~5,000 s off: staleness alerts fire late."""
    path = tmp_path / "m.prom"
    write_job_metrics(path, JobRunMetrics("nightly", 1796570581.25, 12.5, True, size=123_456_789))
    text = path.read_text()
    assert 'storagectl_backup_last_success_timestamp_seconds{job="nightly"} 1796570581.25' in text
    assert 'storagectl_backup_last_size_bytes{job="nightly"} 123456789' in text
    write_job_metrics(path, JobRunMetrics("nightly", 1796570700.0, 1.0, False))  # kept across a failure
    assert read_previous(path)["storagectl_backup_last_success_timestamp_seconds"] == 1796570581.25
    assert read_previous(path)["storagectl_backup_last_size_bytes"] == 123_456_789


def test_metrics_label_escaping():
    text = render_metrics(JobRunMetrics('we"ird', 1.0, 1.0, True, 1), {})
    assert '{job="we\\"ird"}' in text


def test_read_previous_parses_rendered_metrics(tmp_path):
    path = tmp_path / "m.prom"
    path.write_text(render_metrics(JobRunMetrics("j", 42.0, 1.0, True, 7), {}))
    assert read_previous(path)["storagectl_backup_last_success_timestamp_seconds"] == 42.0
    assert read_previous(tmp_path / "missing") == {}


def test_shell_hook_gets_event_environment(tmp_path):
    out = tmp_path / "out"
    event = HookEvent("nightly", "success", ("id1",), duration=1.5)
    assert run_hook(f'echo "$STORAGECTL_JOB $STORAGECTL_STATUS $STORAGECTL_BACKUP_IDS" > {out}', event) is None
    assert out.read_text().strip() == "nightly success id1"


def test_a_hook_past_its_timeout_is_killed_with_every_process_it_started(tmp_path, monkeypatch):
    """`sh -c` forks the commands of a list; killing only the shell at the timeout left them running."""
    import os
    import signal

    from storagectl import hooks

    monkeypatch.setattr(hooks, "HOOK_TIMEOUT", 0.5)
    pid_file = tmp_path / "pid"
    outcome: list[str | None] = []
    thread = threading.Thread(target=lambda: outcome.append(
        run_hook(f"sleep 120 & echo $! > {pid_file}; wait", HookEvent("j", "success"))), daemon=True)
    thread.start()
    thread.join(20)
    pid = int(pid_file.read_text())
    try:
        assert not thread.is_alive(), "the hook was not stopped at its timeout"
        assert not running(pid), "the hook's background command outlived it"
        # not the command itself: it may hold a token
        assert outcome == ["hook 'sleep' failed: still running after 0.5 s: killed"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_hook_is_killed_when_storagectl_is_terminated_meanwhile(tmp_path):
    """The hook runs in a session of its own, so SIGTERM or Ctrl-C reaches storagectl alone: it must
    kill the hook, not wait (Popen's exit waits for it unboundedly on any interrupt but a plain
    KeyboardInterrupt, and SIGTERM is raised as Terminated)."""
    import signal

    from storagectl.errors import Terminated

    def terminate(_signum, _frame):
        raise Terminated

    done = tmp_path / "done"
    previous = signal.signal(signal.SIGALRM, terminate)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(Terminated):
            run_hook(f"sleep 5 && touch {done}", HookEvent("j", "success"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not done.exists(), "storagectl waited for the hook to finish instead of killing it"


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan waits for init to reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return not any(line.startswith("State:") and line.split()[1] in "ZX" for line in status.splitlines())


def test_failing_hook_is_reported_not_raised():
    reason = run_hook("echo oops >&2; exit 3", HookEvent("j", "failure", error="x"))
    assert reason is not None and "exit 3: oops" in reason


def test_webhook_posts_json():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    assert run_hook(url, HookEvent("nightly", "failure", error="disk full")) is None
    thread.join(5)
    server.server_close()
    assert received == [{"job": "nightly", "status": "failure", "backup_ids": [], "error": "disk full",
                         "duration": 0.0}]
