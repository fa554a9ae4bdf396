"""Long windows committed in page batches resume from their last checkpoint after a failure,
on the threaded fetch and on Spark tasks (whose batches the driver commits, in order)."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.demoapi import DemoApi
from tests.integration.helpers import UTC, actual_rows, expected_rows, read_target, run_loads, source

pytestmark = pytest.mark.spark


def test_page_batches_commit_with_checkpoints_and_a_rerun_resumes(spark, warehouse, store, executor):
    with DemoApi(seed=17, records_per_resource=160, end=dt.datetime(2024, 1, 7, tzinfo=UTC),
                 max_page_size=10) as api:
        cfg = source(api.base_url, "cursor", "batched", delta_column=True, window="none",
                     end="2024-01-02T00:00:00Z",
                     limits={"max_retries": 0, "pages_per_commit": 3})
        [full] = run_loads(spark, warehouse, store, [cfg], executor=executor)
        assert full.status == "SUCCESS"
        incremental = api.dataset.records_in("2024-01-02T00:00:00Z", "2024-01-06T00:00:00Z")
        assert len(incremental) > 80  # one long window of 9+ pages
        api.faults.add("500", times=None, path="/api/cursor/issues", after=7)
        now = dt.datetime(2024, 1, 6, tzinfo=UTC)
        [failed] = run_loads(spark, warehouse, store, [cfg], now=now, executor=executor)
        assert failed.status == "PARTIAL" and "500" in failed.error
        # two batches of three pages are committed; the 8th page failed
        first_six_pages = {r["id"] for r in incremental[:60]}
        df = read_target(spark, warehouse, cfg)
        loaded = {r["id"] for r in df.select("id").collect()}
        before = {r["id"] for r in api.dataset.records_in("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")}
        assert loaded == before | first_six_pages
        log = warehouse.read(spark, store.window_ref).where("ConfigId = 'batched'").collect()
        assert sorted(r["Status"] for r in log if r["LoadId"] == failed.audit["LoadId"]) == [
            "CHECKPOINT", "CHECKPOINT", "FAILED"]

        api.faults.clear()
        api.clear_log()
        [done] = run_loads(spark, warehouse, store, [cfg], now=now + dt.timedelta(minutes=5),
                           executor=executor)
        assert done.status == "SUCCESS", done.error
        assert done.audit["LoadId"] == failed.audit["LoadId"]
        first_request = [e for e in api.request_log if e["path"] == "/api/cursor/issues"][0]
        assert first_request["query"].get("cursor"), "the rerun must resume from the checkpoint"
        df = read_target(spark, warehouse, cfg)
        assert actual_rows(df) == expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-06T00:00:00Z")
        assert df.select("id").distinct().count() == df.count()
