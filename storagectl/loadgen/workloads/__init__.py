"""Workloads, one module per backend kind, registered by kind (no command branches on kind).

Each module's ``make_workload(backend, options)`` returns a :class:`Workload` that creates its own
namespace (``setup``), opens clients for the engine and removes exactly what it created
(``teardown``), which the runner calls also after an error or Ctrl-C.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

from storagectl.errors import UsageError
from storagectl.loadgen.engine import Client

KIND_MODULES: dict[str, str] = {
    "postgres": "storagectl.loadgen.workloads.postgres",
    "timescaledb": "storagectl.loadgen.workloads.postgres",
    "sqlite": "storagectl.loadgen.workloads.sqlite",
    "redis": "storagectl.loadgen.workloads.redis",
    "neo4j": "storagectl.loadgen.workloads.neo4j",
    "s3": "storagectl.loadgen.workloads.s3",
}


@dataclass(frozen=True)
class WorkloadOptions:
    name: str  # as given: "get", "sql:bench.sql", ...
    run_id: str  # names the namespace
    data_size: int | None = None  # value bytes (Redis), object bytes (S3); None: the kind's default
    keyspace: int | None = None  # keys, rows (accounts), nodes or objects filled at setup
    ratio: tuple[int, int] = (1, 10)  # SET:GET of `mixed`
    pipeline: int = 1
    clients: int = 1
    workers: int = 1

    @property
    def base(self) -> str:
        """The workload without its file: `sql:x.sql` -> `sql`."""
        return self.name.split(":", 1)[0]

    @property
    def script(self) -> Path | None:
        return Path(self.name.split(":", 1)[1]) if ":" in self.name else None

    def as_dict(self) -> dict[str, Any]:
        return {"data_size": self.data_size, "keyspace": self.keyspace, "ratio": f"{self.ratio[0]}:{self.ratio[1]}",
                "pipeline": self.pipeline}


class Workload(Protocol):
    options: WorkloadOptions  # with the kind's defaults filled in
    namespace: str  # the schema, table prefix, key prefix, label or object prefix it works in
    fill_items: int  # items setup writes before the run; 0: setup only connects (Redis set, S3 put)

    def setup(self) -> int:
        """Create the namespace and fill it; the number of items written (not timed as load)."""

    def open_client(self) -> Client: ...

    def teardown(self) -> bool:
        """Remove everything setup and the run created, and nothing else; False when there was nothing
        to remove (setup failed before it wrote anything, e.g. on connecting), so no removal is claimed."""

    def server_version(self) -> str: ...

    # kinds with PROCESS_WORKERS only: called in worker process ``index`` (forked with this object), whose
    # first client is number ``first_client`` of all; its random draws must not repeat another worker's
    def for_worker(self, index: int, first_client: int) -> None: ...


def default_workers(kind: str, clients: int, open_loop: bool) -> int:
    """-j when not given: for a closed loop on a kind whose clients each have a server process of their
    own (PostgreSQL: ``WORKER_PER_CPU``), one process per CPU it may use (in a cpuset of 2 CPUs of 8, 8
    processes would take turns on 2 and none be pinned), at most one per client, as ``pgbench -j`` is
    usually set; otherwise one. Fewer processes than clients: a loop serving several clients reads
    the answers of one wake-up together, where a process per client is woken, and its caches
    refilled, for every answer (select-pk -c 8 on 2 CPUs: client CPU 19-20 us an op with -j 2
    against 23 us with a process per client, and a higher tps in 9 of 10 rounds). More than one
    process: one event loop gets one share of the CPUs against the server's processes, pgbench -j 2
    two. Redis, one server thread, is served best by one loop, as redis-benchmark."""
    if open_loop or not getattr(_module(kind), "WORKER_PER_CPU", False):
        return 1
    return max(1, min(clients, len(usable_cpus()) or os.cpu_count() or 1))


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (a cpuset or taskset leaves a subset of ``os.cpu_count()``);
    empty where the platform cannot tell."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def workload_names(kind: str) -> tuple[str, ...]:
    return tuple(_module(kind).workload_names(kind))


def make_workload(backend: Any, options: WorkloadOptions) -> Workload:
    module = _module(backend.kind)
    names = module.workload_names(backend.kind)
    base = options.base
    if base not in names or (base in FILE_WORKLOADS) != (options.script is not None):
        shown = ", ".join(f"{n}:FILE" if n in FILE_WORKLOADS else n for n in names)
        raise UsageError(f"unknown workload {options.name!r} for {backend.kind} backend {backend.name!r}; "
                         f"workloads: {shown}", hint="Try: storagectl bench run --help")
    if options.pipeline > 1 and not getattr(module, "PIPELINES", False):
        raise UsageError(f"--pipeline applies to Redis workloads only, not to {backend.kind}")
    if options.workers > 1 and not getattr(module, "PROCESS_WORKERS", False):
        raise UsageError(f"-j/--workers applies to PostgreSQL, TimescaleDB and Redis, not to {backend.kind}")
    resolved = replace(options, keyspace=options.keyspace or module.DEFAULT_KEYSPACE,
                       data_size=options.data_size if options.data_size is not None else DEFAULT_DATA_SIZE.get(
                           backend.kind, 100))
    return module.make_workload(backend, resolved)


FILE_WORKLOADS = ("sql", "cypher")
DEFAULT_DATA_SIZE = {"s3": 4096}


def _module(kind: str) -> Any:
    if kind not in KIND_MODULES:
        raise UsageError(f"storagectl bench does not support {kind} backends; it supports "
                         f"{', '.join(sorted(KIND_MODULES))}")
    return import_module(KIND_MODULES[kind])
