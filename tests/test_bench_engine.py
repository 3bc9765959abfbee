"""The bench engine on simulated time: counting, percentile arithmetic against a known latency
distribution, warm-up, pipelines, and the open-loop (coordinated-omission) correction."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest

from storagectl.loadgen.engine import NS, ONE_DONE, Engine, LoadPlan
from storagectl.loadgen.recorder import Recorder, latency_summary, new_histogram

US = 1_000


class World:
    """A clock and a waiter: time jumps to the next completion (or by the timeout)."""

    def __init__(self) -> None:
        self.now = 0
        self._events: list[tuple[int, int, FakeClient]] = []
        self._order = itertools.count()
        self.log: list[tuple[str, int]] = []

    def clock(self) -> int:
        return self.now

    def schedule(self, at: int, client: FakeClient) -> None:
        heapq.heappush(self._events, (at, next(self._order), client))

    def wait(self, timeout_s: float) -> list[FakeClient]:
        limit = self.now + int(timeout_s * NS)
        if not self._events or self._events[0][0] > limit:
            self.now = limit
            return []
        self.now = self._events[0][0]
        ready = []
        while self._events and self._events[0][0] == self.now:
            ready.append(heapq.heappop(self._events)[2])
        return ready


class FakeClient:
    """Completes each batch after ``latency(send_time_ns) -> ns``; every ``fail_every``-th batch fails."""

    eager = False

    def __init__(self, world: World, latency: Callable[[int], int], fail_every: int = 0, kind: str = "Boom") -> None:
        self.world = world
        self.latency = latency
        self.fail_every = fail_every
        self.kind = kind
        self.executed = 0
        self.batches = 0
        self._batch = 0

    def fileno(self) -> int:
        return -1

    def send(self, ops: int) -> None:
        self.world.log.append(("send", id(self)))
        self.executed += ops
        self.batches += 1
        self._batch = ops
        self.world.schedule(self.world.now + self.latency(self.world.now), self)

    def collect(self) -> list[tuple[int, str | None]]:
        self.world.log.append(("collect", id(self)))
        failed = self.fail_every and self.batches % self.fail_every == 0
        return [(self._batch, self.kind if failed else None)]

    def close(self) -> None:
        pass


def run(plan: LoadPlan, latency: Callable[[int], int], **client_options) -> tuple:
    world = World()
    clients = [FakeClient(world, latency, **client_options) for _ in range(plan.clients)]
    outcome = Engine(plan, clients, world, clock=world.clock).run()
    return outcome, clients


def test_counted_run_reports_exactly_the_ops_executed_after_warmup():
    outcome, clients = run(LoadPlan(clients=4, count=1000, warmup_s=1.0), lambda t: 500 * US)
    executed = sum(c.executed for c in clients)
    assert outcome.recorder.ops == 1000 == outcome.ops_issued
    assert outcome.warmup_ops > 0
    assert executed == outcome.warmup_ops + outcome.recorder.ops


def test_timed_run_counts_every_op_it_sent_including_those_in_flight_at_the_end():
    outcome, clients = run(LoadPlan(clients=3, duration_s=2.0, warmup_s=0.5), lambda t: 700 * US)
    assert sum(c.executed for c in clients) == outcome.warmup_ops + outcome.recorder.ops
    assert outcome.recorder.ops == pytest.approx(3 * 2.0 / 0.0007, rel=0.01)
    assert [row["second"] for row in outcome.recorder.seconds] == [0, 1]  # the drain belongs to second 2
    assert sum(row["ops"] for row in outcome.recorder.seconds) == outcome.recorder.ops


def test_errors_are_counted_by_kind_and_not_in_the_latency():
    outcome, _ = run(LoadPlan(clients=1, count=100), lambda t: 100 * US, fail_every=4, kind="DivisionByZero")
    assert outcome.recorder.errors == {"DivisionByZero": 25}
    assert outcome.recorder.ops == 100
    assert outcome.recorder.service.get_total_count() == 75


def test_pipeline_batches_and_the_last_batch_is_cut_to_the_count():
    outcome, clients = run(LoadPlan(clients=2, count=100, pipeline=16), lambda t: 1000 * US)
    assert outcome.recorder.ops == 100
    assert sum(c.executed for c in clients) == 100
    assert sum(c.batches for c in clients) == 7  # 6 x 16 + 4


def test_percentiles_of_a_known_latency_distribution():
    latencies = itertools.cycle(range(1, 10_001))  # 1 us ... 10 ms, each once
    outcome, _ = run(LoadPlan(clients=1, count=10_000), lambda t: next(latencies) * US)
    summary = latency_summary(outcome.recorder.service)
    assert summary["min"] == 0.001 and summary["max"] == pytest.approx(10.0, rel=1e-3)
    for name, expected_ms in (("p50", 5.0), ("p90", 9.0), ("p95", 9.5), ("p99", 9.9), ("p99_9", 9.99)):
        assert summary[name] == pytest.approx(expected_ms, rel=1e-3), name  # HDR: 3 significant figures
    assert summary["mean"] == pytest.approx(5.0005, rel=1e-3)


class SharedDoneClient(FakeClient):
    """Answers a fine one-op batch with the shared ``ONE_DONE``, as the PostgreSQL client does."""

    def collect(self) -> list[tuple[int, str | None]]:
        batch = super().collect()
        return ONE_DONE if batch == [(1, None)] else batch


@pytest.mark.parametrize("eager", [True, False])
def test_one_done_answers_are_recorded_as_record_would(eager):
    """The closed loop counts ONE_DONE latencies by appending them and counting each second's list at
    once; seconds, errors, histograms and the last completion come out as from a record() per op."""
    def outcome_with(client_class):
        world = World()
        latencies = itertools.cycle([90 * US, 130 * US, 2_500 * US, 700 * US, 41 * US])
        clients = [client_class(world, lambda t: next(latencies), fail_every=9) for _ in range(3)]
        for client in clients:
            client.eager = eager
        plan = LoadPlan(clients=3, duration_s=3.0, warmup_s=0.5)
        return Engine(plan, clients, world, clock=world.clock).run(keep_seconds=True)

    per_op, batched = outcome_with(FakeClient), outcome_with(SharedDoneClient)
    assert batched.recorder.seconds == per_op.recorder.seconds and len(per_op.recorder.seconds) == 3
    assert batched.recorder.kept == per_op.recorder.kept
    assert batched.recorder.errors == per_op.recorder.errors and per_op.recorder.errors["Boom"] > 0
    assert batched.recorder.service.encode() == per_op.recorder.service.encode()
    assert batched.recorder.ops == per_op.recorder.ops == batched.ops_issued
    assert batched.recorder.last_completion_ns == per_op.recorder.last_completion_ns
    assert batched.elapsed_s == per_op.elapsed_s


def test_recorder_rolls_seconds_and_fills_a_silent_second_with_zeros():
    recorder = Recorder(measure_start_ns=0, open_loop=False)
    recorder.record(1, None, 0, 0, 200 * US)
    recorder.record(1, None, 0, int(2.5 * NS) - 300 * US, int(2.5 * NS))
    recorder.finish()
    assert [(row["second"], row["ops"]) for row in recorder.seconds] == [(0, 1), (1, 0), (2, 1)]
    assert recorder.seconds[2]["p99_ms"] == pytest.approx(0.3, rel=1e-2)


def test_the_runs_counts_are_kept_at_the_histograms_resolution_and_give_the_same_histogram():
    """A second's counts go into the run's at HDR's resolution (bounded, whatever the latencies), and
    the histogram built from them is the one built from every value; a second's percentiles follow HDR's."""
    from storagectl.loadgen.recorder import add_counts, histogram_from_counts, percentiles_of

    every = {value: value % 7 + 1 for value in range(1, 400_000, 13)}  # 1 us .. 0.4 s
    total: dict[int, int] = {}
    add_counts(total, every)
    assert len(total) < len(every) / 2
    assert histogram_from_counts(total).encode() == histogram_from_counts(every).encode()
    small = {value: count for value, count in every.items() if value < 2048}
    histogram = histogram_from_counts(small)
    assert percentiles_of(small, (50.0, 99.0)) == [histogram.get_value_at_percentile(50.0),
                                                   histogram.get_value_at_percentile(99.0)]


def stalled(base_ns: int, stall_start_s: float, stall_s: float) -> Callable[[int], int]:
    """A server that answers in ``base_ns`` but holds every request during a pause."""
    start, end = int(stall_start_s * NS), int((stall_start_s + stall_s) * NS)

    def latency(sent: int) -> int:
        return (end - sent) + base_ns if start <= sent < end else base_ns

    return latency


def test_open_loop_stall_raises_the_corrected_p999_but_not_the_service_time():
    plan = LoadPlan(clients=4, duration_s=10.0, rate=1000.0)
    outcome, _ = run(plan, stalled(500 * US, stall_start_s=4.0, stall_s=2.0))
    corrected = latency_summary(outcome.recorder.intended)
    service = latency_summary(outcome.recorder.service)
    assert corrected["p99_9"] > 1000.0  # ms: the requests scheduled during the pause waited for it
    assert service["p99_9"] < 1.0  # only the 4 requests in flight when it began saw it
    assert service["max"] > 1900.0
    assert outcome.recorder.ops == pytest.approx(10_000, abs=4)  # the schedule kept going: no omission


def test_open_loop_without_a_stall_has_corrected_close_to_service_time():
    outcome, _ = run(LoadPlan(clients=2, duration_s=3.0, rate=500.0), lambda t: 300 * US)
    corrected = latency_summary(outcome.recorder.intended)
    assert corrected["p99"] == pytest.approx(0.3, rel=0.01)
    assert outcome.recorder.ops == 1500


@pytest.mark.parametrize("rate", [1.0, 2.0, 500.0])
def test_a_timed_open_loop_reports_its_rate_not_one_interval_more(rate):
    """The last slot is up to one interval before -T's end: the clock runs to the end, not to that op."""
    outcome, _ = run(LoadPlan(clients=1, duration_s=3.0, rate=rate), lambda t: 300 * US)
    assert outcome.recorder.ops == 3 * rate
    assert outcome.elapsed_s == pytest.approx(3.0, abs=0.001)


