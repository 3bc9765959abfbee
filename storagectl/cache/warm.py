"""``cache warm``: load the keys of a storagectl Redis backup into a cold cache.

The backup is read through the archive reader (verified as it is read, as ``restore`` reads it) and
:func:`storagectl.backends.redis.db_records`; each key goes back with ``RESTORE ... ABSTTL``
(routed per key on a cluster by redis-py's cluster pipeline), without ``REPLACE`` unless asked, so a
key the cache already holds is kept and counted. Keys expired since the backup are skipped;
``ttl_jitter`` spreads the expiries of the others so they do not all fall due together."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storagectl.archive.progress import ProgressCallback, no_progress
from storagectl.backends.redis import batches, db_records, server_ms
from storagectl.backup.catalog import LATEST, find_backup, latest_backup_id
from storagectl.backup.restore import open_archive
from storagectl.cache.keyfmt import glob_regex
from storagectl.cache.nodes import key_client, translated
from storagectl.cache.ratelimit import TokenBucket
from storagectl.errors import OperationFailed, UsageError

WARM_BATCH = 500


@dataclass(frozen=True)
class WarmOptions:
    backup_id: str
    destination: str | None = None
    pattern: bytes | None = None
    ttl_jitter: float = 0.0  # 0.1: each TTL moved by up to ±10 %
    rate: float | None = None  # keys a second
    replace: bool = False
    source_db: int | None = None
    identity_file: Path | None = None


@dataclass
class WarmResult:
    backup_id: str
    restored: int = 0
    present: int = 0  # already in the cache: kept (no --replace)
    expired: int = 0  # expired since the backup
    filtered: int = 0  # not matching --pattern
    duration: float = 0.0
    source_db: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "source_db": self.source_db, "restored": self.restored,
                "present": self.present, "expired": self.expired, "filtered": self.filtered,
                "duration": round(self.duration, 3)}


def warm(config: Any, backend: Any, options: WarmOptions, progress: ProgressCallback = no_progress,
         jitter: Callable[[], float] = random.random) -> WarmResult:
    backup_id = options.backup_id
    if backup_id == LATEST:
        backup_id = latest_backup_id(config, options.destination, backend.name)
    found = find_backup(config, backup_id, options.destination)
    family = found.manifest.backend.get("archive_family", found.manifest.backend.get("kind"))
    if family != "redis":
        raise UsageError(f"backup {found.manifest.id} is a {family} backup; cache warm loads Redis backups",
                         hint="Try: storagectl backup list --backend NAME of a redis backend")
    archive = open_archive(config, found, options.identity_file, "warm", progress)
    source = _source_db(archive.metadata, options.source_db, found.manifest.id)
    match = glob_regex(options.pattern).match if options.pattern else None
    bucket = TokenBucket(options.rate) if options.rate else None
    result = WarmResult(found.manifest.id, source_db=source)
    started = time.monotonic()
    with key_client(backend) as client, translated(backend, "warm"):
        now = _server_ms(client)
        for batch in batches(db_records(archive, source), WARM_BATCH):
            kept = []
            for key, payload, expire_at in batch:
                if match is not None and not match(key):
                    result.filtered += 1
                elif expire_at and expire_at <= now:
                    result.expired += 1
                else:
                    kept.append((key, payload, _jittered(expire_at, now, options.ttl_jitter, jitter)))
            if kept:
                if bucket is not None:
                    bucket.take(len(kept))
                _restore(client, kept, options.replace, result)
    result.duration = time.monotonic() - started
    return result


def _source_db(metadata: dict[str, Any], chosen: int | None, backup_id: str) -> int:
    databases = list(metadata.get("databases") or [0])
    if chosen is None and len(databases) == 1:
        return databases[0]
    if chosen is None or chosen not in databases:
        raise UsageError(f"backup {backup_id} holds dbs {databases}; say which one to load",
                         hint=f"Try: --source-db {databases[0]}")
    return chosen


def _server_ms(client: Any) -> int:
    reply = client.time()
    if isinstance(reply, dict):  # RedisCluster asks every node: any one's clock will do
        reply = next(iter(reply.values()))
    return server_ms(reply)


def _jittered(expire_at: int, now: int, spread: float, jitter: Callable[[], float]) -> int:
    if not expire_at or not spread:
        return expire_at
    left = expire_at - now
    return now + max(1, round(left * (1 + spread * (2 * jitter() - 1))))


def _restore(client: Any, records: list[tuple[bytes, bytes, int]], replace: bool, result: WarmResult) -> None:
    from redis.exceptions import ClusterDownError

    pipe = client.pipeline(transaction=False)
    for key, payload, expire_at in records:
        pipe.restore(key, expire_at, payload, replace=replace, absttl=bool(expire_at))
    for reply in pipe.execute(raise_on_error=False):
        if not isinstance(reply, Exception):
            result.restored += 1
        elif "BUSYKEY" in str(reply):
            result.present += 1
        elif isinstance(reply, ClusterDownError):  # translated (exit 3) by the caller
            raise reply
        else:
            raise OperationFailed(f"RESTORE failed: {reply}")
