"""The worker pool behind PostgreSQL backup and restore: prerequisites, failures, connections."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from storagectl.backends.postgres.jobs import Job, JobBoard, run_jobs
from storagectl.errors import OperationFailed


@contextmanager
def fake_connection(opened: list[str]):
    opened.append("conn")
    yield "conn"


def test_a_job_runs_only_after_what_it_waits_for():
    finished: list[str] = []
    lock = threading.Lock()

    def run(_conn, work):
        if work.startswith("load"):
            time.sleep(0.05 if work == "load big" else 0.0)
        with lock:
            finished.append(work)

    jobs = [Job("load big", provides="big"), Job("load small", provides="small"),
            Job("index big", after={"big"}), Job("index small", after={"small"}),
            Job("after all", after={"big", "small"})]
    opened: list[str] = []
    run_jobs(jobs, 3, lambda: fake_connection(opened), "first", run)
    assert finished.index("index big") > finished.index("load big")
    assert finished.index("index small") > finished.index("load small")
    assert finished.index("index small") < finished.index("load big")  # did not wait for the big load
    assert finished[-1] == "after all"
    assert len(opened) <= 2


def test_first_failure_stops_the_rest_and_is_raised():
    ran: list[str] = []

    def run(_conn, work):
        if work == "bad":
            raise OperationFailed("bad job")
        ran.append(work)

    jobs = [Job("bad", provides="t"), Job("waits", after={"t"}), Job("later")]
    with pytest.raises(OperationFailed, match="bad job"):
        run_jobs(jobs, 1, lambda: fake_connection([]), "first", run)
    assert ran == []


def test_a_job_waiting_for_a_key_nobody_provides_is_refused():
    with pytest.raises(ValueError, match="no job provides"):
        JobBoard([Job("x", after={"missing"})])


def test_plain_work_items_run_in_order_on_one_worker():
    ran: list[int] = []
    run_jobs([1, 2, 3], 1, lambda: fake_connection([]), "first", lambda _c, work: ran.append(work))
    assert ran == [1, 2, 3]


def test_jobs_left_behind_by_a_cycle_are_never_reported_as_success():
    jobs = [Job("a", provides="a", after={"b"}), Job("b", provides="b", after={"a"})]
    with pytest.raises(RuntimeError, match="2 job.*never run"):
        run_jobs(jobs, 2, lambda: fake_connection([]), "first", lambda _c, _w: None)


def test_a_worker_that_cannot_connect_hands_its_job_back_and_the_rest_finish():
    """E.g. max_connections reached while workers open their connections: fewer workers, same work."""
    from storagectl.errors import BackendUnavailable

    ran: list[str] = []
    lock = threading.Lock()

    @contextmanager
    def refused():
        raise BackendUnavailable("too many clients already")
        yield  # pragma: no cover

    def run(conn, work):
        time.sleep(0.01)
        with lock:
            ran.append(f"{conn}:{work}")

    jobs = [Job(f"load {i}", provides="t") for i in range(6)] + [Job("index", after={"t"})]
    run_jobs(jobs, 3, refused, "first", run)
    assert sorted(ran[:-1]) == [f"first:load {i}" for i in range(6)] and ran[-1] == "first:index"
