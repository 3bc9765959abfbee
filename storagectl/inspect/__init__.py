"""`storagectl inspect`: what is in each backend and how big it is, every figure marked exact,
estimated or sampled, within a cost bound.

One module per backend kind, each an :class:`Inspector` registered under the kind it inspects;
commands ask :func:`inspect_backends` for a view and never branch on the kind.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from storagectl.errors import StoragectlError, UsageError
from storagectl.inspect.base import InspectOptions, Inspector, run_view
from storagectl.inspect.model import Budget, Figure, Provenance, Report

if TYPE_CHECKING:
    from storagectl.backends.base import Backend

INSPECTORS: dict[str, str] = {
    "postgres": "storagectl.inspect.postgres:PostgresInspector",
    "timescaledb": "storagectl.inspect.timescaledb:TimescaleInspector",
    "sqlite": "storagectl.inspect.sqlite:SQLiteInspector",
    "redis": "storagectl.inspect.redis:RedisInspector",
    "neo4j": "storagectl.inspect.neo4j:Neo4jInspector",
    "s3": "storagectl.inspect.s3:S3Inspector",
}
VIEWS = ("overview", "tables", "indexes", "queries", "keys", "graph", "objects")


def inspector_class(kind: str) -> type[Inspector] | None:
    target = INSPECTORS.get(kind)
    if target is None:
        return None
    module_name, _, attribute = target.partition(":")
    return getattr(import_module(module_name), attribute)


def kinds_with(view: str) -> list[str]:
    return sorted(kind for kind in INSPECTORS if view in inspector_class(kind).views)  # type: ignore[union-attr]


def check_view(backend: Backend, view: str) -> type[Inspector]:
    """The inspector class for ``backend``, or a usage error naming the kinds that have ``view``."""
    found = inspector_class(backend.kind)
    if found is None or view not in found.views:
        raise UsageError(f"`inspect {view}` does not apply to backend {backend.name!r} (kind {backend.kind}); "
                         f"it inspects {', '.join(kinds_with(view))}",
                         hint="Try: storagectl inspect -b " + backend.name)
    return found


def inspect_backends(backends: list[Backend], view: str, options: InspectOptions) -> list[Report]:
    """Run ``view`` on each backend in turn, each within its own ``options.budget``. The overview
    reports a backend that fails as a row with its error; the other views raise it."""
    inspectors = [check_view(backend, view) for backend in backends] if view != "overview" else None
    reports: list[Report] = []
    for index, backend in enumerate(backends):
        inspector = inspectors[index] if inspectors else inspector_class(backend.kind)
        report = Report(backend.name, backend.kind, view)
        reports.append(report)
        if inspector is None:
            report.error = f"no inspector for kind {backend.kind}"
            continue
        try:
            run_view(inspector(backend, options, Budget(options.budget)), view, report)
        except StoragectlError as exc:
            if view != "overview":
                raise
            report.error = exc.message
        if report.stopped == "interrupted":
            break
    return reports


__all__ = ["VIEWS", "Budget", "Figure", "InspectOptions", "Inspector", "Provenance", "Report",
           "inspect_backends", "kinds_with"]
