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
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storagectl.errors import UsageError

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
        path = state_path(request)
        existing = _read(path)
        if existing is None:
            if request.resume:
                raise UsageError(f"--resume: no interrupted run to resume ({path} does not exist)",
                                 hint="Try: the same command without --resume")
            return cls(path, identity)
        if not request.resume:
            raise UsageError(f"an earlier run from {request.source.name!r} to {request.target.name!r} was "
                             f"interrupted (state in {path}); nothing was done",
                             hint=f"Try: --resume to continue it, or delete {path} to start over")
        if existing.get("identity") != identity:
            raise UsageError(f"--resume: the interrupted run in {path} moved another selection or between "
                             "other servers; nothing was done",
                             hint=f"Try: the interrupted run's options, or delete {path} to start over")
        return cls(path, identity, existing.get("parts") or {})

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
