"""Concurrent pages inside one window, on both executors: a long offset window whose pages
are fetched concurrently commits page batches whose checkpoints never run ahead of the
staged pages, and a rerun after a failed page resumes and ends equal to the source."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.demoapi import DemoApi
from tests.integration.helpers import UTC, actual_rows, expected_rows, read_target, run_loads, source

pytestmark = pytest.mark.spark


def test_concurrent_pages_commit_in_page_order_and_a_rerun_resumes(spark, warehouse, store,
                                                                   executor):
    with DemoApi(seed=17, records_per_resource=80, end=dt.datetime(2024, 1, 7, tzinfo=UTC),
                 max_page_size=10) as api:
        cfg = source(api.base_url, "offset", "concurrent_pages", delta_column=True,
                     window="none", end="2024-01-02T00:00:00Z",
                     pagination={"page_size": 10},
                     limits={"max_retries": 0, "pages_per_commit": 2, "concurrency": 4})
        [full] = run_loads(spark, warehouse, store, [cfg], executor=executor)
        assert full.status == "SUCCESS", full.error
        incremental = api.dataset.records_in("2024-01-02T00:00:00Z", "2024-01-06T00:00:00Z")
        assert len(incremental) > 50  # one window of 6 pages
        # the 5th page fails; the page after it was already requested concurrently
        api.faults.add("500", times=None, path="/api/offset/issues", query={"offset": "40"})
        api.clear_log()
        now = dt.datetime(2024, 1, 6, tzinfo=UTC)
        [failed] = run_loads(spark, warehouse, store, [cfg], now=now, executor=executor)
        assert failed.status == "PARTIAL" and "500" in failed.error
        offsets = {int(e["query"]["offset"]) for e in api.request_log}
        assert 50 in offsets, "the page after the failing one was requested concurrently"
        # two batches of two pages are committed, and nothing after them
        df = read_target(spark, warehouse, cfg)
        loaded = {r["id"] for r in df.select("id").collect()}
        before = {r["id"] for r in api.dataset.records_in("2024-01-01T00:00:00Z",
                                                          "2024-01-02T00:00:00Z")}
        assert loaded == before | {r["id"] for r in incremental[:40]}

        api.faults.clear()
        api.clear_log()
        [done] = run_loads(spark, warehouse, store, [cfg], now=now + dt.timedelta(minutes=5),
                           executor=executor)
        assert done.status == "SUCCESS", done.error
        assert int(api.request_log[0]["query"]["offset"]) == 40  # resumed after the batches
        df = read_target(spark, warehouse, cfg)
        assert actual_rows(df) == expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-06T00:00:00Z")
        assert df.select("id").distinct().count() == df.count()
