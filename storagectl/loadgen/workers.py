"""Several worker processes sharing the clients (`bench run -j N`, as pgbench -j): each runs its own
engine on its share of clients (and of -n / --rate) from one common start, and sends back its
per-second latency counts, which are merged into one recorder here.

Why processes: one event loop is one thread, and on a machine busier than its CPUs the scheduler
gives each runnable thread a share; pgbench -j 2 gets two. Measured on the 2-core machine under a
load average of 11: PostgreSQL select-pk with one loop 0.55x pgbench -j 2 (see bench/RESULTS.md).
Only kinds whose clients are sockets in the loop (PostgreSQL, Redis) take workers: a forked child
must not reuse the parent's driver pools (Neo4j) or client threads.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from storagectl import errors
from storagectl.interrupts import stop_signals_handled
from storagectl.loadgen.clients import EpollWaiter
from storagectl.loadgen.engine import NS, Engine, EngineOutcome, LoadPlan, measured_elapsed_s
from storagectl.loadgen.recorder import Recorder, Second
from storagectl.loadgen.workloads import usable_cpus
from storagectl.redact import redact_text

START_DELAY_S = 0.2  # from "every worker connected" to the common start
WORKER_EXIT_S = 10.0  # for a worker that reported to close its connections and end


def split_plan(plan: LoadPlan, workers: int) -> list[LoadPlan]:
    """Clients, count and rate shared out in proportion; the shares add up exactly."""
    clients = [plan.clients // workers + (1 if i < plan.clients % workers else 0) for i in range(workers)]
    plans = []
    counted = 0
    for index, share in enumerate(clients):
        count = None
        if plan.count is not None:
            count = plan.count - counted if index == workers - 1 else plan.count * share // plan.clients
            counted += count
        rate = plan.rate * share / plan.clients if plan.rate is not None else None
        plans.append(replace(plan, clients=share, count=count, rate=rate))
    return plans


def schedule_offsets(plan: LoadPlan, workers: int) -> list[int]:
    """Open loop: worker i's schedule starts i slots of the whole --rate after the common start, so the
    workers' requests interleave instead of going out in pairs at the same instants; 0 in a closed loop."""
    if plan.rate is None:
        return [0] * workers
    return [int(index * NS * plan.pipeline / plan.rate) for index in range(workers)]


def drive_workers(workload: Any, plan: LoadPlan, workers: int,
                  on_second: Callable[[dict[str, Any]], None] | None) -> tuple[EngineOutcome, float]:
    """Run ``workers`` processes; the merged outcome and the CPU share of one worker (the busiest)."""
    context = multiprocessing.get_context("fork")
    messages: Any = context.Queue()
    go = context.Event()
    start = context.Value("q", 0)
    plans = split_plan(plan, workers)
    firsts = [sum(share.clients for share in plans[:index]) for index in range(len(plans))]
    cpus, offsets = worker_cpus(workers), schedule_offsets(plan, workers)
    processes = [context.Process(target=_worker, daemon=True,
                                 args=(workload, share, index, first, messages, go, start, cpus[index], offsets[index]))
                 for index, (share, first) in enumerate(zip(plans, firsts, strict=True))]
    reported = False
    try:
        with _signals_held():
            for process in processes:
                process.start()
        outcome = _collect(processes, messages, go, start, plan, on_second)
        reported = True
        return outcome
    finally:
        processes = [process for process in processes if process.pid is not None]  # started
        for process in processes:
            if not reported:  # Ctrl-C or a worker's error: the others stop at this SIGTERM
                process.terminate()
        for process in processes:
            process.join(WORKER_EXIT_S)  # it closes its connections last, deaf to signals (see _worker)
            if process.is_alive():
                process.kill()
                process.join()


