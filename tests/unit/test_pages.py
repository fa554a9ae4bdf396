"""Concurrent pages inside one window (framework.load.pages): the remaining pages of an
offset/page window with a reported total are requested concurrently, staged in page
order, checkpointed only after their predecessors, and a total that changes, a short
page or an empty page before the total fails the window."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest

from framework.config import parse_source
from framework.demoapi import DemoApi
from framework.errors import PaginationError, WindowError
from framework.load.fetch import WindowFetcher
from framework.load.staging import RunStaging
from framework.windows import Window
from tests.unit._httpd import FakeApi, Reply

UTC = dt.timezone.utc
START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
STYLES = {
    "offset": ("/api/offset/issues", {"style": "offset", "page_size": 10, "total_path": "total"}),
    "page": ("/api/page/issues", {"style": "page", "size_param": "per_page", "page_size": 10,
                                  "total_pages_path": "total_pages"}),
}


class _Holder:
    """The demo API's wait: holds one page (a "timeout" fault with a query) until
    ``enough`` requests reached the server, and records how many had when it let go."""

    def __init__(self, enough: int, then=None, patience: int = 500):
        self.api, self.enough, self.then, self.seen = None, enough, then, []
        self.patience = patience

    def __call__(self, _seconds: float) -> None:
        for _ in range(self.patience):  # ~5 s by default: a sequential walk sends no other
            if len(self.api.request_log) >= self.enough:
                break
            time.sleep(0.01)
        self.seen.append(len(self.api.request_log))
        if self.then is not None:
            self.then(self.api)


def _demo(holder=None, size=45):
    api = DemoApi(seed=4, records_per_resource=size, end=END, max_page_size=10, wait=holder)
    if holder is not None:
        holder.api = api
    return api


def _cfg(base, style="offset", **limits):
    path, pagination = STYLES[style]
    return parse_source({
        "config_id": "p", "api_name": "Demo", "endpoint": base + path,
        "params": {"since": "{window_start}", "until": "{window_end}"},
        "pagination": pagination, "data_path": "data", "primary_key": ["id"],
        "load_start": START.isoformat(), "load_end": END.isoformat(), "window": "daily",
        "target": {"catalog": "raw", "schema": "t", "table": "p"},
        "limits": {"timeout_s": 10, "max_retries": 0, "concurrency": 4, **limits},
    })


def _rows(stage):
    out = []
    for path in stage.files:
        with open(path, "rb") as fh:
            out += [json.loads(line) for line in fh if line.strip()]
    return sorted(out, key=lambda r: r["_seq"])


@pytest.mark.parametrize("style", ["offset", "page"])
def test_later_pages_are_requested_while_an_earlier_one_is_held_and_staged_in_order(style, tmp_path):
    holder = _Holder(enough=5)  # the first page, the held one and the three after it
    with _demo(holder) as api:
        held = {"offset": "10"} if style == "offset" else {"page": "2"}
        api.faults.add("timeout", times=1, query=held, delay_s=0)
        cfg = _cfg(api.base_url, style)
        with WindowFetcher(cfg, "r", RunStaging(tmp_path, "p", "r"), None, None) as fetcher:
            result = fetcher(0, Window(START, END))
        listed = api.dataset.records_in(START, END)
    assert holder.seen == [5], "pages after the held one were on the wire before it answered"
    assert [r["id"] for r in _rows(result.stage)] == [r["id"] for r in listed]
    assert result.pages == 5 and result.records == len(listed) == 45
    assert fetcher.page_gate.peak <= cfg.limits.concurrency


def test_concurrent_pages_false_walks_one_page_at_a_time(tmp_path):
    holder = _Holder(enough=3, patience=100)  # nothing else can come: no need to wait long
    with _demo(holder) as api:
        api.faults.add("timeout", times=1, query={"offset": "10"}, delay_s=0)
        cfg = _cfg(api.base_url, concurrent_pages=False)
        with WindowFetcher(cfg, "r", RunStaging(tmp_path, "p", "r"), None, None) as fetcher:
            result = fetcher(0, Window(START, END))
    assert holder.seen == [2]  # the first page and the held one: nothing else was sent
    assert result.records == 45


def test_page_checkpoints_never_claim_a_page_whose_predecessors_are_not_staged(tmp_path):
    holder = _Holder(enough=5)
    with _demo(holder) as api:
        api.faults.add("timeout", times=1, query={"offset": "10"}, delay_s=0)
        cfg = _cfg(api.base_url, pages_per_commit=2)
        staging = RunStaging(tmp_path, "p", "r")
        segments = []

        def on_segment(piece):
            segments.append((_rows(piece.stage), piece.checkpoint))

        with WindowFetcher(cfg, "r", staging, None, None) as fetcher:
            result = fetcher(0, Window(START, END), on_segment=on_segment)
            listed = [r["id"] for r in api.dataset.records_in(START, END)]
            staged = 0
            for rows, checkpoint in segments:
                assert [r["id"] for r in rows] == listed[staged:staged + len(rows)]
                staged += len(rows)
                # the checkpoint's next request starts right after the staged rows
                assert checkpoint["request"]["params"]["offset"] == staged
            assert staged + len(_rows(result.stage)) == len(listed)
            # a rerun from the first checkpoint reads exactly the rest, in order
            first_rows, first = segments[0]
            again = fetcher(0, Window(START, END), resume=first,
                            on_segment=lambda piece: segments.append((_rows(piece.stage), None)))
    assert len(segments) == 2 + 1 and staged == 40
    rest = [r["id"] for rows, cp in segments[2:] for r in rows] + [r["id"] for r in _rows(again.stage)]
    assert rest == listed[len(first_rows):]


def test_a_total_that_changes_between_pages_fails_the_window(tmp_path):
    def add_a_record(api):
        api.dataset.add(1, at=START + dt.timedelta(hours=1))

    holder = _Holder(enough=5, then=add_a_record)
    with _demo(holder) as api:
        api.faults.add("timeout", times=1, query={"offset": "10"}, delay_s=0)
        staging = RunStaging(tmp_path, "p", "r")
        with WindowFetcher(_cfg(api.base_url), "r", staging, None, None) as fetcher, \
                pytest.raises(PaginationError, match="total changed from 45 to 46"):
            fetcher(0, Window(START, END))
    assert not any(p.is_file() for p in staging.folder.rglob("*"))


def _offset_source(api, name, **limits):
    """An offset source over ``api``'s ``/items`` reporting its total at ``total``."""
    return parse_source({
        "config_id": name, "api_name": name.upper(), "endpoint": api.url("/items"),
        "pagination": {"style": "offset", "page_size": 10, "total_path": "total"},
        "data_path": "data", "primary_key": ["id"], "load_start": START.isoformat(),
        "load_end": END.isoformat(), "target": {"catalog": "r", "schema": name, "table": name},
        "limits": {"timeout_s": 5, "max_retries": 0, "concurrency": 3, **limits}})


