"""Job locks: one run of a job at a time, across replicas (Redis) or on one host (a file).

The Redis lock is a lease: SET key token NX PX ttl, renewed every ttl/3 while the job runs and
released with a compare-and-delete, so a replica that stalls past its lease can never delete a
lock another replica has since taken.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol

from storagectl.errors import LockHeld

log = logging.getLogger(__name__)

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class JobLock(Protocol):
    name: str

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another run holds it."""
        ...

    def release(self) -> None: ...

    @property
    def lost(self) -> bool:
        """True when the lease could not be renewed (another run may have taken over)."""
        ...


class RedisLock:
    def __init__(self, client: Any, name: str, ttl_seconds: float) -> None:
        self.client = client
        self.name = name
        self.key = f"storagectl:lock:{name}"
        self.token = uuid.uuid4().hex
        self.ttl_ms = max(1000, int(ttl_seconds * 1000))
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return False
        self._renewer = threading.Thread(target=self._renew_until_stopped, name=f"lock-{self.name}", daemon=True)
        self._renewer.start()
        return True

    def renew(self) -> bool:
        """Extend the lease to a full ttl; False (and ``lost``) when it is no longer ours."""
        if self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
            return True
        log.error("lock %s was lost (lease expired or taken over)", self.key)
        self._lost.set()
        return False

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # a blip must not kill the job; the lease still has 2/3 left
                log.warning("renewing lock %s failed: %s", self.key, exc)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except Exception as exc:  # the lease expires by itself within ttl
            log.warning("releasing lock %s failed: %s (it expires in %d ms)", self.key, exc, self.ttl_ms)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


class FileLock:
    """An flock on a file: released by the kernel if the process dies."""

    def __init__(self, path: Path, name: str) -> None:
        import filelock

        path.parent.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.path = path
        self._lock = filelock.FileLock(str(path))

    def acquire(self) -> bool:
        import filelock

        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()

    @property
    def lost(self) -> bool:
        return False


def default_lock_dir() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("storagectl")) / "locks"


class held:
    """``with held(lock):`` takes the lock or raises LockHeld; always releases."""

    def __init__(self, lock: JobLock, what: str) -> None:
        self.lock = lock
        self.what = what

    def __enter__(self) -> JobLock:
        if not self.lock.acquire():
            raise LockHeld(
                f"{self.what} is already running elsewhere (lock {self.lock.name!r} is held)",
                hint="Try: wait for the other run to finish; a crashed holder's lock expires by itself",
            )
        return self.lock

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def probe(lock: JobLock, what: str) -> LockHeld | None:
    """The error ``held(lock, what)`` would raise now, found by taking the lock and letting it go at
    once; None: nobody holds it."""
    try:
        with held(lock, what):
            return None
    except LockHeld as exc:
        return exc


class JobLocks:
    """The lock of each job: a Redis lease on ``lock.backend`` or a local file lock."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._clients: dict[str, Any] = {}
        self._guard = threading.Lock()

    def __call__(self, job: str) -> JobLock:
        settings = self.config.job(job)
        name = f"job:{job}"
        if settings.lock is None or settings.lock.backend is None:
            return FileLock(default_lock_dir() / f"job-{job}.lock", name)
        return RedisLock(self._client(settings.lock.backend), name, settings.lock.ttl)

    def _client(self, backend: str) -> Any:
        from storagectl.backends import backend_from_config

        with self._guard:
            if backend not in self._clients:
                self._clients[backend] = backend_from_config(self.config, backend).client()
            return self._clients[backend]


def check_lock_backends(config: Any, jobs: list[str]) -> None:
    """Connect to every lock backend the jobs use; an unreachable one raises BackendUnavailable."""
    from storagectl.backends import backend_from_config

    names = {config.job(job).lock.backend for job in jobs if config.job(job).lock is not None}
    for name in sorted(n for n in names if n is not None):
        with backend_from_config(config, name).connect():
            log.debug("lock backend %s is reachable", name)


def job_locked(config: Any, job: str) -> held:
    """``with job_locked(config, job):`` one run of the job at a time (scheduler, prune, run --prune)."""
    return held(JobLocks(config)(job), f"job {job!r}")
