"""The result of `bench run`: one stable JSON shape (README "bench JSON"), schema_version 1.

Latency figures are milliseconds. ``latency_ms`` is the service time (request sent -> answer);
an open-loop run (``--rate``) adds ``corrected_latency_ms``, counted from each request's intended
start, which is what users of a stalled server would see.
"""

from __future__ import annotations

import os
import platform
import statistics
from datetime import UTC, datetime
from typing import Any

from storagectl import __version__
from storagectl.loadgen.engine import EngineOutcome
from storagectl.loadgen.recorder import latency_summary

SCHEMA_VERSION = 1
BEHIND_SHARE = 0.95  # an open loop below this share of its --rate was behind its schedule
CLIENT_BOUND_SHARE = 0.9  # the loop runs on one core: at 90 % of it the client is the limit


def environment(server_version: str, cpu_share: float, driver_in_process: bool,
                load_average: float | None = None) -> dict[str, Any]:
    warnings = []
    cpus = os.cpu_count() or 1
    if cpu_share >= CLIENT_BOUND_SHARE:
        warnings.append(f"storagectl used {cpu_share:.0%} of a CPU: the client, not the server, was probably "
                        "the bottleneck; fewer clients or --pipeline measure the server better")
    if load_average is not None and load_average > cpus:
        warnings.append(f"the client machine was busy (load average {load_average:.1f} on {cpus} CPUs): storagectl "
                        "got only a share of a CPU, so it may have been the bottleneck at a lower CPU use")
    if driver_in_process:
        warnings.append("the database runs inside the client process: client CPU includes the database's work")
    return {"server_version": server_version, "client_cpus": cpus, "client_load_average": load_average,
            "client_cpu_pct": round(100 * cpu_share, 1), "client_bound": cpu_share >= CLIENT_BOUND_SHARE,
            "python": platform.python_version(), "storagectl_version": __version__, "warnings": warnings}


def behind_schedule(rate: float | None, duration_s: float | None, elapsed_s: float, ops_per_s: float) -> str | None:
    """An open loop whose requests went out late all along: the client or the server could not keep
    the rate, so a timed run lasted longer than -T (every scheduled request is still sent, and its
    lateness is in the corrected latency)."""
    if rate is None or ops_per_s >= BEHIND_SHARE * rate:
        return None
    longer = f", and the run took {elapsed_s:.1f} s for -T {duration_s:g}s" if duration_s else ""
    return (f"the open loop fell behind its schedule: {ops_per_s:,.0f} ops/s of --rate {rate:,.0f}{longer}; "
            "the corrected latency counts that backlog (a lower --rate measures the server below saturation)")


def build_result(backend: Any, options: Any, workload_options: Any, outcome: EngineOutcome, cpu_share: float,
                 server_version: str, setup: dict[str, Any], started_at: float) -> dict[str, Any]:
    recorder = outcome.recorder
    open_loop = options.rate is not None
    error_count = sum(recorder.errors.values())
    ops_per_s = round(recorder.ops / outcome.elapsed_s, 1)
    env = environment(server_version, cpu_share, getattr(backend, "kind", "") == "sqlite",
                      round(os.getloadavg()[0], 2))
    late = behind_schedule(options.rate, options.plan().duration_s, outcome.elapsed_s, ops_per_s)
    if late is not None:
        env["warnings"].insert(0, late)
    return {
        "schema_version": SCHEMA_VERSION,
        "started_at": datetime.fromtimestamp(started_at, UTC).isoformat(timespec="seconds"),
        "backend": {"name": backend.name, "kind": backend.kind, "endpoint": backend.endpoint()},
        "workload": {"name": workload_options.name, **workload_options.as_dict()},
        "load": {"mode": "open-loop" if open_loop else "closed-loop", "clients": options.clients,
                 "workers": options.workers,
                 "duration_s": options.plan().duration_s, "count": options.count, "warmup_s": options.warmup_s,
                 "rate": options.rate, "pipeline": options.pipeline},
        "setup": setup,
        "ops": recorder.ops,
        "ok": recorder.ops - error_count,
        "errors": dict(sorted(recorder.errors.items())),
        "error_count": error_count,
        "elapsed_s": round(outcome.elapsed_s, 3),
        "ops_per_s": ops_per_s,
        "latency_ms": latency_summary(recorder.service),
        "corrected_latency_ms": latency_summary(recorder.intended) if open_loop else None,
        "warmup": {"ops": outcome.warmup_ops, "errors": outcome.warmup_errors},
        "series": recorder.seconds,
        "hdr": {"service": _encoded(recorder.service),
                "corrected": _encoded(recorder.intended) if open_loop else None},
        "environment": env,
    }


def _encoded(histogram: Any) -> str:
    """The HDR library's own base64 form ("HISTFAAAA..."), which ``HdrHistogram.decode`` reads."""
    return histogram.encode().decode("ascii") if histogram.get_total_count() else ""


def headline_latency(result: dict[str, Any]) -> dict[str, float] | None:
    """The latency users saw: corrected in an open-loop run, service time in a closed-loop one."""
    return result.get("corrected_latency_ms") or result.get("latency_ms")


def combine_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One run: its result. Several (-x N): the figures of the median run by ops/s (the lower of the
    two middle runs for even N) on top, every run under
    ``runs`` and the spread of ops/s and p99 under ``repeat``."""
    if len(runs) == 1:
        return runs[0]
    by_ops = sorted(runs, key=lambda run: run["ops_per_s"])
    median = dict(by_ops[(len(by_ops) - 1) // 2])
    median["runs"] = [{key: run[key] for key in ("ops", "error_count", "ops_per_s", "latency_ms",
                                                 "corrected_latency_ms", "elapsed_s")} for run in runs]
    median["repeat"] = {"runs": len(runs), "ops_per_s": _spread([run["ops_per_s"] for run in runs]),
                        "p99_ms": _spread([(headline_latency(run) or {}).get("p99") for run in runs])}
    return median


def _spread(values: list[float | None]) -> dict[str, float | None]:
    present = [value for value in values if value is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "spread_pct": None}
    median = statistics.median(present)
    spread = 100.0 * (max(present) - min(present)) / median if median else 0.0
    return {"median": median, "min": min(present), "max": max(present), "spread_pct": round(spread, 1)}
