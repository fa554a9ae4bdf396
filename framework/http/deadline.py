"""A deadline for a response's head and for its body, each as a whole
(``limits.body_timeout_s``).

``timeout_s`` bounds the connection and each read, so a server that sends one byte just
inside it, again and again, would hold a window (and the load's lease) without end. Every
wait for a head and every body read is armed here with its deadline; one watchdog thread
for the process cuts the connection of a read still going when its deadline passes, which
ends the blocked read at once (as a reset would) and the client retries it as a timeout.

Arming and disarming cost a lock and a heap push: no thread per request.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Any, Optional


class Armed:
    """One armed read: ``fired`` once its deadline cut the connection."""

    __slots__ = ("sock", "fired", "done")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.fired = self.done = False


class Watchdog:
    """Cuts the connections of reads still going at their deadlines."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Armed]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._live = 0

    def arm(self, seconds: float, sock: Any) -> Armed:
        """Watch a read on ``sock`` for ``seconds`` from now (disarm it when it ends)."""
        armed, deadline = Armed(sock), self._clock() + seconds
        with self._cond:
            self._live += 1
            first = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, next(self._seq), armed))
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="restlake-body-deadline",
                                                daemon=True)
                self._thread.start()
            elif first:
                self._cond.notify()
        return armed

    def disarm(self, armed: Armed) -> None:
        """The read ended: its connection is not cut from now on."""
        with self._cond:
            armed.done = True
            self._live -= 1
            heap = self._heap
            if len(heap) > 1024 and len(heap) > 4 * self._live:  # drop the ended reads
                self._heap = [entry for entry in heap if not entry[2].done]
                heapq.heapify(self._heap)

    def _watch(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(60.0)
                    continue
                wait = self._heap[0][0] - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                armed = heapq.heappop(self._heap)[2]
                armed.fired = True
                _cut(armed.sock)  # under the lock: a read that ends now is not cut after


def _cut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


WATCHDOG = Watchdog()


def response_socket(resp: Any) -> Any:
    """The socket a ``requests`` response is read from (None when it is not known)."""
    raw = getattr(resp, "raw", None)
    conn = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)  # http.client's buffered socket file
    return getattr(getattr(fp, "raw", None), "_sock", None)
