"""Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write ``path`` all-or-nothing: readers see the old file or the complete new one, never half.

    On any error (disk full included) the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
        fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    with atomic_writer(path, mode) as handle:
        handle.write(text.encode("utf-8"))


def take_over_file_identity(new: Path, old: Path) -> None:
    """Give ``new`` (about to replace ``old``) the owner, group and mode of ``old``, or, when there
    is no ``old``, the mode a new file gets under the process umask. A replaced file must stay
    usable by the application that owns it, also when the replacing process runs as root."""
    if not old.exists():
        os.chmod(new, 0o666 & ~current_umask())
        return
    stat = old.stat()
    if (stat.st_uid, stat.st_gid) != (os.stat(new).st_uid, os.stat(new).st_gid):
        os.chown(new, stat.st_uid, stat.st_gid)  # PermissionError when not root and the owner differs
    os.chmod(new, stat.st_mode & 0o7777)


def current_umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), else set and reset."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
