"""Showing core progress events on stderr: a live overall bar on a terminal, periodic lines otherwise.

Both read a :class:`~storagectl.archive.progress.ProgressModel`, so what they cost and print does
not grow with the number of objects: the terminal redraws a few lines at most REDRAWS_PER_SECOND
times a second and clears them at the end; a pipe gets one line per PLAIN_INTERVAL seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from storagectl.archive.progress import ProgressCallback, ProgressEvent, ProgressModel, Throttle, no_progress
from storagectl.cli.appstate import AppState
from storagectl.units import format_duration, human_bytes

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

    from storagectl.archive.progress import PhaseView

log = logging.getLogger(__name__)
REDRAWS_PER_SECOND = 4
PLAIN_INTERVAL = 10.0  # seconds between progress lines in logs
SHOWN_PHASES = 3  # the current phase and the last completed ones
BAR_WIDTH = 20
# Seconds of work before a terminal shows bars: a shorter command shows none and never loads rich's
# live display (~30 ms, measurable against a half-second command); its result line says what it did.
LIVE_AFTER = 0.5


@contextlib.contextmanager
def progress_view(state: AppState) -> Iterator[ProgressCallback]:
    if state.quiet:
        yield no_progress
    elif state.stderr_is_terminal:
        with live_progress(lambda: state.err, delay=LIVE_AFTER) as callback:
            yield callback
    else:
        with plain_progress(_ConsoleOnFirstLine(state)) as callback:
            yield callback


class _ConsoleOnFirstLine:
    """``state.err``, made when the first progress line is printed: most runs into a log print none,
    and rich is ~25 ms of a start."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    def print(self, *args: Any, **kwargs: Any) -> None:
        self._state.err.print(*args, **kwargs)


@contextlib.contextmanager
def live_progress(console: Console | Callable[[], Console], clock: Callable[[], float] = time.monotonic,
                  auto_refresh: bool = True, delay: float = 0.0) -> Iterator[ProgressCallback]:
    """Bars redrawn by rich's refresh thread, never by the workers that report; gone at the end.
    They appear ``delay`` seconds after the start (a timer thread starts them), so work shorter
    than that shows none; the model counts from the start, so totals and rate are whole."""
    model = ProgressModel(clock)
    display = _DelayedLive(console, model, auto_refresh)
    timer = display.start_after(delay)
    try:
        yield model.update
    except BaseException:  # Ctrl-C, an error: the bars stop where they were, not at 100%
        model.end(complete=False)
        raise
    else:
        model.end()
    finally:
        if timer is not None:
            timer.cancel()
        display.stop()


class _DelayedLive:
    """rich's Live display, started once (now, or by a timer) and stopped once, whichever thread
    gets there first; never started after the work ended."""

    def __init__(self, console: Console | Callable[[], Console], model: ProgressModel, auto_refresh: bool) -> None:
        self._console, self._model, self._auto_refresh = console, model, auto_refresh
        self._lock = threading.Lock()
        self._live: Any = None
        self._stopped = False

    def start_after(self, delay: float) -> threading.Timer | None:
        if delay <= 0:
            self.start()
            return None
        timer = threading.Timer(delay, self.start)
        timer.daemon = True
        timer.start()
        return timer

    def start(self) -> None:
        with self._lock:
            if self._stopped or self._live is not None:
                return
            try:
                self._live = self._started_live()
            except Exception:  # the bars are a courtesy: never a traceback from the timer thread
                self._stopped = True
                log.debug("progress display not started", exc_info=True)

    def _started_live(self) -> Any:
        from rich.live import Live

        console = self._console() if callable(self._console) else self._console
        live = Live(ProgressDisplay(self._model), console=console, transient=True,
                    auto_refresh=self._auto_refresh, refresh_per_second=REDRAWS_PER_SECOND)
        live.start()
        return live

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._live is not None:
                self._live.stop()


