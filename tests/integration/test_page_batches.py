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


def test_a_windows_page_batches_commit_after_the_window_before_it(spark, warehouse, store,
                                                                  monkeypatch):
    # With page batches the next window's first batch was committed by the fetch thread
    # while the driver committed the previous window's last pages: two MERGEs into one
    # target at once (ConcurrentAppendException retries, pages of stack traces on a run
    # that succeeded) and commits out of window order.
    import threading

    from framework.load.writers import TargetWriter

    merging, overlaps, lock = [0], [], threading.Lock()
    merge = TargetWriter.merge

    def watched(self, *args, **kwargs):
        with lock:
            merging[0] += 1
            overlaps.append(merging[0])
        try:
            return merge(self, *args, **kwargs)
        finally:
            with lock:
                merging[0] -= 1

    monkeypatch.setattr(TargetWriter, "merge", watched)
    with DemoApi(seed=17, records_per_resource=160, end=dt.datetime(2024, 1, 7, tzinfo=UTC),
                 max_page_size=10) as api:
        cfg = source(api.base_url, "cursor", "ordered", delta_column=True, window="daily",
                     start="2024-01-01T00:00:00Z", end="2024-01-02T00:00:00Z",
                     limits={"pages_per_commit": 2, "concurrency": 2})
        [full] = run_loads(spark, warehouse, store, [cfg])
        assert full.status == "SUCCESS", full.error
        now = dt.datetime(2024, 1, 6, tzinfo=UTC)
        [done] = run_loads(spark, warehouse, store, [cfg], now=now)
        assert done.status == "SUCCESS", done.error
        df = read_target(spark, warehouse, cfg)
        assert actual_rows(df) == expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-06T00:00:00Z")
    assert max(overlaps) == 1, overlaps  # one MERGE into the target at a time
    from pyspark.sql import functions as F

    log = sorted((r["WindowStart"], r["LoggedAt"], r["TargetVersion"]) for r in
                 warehouse.read(spark, store.window_ref).where(
                     F.col("LoadId") == done.audit["LoadId"]).collect())
    versions = [v for _, _, v in log]
    assert len(log) > 4 and versions == sorted(versions), log  # committed in window order