def _scripted(pages):
    """An offset API reporting total 30 whose pages are ``pages[offset]`` record counts."""
    def reply(got):
        offset = int(got.query.get("offset", ["0"])[0])
        n = pages.get(offset, 0)
        return Reply(200, {"data": [{"id": offset + i} for i in range(n)], "total": 30})
    return reply


@pytest.mark.parametrize("pages, message", [
    ({0: 10, 10: 5, 20: 10}, "came back short"),
    ({0: 10, 10: 0, 20: 10}, "came back empty before the total 30"),
])
def test_a_short_or_empty_page_before_the_total_fails_the_window(pages, message, tmp_path):
    with FakeApi() as api:
        api.route("/items", _scripted(pages))
        cfg = _offset_source(api, "s")
        with WindowFetcher(cfg, "r", RunStaging(tmp_path, "s", "r"), None, None) as fetcher, \
                pytest.raises(PaginationError, match=message):
            fetcher(0, Window(START, END))


def test_the_same_api_walked_one_page_at_a_time_loads_the_short_page(tmp_path):
    with FakeApi() as api:
        api.route("/items", _scripted({0: 10, 10: 5, 15: 10, 25: 5}))
        cfg = _offset_source(api, "s", concurrent_pages=False)
        with WindowFetcher(cfg, "r", RunStaging(tmp_path, "s", "r"), None, None) as fetcher:
            result = fetcher(0, Window(START, END))
    assert [r["id"] for r in _rows(result.stage)] == list(range(30))


def _scripted_pages(counts):
    """A page-numbered API reporting 3 total pages whose pages hold ``counts[page]`` records."""
    def reply(got):
        page = int(got.query.get("page", ["1"])[0])
        n = counts.get(page, 0)
        return Reply(200, {"data": [{"id": page * 100 + i} for i in range(n)], "pages": 3})
    return reply


