"""`bench run`: check the options, set the workload up (not timed), drive the engine, always tear
down, and build the result (see :mod:`storagectl.loadgen.result`)."""

from __future__ import annotations

import resource
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from storagectl.errors import UsageError, raise_with_state
from storagectl.loadgen.clients import EpollWaiter
from storagectl.loadgen.engine import Client, Engine, EngineOutcome, LoadPlan
from storagectl.loadgen.result import build_result, combine_runs
from storagectl.loadgen.workloads import Workload, WorkloadOptions, default_workers, make_workload


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
              (options.rate is not None and options.rate <= 0, "--rate must be above 0"),
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
        phase(f"setup: filling {workload.namespace}")
        setup_started = time.perf_counter()
        items = workload.setup()
        setup = {"namespace": workload.namespace, "items": items,
                 "seconds": round(time.perf_counter() - setup_started, 3)}
        version = workload.server_version()
        runs = []
        for index in range(options.repeat):
            phase(f"run {index + 1}/{options.repeat}" if options.repeat > 1 else "run")
            outcome, cpu_share = _drive(workload, options, on_second)
            runs.append(build_result(backend, options, workload.options, outcome, cpu_share, version, setup,
                                     started_at))
    except BaseException as exc:
        phase("teardown")
        removed = _teardown_quietly(workload)
        raise_with_state(exc, f"benchmark data under {workload.namespace} "
                              + ("removed" if removed else "NOT removed: the teardown failed, remove it by hand"))
    phase("teardown")
    workload.teardown()
    return combine_runs(runs)


def _teardown_quietly(workload: Workload) -> bool:
    """Whether the namespace was removed; a failure is logged (the first error is the one raised)."""
    try:
        workload.teardown()
    except Exception as exc:  # noqa: BLE001 - the first error is the one to report
        import logging

        logging.getLogger(__name__).warning("bench teardown failed (%s); remove %s by hand", exc, workload.namespace)
        return False
    return True


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
