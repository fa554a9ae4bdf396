"""Concurrent pages inside one window, handed back in page order (no Spark).

For ``offset`` and ``page`` pagination whose first response reports a total
(``total_path``, ``total_pages_path``), every remaining page of the window is known
once that first page is read: offsets ``o, o + n, o + 2n, ...`` below the total (``n``
the records the first page held), or pages up to the total pages. :class:`PageWalker`
requests them concurrently (at most ``limits.concurrency`` ahead of the page being
staged, and no more than the load-wide :class:`RequestGate` allows) and returns them
one by one in page order, so the window fetch stages and checkpoints exactly as when it
walks pages one at a time: the paginator reads every page in order, and a page-batch
checkpoint never claims a page whose predecessors are not staged.

The total decides where the window ends, never a short page. The walk fails the window
(nothing of it is committed beyond its earlier page batches; a rerun reads it again)
when what the API answers contradicts the plan:

* the total changes between pages (records were added or removed during the walk);
* an offset page comes back with fewer records than the first, so the next planned
  offset would skip records;
* a page comes back empty before the total is reached.

Sequential walking stays available (``limits.concurrent_pages: false``) for APIs whose
data moves under an offset walk.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from framework import jsonpath
from framework.errors import PaginationError
from framework.http.client import cancelled_before_sent
from framework.http.models import PageRequest, PageResponse
from framework.http.pagination import Paginator

#: Pagination styles whose remaining pages can be planned from a reported total.
CONCURRENT_STYLES = ("offset", "page")
# how often a page waiting for a slot of the load's gate checks whether its window is over
_GATE_POLL_S = 0.05


class RequestGate:
    """A load-wide bound on the concurrent page requests in flight (``limits.concurrency``).

    The windows of a load share one gate, so several windows walking their pages
    concurrently still keep at most ``limit`` of those requests on the wire.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, int(limit))
        self._slots = threading.BoundedSemaphore(self.limit)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0

    def send(self, send: Callable[[PageRequest], PageResponse], request: PageRequest,
             cancel: Optional[threading.Event] = None) -> PageResponse:
        """``send(request)`` once a slot is free.

        Raises:
            HttpError: ``cancel`` was set before a slot was free (the window is over:
                nothing is sent, and its end does not wait for other windows' requests).
        """
        if cancel is None:
            self._slots.acquire()
        else:
            while not self._slots.acquire(timeout=_GATE_POLL_S):
                if cancel.is_set():
                    raise cancelled_before_sent(request)
        try:
            with self._lock:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            try:
                return send(request)
            finally:
                with self._lock:
                    self.in_flight -= 1
        finally:
            self._slots.release()

    def __repr__(self) -> str:
        return f"RequestGate(limit={self.limit}, in_flight={self.in_flight}, peak={self.peak})"


def reported_total(paginator: Paginator, response: PageResponse) -> Optional[int]:
    """The total the response reports at the paginator's total path (``None``: none)."""
    steps = getattr(paginator, "total_path", None)
    if paginator.style not in CONCURRENT_STYLES or steps is None:
        return None
    total = jsonpath.find(response.data, steps)
    if isinstance(total, bool) or not isinstance(total, int):
        return None
    return total


