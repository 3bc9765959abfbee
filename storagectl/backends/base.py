"""The Backend protocol every kind implements, and the connect/retry/close dance in one place."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from storagectl.archive.progress import Estimate
from storagectl.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    OperationTimeout,
    StoragectlError,
)
from storagectl.health import Check, CheckSpec, Status, grade
from storagectl.redact import redact_text
from storagectl.retry import call_with_retry

if TYPE_CHECKING:  # the settings may be the plain form of a cache hit: no pydantic at run time
    from storagectl.config.models import BackendSettings, Threshold

_DNS_MARKERS = (
    "name or service not known", "could not translate host name", "nodename nor servname",
    "temporary failure in name resolution", "no address associated", "getaddrinfo failed",
    "failed to resolve", "name resolution",
)
_REFUSED_MARKERS = ("connection refused", "errno 111", "actively refused", "connect call failed")
_TIMEOUT_MARKERS = ("timeout", "timed out")


class Backend(ABC):
    """One configured backend. Subclasses set ``kind``, ``Settings`` and ``CHECKS``.

    Connections open lazily, only inside :meth:`connect`, and always close when it exits.
    """

    kind: ClassVar[str]
    Settings: ClassVar[type[BackendSettings]]
    CHECKS: ClassVar[dict[str, CheckSpec]] = {}
    # True when a failed restore leaves the target exactly as it was (e.g. temp file + rename).
    # Restores into other kinds verify every object first, so a damaged archive writes nothing.
    restores_atomically: ClassVar[bool] = False

    def stages_replacement(self, metadata: dict[str, Any]) -> bool:
        """True when ``restore --yes`` of a backup with this ``metadata`` restores beside the target and
        swaps it in only when complete, so a failure half-way cannot cost the old contents."""
        return self.restores_atomically

    def check_restore(self, metadata: dict[str, Any]) -> None:
        """Raise when a backup with this ``metadata`` cannot go into this target at all (a Redis backup
        of several dbs into a cluster); run when the restore is planned, before anything is read."""
        return None

    # storagectl.selection.Selection fields this kind backs up and restores selectively (e.g.
    # ("patterns", "types") for Redis); kinds that take a selection implement holds_selection,
    # content_summary(like, selection) and honour BackupOptions/RestoreOptions.selection.
    selection_fields: ClassVar[tuple[str, ...]] = ()

    def check_selection(self, selection: Any) -> None:
        """A usage error (exit 2) when ``selection`` uses an option this kind does not take."""
        selection.require_fields(self.selection_fields, f"{self.label.split(' (')[0]} ({self.kind})")

    def holds_selection(self, selection: Any) -> bool:
        """True when the target already holds something ``selection`` names (a selective restore would
        replace it, so it needs --yes)."""
        return not self.is_empty()  # type: ignore[attr-defined]

    def objects_for_selection(self, metadata: dict[str, Any], selection: Any) -> set[str] | None:
        """The archive objects a selective restore of ``selection`` reads (only those are verified
        first); None: all of them (e.g. Redis keys are filtered while every record is read)."""
        return None

    # How a selective restore replaces what the target holds of the selection (``restore --dry-run``).
    selection_replace_method: ClassVar[str] = "in place: the selected objects are replaced, nothing else is touched"
    def select_db(self, metadata: dict[str, Any], db: int) -> dict[str, Any]:
        """The metadata of a backup narrowed to its db ``db`` (``restore --db``): only Redis has dbs."""
        from storagectl.errors import UsageError

        raise UsageError(f"--db selects one db of a Redis backup; {self.label} is a {self.kind} backend",
                         hint="Try: leave --db out")

    def compare_items(self, archive: Any, outcome: Any) -> list[Any]:
        """``restore --validate`` beyond counts and checksums: each item of ``archive`` compared with
        what this target holds now, as :class:`storagectl.archive.api.ItemCheck` per unit (a Redis
        Cluster: every key's type, value and expiry). Kinds whose checksums prove the contents: none."""
        return []

    # Kinds whose restores take --no-owner / --no-privileges / --role (RestoreOptions).
    restores_owners_and_privileges: ClassVar[bool] = False

    def restore_preview(self, archive: Any, options: Any) -> dict[str, Any]:
        """Facts about restoring ``archive`` with ``options`` into this target for ``restore
        --dry-run`` (e.g. the roles a PostgreSQL backup needs and which are missing); read-only."""
        return {}

    def check_replace(self) -> None:
        """Raise if ``restore --yes`` could not replace this non-empty target (rights, spare room);
        run before anything is read or written, and by ``--dry-run``. Kinds that need nothing keep this."""
        return None

    def unfinished_restore(self) -> str | None:
        """The id of the backup whose restore into this (non-empty) target was cut off, when the
        kind marks one; a rerun of that backup may then discard the partial contents."""
        return None

    def backup_estimate(self, connection: Any) -> Estimate | None:
        """What a backup would write, from cheap statistics, for its progress total (None: unknown)."""
        return None

    @property
    def replace_method(self) -> str:
        """How ``restore --yes`` replaces a non-empty target (shown by ``restore --dry-run``)."""
        return "in place: the old contents are removed first, so a restore that fails leaves the target partial"

    def replace_method_for(self, unfinished: str | None) -> str:
        """:attr:`replace_method` for a target holding an unfinished restore of backup ``unfinished``
        (None: an ordinary non-empty target); kinds whose way differs then say so."""
        return self.replace_method

    @classmethod
    def for_settings(cls, settings: BackendSettings) -> type[Backend]:
        """The class serving ``settings``: a kind may hand a variant of itself (a Redis Cluster) to a subclass."""
        return cls

    def __init__(self, name: str, settings: BackendSettings) -> None:
        self.name = name
        self.settings = settings

    # -- identity ---------------------------------------------------------------------------
    @abstractmethod
    def endpoint(self) -> str:
        """Where the backend is, with every secret masked; safe to print."""

    def secrets(self) -> list[str]:
        """Secret values that must never appear in output (used by :meth:`redact`)."""
        password = getattr(self.settings, "password", None)
        return [password.get_secret_value()] if password is not None else []

    def redact(self, text: str) -> str:
        return redact_text(text, self.secrets())

    def error_line(self, exc: BaseException) -> str:
        """A driver error as one redacted line, for one-line error messages."""
        text = self.redact(str(exc)).strip()
        return text.splitlines()[0] if text else type(exc).__name__

    @property
    def label(self) -> str:
        return f"backend {self.name!r} ({self.kind} {self.endpoint()})"

    # -- connections ------------------------------------------------------------------------
    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A connection opened with the configured timeouts and retries, always closed."""
        connection = call_with_retry(self._open_translated, self.settings.retry)
        try:
            yield connection
        finally:
            self._close(connection)

    def _open_translated(self) -> Any:
        try:
            return self._open()
        except StoragectlError:
            raise
        except Exception as exc:
            raise self.translate_error(exc) from exc

    @abstractmethod
    def _open(self) -> Any:
        """Open one connection; may raise driver exceptions (translated by the caller)."""

    @abstractmethod
    def _close(self, connection: Any) -> None: ...

    def translate_error(self, exc: BaseException) -> StoragectlError:
        """Turn a driver exception into one of ours; kinds override for auth errors etc."""
        return classify_connection_error(self, exc)

    # -- diagnostics ------------------------------------------------------------------------
    @abstractmethod
    def ping(self, connection: Any) -> None:
        """One cheap round trip to the server."""

    @abstractmethod
    def server_version(self, connection: Any) -> str: ...

    @abstractmethod
    def diagnose(self, connection: Any) -> list[Check]:
        """The kind's essential health checks, graded against thresholds."""

    def threshold(self, check: str) -> Threshold:
        override = self.settings.thresholds.get(check)
        if override is not None:
            return override
        from storagectl.config.models import Threshold

        spec = self.CHECKS[check]
        return Threshold.model_construct(warning=spec.warning, critical=spec.critical)

    def graded(self, check: str, value: float | None, display: str, detail: str = "") -> Check:
        spec = self.CHECKS[check]
        limits = self.threshold(check)
        status = grade(value, limits.warning, limits.critical, spec.higher_is_worse)
        return Check(check, status, value, display, detail)

    @staticmethod
    def info(check: str, value: Any, display: str | None = None, detail: str = "") -> Check:
        """An ungraded, informational check (always OK)."""
        return Check(check, Status.OK, value, display if display is not None else str(value), detail)


def classify_connection_error(backend: Backend, exc: BaseException) -> StoragectlError:
    """Map a low-level connection failure to refused / DNS / timeout / auth with a fix."""
    full = backend.redact(str(exc)).strip()
    text = full.splitlines()[0] if full else type(exc).__name__
    # Drivers put the reason on later lines (neo4j: "Couldn't connect ...\n... Connection refused").
    lowered = f"{type(exc).__name__} {full}".lower()
    if isinstance(exc, socket.gaierror) or any(m in lowered for m in _DNS_MARKERS):
        return BackendUnavailable(
            f"{backend.label}: host name cannot be resolved",
            hint="Try: check the host name in the config and the machine's DNS",
        )
    if isinstance(exc, ConnectionRefusedError) or any(m in lowered for m in _REFUSED_MARKERS):
        return BackendUnavailable(
            f"{backend.label}: connection refused",
            hint="Try: check that the server is running and that host and port are right",
        )
    if isinstance(exc, TimeoutError | socket.timeout) or any(m in lowered for m in _TIMEOUT_MARKERS):
        return OperationTimeout(
            f"{backend.label}: timed out after {backend.settings.timeouts.connect:g}s",
            hint="Try: check the host is up and reachable, or raise timeouts.connect",
        )
    if "password" in lowered or "authentication" in lowered or "auth" in lowered.split():
        return AuthenticationFailed(
            f"{backend.label}: authentication failed",
            hint="Try: check user and password / password_file in the config",
        )
    return BackendUnavailable(
        f"{backend.label}: cannot connect: {text}",
        hint="Try: storagectl diag --backend " + backend.name,
    )
