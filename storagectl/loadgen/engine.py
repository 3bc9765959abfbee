"""The load loop: closed-loop (each client sends its next request when the last one finished) or
open-loop on a fixed schedule (``rate``), where latency counts from each request's intended start
(coordinated-omission correction, as wrk2 and pgbench -R do) and is reported beside service time.

One thread drives every client through a :class:`Waiter` (epoll on the clients' sockets); clients
never block the loop. The clock and the waiter are injected, so tests run the loop on simulated
time with a known latency distribution.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from storagectl.errors import OperationTimeout
from storagectl.loadgen.recorder import FLUSH_AT, Recorder

NS = 1_000_000_000
TICK_S = 0.1  # longest wait, so seconds close (live view) and -T ends on time
TICK_NS = int(TICK_S * NS)


# A batch of one op that succeeded. A client may answer collect() with this very list (shared, never
# changed): the closed loop then counts its latency with a list append instead of a record() call.
ONE_DONE: list[tuple[int, str | None]] = [(1, None)]


class Client(Protocol):
    """One connection of the benchmark. ``send`` issues a batch of ``ops`` operations (a pipeline)
    without waiting; ``collect`` is called when the socket is readable and answers [] until the
    whole batch is done, then ``[(ops, error_kind_or_None), ...]`` covering every op of the batch."""

    # False: read every ready client first and send their next requests afterwards, as redis-benchmark
    # does (one server thread: one wake-up for many requests) and as pgbench does between transactions
    # (advanceConnectionState returns at CSTATE_END_TX; a client's next transaction starts on its
    # thread's next pass over its clients). Each answer is then timed after its own read and the reads
    # before it, never after other clients' sends. True: send at once (a client run in a thread of its
    # own, whose next operation waits for nothing in this loop).
    eager: bool

    def fileno(self) -> int: ...

    def send(self, ops: int) -> None: ...

    def collect(self) -> list[tuple[int, str | None]]: ...

    def close(self) -> None: ...


class Waiter(Protocol):
    def wait(self, timeout_s: float) -> list[Any]:
        """The clients with something to collect, waiting at most ``timeout_s``."""


@dataclass(frozen=True)
class LoadPlan:
    clients: int
    duration_s: float | None = None  # exactly one of duration_s and count
    count: int | None = None
    warmup_s: float = 0.0
    rate: float | None = None  # ops/s in all; None: closed loop
    pipeline: int = 1
    drain_timeout_s: float = 60.0  # after the last send, give up on answers that take longer


@dataclass
class EngineOutcome:
    recorder: Recorder
    warmup_ops: int
    warmup_errors: int
    measure_start_ns: int
    elapsed_s: float  # measurement start to the last measured completion (a timed run: at least -T)
    ops_issued: int  # measured ops sent (== recorder.ops: every one was waited for)


def measured_elapsed_s(plan: LoadPlan, measure_start_ns: int, last_completion_ns: int) -> float:
    """Measurement start to the last measured completion; a timed run lasts at least its duration:
    an open loop's last slot comes up to one interval before the end, and ending the clock there
    would overstate its ops/s (--rate 1 -T 3s: 3 ops in 2 s)."""
    end = last_completion_ns
    if plan.duration_s is not None:
        end = max(end, measure_start_ns + int(plan.duration_s * NS))
    return max(end - measure_start_ns, 1) / NS


class Engine:
    def __init__(self, plan: LoadPlan, clients: list[Client], waiter: Waiter,
                 clock: Callable[[], int] = time.perf_counter_ns,
                 on_second: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.plan = plan
        self.clients = clients
        self.waiter = waiter
        self.clock = clock
        self.on_second = on_second
        # closed loop: client -> send time; open loop: client -> (ops, intended start, send time)
        self._in_flight: dict[Any, Any] = {}
        self._idle: list[Client] = []
        self._measured_issued = 0
        self._warmup_ops = 0
        self._warmup_errors = 0
        self._next_slot = 0  # open loop: index of the next scheduled request

    def run(self, start_ns: int | None = None, keep_seconds: bool = False) -> EngineOutcome:
        """``start_ns``: the schedule's origin (worker processes share one, so their seconds line up);
        ``keep_seconds``: keep each second's latency counts for a merge (``recorder.kept``)."""
        plan = self.plan
        now = self.clock()
        self._start = now if start_ns is None else start_ns
        self._measure_start = self._start + int(plan.warmup_s * NS)
        self._measure_end = self._measure_start + int(plan.duration_s * NS) if plan.duration_s is not None else None
        self._interval_ns = int(NS * plan.pipeline / plan.rate) if plan.rate else 0
        last_second = None if plan.duration_s is None else max(0, math.ceil(plan.duration_s) - 1)
        self.recorder = Recorder(self._measure_start, open_loop=plan.rate is not None, last_second=last_second)
        self.recorder.on_second = self.on_second
        self.recorder.keep_seconds = keep_seconds
        while now < self._start:  # a common start ahead (workers): nothing goes out before it, warm-up or not
            self.waiter.wait((self._start - now) / NS)
            now = self.clock()
        with _collector_paused():
            if plan.rate is None:
                self._run_closed(now)
            else:
                self._run_open(now)
        self.recorder.finish()
        elapsed = measured_elapsed_s(plan, self._measure_start, self.recorder.last_completion_ns)
        return EngineOutcome(self.recorder, self._warmup_ops, self._warmup_errors, self._measure_start,
                             elapsed, self._measured_issued)

    def _check_drain(self, now: int, last_answer: int, more_to_issue: bool) -> None:
        """After a wait that brought nothing: raise when nothing came back for ``drain_timeout_s``."""
        if now - last_answer > self.plan.drain_timeout_s * NS and not more_to_issue:
            raise OperationTimeout(f"{len(self._in_flight)} requests still unanswered "
                                   f"{self.plan.drain_timeout_s:g} s after the last answer; the server hangs")

    # -- closed loop ------------------------------------------------------------------------
    def _run_closed(self, now: int) -> None:
        """Each client sends its next request when its answer is in: the ready clients are read (each
        answer timed right after its read), then the next requests go out (each timed right before
        its send), as pgbench does at a transaction's end; the time between a client's answer and its
        next send is in no latency, as in pgbench. This loop's cost per op limits the client
        (PostgreSQL select-pk: the Python around libpq's calls is most of the client's CPU), so a
        socket client's answer is recorded and its next request sent inline: one collect, two clock
        reads, two list appends (a batch of ``ONE_DONE``; others go through ``record``), one send
        per op, and no call of its own."""
        clock, wait, record = self.clock, self.waiter.wait, self.recorder.record
        in_flight, measure_start, pipeline = self._in_flight, self._measure_start, self.plan.pipeline
        # until then a full pipeline goes out unchecked: a timed run's end, a counted run's warm-up
        unchecked_until = self._measure_end if self._measure_end is not None else measure_start
        for client in reversed(self.clients):
            self._send_next(client)
        last_answer = now
        resend: list[Client] = []
        recorder = self.recorder
        pending = recorder.pending
        add_service_us, second_end = pending.append, recorder.second_end_ns
        issued, last_done = 0, now  # measured ops sent inline, last ONE_DONE answer: stored after the loop
        while in_flight:
            ready = wait(TICK_S if now + TICK_NS < unchecked_until else self._timeout(now))
            now = clock()
            if ready:
                last_answer = now
            else:
                self._check_drain(now, last_answer, False)
            for client in ready:
                batch = client.collect()
                if not batch:
                    continue
                done = clock()  # after the answer was read, as pgbench times it
                sent = in_flight.pop(client)
                if sent < measure_start:
                    self._count_warmup(batch)
                elif batch is ONE_DONE:
                    if done >= second_end:
                        recorder.tick(done)
                        second_end = recorder.second_end_ns
                    add_service_us((done - sent) // 1000)
                    last_done = done
                else:
                    for ops, error in batch:
                        record(ops, error, sent, sent, done)
                    second_end = recorder.second_end_ns
                if client.eager:
                    self._send_next(client)
                else:
                    resend.append(client)
            while resend:  # last read, first sent (the order of the idle list before)
                client = resend.pop()
                now = clock()  # the send time: a client's latency never includes the sends before it
                if now < unchecked_until:
                    in_flight[client] = now
                    client.send(pipeline)
                    if now >= measure_start:
                        issued += pipeline
                else:
                    self._send_next(client, now)
            if now >= second_end:
                recorder.tick(now)
                second_end = recorder.second_end_ns
            elif len(pending) >= FLUSH_AT:
                recorder.flush()
        self._measured_issued += issued
        recorder.last_completion_ns = max(recorder.last_completion_ns, last_done)

    def _send_next(self, client: Client, now: int | None = None) -> None:
        """Closed loop: send the client's next request unless the run is over (a timed run's end,
        a counted run's count)."""
        if now is None:
            now = self.clock()
        ops = self.plan.pipeline
        if self._measure_end is not None:
            if now >= self._measure_end:
                return
        elif now >= self._measure_start:
            ops = min(ops, self.plan.count - self._measured_issued)
            if ops <= 0:
                return
        if now >= self._measure_start:
            self._measured_issued += ops
        self._in_flight[client] = now
        client.send(ops)

    def _count_warmup(self, batch: list[tuple[int, str | None]]) -> None:
        for ops, error in batch:
            self._warmup_ops += ops
            self._warmup_errors += ops if error is not None else 0

    # -- open loop ----------------------------------------------------------------------------
    def _run_open(self, now: int) -> None:
        """Requests go out on the schedule (to whichever client is idle); latency counts from each
        request's slot on the schedule as well as from its send."""
        self._idle = list(self.clients)
        self._issue()
        last_answer = now
        while self._in_flight or self._more_to_issue(now):
            # the wait ends at the next slot counted from now, not from the last wake-up: reading the
            # answers since then took time, and a wait that long would send the next request late
            ready = self.waiter.wait(self._timeout(self.clock()))
            now = self.clock()
            if ready:
                last_answer = now
            else:
                self._check_drain(now, last_answer, self._more_to_issue(now))
            for client in ready:
                batch = client.collect()
                if batch:
                    self._complete(client, batch, self.clock())  # read per client, as the closed loop does
                    if client.eager:
                        self._issue()
            self.recorder.tick(now)
            self._issue()

    def _remaining(self) -> int | None:
        return None if self.plan.count is None else self.plan.count - self._measured_issued

    def _more_to_issue(self, now: int) -> bool:
        remaining = self._remaining()
        if remaining is not None:
            return remaining > 0
        return self._slot_time(self._next_slot) < self._measure_end

    def _slot_time(self, slot: int) -> int:
        return self._start + slot * self._interval_ns

    def _issue(self) -> None:
        """Send to idle clients what is due; the send time is read per send, so a client's latency
        never includes the sends before it."""
        while self._idle:
            now = self.clock()
            if not self._more_to_issue(now):
                return
            intended = self._slot_time(self._next_slot)
            if intended > now:
                return
            self._next_slot += 1
            ops = self.plan.pipeline
            if intended >= self._measure_start:
                remaining = self._remaining()
                if remaining is not None:
                    ops = min(ops, remaining)
                self._measured_issued += ops
            client = self._idle.pop()
            self._in_flight[client] = (ops, intended, now)
            client.send(ops)

    def _timeout(self, now: int) -> float:
        timeout = TICK_S
        if self._measure_end is not None and now < self._measure_end:
            timeout = min(timeout, (self._measure_end - now) / NS)
        if self.plan.rate is not None and self._idle:
            timeout = min(timeout, (self._slot_time(self._next_slot) - now) / NS)
        return max(timeout, 0.0)

    def _complete(self, client: Client, batch: list[tuple[int, str | None]], now: int) -> None:
        _, intended, sent = self._in_flight.pop(client)
        self._idle.append(client)
        if intended >= self._measure_start:
            for ops, error in batch:
                self.recorder.record(ops, error, intended, sent, now)
        else:
            self._count_warmup(batch)


@contextlib.contextmanager
def _collector_paused() -> Any:
    """The load loop makes no reference cycles (its garbage goes by reference counts), so Python's
    cycle collector, which otherwise runs every ~700 allocations (a few times a second over every
    object the process holds), would only stall the loop, and answers waiting meanwhile count as
    latency."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
