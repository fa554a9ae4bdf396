"""Run telemetry: counters the HTTP layer keeps and the audit row reports.

One :class:`Telemetry` is shared by every worker thread of a load, so each
counter update holds a lock. Per-window telemetry objects can be folded into
the load's with :meth:`Telemetry.merge`.
"""

from __future__ import annotations

import threading
from typing import Any

#: ``status_counts`` keys for requests that got no HTTP status.
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"


class Telemetry:
    """Thread-safe counters of one window or one load.

    Attributes:
        requests: HTTP requests sent (each attempt counts).
        retries: attempts that were retried after a transient failure.
        pages: pages handed to the parser.
        bytes_received: response body bytes read.
        status_counts: requests by outcome: ``"200"``, ``"429"``, ...,
            ``"timeout"`` and ``"connection_error"``.
        rate_limit_waits: times a 429 made us wait (or rotate keys).
        token_refreshes: OAuth tokens fetched again after a 401.
        detail_requests: of ``requests``, those sent for detail fan-out (``detail:``).
    """

    _COUNTERS = ("requests", "retries", "pages", "bytes_received", "rate_limit_waits",
                 "token_refreshes", "detail_requests")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.pages = 0
        self.bytes_received = 0
        self.rate_limit_waits = 0
        self.token_refreshes = 0
        self.detail_requests = 0
        self.status_counts: dict[str, int] = {}

    def count_request(self, status: int | str | None, nbytes: int = 0) -> None:
        """Count one request attempt and its outcome.

        Args:
            status: the HTTP status, ``"timeout"``, ``"connection_error"``, or
                ``None`` (no response: counted as a connection error).
            nbytes: body bytes received.
        """
        key = CONNECTION_ERROR if status is None else str(status)
        with self._lock:
            self.requests += 1
            self.bytes_received += max(0, int(nbytes))
            self.status_counts[key] = self.status_counts.get(key, 0) + 1

    def count_retry(self) -> None:
        """Count one retried attempt."""
        self._add("retries")

    def count_page(self) -> None:
        """Count one page handed on for parsing."""
        self._add("pages")

    def count_rate_limit_wait(self) -> None:
        """Count one 429 that made us wait or rotate keys."""
        self._add("rate_limit_waits")

    def count_token_refresh(self) -> None:
        """Count one forced token refresh."""
        self._add("token_refreshes")

    def merge_detail(self, other: "Telemetry") -> "Telemetry":
        """Add the counters of a detail client's ``other`` and count its requests as
        detail requests; returns ``self``."""
        requests = other.as_dict()["requests"]
        self.merge(other)
        self._add("detail_requests", requests - other.detail_requests)
        return self

    def _add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def merge(self, other: "Telemetry") -> "Telemetry":
        """Add ``other``'s counters to this one and return ``self``."""
        if other is self:
            raise ValueError("cannot merge a Telemetry into itself")
        snapshot = other.as_dict()
        with self._lock:
            for name in self._COUNTERS:
                setattr(self, name, getattr(self, name) + snapshot[name])
            for key, count in snapshot["status_counts"].items():
                self.status_counts[key] = self.status_counts.get(key, 0) + count
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Telemetry":
        """The counters of :meth:`as_dict` (e.g. sent back by a Spark task), as an object."""
        tel = cls()
        for name in cls._COUNTERS:
            setattr(tel, name, int(data.get(name, 0) or 0))
        tel.status_counts = {str(k): int(v) for k, v in (data.get("status_counts") or {}).items()}
        return tel

    def as_dict(self) -> dict[str, Any]:
        """A consistent snapshot, ready for an audit row (JSON-serializable)."""
        with self._lock:
            out: dict[str, Any] = {name: getattr(self, name) for name in self._COUNTERS}
            out["status_counts"] = dict(sorted(self.status_counts.items()))
        return out

    def __repr__(self) -> str:
        d = self.as_dict()
        statuses = ", ".join(f"{k}: {v}" for k, v in d["status_counts"].items())
        return (f"Telemetry(requests={d['requests']}, retries={d['retries']}, pages={d['pages']}, "
                f"bytes={d['bytes_received']}, statuses={{{statuses}}}, "
                f"rate_limit_waits={d['rate_limit_waits']}, "
                f"token_refreshes={d['token_refreshes']}, "
                f"detail_requests={d['detail_requests']})")
