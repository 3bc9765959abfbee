"""Health diagnostics: the concurrent run of every backend's checks (grading is in :mod:`storagectl.health`)."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from storagectl.errors import AuthenticationFailed, BackendUnavailable, StoragectlError
from storagectl.health import Check, Status, worst

if TYPE_CHECKING:
    from storagectl.backends.base import Backend


@dataclass
class BackendReport:
    backend: str
    kind: str
    endpoint: str
    status: Status
    reachable: bool
    auth_ok: bool | None = None
    server_version: str | None = None
    latency_ms: float | None = None
    checks: list[Check] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["checks"] = [{**asdict(c), "status": c.status.value} for c in self.checks]
        return data


def diagnose_backend(backend: Backend) -> BackendReport:
    """Connect, measure round-trip latency, read the version and run the kind's checks."""
    report = BackendReport(backend.name, backend.kind, backend.endpoint(), Status.OK, reachable=False)
    try:
        with backend.connect() as connection:
            report.reachable, report.auth_ok = True, True
            started = time.perf_counter()
            backend.ping(connection)
            report.latency_ms = round((time.perf_counter() - started) * 1000, 2)
            report.server_version = backend.server_version(connection)
            report.checks = backend.diagnose(connection)
    except AuthenticationFailed as exc:
        report.reachable, report.auth_ok, report.error = True, False, exc.message
        report.status = Status.CRITICAL
        return report
    except BackendUnavailable as exc:
        report.error, report.status = exc.message, Status.UNKNOWN
        return report
    except StoragectlError as exc:
        report.error, report.status = exc.message, Status.CRITICAL
        return report
    report.status = worst([check.status for check in report.checks])
    return report


def run_diagnostics(backends: list[Backend], timeout: float) -> list[BackendReport]:
    """Diagnose every backend concurrently; one that exceeds ``timeout`` is reported UNKNOWN.

    Daemon threads, not an executor: a driver stuck in a system call must not keep the
    process alive after the report is printed.
    """
    results: dict[int, BackendReport] = {}

    def work(index: int, backend: Backend) -> None:
        results[index] = _diagnose_safely(backend)

    threads = [
        threading.Thread(target=work, args=(i, b), name=f"diag-{b.name}", daemon=True)
        for i, b in enumerate(backends)
    ]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [results.get(i) or _timed_out(b, timeout) for i, b in enumerate(backends)]


def _diagnose_safely(backend: Backend) -> BackendReport:
    try:
        return diagnose_backend(backend)
    except Exception as exc:  # a driver bug must not hide the other backends' reports
        return BackendReport(
            backend.name, backend.kind, backend.endpoint(), Status.UNKNOWN, reachable=False,
            error=f"unexpected error: {type(exc).__name__}: {backend.redact(str(exc))}",
        )


def _timed_out(backend: Backend, timeout: float) -> BackendReport:
    return BackendReport(
        backend.name, backend.kind, backend.endpoint(), Status.UNKNOWN, reachable=False,
        error=f"no answer within {timeout:g}s (diag --timeout)",
    )


def overall_status(reports: list[BackendReport]) -> Status:
    return worst([report.status for report in reports])