def test_closed_loop_hides_the_same_stall():
    """The reason for --rate: closed loop sends nothing while stalled, so the pause is 4 samples."""
    outcome, _ = run(LoadPlan(clients=4, duration_s=10.0), stalled(500 * US, 4.0, 2.0))
    assert latency_summary(outcome.recorder.service)["p99_9"] < 1.0


@pytest.mark.parametrize("eager, expected", [
    (True, ["collect a", "send a", "collect b", "send b"]),  # a client in a thread of its own
    (False, ["collect a", "collect b", "send b", "send a"]),  # Redis and PostgreSQL, as redis-benchmark and pgbench
])
def test_eager_clients_send_their_next_request_before_the_others_are_read(eager, expected):
    world = World()
    clients = [FakeClient(world, lambda t: 100 * US) for _ in range(2)]
    for client in clients:
        client.eager = eager
    Engine(LoadPlan(clients=2, count=4), clients, world, clock=world.clock).run()
    names = {id(clients[1]): "a", id(clients[0]): "b"}  # the idle list hands out the last client first
    second_round = [f"{what} {names[who]}" for what, who in world.log[2:6]]
    assert second_round == expected


def test_a_server_that_never_answers_ends_the_run_with_a_timeout():
    from storagectl.errors import OperationTimeout

    with pytest.raises(OperationTimeout, match="2 requests still unanswered 5 s after the last answer"):
        run(LoadPlan(clients=2, count=10, drain_timeout_s=5.0), lambda t: 3600 * NS)


