#!/usr/bin/env python3
"""CPU of the terminal progress display alone, without the noise of a real backup.

Feeds a ProgressModel the events of a backup of ``--tables`` small tables (plan, then start,
advance, finish per table), paced over ``--seconds`` as a real run would be, once through
``live_progress`` (rich Live on a pty, redrawn by its refresh thread) and once through
``plain_progress`` (what a pipe gets). Prints the CPU seconds spent in redraws (thread CPU
time around ``Live.refresh``), their number and cost each, and the process CPU of both modes.
Exits 0 either way (benchmarks report, tests assert).

Usage: python bench/bench_progress_display.py [--tables 2000] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import threading
import time

from rich.console import Console
from rich.live import Live

from storagectl.archive.progress import ProgressEvent
from storagectl.cli.progress import live_progress, plain_progress

OBJECT_BYTES = 8192


class RedrawMeter:
    """Thread CPU time spent in ``Live.refresh`` (the refresh thread's work), and how often."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.redraws = 0
        self._original = Live.refresh

    def __enter__(self) -> RedrawMeter:
        original, meter = self._original, self

        def refresh(live: Live) -> None:
            started = time.thread_time()
            original(live)
            meter.cpu += time.thread_time() - started
            meter.redraws += 1

        Live.refresh = refresh  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc: object) -> None:
        Live.refresh = self._original  # type: ignore[method-assign]


def terminal_console() -> Console:
    """A console on a pty whose other end is drained, as a terminal would."""
    controller, terminal = pty.openpty()

    def drain() -> None:
        while True:
            try:
                if not os.read(controller, 65536):
                    return
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    return Console(file=os.fdopen(terminal, "w"), force_terminal=True, width=100)


def feed(callback, tables: int, seconds: float) -> None:  # noqa: ANN001 - a ProgressCallback
    callback(ProgressEvent("backup", "plan", "", total=tables * OBJECT_BYTES, objects=tables))
    pause = seconds / tables
    for index in range(tables):
        name = f"public.t{index}"
        callback(ProgressEvent("backup", "start", name, total=OBJECT_BYTES))
        callback(ProgressEvent("backup", "advance", name, done=OBJECT_BYTES // 2, total=OBJECT_BYTES))
        callback(ProgressEvent("backup", "finish", name, done=OBJECT_BYTES))
        time.sleep(pause)


def one_round(terminal: bool, tables: int, seconds: float) -> tuple[float, RedrawMeter]:
    console = terminal_console()
    with RedrawMeter() as meter:
        started = time.process_time()
        with (live_progress(console) if terminal else plain_progress(console)) as callback:
            feed(callback, tables, seconds)
        return time.process_time() - started, meter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the fed backup lasts")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    live_cpu, plain_cpu, redraw_cpu, redraws = [], [], [], []
    for _ in range(args.rounds):
        cpu, meter = one_round(True, args.tables, args.seconds)
        live_cpu.append(cpu)
        redraw_cpu.append(meter.cpu)
        redraws.append(meter.redraws)
        plain_cpu.append(one_round(False, args.tables, args.seconds)[0])
    per_redraw = statistics.median(c / max(n, 1) for c, n in zip(redraw_cpu, redraws, strict=True))
    print(f"{args.tables} tables over {args.seconds:.0f}s: redraws {statistics.median(redraws):.0f}, "
          f"redraw cpu {statistics.median(redraw_cpu) * 1e3:.1f} ms ({per_redraw * 1e3:.2f} ms each) | "
          f"process cpu terminal {statistics.median(live_cpu):.3f}s piped {statistics.median(plain_cpu):.3f}s "
          f"(medians of {args.rounds}; spread terminal {min(live_cpu):.3f}-{max(live_cpu):.3f}s, "
          f"piped {min(plain_cpu):.3f}-{max(plain_cpu):.3f}s)", flush=True)


if __name__ == "__main__":
    main()
