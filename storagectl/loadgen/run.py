"""`bench run`: check the options, set the workload up (not timed), drive the engine, always tear
down, and build the result (see :mod:`storagectl.loadgen.result`)."""

from __future__ import annotations

import contextlib
import resource
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from storagectl.errors import StoragectlError, UsageError, raise_with_state
from storagectl.loadgen.clients import EpollWaiter
from storagectl.loadgen.engine import Client, Engine, EngineOutcome, LoadPlan
from storagectl.loadgen.result import build_result, combine_runs
from storagectl.loadgen.workloads import Workload, WorkloadOptions, default_workers, make_workload

MAX_RATE = 100_000_000  # ops/s: far above any client here, and a schedule of whole nanoseconds holds it


@dataclass(frozen=True)
class BenchOptions:
    workload: str
    clients: int = 1
    duration_s: float | None = None
    count: int | None = None
    warmup_s: float = 5.0
    rate: float | None = None
    pipeline: int = 1
    data_size: int | None = None  # None: the workload's default (100 bytes; S3 objects 4 KiB)
    keyspace: int | None = None  # None: the workload's default
    ratio: tuple[int, int] = (1, 10)
    repeat: int = 1
    workers: int | None = None  # processes sharing the clients (PostgreSQL, Redis); None: default_workers
    yes: bool = False

    def plan(self) -> LoadPlan:
        duration = self.duration_s if self.count is not None or self.duration_s is not None else 10.0
        return LoadPlan(clients=self.clients, duration_s=None if self.count is not None else duration,
                        count=self.count, warmup_s=self.warmup_s, rate=self.rate, pipeline=self.pipeline)


def check_options(options: BenchOptions) -> None:
    """Contradictions are refused before anything connects."""
    if options.duration_s is not None and options.count is not None:
        raise UsageError("-T/--duration and -n/--count are mutually exclusive: give one of them",
                         hint="Try: -T 30s for a timed run or -n 100000 for a counted one")
    checks = ((options.clients < 1, "--clients must be at least 1"),
              (options.pipeline < 1, "--pipeline must be at least 1"),
              (options.rate is not None and not options.rate > 0, "--rate must be above 0"),  # also nan
              # a slot interval below 1 ns rounds to 0: every slot due at once, a -T run never ends
              (options.rate is not None and options.rate > MAX_RATE, f"--rate must be at most {MAX_RATE:,}"),
              (options.count is not None and options.count < 1, "--count must be at least 1"),
              (options.duration_s is not None and options.duration_s <= 0, "--duration must be above 0"),
              (options.warmup_s < 0, "--warmup cannot be negative"),
              (options.keyspace is not None and options.keyspace < 1, "--keyspace must be at least 1"),
              (options.repeat < 1, "-x/--repeat must be at least 1"),
              (options.workers is not None and options.workers < 1, "-j/--workers must be at least 1"),
              (options.workers is not None and options.workers > options.clients,
               f"-j/--workers {options.workers} is more than the {options.clients} clients to share out"))
    for failed, message in checks:
        if failed:
            raise UsageError(message)


def check_production(backend: Any, yes: bool) -> None:
    if getattr(backend.settings, "production", False) and not yes:
        raise UsageError(f"backend {backend.name!r} is marked production: true; a benchmark adds load and "
                         "writes its own data there", hint="Try: --yes if you mean it, or bench a staging copy")


def run_bench(backend: Any, options: BenchOptions, on_second: Callable[[dict[str, Any]], None] | None = None,
              on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Set up, run ``options.repeat`` times, tear down; the result dict (README "bench JSON")."""
    check_options(options)
    check_production(backend, options.yes)
    if options.workers is None:
        options = replace(options, workers=default_workers(backend.kind, options.clients, options.rate is not None))
    run_id = uuid.uuid4().hex[:10]
    workload_options = WorkloadOptions(
        name=options.workload, run_id=run_id, data_size=options.data_size, keyspace=options.keyspace,
        ratio=options.ratio, pipeline=options.pipeline, clients=options.clients, workers=options.workers)
    workload = make_workload(backend, workload_options)
    phase = on_phase or (lambda text: None)
    started_at = time.time()
    try:
        if workload.fill_items:  # else setup only connects: "filling" would be untrue
            phase(f"setup: filling {workload.namespace} ({workload.fill_items:,} items)")
        setup_started = time.perf_counter()
        items = workload.setup()
        setup = {"namespace": workload.namespace, "items": items,
                 "seconds": round(time.perf_counter() - setup_started, 3)}
        version = workload.server_version()
        runs = []
        for index in range(options.repeat):
            run = f"run {index + 1}/{options.repeat}" if options.repeat > 1 else "run"
            # the warm-up shows no per-second line: without this the first seconds look like a hang
            phase(f"{run}: warm-up {options.warmup_s:g}s first, not measured" if options.warmup_s else run)
            outcome, cpu_share = _drive(workload, options, on_second)
            runs.append(build_result(backend, options, workload.options, outcome, cpu_share, version, setup,
                                     started_at))
    except BaseException as exc:
        _announce(phase, "teardown")
        raise_with_state(exc, _teardown(workload, exc)[0])
    _announce(phase, "teardown")
    result = combine_runs(runs)
    state, gone = _teardown(workload)
    if not gone:
        result["environment"]["warnings"].append(state)
    return result


def _announce(phase: Callable[[str], None], text: str) -> None:
    """A progress line that cannot cost the cleanup after it: stderr may be a closed pipe (``| head``)."""
    with contextlib.suppress(OSError):
        phase(text)


def _teardown(workload: Workload, first: BaseException | None = None) -> tuple[str, bool]:
    """Remove the namespace; what became of it, for the message (removed, never created, or what may
    remain and why), and whether it is gone (``first``, the error that ended the run, is the one
    reported; a finished run's figures are kept)."""
    try:
        removed = workload.teardown()
    except Exception as exc:  # noqa: BLE001 - reported in the message, never raised over the first error
        reason = exc.message if isinstance(exc, StoragectlError) else type(exc).__name__
        if first is not None and str(exc) == str(first):
            reason = "the same error"
        return (f"benchmark data under {workload.namespace} may remain: removing it failed ({reason}); "
                "remove it by hand"), False
    # a connection that failed in setup created nothing: "removed" would claim it had written data
    return (f"benchmark data under {workload.namespace} removed" if removed else "no benchmark data was created"), True


def _drive(workload: Workload, options: BenchOptions,
           on_second: Callable[[dict[str, Any]], None] | None) -> tuple[EngineOutcome, float]:
    if options.workers is not None and options.workers > 1:
        from storagectl.loadgen.workers import drive_workers

        return drive_workers(workload, options.plan(), options.workers, on_second)
    clients: list[Client] = []
    try:
        for _ in range(options.clients):
            clients.append(workload.open_client())
        waiter = EpollWaiter(clients)
        try:
            cpu_before, wall_before = _cpu_seconds(), time.perf_counter()
            outcome = Engine(options.plan(), clients, waiter, on_second=on_second).run()
            cpu_share = (_cpu_seconds() - cpu_before) / max(time.perf_counter() - wall_before, 1e-9)
        finally:
            waiter.close()
    finally:
        for client in clients:
            client.close()
    return outcome, cpu_share


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


__all__ = ["BenchOptions", "check_options", "check_production", "run_bench"]
