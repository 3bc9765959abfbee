"""The one error hierarchy of storagectl.

Every error carries a one-line message, an optional hint ("Try: ...") and the process exit code.
Only the CLI entry point turns them into output; the core raises and never prints.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NoReturn


class ExitCode(IntEnum):
    """Documented process exit codes (README "Exit codes")."""

    OK = 0
    FAILURE = 1  # an operation failed; diag: warning; migrate status: revisions pending
    USAGE = 2  # bad command line or configuration; diag: critical
    UNAVAILABLE = 3  # a backend or destination is unreachable or timed out; diag: unknown
    AUTH = 4  # authentication or permission refused
    NOT_FOUND = 5  # a named backup, revision or object does not exist
    INTEGRITY = 6  # checksum mismatch, corrupt/truncated archive, validation mismatch
    LOCKED = 7  # another run holds the lock
    INTERNAL = 70  # a bug in storagectl (EX_SOFTWARE); rerun with --debug
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # SIGTERM (128 + SIGTERM)


class StoragectlError(Exception):
    """Base of every error storagectl reports to the user."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []  # one line each, printed under the message (e.g. every lint finding)

    def __str__(self) -> str:
        return self.message


class ConfigError(StoragectlError):
    """The configuration file is missing, unreadable or invalid.

    ``problems`` holds one line per problem (``file:line key.path: what is wrong``).
    """

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []


class UsageError(StoragectlError):
    """Options that contradict each other or name something that does not exist in the config."""

    exit_code = ExitCode.USAGE


class UnknownBackendError(UsageError):
    pass


class BackendUnavailable(StoragectlError):
    """A backend or destination could not be reached: host down, port closed, DNS, timeout."""

    exit_code = ExitCode.UNAVAILABLE


class OperationTimeout(BackendUnavailable):
    pass


class FeatureUnavailable(StoragectlError):
    """The server lacks what a command needs (an extension not installed or not loaded)."""

    exit_code = ExitCode.UNAVAILABLE


class AuthenticationFailed(StoragectlError):
    exit_code = ExitCode.AUTH


class PermissionDenied(StoragectlError):
    exit_code = ExitCode.AUTH


class NotFound(StoragectlError):
    exit_code = ExitCode.NOT_FOUND


class IntegrityError(StoragectlError):
    """Data does not match what was recorded: checksum, size, count or content mismatch."""

    exit_code = ExitCode.INTEGRITY


class LockHeld(StoragectlError):
    exit_code = ExitCode.LOCKED


class OperationFailed(StoragectlError):
    """A backend operation failed for a reason that is not one of the above."""

    exit_code = ExitCode.FAILURE


class WrongType(StoragectlError):
    """A Redis key holds another type than the command asked for."""

    exit_code = ExitCode.FAILURE


class ToolMissing(StoragectlError):
    """An external client tool (pg_dump, ...) that an operation needs is not installed."""

    exit_code = ExitCode.FAILURE


class SeveralFailed(StoragectlError):
    """Operations of one run that failed independently of each other (a job's backends, each backed
    up even when another failed). The entry point reports each as its own error; the exit code is
    the highest of theirs, the worst row as `migrate status --all` picks it."""

    def __init__(self, failures: list[StoragectlError]) -> None:
        super().__init__("; ".join(failure.message for failure in failures))
        self.failures = list(failures)
        self.exit_code = ExitCode(max(failure.exit_code for failure in failures))


def one_error(failures: list[StoragectlError]) -> StoragectlError | None:
    """None, the one failure itself, or several as :class:`SeveralFailed`."""
    if len(failures) > 1:
        return SeveralFailed(failures)
    return failures[0] if failures else None


class Interrupted(StoragectlError):
    exit_code = ExitCode.INTERRUPTED


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so it unwinds (and cleans up) exactly like Ctrl-C."""


def interruption(exc: KeyboardInterrupt, state: str | None = None, *, where: str | None = None,
                 hint: str | None = None) -> Interrupted:
    """Ctrl-C (exit 130) or SIGTERM (:class:`Terminated`, exit 143) as :class:`Interrupted`, its message
    saying which, then ``where`` it stopped ("interrupted after ...") and ``state`` when given."""
    terminated = isinstance(exc, Terminated)
    word = "terminated" if terminated else "interrupted"
    word = word if where is None else f"{word} {where}"
    interrupted = Interrupted(word if state is None else f"{word} ({state})", hint=hint)
    interrupted.exit_code = ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED
    return interrupted


def raise_with_state(exc: BaseException, state: str) -> NoReturn:
    """Re-raise ``exc`` (being handled) with its one-line message saying what state the operation
    left the target in; an interrupt (Ctrl-C, SIGTERM) becomes :class:`Interrupted` carrying it."""
    if isinstance(exc, KeyboardInterrupt):
        raise interruption(exc, state) from exc
    if isinstance(exc, StoragectlError):
        exc.message = f"{exc.message} ({state})"
        exc.args = (exc.message,)
    raise exc
