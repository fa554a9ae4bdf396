"""The retry policy: a small value object plus the pure decisions it implies.

Which statuses are worth retrying, how long to wait before the next attempt and
how to read ``Retry-After`` are pure functions, so tests check the backoff
sequence without sleeping. Sleeping is done by the HTTP client, once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable

#: Statuses that are transient by HTTP semantics or common API practice.
RETRIABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_retriable_status(status: int | None) -> bool:
    """True when a response with ``status`` may succeed if sent again."""
    return status in RETRIABLE_STATUSES


def parse_retry_after(value: str | None, now: datetime, *,
                      max_s: float = 300.0) -> float | None:
    """Read a ``Retry-After`` header as seconds to wait.

    Args:
        value: the header: delay seconds (``"120"``, ``"1.5"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``).
        now: the current time; a naive value is taken as UTC.
        max_s: upper bound, so a broken or hostile header cannot park a worker
            for hours.

    Returns:
        Seconds in ``[0, max_s]``, or ``None`` when the header is absent or
        unreadable (the caller then falls back to exponential backoff).
    """
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=timezone.utc)
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        seconds = (when - now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), max_s)


def backoff_seconds(attempt: int, base_s: float, max_s: float, *, jitter: bool = True,
                    rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with "full jitter" (AWS architecture blog).

    Full jitter spreads the retries of many workers over the whole interval
    instead of having them all return at the same instant.

    Args:
        attempt: 1 for the wait before the first retry, 2 before the second, ...
        base_s: the first cap; each attempt doubles it.
        max_s: the largest cap.
        jitter: when False, wait the cap itself (deterministic).
        rand: a function returning a float in ``[0, 1)``.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Bound the exponent so huge attempt numbers cannot overflow a float.
    cap = min(max_s, base_s * (2 ** min(attempt - 1, 64)))
    return cap * rand() if jitter else cap


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried.

    Attributes:
        max_retries: retries after the first attempt (so ``max_retries + 1``
            attempts in all).
        backoff_base_s: the backoff cap before the first retry.
        backoff_max_s: the largest backoff cap.
        jitter: randomize waits (full jitter).
        retry_after_max_s: the longest ``Retry-After`` honoured.
    """

    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    jitter: bool = True
    retry_after_max_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("max_retries", "backoff_base_s", "backoff_max_s", "retry_after_max_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"RetryPolicy.{name} must be a number >= 0, got {value!r}")
        if not isinstance(self.max_retries, int):
            raise ValueError(f"RetryPolicy.max_retries must be an integer, got {self.max_retries!r}")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(f"RetryPolicy.backoff_max_s ({self.backoff_max_s}) is below "
                             f"backoff_base_s ({self.backoff_base_s})")

    @property
    def max_attempts(self) -> int:
        """Attempts in all, the first one included."""
        return self.max_retries + 1

    def is_retriable_status(self, status: int | None) -> bool:
        """See :func:`is_retriable_status`."""
        return is_retriable_status(status)

    def parse_retry_after(self, value: str | None, now: datetime) -> float | None:
        """See :func:`parse_retry_after`; capped at ``retry_after_max_s``."""
        return parse_retry_after(value, now, max_s=self.retry_after_max_s)

    def wait_seconds(self, attempt: int, retry_after: float | None = None,
                     rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based).

        A server's ``Retry-After`` wins over backoff: it knows when its budget
        resets, and retrying earlier only earns another 429.
        """
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), self.retry_after_max_s)
        return backoff_seconds(attempt, self.backoff_base_s, self.backoff_max_s,
                               jitter=self.jitter, rand=rand)

    def backoff_sequence(self, rand: Callable[[], float] = random.random) -> list[float]:
        """The waits before each retry, for logs and tests."""
        return [self.wait_seconds(i, rand=rand) for i in range(1, self.max_retries + 1)]
