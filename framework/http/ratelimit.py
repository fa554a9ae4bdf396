"""A per-host request budget shared by every worker of the process.

APIs count requests per client, not per window, so all windows and loads that
hit one host draw from one token bucket (:func:`limiter_for`). A 429 from the
host pauses that bucket, which holds back every worker instead of letting the
others keep hammering a server that already said "slow down".

When an API budgets per key instead, :class:`KeyRing` spreads the load over
several keys: a 429 blocks the key in use until its reset and picks another.
"""

from __future__ import annotations

import threading
import time
from typing import Callable
from urllib.parse import urlsplit

#: How long a key stays blocked after a 429 that named no ``Retry-After``.
DEFAULT_KEY_BLOCK_S = 60.0


class RateLimiter:
    """A token bucket: ``requests_per_second`` on average, ``burst`` at once.

    Args:
        requests_per_second: the budget; ``None`` or ``0`` means unlimited
            (:meth:`pause_until` still works, so 429s are still honoured).
        burst: tokens the bucket holds, i.e. requests allowed back to back.
        clock: a monotonic clock in seconds (injectable for tests).
        sleep: the sleep function (injectable for tests).
    """

    def __init__(self, requests_per_second: float | None, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if requests_per_second is not None and (
                isinstance(requests_per_second, bool) or requests_per_second < 0):
            raise ValueError(f"requests_per_second must be >= 0 or None, got {requests_per_second!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
        self._rate = float(requests_per_second) if requests_per_second else None
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._updated = clock()
        self._paused_until = float("-inf")
        #: How many times a 429 paused (or extended the pause of) this host.
        self.pauses = 0

    @property
    def requests_per_second(self) -> float | None:
        """The budget, or ``None`` when unlimited."""
        return self._rate

    @property
    def burst(self) -> int:
        return self._burst

    def _refill(self, now: float) -> None:
        if self._rate is not None and now > self._updated:
            self._tokens = min(float(self._burst), self._tokens + (now - self._updated) * self._rate)
        self._updated = max(self._updated, now)

    def _reserve(self) -> float:
        """Take a token if one is ready; else return how long to wait (> 0)."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            if self._rate is None:
                return 0.0
            self._refill(now)
            # The epsilon absorbs float rounding: without it a wait of 1e-16 s
            # can leave the clock unchanged and the loop spinning.
            if self._tokens >= 1.0 - 1e-9:
                self._tokens = max(0.0, self._tokens - 1.0)
                return 0.0
            return (1.0 - self._tokens) / self._rate

    def acquire(self, cancel: threading.Event | None = None) -> float:
        """Block until a request may be sent; return the seconds waited.

        Args:
            cancel: once set, the wait ends without taking a token (the caller checks it
                and sends nothing).
        """
        waited = 0.0
        sleep = cancel.wait if cancel is not None and self._sleep is time.sleep else self._sleep
        while cancel is None or not cancel.is_set():
            wait = self._reserve()
            if wait <= 0.0:
                return waited
            # Sleep outside the lock, then compete again: another worker may
            # have taken the token or a 429 may have paused the host meanwhile.
            sleep(wait)
            waited += wait
        return waited

    def pause_until(self, deadline: float) -> None:
        """Hold back every worker until ``deadline`` (on this limiter's clock).

        A later deadline extends the pause; an earlier one never shortens it.
        """
        with self._lock:
            if deadline > self._paused_until:
                self.pauses += 1
                self._paused_until = deadline
                # The server's window restarts after the pause: no saved-up burst.
                self._tokens = min(self._tokens, 1.0)
                self._updated = max(self._updated, deadline)

    def pause_for(self, seconds: float) -> None:
        """Hold back every worker for ``seconds`` from now."""
        self.pause_until(self._clock() + max(0.0, seconds))

    def tighten(self, requests_per_second: float | None) -> None:
        """Lower the budget to ``requests_per_second`` if that is stricter.

        Two configs may name different budgets for one host; the strictest wins
        because the host enforces one limit for the client.
        """
        if not requests_per_second:
            return
        with self._lock:
            if self._rate is None or requests_per_second < self._rate:
                self._refill(self._clock())
                self._rate = float(requests_per_second)

    def __repr__(self) -> str:
        rate = "unlimited" if self._rate is None else f"{self._rate:g}/s"
        paused = self._paused_until - self._clock()
        suffix = f", paused {paused:.1f}s" if paused > 0 else ""
        return f"RateLimiter({rate}, burst={self._burst}{suffix})"


class KeyRing:
    """Several equivalent keys; a 429 blocks the key in use and picks another.

    Thread-safe: the workers of a load share one ring.
    """

    def __init__(self, keys: list[str], clock: Callable[[], float],
                 block_s: float = DEFAULT_KEY_BLOCK_S) -> None:
        self._keys = list(keys)
        self._blocked_until = [float("-inf")] * len(keys)
        self._current = 0
        self._clock = clock
        self._block_s = block_s
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def current(self) -> str:
        with self._lock:
            return self._keys[self._current]

    def block(self, retry_after_s: float | None, used: str | None = None) -> float:
        """Block ``used`` (default: the current key); return seconds to wait before resending."""
        with self._lock:
            now = self._clock()
            index = self._keys.index(used) if used in self._keys else self._current
            wait = self._block_s if retry_after_s is None else max(0.0, retry_after_s)
            self._blocked_until[index] = max(self._blocked_until[index], now + wait)
            available = [i for i, until in enumerate(self._blocked_until) if until <= now]
            if self._current in available:  # another worker already switched
                return 0.0
            if available:
                # Least recently blocked first: its budget has had longest to recover.
                self._current = min(available, key=lambda i: self._blocked_until[i])
                return 0.0
            self._current = min(range(len(self._keys)), key=lambda i: self._blocked_until[i])
            return self._blocked_until[self._current] - now

    def __repr__(self) -> str:
        return f"KeyRing({len(self._keys)} keys, current=#{self._current})"


_registry_lock = threading.Lock()
_registry: dict[str, RateLimiter] = {}


def host_key(host_or_url: str) -> str:
    """Normalize a host name or URL to the registry key (``host[:port]``, lower case)."""
    text = (host_or_url or "").strip()
    if "://" in text:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        return f"{host}:{parts.port}" if parts.port else host
    return text.lower()


def limiter_for(host: str, requests_per_second: float | None = None, *,
                burst: int = 1) -> RateLimiter:
    """The process-wide limiter of ``host`` (a host name or any URL on it).

    The first caller creates it; later callers share it, and a stricter
    ``requests_per_second`` lowers the shared budget.
    """
    key = host_key(host)
    if not key:
        raise ValueError(f"cannot find a host in {host!r}")
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = RateLimiter(requests_per_second, burst)
            return limiter
    limiter.tighten(requests_per_second)
    return limiter


def reset_limiters() -> None:
    """Forget every shared limiter (tests, or a fresh run in a long-lived process)."""
    with _registry_lock:
        _registry.clear()