@contextlib.contextmanager
def plain_progress(console: Console, clock: Callable[[], float] = time.monotonic,
                   interval: float = PLAIN_INTERVAL) -> Iterator[ProgressCallback]:
    """One line about the current phase per ``interval`` (only while work goes on: a command that
    takes less prints none; its own result line says what it did)."""
    model = ProgressModel(clock)
    throttle = Throttle(interval, clock)

    def report(event: ProgressEvent) -> None:
        model.update(event)
        if throttle.ready():
            console.print(progress_line(model.views()[-1]), markup=False, highlight=False)

    yield report


def progress_line(view: PhaseView) -> str:
    """``backup: 45% 12.0 MiB of 26.7 MiB, 60/152 objects, 3.1 MiB/s, ETA 5s``"""
    return f"{view.action}: {_figures(view)}"


def _figures(view: PhaseView, compact: bool = False) -> str:
    """The phase's figures; ``compact`` (a narrow terminal) drops the words so the rate and ETA
    still fit: ``53% 310.3 KiB/587.4 KiB, 75/154, 807.1 KiB/s, ETA 3s``."""
    of = "/" if compact else " of "
    percent = f"{view.fraction:.0%} " if view.fraction is not None else ""
    eta = f", ETA {format_duration(round(view.eta))}" if view.eta is not None else ""
    if view.unit != "bytes":  # counted things (keys): no object count, rate in units/s
        total = f"{of}{view.total:,}" if view.total is not None else ""
        return f"{percent}{view.done:,}{total} {view.unit}, {view.rate:,.0f} {view.unit}/s{eta}"
    size = human_bytes(view.done) + (f"{of}{human_bytes(view.total)}" if view.total is not None else "")
    objects = f"{view.finished}/{view.expected}" if view.expected is not None else str(view.finished)
    return f"{percent}{size}, {objects}{'' if compact else ' objects'}, {human_bytes(view.rate)}/s{eta}"


ACTION_WIDTH = 8
MIN_BAR_WIDTH = 6


def bar_line(view: PhaseView, width: int) -> tuple[str, int]:
    """The figures and the bar's width for a line of ``width`` cells: the figures whole when they
    fit (compact ones, then without the bar, on a narrow terminal), the bar in what is left."""
    figures = _figures(view)
    room = width - ACTION_WIDTH - 1 - len(figures)
    if room < MIN_BAR_WIDTH:
        figures = _figures(view, compact=True)
        room = width - ACTION_WIDTH - 1 - len(figures)
    return figures, min(BAR_WIDTH, room) if room >= MIN_BAR_WIDTH else 0


class ProgressDisplay:
    """A rich renderable: per phase one bar line, then up to MAX_LIVE live objects and a count of
    the others (finished objects are only counted); a completed phase keeps just its bar line."""

    def __init__(self, model: ProgressModel) -> None:
        self.model = model

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text  # plain Text lines: cheaper to build and draw than a table

        for view in self.model.views()[-SHOWN_PHASES:]:
            figures, bar_width = bar_line(view, options.max_width)
            bar = (_bar(view.fraction, bar_width), " ") if bar_width else ()
            yield Text.assemble((f"{view.action:<{ACTION_WIDTH}}", "bold"), *bar, figures,
                                no_wrap=True, overflow="ellipsis")
            if view.complete:
                continue
            for item in view.live:
                yield Text(f"  {item.name}  {_amount(item.done, item.total, view.unit)}", style="dim", no_wrap=True,
                           overflow="ellipsis")
            if view.more_live:
                yield Text(f"  and {view.more_live} more", style="dim")


def _amount(done: int, total: int | None, unit: str) -> str:
    """``1.5 KiB of 3.9 KiB`` for bytes, ``46,800 of 976,600 keys`` for counted things."""
    if unit == "bytes":
        return human_bytes(done) + (f" of {human_bytes(total)}" if total else "")
    return f"{done:,}" + (f" of {total:,}" if total else "") + f" {unit}"


def _bar(fraction: float | None, width: int = BAR_WIDTH) -> Any:
    from rich.text import Text

    filled = round(width * fraction) if fraction is not None else 0
    return Text.assemble(("━" * filled, "bar.complete"), ("━" * (width - filled), "bar.back"))
