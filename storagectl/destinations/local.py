"""A local (or mounted) directory as a backup destination.

Objects are written to a hidden temp name in their final directory, fsynced, renamed into place and
the directory fsynced, so a crash or a full disk never leaves a complete-looking object behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from storagectl.config.methods import SettingsModel
from storagectl.destinations.base import StoredObject, UnfinishedUpload, check_key
from storagectl.errors import NotFound, OperationFailed, PermissionDenied, StoragectlError
from storagectl.fsutil import fsync_directory

if TYPE_CHECKING:
    from storagectl.destinations.local_settings import LocalSettings

TEMP_SUFFIX = ".tmp"


class LocalDestination:
    Settings = SettingsModel("storagectl.destinations.local_settings:LocalSettings")

    def __init__(self, name: str, settings: LocalSettings) -> None:
        self.name = name
        self.settings = settings
        self.root = Path(settings.path)

    def location(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    @contextlib.contextmanager
    def put_stream(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        temp: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
            temp = Path(temp_name)
            with os.fdopen(fd, "wb", buffering=1024 * 1024) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
            temp = None
            fsync_directory(path.parent)
        except OSError as exc:
            raise self._translate(exc, key) from exc
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    temp.unlink()
                self._remove_empty_dirs(path.parent)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        try:
            handle = open(self._path(key), "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise self._translate(exc, key) from exc
        with handle:
            yield handle

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        for key, path in self._files(prefix):
            if not _is_temp(path.name) and key.startswith(prefix):
                yield self._stored(key, path)

    def list_unfinished(self, prefix: str = "") -> Iterator[UnfinishedUpload]:
        """The temp files of writes in progress, or left by a process killed while writing."""
        for key, path in self._files(prefix):
            if not (_is_temp(path.name) and _final_key(key).startswith(prefix)):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # renamed into place meanwhile
                continue
            yield UnfinishedUpload(_final_key(key), datetime.fromtimestamp(stat.st_mtime, UTC), stat.st_size, key)

    def abort_unfinished(self, uploads: Iterable[UnfinishedUpload]) -> None:
        self.delete(upload.handle for upload in uploads)

    def _files(self, prefix: str = "") -> Iterator[tuple[str, Path]]:
        """Every file under the folder of ``prefix`` (a key ``a/b/c...`` lies in the folder ``a/b``),
        not under the whole root: a backup's own listing stays as quick with thousands of others."""
        folder, _, _ = prefix.rpartition("/")
        parts = folder.split("/") if folder else []
        start = self.root.joinpath(*parts) if parts and not ({"", ".", ".."} & set(parts)) else self.root
        if not start.is_dir():
            return
        for directory, _dirs, files in os.walk(start):
            for filename in files:
                path = Path(directory, filename)
                yield path.relative_to(self.root).as_posix(), path

    @staticmethod
    def _stored(key: str, path: Path) -> StoredObject:
        stat = path.stat()
        return StoredObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def delete(self, keys: Iterable[str]) -> None:
        parents: set[Path] = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise self._translate(exc, key) from exc
            parents.add(path.parent)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._remove_empty_dirs(parent)

    def _remove_empty_dirs(self, directory: Path) -> None:
        """Remove now-empty folders up to (not including) the root, so deleted backups leave no trace."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _translate(self, exc: OSError, key: str) -> StoragectlError:
        where = f"destination {self.name!r} ({self.root})"
        if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
            return OperationFailed(f"{where}: no space left on device while writing {key}",
                                   hint="Try: free space on the destination or choose another destination")
        if isinstance(exc, FileNotFoundError):
            return NotFound(f"{where}: {key} does not exist")
        if isinstance(exc, PermissionError):
            return PermissionDenied(f"{where}: permission denied for {key}",
                                    hint="Try: check the directory's owner and mode")
        return OperationFailed(f"{where}: {key}: {exc.strerror or exc}")


def _is_temp(filename: str) -> bool:
    """``.<name>.<random>.tmp``, as :meth:`LocalDestination.put_stream` names what it is writing."""
    return filename.startswith(".") and filename.endswith(TEMP_SUFFIX)


def _final_key(temp_key: str) -> str:
    """The key a temp file becomes: ``a/.name.x1y2.tmp`` -> ``a/name`` (mkstemp's part has no dot)."""
    folder, _, filename = temp_key.rpartition("/")
    name = filename[1 : -len(TEMP_SUFFIX)].rpartition(".")[0]
    return f"{folder}/{name}" if folder else name