class PageWalker:
    """The remaining pages of one window, requested concurrently, returned in page order.

    Build it with :meth:`start` right after the paginator read a page and set the next
    request. Then, for each next page, :meth:`next` returns its response (checking that
    it is the page the paginator asks for), :meth:`check` compares its total with the
    first one, and once the paginator has no next page, :meth:`finish` checks that no
    planned page is left. :meth:`close` waits for the requests still in flight to end.
    """

    def __init__(self, paginator: Paginator, request: PageRequest, values: list[int],
                 total: int, send: Callable[[PageRequest], PageResponse], concurrency: int,
                 gate: Optional[RequestGate] = None,
                 cancel: Optional[threading.Event] = None) -> None:
        self.param, self.style, self.total = paginator.param, paginator.style, total
        self._request = request.copy()
        self._planned: deque[int] = deque(values)
        self._send, self._gate, self._cancel = send, gate, cancel
        self._ahead = max(1, concurrency)
        self._pool = ThreadPoolExecutor(self._ahead, thread_name_prefix="restlake-pages")
        self._inflight: deque[tuple[int, Future[PageResponse]]] = deque()
        self._fill()

    @classmethod
    def start(cls, paginator: Paginator, request: PageRequest, response: PageResponse,
              records: list[Any], send: Callable[[PageRequest], PageResponse],
              concurrency: int, gate: Optional[RequestGate] = None,
              cancel: Optional[threading.Event] = None) -> Optional["PageWalker"]:
        """A walker for the pages after ``response``, or ``None`` when they cannot be
        planned (another style, no total reported, concurrency 1, no next page)."""
        if concurrency < 2 or not paginator.has_next_page or not records:
            return None
        total = reported_total(paginator, response)
        if total is None:
            return None
        value = int(paginator.value)
        if paginator.style == "offset":
            stride, end = len(records), total
        else:
            stride, end = 1, paginator.start + total
        room = max(0, paginator.max_pages - paginator.pages)  # the paginator stops beyond
        values = list(range(value, end, stride))[:room]
        if not values:
            return None
        return cls(paginator, request, values, total, send, concurrency, gate, cancel)

    def _fill(self) -> None:
        while self._planned and len(self._inflight) < self._ahead:
            value = self._planned.popleft()
            request = self._request.copy()
            request.params[self.param] = value
            future = (self._pool.submit(self._gate.send, self._send, request, self._cancel)
                      if self._gate else self._pool.submit(self._send, request))
            self._inflight.append((value, future))

    def next(self, request: PageRequest) -> PageResponse:
        """The response of the page ``request`` asks for (the paginator's next request).

        Raises:
            PaginationError: the paginator asks for another page than the planned one
                (a short page before it), or for a page beyond the total.
        """
        asked = request.params.get(self.param)
        if not self._inflight:
            raise PaginationError(
                f"pagination style {self.style}: {self.param}={asked} is beyond the total "
                f"{self.total} the first page reported; the data changed during the walk "
                "(the window fails; a rerun reads it again)")
        value, future = self._inflight[0]
        if str(asked) != str(value):
            raise PaginationError(
                f"pagination style {self.style}: the page before {self.param}={value} came "
                f"back short, so the walk would continue at {self.param}={asked}; pages "
                f"requested at fixed {self.param}s would skip records (the API's page size "
                "or its data changed during the walk). The window fails and a rerun reads "
                "it again; set limits.concurrent_pages: false to walk this source's pages "
                "one at a time")
        self._inflight.popleft()
        response = future.result()
        self._fill()
        return response

    def check(self, response: PageResponse, paginator: Paginator) -> None:
        """Fail when ``response`` reports another total than the first page did."""
        total = reported_total(paginator, response)
        if total != self.total:
            raise PaginationError(
                f"pagination style {self.style}: the total changed from {self.total} to "
                f"{total} between pages (at page {paginator.pages + 1}); records were added "
                "or removed during the walk, so the planned pages no longer cover the "
                "window. The window fails and a rerun reads it again")

    def finish(self) -> None:
        """Fail when planned pages are left after the paginator's last page (a page came
        back empty before the total was reached)."""
        left = [v for v, _ in self._inflight] + list(self._planned)
        if left:
            raise PaginationError(
                f"pagination style {self.style}: a page came back empty before the total "
                f"{self.total} was reached ({len(left)} planned page(s) left, from "
                f"{self.param}={left[0]}); the window fails and a rerun reads it again")

    def close(self) -> None:
        """Cancel the planned pages and wait for those in flight to end (the ``send`` they
        were given stops retrying when the window is over, so that is one request each)."""
        self._planned.clear()
        for _, future in self._inflight:
            future.cancel()
        self._inflight.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return (f"PageWalker({self.style} {self.param}, total={self.total}, "
                f"in_flight={len(self._inflight)}, planned={len(self._planned)})")
