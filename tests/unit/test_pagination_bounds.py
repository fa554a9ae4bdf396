"""An API that hands out a fresh cursor forever is stopped by ``max_pages`` (a default one
too), and the seen-cursor set used for loop detection stays bounded in memory and in
checkpoints."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest

from framework.config import parse_source
from framework.errors import PaginationError
from framework.http import pagination
from framework.http.client import HttpClient
from framework.http.models import PageResponse
from framework.http.pagination import build_paginator
from framework.http.retry import RetryPolicy
from framework.load.fetch import fetch_window
from framework.load.staging import RunStaging
from framework.schema import RowShaper
from framework.windows import Window

try:
    from _httpd import FakeApi, Reply
except ImportError:  # collected as a package
    from tests.unit._httpd import FakeApi, Reply

UTC = dt.timezone.utc
START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
GIVE_UP_AFTER = 200  # the endless API stops here only so that a missing stop cannot hang the test


@pytest.fixture
def endless():
    counter = itertools.count()

    def reply(_got):
        n = next(counter)
        return Reply(200, {"data": [{"id": n}], "next_cursor": f"c{n}" if n < GIVE_UP_AFTER else None})

    with FakeApi() as server:
        server.route("/items", reply)
        yield server


def _fetch(api, tmp_path, **paging):
    cfg = parse_source({
        "config_id": "endless", "api_name": "E", "endpoint": api.url("/items"),
        "pagination": {"style": "cursor", **paging}, "data_path": "data", "primary_key": ["id"],
        "load_start": START.isoformat(), "load_end": END.isoformat(),
        "target": {"catalog": "raw", "schema": "t", "table": "e"},
        "limits": {"timeout_s": 5, "max_retries": 0}})
    with HttpClient(policy=RetryPolicy(max_retries=0), timeout_s=5) as client:
        return fetch_window(cfg, client, RowShaper(source_system="e", primary_key=("id",)),
                            Window(START, END), 0, RunStaging(tmp_path, "endless", "r").window(0), "r")


def test_max_pages_stops_a_fresh_cursor_forever(endless, tmp_path):
    with pytest.raises(PaginationError, match="max_pages=30"):
        _fetch(endless, tmp_path, max_pages=30)
    assert len(endless.received) == 30


def test_a_default_max_pages_applies_when_the_config_sets_none(endless, tmp_path, monkeypatch):
    monkeypatch.setattr(pagination, "DEFAULT_MAX_PAGES", 50, raising=False)
    with pytest.raises(PaginationError) as caught:
        _fetch(endless, tmp_path)
    assert "max_pages=50" in str(caught.value) and "default" in str(caught.value)
    assert len(endless.received) == 50


def test_the_default_max_pages_is_large_and_overridable():
    assert build_paginator({"style": "cursor"}).max_pages == pagination.DEFAULT_MAX_PAGES >= 10_000
    assert build_paginator({"style": "cursor", "max_pages": 10 ** 9}).max_pages == 10 ** 9


def _page(cursor):
    return PageResponse(200, "http://x", {}, b"", {"next_cursor": cursor})


def test_the_seen_cursor_set_is_bounded_in_memory_and_in_checkpoints():
    paginator = build_paginator({"style": "cursor", "max_pages": 10 ** 6})
    for n in range(3 * pagination.SEEN_LIMIT):
        paginator.update_state(_page(f"cursor-number-{n:08d}-" + "x" * 200), [{"id": n}])
    assert len(paginator._seen) <= pagination.SEEN_LIMIT
    saved = json.dumps(paginator.checkpoint())
    assert len(saved) < 64 * pagination.CHECKPOINT_SEEN + 4096
    assert "cursor-number-00000000" not in saved  # digests, not the values
    # a recent repeat is still caught, also after a resume from the checkpoint
    resumed = build_paginator({"style": "cursor", "max_pages": 10 ** 6})
    resumed.resume(json.loads(saved))
    last = f"cursor-number-{3 * pagination.SEEN_LIMIT - 1:08d}-" + "x" * 200
    with pytest.raises(PaginationError, match="same cursor twice"):
        resumed.update_state(_page(last), [{"id": 0}])
    with pytest.raises(PaginationError, match="same cursor twice"):
        paginator.update_state(_page(last), [{"id": 0}])
