"""framework.load.fetch.fetch_window against the demo API: the next page is on the wire while
the current page's rows are shaped, and nothing else about a window's result changes."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from framework.config import parse_source
from framework.demoapi import DemoApi
from framework.errors import RestlakeError
from framework.load.fetch import fetch_window
from framework.http.client import HttpClient
from framework.http.retry import RetryPolicy
from framework.schema import RowShaper
from framework.load.staging import RunStaging
from framework.windows import Window

UTC = dt.timezone.utc
START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=3, records_per_resource=60, end=END, max_page_size=10) as server:
        yield server


def _cfg(api):
    return parse_source({
        "config_id": "w", "api_name": "Demo", "endpoint": f"{api.base_url}/api/cursor/issues",
        "params": {"since": "{window_start}", "until": "{window_end}", "limit": 10},
        "pagination": {"style": "cursor"}, "data_path": "data", "primary_key": ["id"],
        "load_start": START.isoformat(), "load_end": END.isoformat(), "window": "daily",
        "target": {"catalog": "raw", "schema": "t", "table": "w"},
        "limits": {"timeout_s": 5, "max_retries": 0},
    })


class _WatchingShaper(RowShaper):
    """Records, as each page's rows are shaped, how many requests the API has seen."""

    def __init__(self, api, expected, **kwargs):
        super().__init__(**kwargs)
        self.api, self.expected, self.shaped, self.seen_at_page_start = api, expected, 0, []

    def shape_page(self, records, **kwargs):
        if records:
            # Give the request sent in the background time to reach the server's log: up to
            # 30 s before a page that has records after it (a bound against a hang: the
            # wait ends as soon as it arrived), a second after the last records (a trailing
            # empty page may still be asked for, or no request at all).
            self.shaped += len(records)
            polls = 3000 if self.shaped < self.expected else 100
            for _ in range(polls):
                if len(self.api.request_log) > len(self.seen_at_page_start) + 1:
                    break
                time.sleep(0.01)
            self.seen_at_page_start.append(len(self.api.request_log))
        return super().shape_page(records, **kwargs)


def test_next_page_is_requested_before_the_current_page_is_shaped(api, tmp_path):
    cfg = _cfg(api)
    api.clear_log()
    shaper = _WatchingShaper(api, len(api.dataset.records_in(START, END)), source_system="demo",
                             primary_key=("id",))
    with HttpClient(policy=RetryPolicy(max_retries=0), timeout_s=5) as client:
        result = fetch_window(cfg, client, shaper, Window(START, END), 0,
                              RunStaging(tmp_path, "w", "r").window(0), "r")
    pages = len(api.request_log)
    assert result.records == len(api.dataset.records_in(START, END)) and pages >= 4
    # While page n (1-based) is shaped, page n+1 has been requested; the last page has none.
    assert shaper.seen_at_page_start == [min(n + 1, pages) for n in range(1, result.pages + 1)]


def test_a_failed_prefetched_page_fails_the_window_after_the_pages_before_it(api, tmp_path):
    cfg = _cfg(api)
    api.clear_log()
    api.faults.add("500", times=1, path="/api/cursor/issues", after=2)
    try:
        shaper = RowShaper(source_system="demo", primary_key=("id",))
        stage = RunStaging(tmp_path, "w", "r").window(0)
        with HttpClient(policy=RetryPolicy(max_retries=0), timeout_s=5) as client, \
                pytest.raises(RestlakeError, match="500"):
            fetch_window(cfg, client, shaper, Window(START, END), 0, stage, "r")
    finally:
        api.faults.clear()
    assert len(api.request_log) == 3  # no request after the failed one
    assert not stage.folder.exists()  # the window's partial rows are gone
