"""Retries with exponential backoff for transient errors, configured per backend/destination."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from storagectl.errors import BackendUnavailable

if TYPE_CHECKING:  # plain settings from a config-cache hit too: no pydantic at run time
    from storagectl.config.models import RetrySettings

T = TypeVar("T")
log = logging.getLogger(__name__)


def call_with_retry(
    action: Callable[[], T],
    settings: RetrySettings,
    transient: tuple[type[BaseException], ...] = (BackendUnavailable,),
) -> T:
    """Run ``action``; on a transient error wait (initial, 2x, 4x, ... capped at max) and try again.

    The last error is re-raised unchanged once ``settings.attempts`` tries are used up.
    """
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    retrying = Retrying(
        stop=stop_after_attempt(settings.attempts),
        wait=wait_exponential(multiplier=settings.initial, min=settings.initial, max=settings.max),
        retry=retry_if_exception_type(transient),
        reraise=True,
        before_sleep=_log_retry,
    )
    return retrying(action)


def _log_retry(state) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.info("attempt %d failed (%s); retrying in %.2fs", state.attempt_number, error,
                state.next_action.sleep if state.next_action else 0.0)
