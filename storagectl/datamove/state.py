"""The resume state of a Redis or Neo4j data migration: a small JSON file next to the config.

It names the run (pair, backends, selection) and, per part (a Redis db or cluster primary, a Neo4j
phase), where the last committed batch ended. A run that finds a state file without ``--resume``
stops; ``--resume`` with a state of another selection stops too; a completed run removes it.
Writes are temp-then-rename, so a ``kill -9`` leaves the previous or the new state, never half.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storagectl.errors import StoragectlError, UsageError

if TYPE_CHECKING:
    from storagectl.datamove.model import DataMigrationRequest

STATE_VERSION = 1
SAVE_INTERVAL_S = 0.2  # a kill loses at most this much committed progress (the batches are copied again)


def state_path(request: DataMigrationRequest) -> Path:
    """``.storagectl-data-<source>-<target>.json`` in the request's state_dir (default: beside the config)."""
    directory = request.state_dir or Path.cwd()
    return Path(directory) / f".storagectl-data-{request.source.name}-{request.target.name}.json"


def run_identity(request: DataMigrationRequest, extra: dict[str, Any] | None = None) -> str:
    """What must be equal for a state to be resumed: the backends' endpoints and the selection."""
    identity = {"source": request.source.endpoint(), "target": request.target.endpoint(),
                "selection": asdict(request.selection), **(extra or {})}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunState:
    """Committed progress per part, written at most every SAVE_INTERVAL_S unless forced."""

    def __init__(self, path: Path, identity: str, parts: dict[str, dict[str, Any]] | None = None) -> None:
        self.path = path
        self.identity = identity
        self.parts: dict[str, dict[str, Any]] = parts or {}
        self._saved_at = 0.0
        self._lock = threading.Lock()  # parts (cluster primaries) commit from several threads

    @classmethod
    def begin(cls, request: DataMigrationRequest, identity: str) -> RunState:
        """The state to continue (``--resume``) or a new one; refuses a leftover state without --resume."""
        if refused := cls.refusal(request, identity):
            raise refused
        path = state_path(request)
        existing = _read(path)
        return cls(path, identity, (existing or {}).get("parts") or {})

    @staticmethod
    def refusal(request: DataMigrationRequest, identity: str) -> StoragectlError | None:
        """Why :meth:`begin` would refuse (read only, as a plan asks): --resume without a state, a
        state without --resume, a state of another run; None: it would not."""
        path = state_path(request)
        try:
            existing = _read(path)
        except StoragectlError as exc:
            return exc
        if existing is None:
            return UsageError(f"--resume: no interrupted run to resume ({path} does not exist)",
                              hint="Try: the same command without --resume") if request.resume else None
        if not request.resume:
            return UsageError(f"an earlier run from {request.source.name!r} to {request.target.name!r} was "
                              f"interrupted (state in {path}); nothing was done",
                              hint=f"Try: {resume_command(request)} to continue it, or delete {path} to start over")
        if existing.get("identity") != identity:
            return UsageError(f"--resume: the interrupted run in {path} moved another selection or between "
                              "other servers; nothing was done",
                              hint=f"Try: the interrupted run's options, or delete {path} to start over")
        return None

    def save(self) -> None:
        """Write what is committed now (an interrupted run's last word)."""
        with self._lock:
            self._write()

    def part(self, name: str) -> dict[str, Any]:
        return self.parts.setdefault(name, {})

    def commit(self, name: str, force: bool = False, **fields: Any) -> None:
        """Record a part's progress (after the target confirmed it) and save, throttled unless ``force``."""
        with self._lock:
            self.parts.setdefault(name, {}).update(fields)
            now = time.monotonic()
            if force or now - self._saved_at >= SAVE_INTERVAL_S:
                self._saved_at = now
                self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps({"version": STATE_VERSION, "identity": self.identity, "parts": self.parts}))
        os.replace(temp, self.path)

    def finish(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def run_lock(request: DataMigrationRequest) -> Iterator[None]:
    """One run per state file: an flock beside it for the run, released by the kernel if the process
    dies. A run that ends without an error removes the lock file (as its state), while it holds it."""
    from storagectl.locks import held

    lock = _lock(request)
    with held(lock, _running(request)):
        yield
        with contextlib.suppress(FileNotFoundError):
            lock.path.unlink()


def other_run(request: DataMigrationRequest) -> StoragectlError | None:
    """The error :func:`run_lock` would raise now (another run between the same backends), found
    without creating the lock file."""
    from storagectl.locks import probe

    lock = _lock(request)
    return probe(lock, _running(request)) if lock.path.exists() else None


def _lock(request: DataMigrationRequest) -> Any:
    from storagectl.locks import FileLock

    path = state_path(request)
    return FileLock(path.with_suffix(".lock"), f"migrate data {request.source.name} → {request.target.name}")


def _running(request: DataMigrationRequest) -> str:
    return f"a migrate data run from {request.source.name!r} to {request.target.name!r}"


def resume_command(request: DataMigrationRequest) -> str:
    """The command line that continues ``request``'s run: its config, backends or plan, and the
    options its state depends on (the selection) or that it set."""
    words = ["storagectl"]
    if request.config_path is not None:
        words += ["-c", str(request.config_path)]
    words += ["migrate", "data", "run"]
    words += [request.plan_name] if request.plan_name else ["--from", request.source.name, "--to", request.target.name]
    selection = request.selection
    for flag, values in (("--table", selection.tables), ("--exclude-table", selection.exclude_tables),
                         ("--pattern", selection.patterns), ("--type", selection.types),
                         ("--label", selection.labels)):
        for value in values:
            words += [flag, value]
    if request.parallel > 1:
        words += ["--parallel", str(request.parallel)]
    if not request.verify:
        words.append("--no-verify")
    return shlex.join([*words, "--resume"])


def raise_first(blockers: list[StoragectlError]) -> None:
    """What a run stops with before it writes: the first blocker a plan finds, the others under it."""
    if blockers:
        first = blockers[0]
        first.details = [*first.details, *(f"a run would also stop on: {other.message}" for other in blockers[1:])]
        raise first


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the data migration state {path}: {exc}",
                         hint=f"Try: delete {path} to start over") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise UsageError(f"{path} is not a storagectl data migration state",
                         hint=f"Try: delete {path} to start over")
    return data
