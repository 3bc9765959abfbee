"""Retries with exponential backoff for transient errors, configured per backend/destination."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from storagectl.config.models import RetrySettings
from storagectl.errors import BackendUnavailable

T = TypeVar("T")


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
    )
    return retrying(action)
