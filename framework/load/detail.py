"""Detail fan-out: each record of a listed page completed by a request for its id (no Spark).

A source with ``detail: {endpoint: "https://api.example.com/items/{id}", ...}`` lists
records page by page as usual; before a page's rows are staged, :class:`DetailFetcher`
sends ``GET`` to the detail endpoint once per record (``{id}`` replaced by the record's
``id_field``, URL-encoded) and merges the detail record into the listed one
(``mode: merge``, the detail's fields win) or replaces it (``mode: replace``).

* The requests go through an :class:`~framework.http.client.HttpClient` that shares the
  load's session, auth, retry policy, rate budget and health observer, and the source's
  origin policy: credentials go only to the endpoint's origin and ``allowed_hosts``
  (checked at validation and again for every request and redirect).
* At most ``detail.concurrency`` detail requests of one window are in flight; the page's
  records keep their list order whatever order the answers arrive in.
* A detail request that still fails after retries fails the window (nothing of it is
  staged for commit). With ``on_404: quarantine`` a 404 (or a 410 Gone: the record was
  deleted since it was listed) sends that record, with a reason naming its id, to the
  quarantine table instead; the other records load.
* A detail whose id differs from the listed record's (another record's answer) fails the
  window; one whose id is the same written another way (``"7"`` for ``7``) is merged with
  the listed id kept as listed.
* A record without the id field goes to quarantine (there is nothing to ask for), and so
  does one whose id would be a ``.`` or ``..`` path segment (no URL names it: the HTTP
  stack would ask for the parent resource instead).
* The detail client's counters are added to the window's telemetry, its requests counted
  as ``detail_requests`` too (the audit's ``DetailRequests``).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import quote

from framework import jsonpath
from framework.config import DETAIL_ID, Detail
from framework.errors import HttpError, ResponseError
from framework.http.client import HttpClient
from framework.http.models import PageRequest
from framework.http.origins import OriginPolicy
from framework.secrets import expand_env
from framework.windows import Window, render


@dataclass
class Quarantined:
    """A listed record that could not be completed, and why (it goes to quarantine)."""

    record: Any
    reason: str


class DetailFetcher:
    """Completes the records of one window's pages with their detail requests.

    Args:
        detail: the source's ``detail:`` block.
        client: the client for detail requests (its telemetry counts only them).
        window: the window (its placeholders are substituted in the endpoint).
        origins: the source's origin policy (where its credentials may go).
        headers: the source's ``headers`` (sent with detail requests too).
    """

    def __init__(self, detail: Detail, client: HttpClient, window: Window,
                 origins: Optional[OriginPolicy], headers: Optional[dict[str, str]] = None) -> None:
        self.detail, self.client, self.origins = detail, client, origins
        self.headers = dict(headers or {})
        before, after = detail.endpoint.split(DETAIL_ID)
        self._before = expand_env(render(before, window))
        self._after = expand_env(render(after, window))
        self._id_in_path = not any(c in self._before for c in "?#")
        self._steps = jsonpath.compile_path(detail.data_path)
        self._pool: Optional[ThreadPoolExecutor] = None
        # set by close(): a detail request still retrying stops (see HttpClient.send)
        self._over = threading.Event()

    def url_for(self, record_id: Any) -> str:
        """The detail URL of ``record_id`` (one path segment, URL-encoded).

        Raises:
            ValueError: the id would make a path segment ``.`` or ``..``: the HTTP stack
                removes it (``/items/..`` is ``/``), and percent-encoding it does not help
                (``%2E`` is ``.`` to URL normalisation), so no URL names that record.
        """
        quoted = quote(str(record_id), safe="")
        if self._id_in_path and quoted in (".", ".."):
            segment = self._before.rsplit("/", 1)[-1] + quoted + _first_segment(self._after)
            if segment in (".", ".."):
                raise ValueError(f"{self.detail.id_field} {record_id!r} would be the URL path "
                                 f"segment {segment!r}, which names another resource than the "
                                 "record (the HTTP stack removes dot segments)")
        return f"{self._before}{quoted}{self._after}"

    def record_id(self, record: Any) -> Any:
        """The id of ``record`` (``None`` when it has none)."""
        if not isinstance(record, dict):
            return None
        field = self.detail.id_field
        value = record.get(field) if field in record else jsonpath.find(record, field)
        # true/false, an object or a list names no record
        return None if value is None or value == "" or isinstance(value, (bool, dict, list)) \
            else value

    def complete(self, records: list[Any]) -> tuple[list[Any], list[Quarantined]]:
        """The page's records, each completed by its detail, in list order.

        Returns:
            ``(completed, quarantined)``: records that go on to staging, and those that
            go to quarantine (no id; a 404 with ``on_404: quarantine``).

        Raises:
            HttpError, AuthError, ResponseError, CrossOriginError: a detail request failed
                after retries (the window fails).
        """
        if not records:
            return [], []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.detail.concurrency,
                                            thread_name_prefix="restlake-detail")
        futures: list[Future] = [self._pool.submit(self._one, record) for record in records]
        try:
            outcomes = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        done = [o for o in outcomes if not isinstance(o, Quarantined)]
        return done, [o for o in outcomes if isinstance(o, Quarantined)]

    def _one(self, record: Any) -> Any:
        record_id = self.record_id(record)
        if record_id is None:
            return Quarantined(record, f"detail: the record has no usable {self.detail.id_field!r} "
                                       "(a string or a number) to request its detail with")
        try:
            url = self.url_for(record_id)
        except ValueError as exc:
            return Quarantined(record, f"detail: {exc}; nothing was requested")
        request = PageRequest("GET", url, {}, dict(self.headers), origins=self.origins)
        try:
            response = self.client.send(request, cancel=self._over)
        except HttpError as exc:
            if exc.status in (404, 410) and self.detail.on_404 == "quarantine":
                label = "404 Not Found" if exc.status == 404 else "410 Gone"
                return Quarantined(record, f"detail: {self.detail.id_field} {record_id!r} "
                                           f"answered {label} (on_404: quarantine)")
            raise
        found = jsonpath.find(response.data, self._steps)
        if not isinstance(found, dict):
            raise ResponseError(f"detail of {self.detail.id_field} {record_id!r}: "
                                f"{self.detail.data_path!r} is not a JSON object in the "
                                f"response (got {type(found).__name__})")
        answered = self.record_id(found)
        if answered is not None and not _same_id(answered, record_id):
            # another record's detail: merged, it would load under the other id and the
            # listed record would be missing
            raise ResponseError(f"detail of {self.detail.id_field} {record_id!r} answered the "
                                f"record with {self.detail.id_field} {answered!r}; the window "
                                "fails and a rerun asks again")
        field = self.detail.id_field
        if self.detail.mode == "replace":
            completed = found
        else:
            completed = {**record, **found}
        if answered is not None and field in completed and field in record:
            completed[field] = record[field]  # the listed id as listed: "7" stays 7
        return completed

    def close(self) -> None:
        """Stop the detail threads: requests not started are cancelled, those in flight
        stop retrying, and this returns once they have ended (one request each), so no
        detail request of a finished or failed window reaches the API after it."""
        self._over.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __repr__(self) -> str:
        return (f"DetailFetcher({self.detail.endpoint}, concurrency={self.detail.concurrency}, "
                f"mode={self.detail.mode}, on_404={self.detail.on_404})")


def _same_id(a: Any, b: Any) -> bool:
    """True when two ids name one record: equal, or equal as text (7 and "7")."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b or str(a) == str(b)


def _first_segment(rest: str) -> str:
    """The part of ``rest`` before its first ``/``, ``?`` or ``#``."""
    for n, char in enumerate(rest):
        if char in "/?#":
            return rest[:n]
    return rest


def detail_fetcher(detail: Optional[Detail], make_client: Callable[[], HttpClient],
                   window: Window, origins: Optional[OriginPolicy],
                   headers: Optional[dict[str, str]] = None) -> Optional[DetailFetcher]:
    """A :class:`DetailFetcher` for ``window`` when the source has ``detail:``, else ``None``."""
    if detail is None:
        return None
    return DetailFetcher(detail, make_client(), window, origins, headers)
