"""Faults the demo API injects into its answers, so tests exercise the client's failure paths.

A test queues faults with :meth:`Faults.add`; each request takes the first queued
fault that matches its path (in the order they were added) and the server
answers accordingly::

    api.faults.add("429", times=2, retry_after=0)      # the next two data requests
    api.faults.add("reset", path="/api/cursor", after=3)  # the 4th cursor request from now
    api.faults.add("500", query={"since": "2024-01-02T00:00:00Z", "page": "2"})  # one page

Kinds:

* ``"429"``: 429 with a ``Retry-After`` header.
* ``"404"``, ``"500"``, ``"502"``, ``"503"``: that status with a JSON error body (a 404 on a
  detail route: the record vanished between the list and its detail).
* ``"timeout"``: sleep ``delay_s`` before answering normally (the client times out).
* ``"reset"``: send the headers and part of the body, then abort the connection (RST).
* ``"truncated"``: announce the full ``Content-Length``, send half the body, then close.
* ``"drip"``: announce the full ``Content-Length``, then send the body one byte every
  ``delay_s`` (each read is quick; the whole body never seems to end).
* ``"error_body"``: 200 with ``{"error": {"code": 500, "message": "internal"}}``.
* ``"bad_json"``: 200 ``text/html`` ``<html>oops</html>``.
* ``"token_expired"``: 401 ``{"error": "invalid_token"}``; with OAuth2 the issued tokens
  are revoked too, so the client must fetch a new one.
* ``"schema_drift"``: the page's records gain ``"priority": "high"`` and ``comments``
  becomes a string.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any

KINDS = ("429", "404", "500", "502", "503", "timeout", "reset", "truncated", "drip", "error_body",
         "bad_json", "token_expired", "schema_drift")

# Faults answered instead of the endpoint: kind -> (status, body, content type).
CANNED: dict[str, tuple[int, bytes, str]] = {
    "429": (429, b'{"error": {"code": 429, "message": "rate limit exceeded"}}', "application/json"),
    "404": (404, b'{"error": {"code": 404, "message": "not found"}}', "application/json"),
    "500": (500, b'{"error": {"code": 500, "message": "internal server error"}}', "application/json"),
    "502": (502, b'{"error": {"code": 502, "message": "bad gateway"}}', "application/json"),
    "503": (503, b'{"error": {"code": 503, "message": "service unavailable"}}', "application/json"),
    "error_body": (200, b'{"error": {"code": 500, "message": "internal"}}', "application/json"),
    "bad_json": (200, b"<html>oops</html>", "text/html; charset=utf-8"),
    "token_expired": (401, b'{"error": "invalid_token"}', "application/json"),
}


@dataclass
class Fault:
    """One queued fault.

    Attributes:
        kind: one of :data:`KINDS`.
        times: how many more requests it hits; ``None`` means until cleared.
        path: only requests whose path starts with this; ``None`` means every ``/api/`` request.
        after: matching requests still to let through before it starts.
        retry_after: the ``Retry-After`` value of a ``"429"``, in seconds.
        delay_s: how long a ``"timeout"`` stalls.
        query: only requests whose query parameters include these values (one page of
            one window, whatever order concurrent windows arrive in).
    """

    kind: str
    times: int | None = 1
    path: str | None = None
    after: int = 0
    retry_after: float = 1
    delay_s: float = 5.0
    query: dict[str, str] | None = None

    def matches(self, path: str, query: dict[str, Any] | None = None) -> bool:
        """True when this fault applies to a request for ``path`` with ``query``."""
        if self.query and any(str((query or {}).get(k)) != str(v) for k, v in self.query.items()):
            return False
        if self.path is None:
            # Data endpoints only by default: faulting /health or the token endpoint
            # must be asked for explicitly.
            return path.startswith("/api/")
        return path.startswith(self.path)

    def __repr__(self) -> str:
        times = "forever" if self.times is None else self.times
        return (f"Fault({self.kind!r}, times={times}, path={self.path!r}, after={self.after})")


class Faults:
    """A thread-safe queue of :class:`Fault`, consumed in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []
        self._fired: list[tuple[str, str]] = []

    def add(self, kind: str | int, times: int | None = 1, path: str | None = None, after: int = 0,
            retry_after: float = 1, delay_s: float = 5.0,
            query: dict[str, Any] | None = None) -> Fault:
        """Queue a fault.

        Args:
            kind: one of :data:`KINDS` (``429`` as an int is accepted too).
            times: requests it hits (``None``: every matching request until :meth:`clear`).
            path: path prefix filter; ``None`` means every ``/api/`` request.
            after: let this many matching requests through first.
            retry_after: seconds sent in ``Retry-After`` (``"429"``).
            delay_s: stall of a ``"timeout"``; the gap between the bytes of a ``"drip"``.
            query: query parameter values a request must carry to match.

        Raises:
            ValueError: unknown kind or a negative count.
        """
        kind = str(kind)
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known kinds: {', '.join(KINDS)}")
        if (times is not None and times < 1) or after < 0 or delay_s < 0:
            raise ValueError(f"times must be >= 1 or None, after and delay_s >= 0; got "
                             f"times={times}, after={after}, delay_s={delay_s}")
        fault = Fault(kind, times, path, after, retry_after, delay_s,
                      {k: str(v) for k, v in query.items()} if query else None)
        with self._lock:
            self._queue.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every queued fault (the history of fired faults is kept)."""
        with self._lock:
            self._queue.clear()

    def take(self, path: str, query: dict[str, Any] | None = None) -> Fault | None:
        """Consume and return the fault for a request to ``path`` with ``query``, or ``None``.

        Every matching fault still waiting (``after``) counts the request, so
        ``after=N`` always means "the N+1-th matching request from now".
        """
        chosen: Fault | None = None
        with self._lock:
            for fault in list(self._queue):
                if not fault.matches(path, query):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if chosen is None:
                    chosen = fault
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self._queue.remove(fault)
            if chosen is not None:
                self._fired.append((chosen.kind, path))
        return chosen

    @property
    def pending(self) -> list[Fault]:
        """The faults still queued (copies)."""
        with self._lock:
            return [Fault(**vars(f)) for f in self._queue]

    @property
    def fired(self) -> list[tuple[str, str]]:
        """``(kind, path)`` of every fault served so far."""
        with self._lock:
            return list(self._fired)

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)

    def __repr__(self) -> str:
        with self._lock:
            return f"Faults(pending={self._queue!r}, fired={len(self._fired)})"


def drift(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``records`` with an extra field and a changed type, as an API upgrade does."""
    out = []
    for record in records:
        changed = dict(record, priority="high")
        if "comments" in changed:
            changed["comments"] = str(changed["comments"])
        out.append(changed)
    return out


def send_partial(handler: Any, status: int, headers: dict[str, str], body: bytes, *,
                 abort: bool) -> None:
    """Announce the full body, send half of it, then end the connection.

    Args:
        handler: the ``BaseHTTPRequestHandler`` answering.
        abort: ``True`` resets the connection (RST through ``SO_LINGER`` 0), ``False``
            closes it cleanly (FIN), which the client sees as a truncated body.
    """
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body[: max(len(body) // 2, 1)])
    handler.wfile.flush()
    handler.close_connection = True
    if abort:
        sock: socket.socket = handler.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def send_dripping(handler: Any, status: int, headers: dict[str, str], body: bytes,
                  wait: Any, gap_s: float) -> None:
    """Announce the full body, then send it one byte every ``gap_s`` (``wait(gap_s)``)
    until it is sent, the client goes away or ``wait`` returns true (the server stops)."""
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.close_connection = True
    try:
        for i in range(len(body)):
            handler.wfile.write(body[i:i + 1])
            handler.wfile.flush()
            if wait(gap_s):
                return
    except OSError:  # the client cut the connection
        pass