class SlowReadClient(FakeClient):
    """Reading its answer takes 50 us of the clock."""

    eager = True

    def collect(self) -> list[tuple[int, str | None]]:
        self.world.now += 50 * US
        return super().collect()


def test_latency_runs_until_each_answer_was_read_as_pgbench_times_it():
    """Two answers arrive together after 100 us; the one read second also waited for the first read."""
    world = World()
    clients = [SlowReadClient(world, lambda t: 100 * US) for _ in range(2)]
    outcome = Engine(LoadPlan(clients=2, count=2), clients, world, clock=world.clock).run()
    summary = latency_summary(outcome.recorder.service)
    assert (summary["min"], summary["max"]) == (0.15, 0.2)


class SlowClient(FakeClient):
    """Reading an answer takes 50 us of the clock, sending a request 30 us (before it leaves)."""

    def collect(self) -> list[tuple[int, str | None]]:
        self.world.now += 50 * US
        return super().collect()

    def send(self, ops: int) -> None:
        self.world.now += 30 * US
        super().send(ops)


def together_at(*moments_us: int) -> Callable[[int], int]:
    """A server whose answers to the requests sent before each moment all arrive at that moment."""
    def latency(sent: int) -> int:
        return next(moment for moment in moments_us if moment * US > sent) * US - sent

    return latency


