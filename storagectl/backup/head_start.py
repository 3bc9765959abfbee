"""Transfers a backup run begins before the rest of storagectl loads (issue 19).

``backup run`` asks the first backend of its plan for a head start as soon as the command line is
checked: a kind registered in HEAD_STARTS gets its settings and may begin its transfer (a Redis
backend sends SYNC, so the server forks and writes its snapshot while the archive machinery and the
driver load). The run hands it to the backend's ``backup`` in ``BackupOptions.head_start``; whatever
is not taken by the end of the run is closed. A kind's head start imports nothing heavy, and never
fails: the backup reports any trouble as it would have without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storagectl.backup.plan import BackupPlan

# kind -> "module:function": function(settings) -> an object with close(), or None
HEAD_STARTS = {"redis": "storagectl.backends.redis_head_start:head_start"}


@contextmanager
def head_start(config: Any, plan: BackupPlan) -> Iterator[dict[str, Any]]:
    """The head start of ``plan``'s backend by name (empty: none), closed on the way out."""
    started: dict[str, Any] = {}
    settings = config.backend(plan.backend)
    where = HEAD_STARTS.get(settings.kind)
    if where is not None and plan.selection.empty:
        module, _, function = where.partition(":")
        transfer = getattr(import_module(module), function)(settings)
        if transfer is not None:
            started[plan.backend] = transfer
    try:
        yield started
    finally:
        for transfer in started.values():
            transfer.close()