@pytest.mark.parametrize("style", ["offset", "page"])
@pytest.mark.parametrize("limits", [{"concurrent_pages": False}, {"concurrency": 1}])
def test_an_empty_page_before_the_total_fails_a_window_walked_one_page_at_a_time(
        style, limits, tmp_path):
    with FakeApi() as api:
        pagination = {"style": "offset", "page_size": 10, "total_path": "total"}
        api.route("/items", _scripted({0: 10, 10: 0, 20: 10}))
        if style == "page":
            pagination = {"style": "page", "total_pages_path": "pages"}
            api.route("/items", _scripted_pages({1: 10, 2: 0, 3: 10}))
        cfg = parse_source({
            "config_id": "s", "api_name": "S", "endpoint": api.url("/items"),
            "pagination": pagination, "data_path": "data", "primary_key": ["id"],
            "load_start": START.isoformat(), "load_end": END.isoformat(),
            "target": {"catalog": "r", "schema": "s", "table": "s"},
            "limits": {"timeout_s": 5, "max_retries": 0, "concurrency": 3, **limits}})
        staging = RunStaging(tmp_path, "s", "r")
        with WindowFetcher(cfg, "r", staging, None, None) as fetcher, \
                pytest.raises(PaginationError, match="came back empty before"):
            fetcher(0, Window(START, END))
        # the page after the empty one was never asked for, and nothing is staged
        assert len(api.requests_to("/items")) == 2
    assert not any(p.is_file() for p in staging.folder.rglob("*"))


def _page_10_gone(total, later):
    """An offset API reporting ``total``: page 0 answered, page 10 refused (404: the
    window fails), the pages after it answered by ``later(offset)``."""
    def reply(got):
        offset = int(got.query.get("offset", ["0"])[0])
        if offset == 0:
            return Reply(200, {"data": [{"id": i} for i in range(10)], "total": total})
        if offset == 10:
            return Reply(404, {"error": "gone"})
        return later(offset)
    return reply


def _fail_the_window(api, tmp_path, name, **limits):
    cfg = _offset_source(api, name, **limits)
    with WindowFetcher(cfg, "r", RunStaging(tmp_path, name, "r"), None, None) as fetcher, \
            pytest.raises(WindowError, match="404"):
        fetcher(0, Window(START, END))


def test_a_failed_windows_pages_in_flight_stop_retrying(tmp_path):
    """Page 10 is refused (404: the window fails) while pages 20 and 30 are answered 503
    with Retry-After: their retries would go on after the window failed, spending the
    API's rate budget with the source's credentials; they stop instead."""
    with FakeApi() as api:
        api.route("/items", _page_10_gone(40, lambda offset: Reply(
            503, {"error": "busy"}, headers={"Retry-After": "1"})))
        _fail_the_window(api, tmp_path, "f", max_retries=4, concurrency=4)
        asked = [int(r.query["offset"][0]) for r in api.requests_to("/items")]
    assert asked.count(10) == 1
    assert asked.count(20) == 1 and asked.count(30) == 1  # 5 each (4 retries) before


def test_a_failed_window_returns_once_its_requests_have_ended(tmp_path):
    """Page 10 is refused (the window fails) while page 20 is still being answered: the
    failure is raised only once page 20's request has ended. A window's request still on
    the wire after its failure reaches the API after the load moved on (the next window,
    the next load, a stop), with the source's credentials."""
    before = set(threading.enumerate())
    with FakeApi() as api:
        # page 20's answer takes a while: in flight when page 10 fails the window
        api.route("/items", _page_10_gone(30, lambda offset: Reply(
            200, {"data": [{"id": offset + i} for i in range(10)], "total": 30}, delay_s=1.0)))
        _fail_the_window(api, tmp_path, "w", concurrency=2)
        running = [t.name for t in set(threading.enumerate()) - before
                   if t.name.startswith("restlake-page")]
    assert running == [], f"the failed window's requests were still running: {running}"


def test_a_page_waiting_for_the_loads_gate_is_not_sent_once_its_window_is_over():
    """The load's gate is full (another window's request holds its one slot, e.g. through
    a long Retry-After): a page of a window that is over stops waiting for a slot and is
    never sent, so the window's end does not wait for the other window's retries."""
    from framework.errors import HttpError
    from framework.http.models import PageRequest
    from framework.load.pages import RequestGate

    gate, held, release, sent = RequestGate(1), threading.Event(), threading.Event(), []

    def holder(_request):
        held.set()
        release.wait(60)
        return "held"

    def send(request):
        sent.append(request)
        return "sent"

    other = threading.Thread(target=gate.send, args=(holder, PageRequest("GET", "http://127.0.0.1:9/other")))
    other.start()
    try:
        assert held.wait(30)
        over, outcome = threading.Event(), []

        def waiting():
            try:
                outcome.append(gate.send(send, PageRequest("GET", "http://127.0.0.1:9/this"),
                                         cancel=over))
            except HttpError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=waiting)
        thread.start()
        over.set()
        thread.join(60)  # a bound against a hang, not a timing
        assert not thread.is_alive(), "the page still waits for the gate"
        assert sent == [] and isinstance(outcome[0], HttpError) and "cancelled" in str(outcome[0])
    finally:
        release.set()
        other.join(60)