def test_a_postgresql_answer_is_timed_as_pgbench_times_it():
    """Two answers arrive together; the one read second waited for the first one's read, not for its
    next transaction's send: as pgbench, the loop reads every ready client, then sends (pgbench -j 2's
    logged latencies cover ~80 % of its clients' time; the rest, a client's wait between its answer
    and its next send, is in no latency)."""
    from storagectl.loadgen.workloads.postgres import PgClient

    world = World()
    clients = [SlowClient(world, together_at(200, 600)) for _ in range(2)]
    for client in clients:
        client.eager = PgClient.eager
    outcome = Engine(LoadPlan(clients=2, count=4), clients, world, clock=world.clock).run(keep_seconds=True)
    # sends at 0 and 30 us; both answers at 200, read at 250 and 300; resent from 300 (the last
    # read first) and 330, answered at 600 and read at 650 and 700
    assert outcome.recorder.kept[0].service == {250: 1, 270: 1, 350: 1, 370: 1}  # us


class SocketClient:
    def __init__(self, sock) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


def test_the_real_waiter_keeps_a_sub_millisecond_timeout(monkeypatch):
    """epoll_wait counts whole milliseconds and Python rounds up: an open loop waiting 300 us for its
    next slot slept 1 ms and sent late; the waiter must hand the kernel the timeout as it is."""
    import select


    asked: list[float] = []
    real_select, real_epoll = select.select, select.epoll

    class RecordingEpoll:
        def __init__(self) -> None:
            self.inner = real_epoll()

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def poll(self, timeout: float = -1):
            asked.append(timeout)
            return self.inner.poll(timeout)

    def recording_select(readers, writers, errors, timeout):
        asked.append(timeout)
        return real_select(readers, writers, errors, timeout)

    monkeypatch.setattr(select, "select", recording_select)
    monkeypatch.setattr(select, "epoll", RecordingEpoll)
    wait_below_a_millisecond_then(0.1)
    assert asked == [0.0003, 0.0, 0.0003, 0.0, 0.1]  # the kernel rounds 0.0003 to whole ms only in epoll


def wait_below_a_millisecond_then(*timeouts: float) -> None:
    """An EpollWaiter over one socket: nothing ready within 0.3 ms, then its data within 0.3 ms (and
    within each of ``timeouts``)."""
    import socket

    from storagectl.loadgen.clients import EpollWaiter

    ours, theirs = socket.socketpair()
    with ours, theirs:
        client = SocketClient(ours)
        waiter = EpollWaiter([client])
        assert waiter.wait(0.0003) == []
        theirs.send(b"x")
        assert waiter.wait(0.0003) == [client]
        for timeout in timeouts:
            assert waiter.wait(timeout) == [client]
        waiter.close()