def _collect(processes: list[Any], messages: Any, go: Any, start: Any, plan: LoadPlan,
             on_second: Callable[[dict[str, Any]], None] | None) -> tuple[EngineOutcome, float]:
    workers = len(processes)
    ready, results, live = 0, {}, {}
    while len(results) < workers:
        try:
            kind, index, payload = messages.get(timeout=1.0)
        except queue.Empty:
            if not all(process.is_alive() for process in processes):
                raise errors.OperationFailed("a bench worker process ended without a result") from None
            continue
        if kind == "ready":
            ready += 1
            if ready == workers:
                start.value = time.perf_counter_ns() + int(START_DELAY_S * NS)
                go.set()
        elif kind == "second":
            live.setdefault(payload["second"], []).append(payload)
            if len(live[payload["second"]]) == workers and on_second is not None:
                on_second(_live_row(live.pop(payload["second"])))
        elif kind == "done":
            results[index] = payload
        else:
            raise _rebuilt_error(payload)
    return _merged(list(results.values()), start.value, plan)


def _live_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """For the live view only: the workers' p50/p99 of a second are not additive; the highest is shown
    (the saved series is merged exactly from the counts)."""
    def highest(key: str) -> float | None:
        values = [row[key] for row in rows if row[key] is not None]
        return max(values) if values else None

    return {"second": rows[0]["second"], "ops": sum(r["ops"] for r in rows), "errors": sum(r["errors"] for r in rows),
            "p50_ms": highest("p50_ms"), "p99_ms": highest("p99_ms")}


def _merged(results: list[dict[str, Any]], start_ns: int, plan: LoadPlan) -> tuple[EngineOutcome, float]:
    measure_start = start_ns + int(plan.warmup_s * NS)
    recorder = Recorder(measure_start, open_loop=plan.rate is not None)
    seconds: dict[int, Second] = {}
    for result in results:
        for kept in result["seconds"]:
            merged = seconds.setdefault(kept.index, Second(kept.index))
            merged.ops += kept.ops
            merged.errors += kept.errors
            for mine, theirs in ((merged.service, kept.service), (merged.intended, kept.intended)):
                for value, count in theirs.items():
                    mine[value] = mine.get(value, 0) + count
        for kind, count in result["errors"].items():
            recorder.errors[kind] = recorder.errors.get(kind, 0) + count
    for index in sorted(seconds):
        recorder._close(seconds[index])
    recorder.ops = sum(result["ops"] for result in results)
    recorder.last_completion_ns = max(result["last_completion_ns"] for result in results)
    elapsed = measured_elapsed_s(plan, measure_start, recorder.last_completion_ns)
    outcome = EngineOutcome(recorder, sum(r["warmup_ops"] for r in results), sum(r["warmup_errors"] for r in results),
                            measure_start, elapsed, sum(r["issued"] for r in results))
    return outcome, max(result["cpu_share"] for result in results)


def worker_cpus(workers: int) -> list[int | None]:
    """A CPU of its own for each worker when there is one worker per CPU this process may use (the
    PostgreSQL default), else none: unpinned, two workers on 2 CPUs ran at ~110 k instead of ~133 k
    tps of select-pk -c 8 in 6 of 14 rounds (pinned, in 1 of 14). With CPUs to spare the scheduler
    has room, and pinning fewer workers to the first CPUs would pile two runs onto the same ones."""
    allowed = usable_cpus()
    if workers < 2 or workers != len(allowed):
        return [None] * workers
    return allowed[:workers]


