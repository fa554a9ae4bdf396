"""A paginator checkpointed mid-window resumes exactly where it stopped (every style)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from framework.demoapi import DemoApi
from framework.load.fetch import build_request
from framework.http.client import HttpClient
from framework.http.models import PageRequest
from framework.http.pagination import build_paginator
from parsers import get_parser
from tests.integration.helpers import STYLE_SOURCES, source
from framework.windows import Window

UTC = dt.timezone.utc
WINDOW = Window(dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 5, tzinfo=UTC))


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=13, records_per_resource=200, max_page_size=15,
                 end=dt.datetime(2024, 1, 6, tzinfo=UTC)) as server:
        yield server


def _walk(cfg, client, request, paginator, max_pages=None):
    parser = get_parser(cfg.parser, {}, data_path=cfg.data_path)
    ids, pages = [], 0
    while True:
        response = client.send(request)
        records = parser.parse(response.data)
        paginator.update_state(response, records)
        ids += [r["id"] for r in records]
        pages += 1
        if not paginator.has_next_page:
            return ids, True
        paginator.update_request(request)
        if max_pages and pages >= max_pages:
            return ids, False


@pytest.mark.parametrize("style", [s for s in STYLE_SOURCES if s != "none"])
def test_checkpoint_and_resume_reads_every_record_once(api, style):
    cfg = source(api.base_url, style, f"resume_{style}")
    client = HttpClient(allow_post=cfg.allow_post)
    expected = [r["id"] for r in api.dataset.records_in(WINDOW.start, WINDOW.end)]

    paginator = build_paginator(cfg.pagination.model_dump(exclude_none=True))
    request = build_request(cfg, WINDOW)
    paginator.init_request(request)
    first, done = _walk(cfg, client, request, paginator, max_pages=2)
    assert not done and 0 < len(first) < len(expected)
    # what a window-log checkpoint row holds, through JSON
    saved = json.loads(json.dumps({"request": request.checkpoint(), "paginator": paginator.checkpoint()}))

    resumed = build_paginator(cfg.pagination.model_dump(exclude_none=True))
    resumed.resume(saved["paginator"])
    rest, done = _walk(cfg, client, PageRequest(**saved["request"]), resumed)
    assert done
    assert sorted(first + rest) == sorted(expected)
    assert len(set(first + rest)) == len(first + rest)
