"""The lease of a backup being written: ``<group>/<id>/lease.json``, rewritten by its run every minute.

A folder without a manifest is **in progress** while its lease is live (rewritten less than
:data:`LEASE_TTL` ago), however long ago the run last finished an object: `backup prune` and the
clean-up after other runs leave it alone. The lease is an object at the destination, so it protects
a run from a prune on any host, at a local directory and in S3 alike, with or without a job lock. A
run killed outright stops renewing it; its folder becomes a leftover once the lease has expired and
nothing has been written to it for ``retention.partial_after``.

The lease's age is the destination's timestamp (file mtime, S3 ``LastModified``) seen from the
pruning host's clock, so those clocks must agree to within ``LEASE_TTL - RENEW_EVERY``. A writer that
stalls for longer than that (or cannot reach the destination to renew) loses the protection; the
run's check of its objects before and after writing the manifest
(:meth:`storagectl.archive.writer.ArchiveSession.write_manifest`) then fails it rather than leave a
complete-looking backup with objects missing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from storagectl.destinations.base import Destination, StoredObject
from storagectl.errors import StoragectlError

log = logging.getLogger("storagectl.backup")

LEASE_NAME = "lease.json"
LEASE_TTL = 300.0  # seconds a lease stays live after its last renewal
RENEW_EVERY = 60.0


class BackupLease:
    """``with BackupLease(destination, prefix) as lease:`` holds the lease of the backup under
    ``prefix`` while the block writes it, renewing it in a thread; the lease is removed on exit."""

    def __init__(self, destination: Destination, prefix: str, renew_every: float = RENEW_EVERY) -> None:
        self.destination = destination
        self.key = prefix + LEASE_NAME
        self.renew_every = renew_every
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> BackupLease:
        self.renew()
        self._renewer = threading.Thread(target=self._renew_until_stopped, name=f"lease {self.key}", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            self.destination.delete([self.key])
        except StoragectlError as error:  # an orphaned lease only delays the clean-up of a failed run
            log.warning("could not remove the lease %s: %s (it expires by itself)", self.key, error)

    def renew(self) -> None:
        """Rewrite the lease now: a prune that looks from here on sees the backup in progress."""
        import socket  # here: listing backups reads leases; only taking one needs the host name

        holder = {"host": socket.gethostname(), "pid": os.getpid(), "renewed_at": datetime.now(UTC).isoformat()}
        with self.destination.put_stream(self.key) as stream:
            stream.write(json.dumps(holder).encode())

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self.renew()
            except Exception as exc:  # a blip must not kill the backup; the lease has time left
                log.warning("renewing the lease %s failed: %s", self.key, exc)


def live_lease(objects: Iterable[StoredObject], now: datetime) -> StoredObject | None:
    """The lease among a folder's objects when it was renewed less than LEASE_TTL before ``now``."""
    expired_before = now - timedelta(seconds=LEASE_TTL)
    return next((obj for obj in objects if obj.key.endswith("/" + LEASE_NAME) and obj.modified > expired_before),
                None)


def lease_is_live(objects: Iterable[StoredObject], now: datetime) -> bool:
    return live_lease(objects, now) is not None
