"""The Inspector every kind implements, the options all views share, and the one place where a view
runs: connect, read the version, fill the report, stop cleanly on budget or Ctrl-C."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from storagectl.inspect.model import Budget, BudgetExhausted, Report

if TYPE_CHECKING:
    from storagectl.backends.base import Backend


@dataclass(frozen=True)
class InspectOptions:
    """Every view's knobs; a view reads the ones it understands."""

    budget: float | None = None  # wall seconds per backend
    top: int = 20
    schema: str | None = None
    sort: str = "size"
    exact: bool = False
    chunks: bool = False
    interval: float | None = None  # queries: seconds between two snapshots
    pattern: str | None = None
    delimiter: str = ":"
    depth: int = 2
    max_keys: int | None = None
    pause: float = 0.0  # keys: sleep between SCAN batches (-i)
    samples: int | None = None  # keys: MEMORY USAGE SAMPLES (None: the server's default, 5)
    prefix: str | None = None
    query_timeout: float = 10.0  # PostgreSQL statement_timeout per query (bounded by the budget)
    lock_timeout: float = 1.0


class Inspector(ABC):
    """Inspects one backend of one kind. ``views`` names the methods it has besides ``overview``;
    each takes the open connection and the report to fill in, and may be stopped at any point."""

    views: ClassVar[tuple[str, ...]] = ("overview",)

    def __init__(self, backend: Backend, options: InspectOptions, budget: Budget) -> None:
        self.backend = backend
        self.options = options
        self.budget = budget

    @abstractmethod
    def overview(self, connection: Any, report: Report) -> None:
        """Kind, size, object counts and the biggest few items: cheap enough for every backend at once."""

    def server_version(self, connection: Any) -> str | None:
        return self.backend.server_version(connection)


def run_view(inspector: Inspector, view: str, report: Report) -> None:
    """Connect, fill ``report`` through the inspector's ``view`` method, always close. Budget and
    Ctrl-C end the view early with what was gathered (``report.stopped``); SIGTERM still unwinds."""
    from storagectl.errors import Terminated

    try:
        with inspector.backend.connect() as connection:
            report.server_version = inspector.server_version(connection)
            getattr(inspector, view)(connection, report)
    except BudgetExhausted:
        report.stopped = report.stopped or "budget"
    except Terminated:
        raise
    except KeyboardInterrupt:
        report.stopped = "interrupted"