def test_epoll_waiter_waits_with_a_descriptor_past_what_select_takes():
    """A thousand clients (or blocking ones, a pipe each) put the epoll descriptor past select()'s
    FD_SETSIZE: a wait below the millisecond must not raise ValueError there."""
    import os
    import resource


    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1100:
        if hard != resource.RLIM_INFINITY and hard < 1100:
            pytest.skip("fewer than 1100 descriptors allowed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1100 if hard == resource.RLIM_INFINITY else hard, hard))
    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        wait_below_a_millisecond_then()
    finally:
        for fd in padding:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_open_loop_sends_on_its_slot_even_when_reading_answers_took_time():
    """Reading an answer takes 50 us of the clock; the wait for the next slot must count from after
    that read, or every request goes out 50 us late and its corrected latency shows the lateness."""
    world = World()
    client = SlowReadClient(world, lambda t: 100 * US)
    outcome = Engine(LoadPlan(clients=1, count=20, rate=1000.0), [client], world, clock=world.clock).run()
    corrected = latency_summary(outcome.recorder.intended)
    service = latency_summary(outcome.recorder.service)
    assert (corrected["min"], corrected["max"]) == (service["min"], service["max"]) == (0.15, 0.15)


@pytest.mark.parametrize("rate", [None, 1000.0])
def test_a_common_start_ahead_sends_nothing_before_it(rate):
    """Workers (-j) start together at a time set ahead: a closed loop that began at once ran an unasked
    warm-up (bench run -j 2 --warmup 0: tens of thousands of warm-up ops against Redis)."""
    world = World()
    clients = [FakeClient(world, lambda t: 500 * US) for _ in range(2)]
    outcome = Engine(LoadPlan(clients=2, count=100, rate=rate), clients, world, clock=world.clock).run(start_ns=NS)
    assert outcome.warmup_ops == 0 and outcome.recorder.ops == 100 == sum(c.executed for c in clients)


def test_worker_results_merge_into_exact_totals_and_seconds():
    """-j: each worker's per-second counts are merged exactly: the run's percentiles are those of all
    latencies together, and the series adds up to the total, second by second."""
    from storagectl.loadgen.workers import _merged

    plan = LoadPlan(clients=2, count=20_000)
    results, everything = [], []
    for worker, latencies in enumerate((range(1, 10_001), range(5_001, 15_001))):  # us, each once
        world = World()
        cycle = itertools.cycle(latencies)
        client = FakeClient(world, lambda t, cycle=cycle: next(cycle) * US, fail_every=1000 * (worker + 1))
        outcome = Engine(replace(plan, clients=1, count=10_000), [client], world, clock=world.clock).run(
            start_ns=0, keep_seconds=True)
        recorder = outcome.recorder
        everything += [value for second in recorder.kept for value, count in second.service.items()
                       for _ in range(count)]
        results.append({"ops": recorder.ops, "errors": recorder.errors, "seconds": recorder.kept,
                        "last_completion_ns": recorder.last_completion_ns, "warmup_ops": 0, "warmup_errors": 0,
                        "issued": outcome.ops_issued, "cpu_share": 0.1 * (worker + 1)})
    merged, cpu_share = _merged(results, 0, plan)
    recorder = merged.recorder
    assert recorder.ops == 20_000 and recorder.errors == {"Boom": 15} and cpu_share == 0.2
    assert sum(row["ops"] for row in recorder.seconds) == 20_000
    assert sum(row["errors"] for row in recorder.seconds) == 15
    expected = new_histogram()
    for value in everything:
        expected.record_value(value)
    assert latency_summary(recorder.service) == latency_summary(expected)
    assert recorder.service.get_total_count() == 20_000 - 15
    summary = latency_summary(recorder.service)
    assert summary["p50"] == pytest.approx(7.5, rel=1e-3) and summary["max"] == pytest.approx(15.0, rel=1e-3)