def _worker(workload: Any, plan: LoadPlan, index: int, first_client: int, messages: Any, go: Any,
            start: Any, cpu: int | None = None, offset_ns: int = 0) -> None:
    """In the child: connect its clients, wait for the common start, run, report; never returns into
    the parent's code (os._exit), so nothing inherited is closed or flushed twice. The workload was
    forked with the parent's random state: ``for_worker`` gives this child draws of its own."""
    clients: list[Any] = []
    signals = _FirstSignalStops()
    try:
        if _held:  # a Ctrl-C or SIGTERM came while it was forked (see _signals_held)
            signals.stopped = True
            raise KeyboardInterrupt
        if cpu is not None:
            with contextlib.suppress(OSError):  # a CPU taken away meanwhile (cpuset): run unpinned
                os.sched_setaffinity(0, {cpu})
        workload.for_worker(index, first_client)
        clients = [workload.open_client() for _ in range(plan.clients)]
        waiter = EpollWaiter(clients)
        messages.put(("ready", index, None))
        go.wait()
        delay = (start.value - time.perf_counter_ns()) / NS
        if delay > 0:  # idle until the common start: not in the CPU share (a 1 s run: 0.2 s of 1.2 s idle)
            time.sleep(delay)
        cpu_before, wall_before = _cpu_seconds(), time.perf_counter()
        engine = Engine(plan, clients, waiter, on_second=lambda row: messages.put(("second", index, row)))
        outcome = engine.run(start_ns=start.value + offset_ns, keep_seconds=True)
        cpu_share = (_cpu_seconds() - cpu_before) / max(time.perf_counter() - wall_before, 1e-9)
        recorder = outcome.recorder
        messages.put(("done", index, {
            "ops": recorder.ops, "errors": recorder.errors, "seconds": recorder.kept,
            "last_completion_ns": recorder.last_completion_ns, "warmup_ops": outcome.warmup_ops,
            "warmup_errors": outcome.warmup_errors, "issued": outcome.ops_issued, "cpu_share": cpu_share}))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        messages.put(("error", index, _error_payload(exc)))
    finally:
        signals.stopped = True  # nothing may cut the close short (a traceback, connections left to the server)
        for client in clients:
            with contextlib.suppress(Exception):  # the process ends now anyway
                client.close()
        messages.close()
        messages.join_thread()
        os._exit(0)


class _FirstSignalStops:
    """In a worker, only the first of Ctrl-C and SIGTERM stops the run, and none once it is closing its
    connections. A Ctrl-C reaches every process of the group and the parent's SIGTERM follows while
    the worker closes: the handlers inherited from the CLI (SIGTERM raises, SIGINT is still armed) let
    that second signal raise mid-close, a worker's traceback on stderr. The handler stays installed
    and only returns: switching to SIG_IGN with a signal pending makes CPython raise OSError."""

    def __init__(self) -> None:
        self.stopped = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, signum: int, frame: Any) -> None:
        if not self.stopped:
            self.stopped = True
            raise KeyboardInterrupt


_held: list[int] = []  # signals that came while workers were forked; each worker inherits a copy


@contextlib.contextmanager
def _signals_held() -> Any:
    """Ctrl-C and SIGTERM while the workers are forked are acted on once they are: a handler that ran
    inside one of Python's at-fork hooks (logging's lock release) had its exception printed and
    dropped ("Exception ignored in"), and the CLI's handler had already ignored every later signal,
    so the run went on to its end and exited 0. Held here, a signal is raised again right after (and
    a worker forked after it, or sent one before its own handlers, stops at its start)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held.clear()
    try:
        with stop_signals_handled(_hold):
            yield
    finally:
        if _held:
            signal.raise_signal(_held[0])  # the CLI's handler now raises it here


def _hold(signum: int, frame: Any) -> None:
    _held.append(signum)


def _error_payload(exc: BaseException) -> tuple[str, str, int, str | None, bool]:
    """A worker's error for the parent: storagectl's own with its message, exit code and hint (whatever
    they are: one with exit code 1 and no hint is as much its own); anything else with its text
    redacted, as the CLI redacts an internal error."""
    if isinstance(exc, errors.StoragectlError):
        return type(exc).__name__, exc.message, int(exc.exit_code), exc.hint, True
    return type(exc).__name__, redact_text(str(exc)), 1, None, False


def _rebuilt_error(payload: tuple[str, str, int, str | None, bool]) -> BaseException:
    """The worker's error in the parent: storagectl's own as it was worded, anything else named as a
    worker's, with its type (a bare KeyError's text is only the key)."""
    name, message, exit_code, hint, ours = payload
    if name in ("KeyboardInterrupt", "Terminated"):
        return KeyboardInterrupt()
    error = errors.OperationFailed(message if ours else f"bench worker: {name}: {message}", hint=hint)
    error.exit_code = errors.ExitCode(exit_code) if exit_code in errors.ExitCode._value2member_map_ else 1
    return error


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
