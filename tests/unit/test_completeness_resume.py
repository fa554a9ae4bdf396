"""The completeness check covers a window resumed from a page-batch checkpoint: the
checkpoint carries the records read before it and the API's total, so the whole
window's count is compared (it used to be skipped for resumed windows)."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.config import parse_source
from framework.demoapi import DemoApi
from framework.errors import CompletenessError
from framework.http.client import HttpClient
from framework.http.retry import RetryPolicy
from framework.load.fetch import fetch_window
from framework.load.staging import RunStaging
from framework.schema import RowShaper
from framework.windows import Window

UTC = dt.timezone.utc
START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)


class _Crash(Exception):
    pass


@pytest.fixture
def api():
    with DemoApi(seed=5, records_per_resource=60, end=END, max_page_size=10) as server:
        yield server


def _cfg(api):
    return parse_source({
        "config_id": "w", "api_name": "Demo", "endpoint": f"{api.base_url}/api/offset/issues",
        "params": {"since": "{window_start}", "until": "{window_end}"},
        "pagination": {"style": "offset", "page_size": 10, "total_path": "total"},
        "data_path": "data", "primary_key": ["id"], "completeness": "strict",
        "load_start": START.isoformat(), "load_end": END.isoformat(), "window": "daily",
        "target": {"catalog": "raw", "schema": "t", "table": "w"},
        "limits": {"timeout_s": 5, "max_retries": 0, "pages_per_commit": 2},
    })


def _fetch(cfg, staging, run_id, **segments):
    shaper = RowShaper(source_system="demo", primary_key=("id",))
    with HttpClient(policy=RetryPolicy(max_retries=0), timeout_s=5) as client:
        return fetch_window(cfg, client, shaper, Window(START, END), 0, staging.window(0), run_id,
                            pages_per_commit=cfg.limits.pages_per_commit, **segments)


def _checkpoint_then_crash(cfg, tmp_path) -> dict:
    """A first run that commits page batch 1 (20 records) and dies right after."""
    staging, seen = RunStaging(tmp_path, "w", "r1"), []

    def on_segment(stage, checkpoint):
        seen.append(checkpoint)
        raise _Crash("killed after the commit of page batch 1")

    with pytest.raises(Exception, match="killed after the commit"):
        _fetch(cfg, staging, "r1", on_segment=on_segment)
    assert seen and seen[0]["segment"] == 1
    return seen[0]


def _resume(cfg, tmp_path, checkpoint):
    staging = RunStaging(tmp_path, "w", "r2")
    return _fetch(cfg, staging, "r2", resume=checkpoint,
                  on_segment=lambda stage, point: staging.segment(0, point["segment"]))


def test_a_resumed_window_is_checked_as_a_whole(api, tmp_path):
    cfg = _cfg(api)
    checkpoint = _checkpoint_then_crash(cfg, tmp_path)
    assert (checkpoint["records"], checkpoint["expected"]) == (20, 60)
    result = _resume(cfg, tmp_path, checkpoint)
    assert (result.resumed_from, result.records, result.window_records, result.expected) == (
        1, 40, 60, 60)


def test_a_resumed_window_whose_count_differs_from_the_total_fails_under_strict(api, tmp_path):
    cfg = _cfg(api)
    checkpoint = _checkpoint_then_crash(cfg, tmp_path)
    api.dataset.add(5, at=START + dt.timedelta(hours=23))  # the window grew after the total was read
    with pytest.raises(CompletenessError,
                       match="loaded 65 records but the API reported a total of 60"):
        _resume(cfg, tmp_path, checkpoint)
