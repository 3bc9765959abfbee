"""Child processes that must not outlive storagectl: on Linux each asks the kernel for SIGKILL when
its parent dies, so a ``kill -9`` of storagectl leaves no pg_dump holding a snapshot and no worker
process reading on. The signal follows the *thread* that spawned the child: that thread must
outlive it (wait for it, or be the main thread)."""

from __future__ import annotations

import ctypes
import functools
import os
import sys

TYPE_CHECKING = False  # typing's: a SQLite reader process (reader_child) imports neither typing nor signal
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h
SIGKILL = 9  # signal.SIGKILL (9 on every POSIX system), without importing signal (and enum)


def die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` of a program that is not ours (resolved in the
    parent: no dlopen after fork); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    prctl, parent = _prctl(), os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody will send the signal
            os.kill(os.getpid(), SIGKILL)
    return in_child


def die_with(parent: int) -> None:
    """Called first thing in a Python child of storagectl (no ``preexec_fn`` needed): SIGKILL when
    ``parent`` dies, or at once if it already has."""
    if sys.platform.startswith("linux"):
        _prctl()(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), SIGKILL)


@functools.cache
def _prctl() -> Any:
    # the symbols already loaded (libc's among them): no ctypes.util, which would import subprocess and
    # re into a SQLite reader process (reader_child) that imports nothing else
    return ctypes.CDLL(None, use_errno=True).prctl
