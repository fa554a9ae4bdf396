"""Delta commit conflicts: detected, retried with backoff, never swallowed."""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from tenacity import (RetryError, Retrying, retry_if_exception, stop_after_attempt,
                      wait_random_exponential)

from framework.errors import CommitConflictError

log = logging.getLogger(__name__)
T = TypeVar("T")

_CONFLICT_NAMES = (
    "ConcurrentAppendException", "ConcurrentDeleteDeleteException",
    "ConcurrentDeleteReadException", "ConcurrentTransactionException",
    "ConcurrentWriteException", "DeltaConcurrentModificationException",
    "MetadataChangedException", "ProtocolChangedException",
    "DELTA_CONCURRENT_", "FileAlreadyExistsException",
    # delta-rs (deltalake): its optimistic-concurrency failures
    "CommitFailedError",
)


def is_conflict(exc: BaseException) -> bool:
    """True when ``exc`` is a Delta optimistic-concurrency conflict (safe to retry)."""
    try:
        from delta.exceptions import DeltaConcurrentModificationException  # type: ignore

        if isinstance(exc, DeltaConcurrentModificationException):
            return True
    except ImportError:  # pragma: no cover - delta-spark not installed
        pass
    text = f"{type(exc).__name__} {str(exc)[:2000]}"
    return any(name in text for name in _CONFLICT_NAMES)


def retry_conflicts(action: Callable[[], T], what: str, *, attempts: int = 12,
                    max_wait_s: float = 8.0) -> T:
    """Run ``action``; on a Delta commit conflict re-run it (it must re-read its inputs).

    Raises:
        CommitConflictError: still conflicting after ``attempts`` tries.
    """
    retrying = Retrying(
        retry=retry_if_exception(is_conflict),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.2, max=max_wait_s),
        before_sleep=lambda rs: log.info("%s: Delta commit conflict (attempt %d), retrying",
                                         what, rs.attempt_number),
        reraise=False,
    )
    try:
        return retrying(action)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise CommitConflictError(f"{what}: Delta commit still conflicting after {attempts} "
                                  f"attempts ({type(last).__name__})") from None
