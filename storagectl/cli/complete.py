"""Shell completion for option and argument values: names from the config, backup ids from the
destinations, backend kinds. Output formats complete by themselves (``OutputFormat`` is a choice).

Completers run on every TAB, so they are quick and silent: the config is the one the command line
names (``-c`` given earlier, else ``$STORAGECTL_CONFIG``, else the usual search), any error yields
no completions, and listing backups is bounded by ``BACKUP_IDS_TIMEOUT`` and cached briefly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from storagectl.config import Config, DestinationSettings

Completions = list[tuple[str, str]]

BACKUP_IDS_TIMEOUT = 2.0  # seconds for all destinations together, each listed in its own thread
BACKUP_IDS_CACHE_SECONDS = 30.0
CACHE_FILE = "completion-backup-ids.json"


def _silent(completer: Callable[[typer.Context, str], Completions]) -> Callable[..., Completions]:
    """No traceback, warning or log line may reach the shell: on any error, complete nothing."""

    @functools.wraps(completer)
    def complete(ctx: typer.Context, incomplete: str) -> Completions:
        previous = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return completer(ctx, incomplete)
        except Exception:  # noqa: BLE001 - a completer that fails must stay invisible
            return []
        finally:
            logging.disable(previous)

    return complete


def _config(ctx: typer.Context) -> Config:
    from storagectl.config import load_config

    return load_config(ctx.find_root().params.get("config"), environ=_EveryVariableSet(os.environ))


class _EveryVariableSet(dict[str, str]):
    """The environment, with "1" for any ``${VAR}`` it lacks: secrets are often exported only where
    storagectl runs for real (a systemd unit, a CronJob), not in the shell pressing TAB, and names
    do not depend on them. A destination whose credentials are missing then just lists nothing."""

    def __contains__(self, name: object) -> bool:
        return True

    def __missing__(self, name: str) -> str:
        return "1"


def _describe(kind: str, description: str) -> str:
    return f"{kind}: {description}" if description else kind


@_silent
def backend_names(ctx: typer.Context, incomplete: str) -> Completions:
    return [(name, _describe(s.kind, s.description)) for name, s in _config(ctx).backends.items()]


@_silent
def destination_names(ctx: typer.Context, incomplete: str) -> Completions:
    return [(name, _describe(s.kind, s.description)) for name, s in _config(ctx).destinations.items()]


@_silent
def job_names(ctx: typer.Context, incomplete: str) -> Completions:
    return [(name, f"{', '.join(job.backends)} -> {job.destination}") for name, job in _config(ctx).jobs.items()]


@_silent
def data_migration_names(ctx: typer.Context, incomplete: str) -> Completions:
    return [(name, f"{move.source} -> {move.target}") for name, move in _config(ctx).data_migrations.items()]


@_silent
def backend_kinds(ctx: typer.Context, incomplete: str) -> Completions:
    from storagectl.backends import available_kinds

    return [(kind, "backend kind") for kind in available_kinds()]


@_silent
def redis_types(ctx: typer.Context, incomplete: str) -> Completions:
    from storagectl.selection import REDIS_TYPES

    return [(kind, "Redis key type") for kind in REDIS_TYPES]


@_silent
def backup_ids(ctx: typer.Context, incomplete: str) -> Completions:
    """Complete backups at ``--from DEST`` if given earlier, else at every destination; newest first."""
    config = _config(ctx)
    wanted = ctx.params.get("from_")
    names = [wanted] if wanted else list(config.destinations)
    found = _cached_backup_ids(config, names)
    ids = [(backup_id, f"{group} at {name}") for name, listed in found.items() for backup_id, group in listed.items()]
    return sorted(ids, reverse=True)  # ids start with their UTC start time


def backup_ids_or_latest(ctx: typer.Context, incomplete: str) -> Completions:
    from storagectl.backup.catalog import LATEST

    ids = backup_ids(ctx, incomplete)
    if not ids:  # no backup (or a config that cannot be read): nothing to offer, `latest` neither
        return []
    whose = "--backend (default: of --to)" if "to" in ctx.params else "--backend and/or --job"
    return [(LATEST, f"the newest backup of {whose}"), *ids]


# -- backup ids: bounded listing, short cache ------------------------------------------------------
def _cached_backup_ids(config: Config, names: list[str]) -> dict[str, dict[str, str]]:
    """``{destination: {backup id: group}}``; a destination that did not answer in time is left out
    (and not cached, so the next TAB asks it again)."""
    key, now = _cache_key(config), time.time()
    cached = _read_cache(key, now)
    missing = [name for name in names if name not in cached]
    if missing:
        listed = _list_backup_ids(config, missing, BACKUP_IDS_TIMEOUT)
        cached.update({name: {"at": now, "ids": ids} for name, ids in listed.items()})
        _write_cache(key, cached)
    return {name: cached[name]["ids"] for name in names if name in cached}


def _list_backup_ids(config: Config, names: list[str], timeout: float) -> dict[str, dict[str, str]]:
    """List every destination concurrently; give up on those still busy after ``timeout``. Daemon
    threads, so a hung mount or endpoint never holds the shell (the process exits right after)."""
    results: dict[str, dict[str, str]] = {}
    lock = threading.Lock()

    def list_one(name: str) -> None:
        with contextlib.suppress(Exception):
            ids = _complete_backups(config, name, timeout)
            with lock:
                results[name] = ids

    threads = [threading.Thread(target=list_one, args=(name,), daemon=True) for name in names]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        return dict(results)


def _complete_backups(config: Config, name: str, timeout: float) -> dict[str, str]:
    """Ids of the folders holding a manifest (complete backups), from the listing alone."""
    from storagectl.archive.manifest import MANIFEST_NAME, backup_prefix
    from storagectl.backup.catalog import backup_folders
    from storagectl.destinations import open_destination

    destination = open_destination(name, _bounded(config.destination(name), timeout))
    return {folder.id: folder.group for folder in backup_folders(destination)
            if any(o.key == backup_prefix(folder.group, folder.id) + MANIFEST_NAME for o in folder.objects)}


def _bounded(settings: DestinationSettings, timeout: float) -> DestinationSettings:
    """One try, and network timeouts no longer than the completion's, for kinds that have them."""
    from storagectl.config import RetrySettings

    update: dict[str, Any] = {"retry": RetrySettings(attempts=1)}
    timeouts = getattr(settings, "timeouts", None)
    if timeouts is not None:
        update["timeouts"] = timeouts.model_copy(update={"connect": timeout, "statement": timeout})
    return settings.model_copy(update=update)


def _cache_path() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("storagectl")) / CACHE_FILE


def _cache_key(config: Config) -> str:
    """The config file and its mtime: an edited config (new or renamed destination) starts afresh."""
    path = Path(config.path).resolve()
    return f"{path}:{path.stat().st_mtime_ns}"


def _read_cache(key: str, now: float) -> dict[str, Any]:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
        if data["key"] != key:
            return {}
        return {name: entry for name, entry in data["destinations"].items()
                if 0 <= now - entry["at"] < BACKUP_IDS_CACHE_SECONDS}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_cache(key: str, destinations: dict[str, Any]) -> None:
    """Temp file then rename, so two shells completing at once never read half a file; a cache that
    cannot be written (read-only home) just means listing again next time."""
    with contextlib.suppress(OSError), _temp_beside(_cache_path()) as handle:
        json.dump({"key": key, "destinations": destinations}, handle)


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
