"""Showing core progress events: rich bars on a terminal (stderr), plain lines otherwise."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from storagectl.archive.progress import ProgressCallback, ProgressEvent, no_progress
from storagectl.cli.output import note
from storagectl.cli.state import AppState
from storagectl.units import human_bytes


@contextlib.contextmanager
def progress_view(state: AppState) -> Iterator[ProgressCallback]:
    if state.quiet:
        yield no_progress
    elif state.err.is_terminal:
        with _bars(state) as callback:
            yield callback
    else:
        yield lambda event: _line(state, event)


def _line(state: AppState, event: ProgressEvent) -> None:
    if event.stage != "finish":
        return
    stored = f" -> {human_bytes(event.stored)} stored" if event.stored is not None else ""
    note(state, f"{event.action}: {event.object}: {human_bytes(event.done)}{stored}")


@contextlib.contextmanager
def _bars(state: AppState) -> Iterator[ProgressCallback]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    tasks: dict[tuple[str, str], int] = {}
    lock = threading.Lock()
    with Progress(*columns, console=state.err, transient=False) as bars:
        def show(event: ProgressEvent) -> None:
            with lock:
                key = (event.action, event.object)
                if key not in tasks:
                    tasks[key] = bars.add_task(f"{event.action} {event.object}", total=event.total)
                bars.update(tasks[key], completed=event.done, total=event.total or None)
                if event.stage == "finish":
                    bars.update(tasks[key], total=event.done, completed=event.done)

        yield show
