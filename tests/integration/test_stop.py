"""Cooperative stop: a drained load commits what is in flight, starts nothing new and
releases its row to PENDING (audit INTERRUPTED); the next run finishes the load."""

from __future__ import annotations

import datetime as dt
import os
import signal

import pytest

from framework.demoapi import DemoApi
from framework.load import runtime
from tests.integration.helpers import (UTC, actual_rows, expected_rows, read_target, requested,
                                       run_loads, source, start_run, target_ref, wait_for)

pytestmark = pytest.mark.spark
D1, D3, D4, D9 = ("2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z", "2024-01-04T00:00:00Z",
                  "2024-01-09T00:00:00Z")
END = dt.datetime(2024, 1, 9, tzinfo=UTC)


def _ctx(spark, warehouse, store, stop_on: str, count: int = 1):
    """A run that requests a stop when it sees its ``count``-th ``stop_on`` event."""
    seen: list[str] = []

    def on_event(event: str, data: dict) -> None:
        if event == stop_on:
            seen.append(event)
            if len(seen) == count:
                ctx.request_stop("stop requested by the test")

    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging", on_event=on_event)
    return ctx


def _audit(spark, warehouse, store, config_id: str) -> list:
    return sorted((r for r in warehouse.read(spark, store.audit_ref).collect()
                   if r["ConfigId"] == config_id), key=lambda r: r["LoggedAt"])


def test_a_stopped_full_load_commits_nothing_and_is_pending_again(spark, warehouse, store):
    with DemoApi(seed=51, records_per_resource=200, end=END, max_page_size=10) as api:
        cfg = source(api.base_url, "cursor", "full_stop", end=D9, delta_column=True,
                     limits={"concurrency": 2})
        store.generate([cfg])
        before = store.get("full_stop")
        ctx = _ctx(spark, warehouse, store, "load_started")
        [stopped] = runtime.run(ctx, ["full_stop"])
        assert stopped.status == "INTERRUPTED" and not stopped.failed and stopped.interrupted
        assert "PENDING again" in stopped.error and "stop requested by the test" in stopped.error
        assert not warehouse.exists(spark, target_ref(cfg))  # its one overwrite never ran
        row = store.get("full_stop")
        assert (row["LoadStatus"], row["LoadType"], row["ClaimedBy"]) == ("PENDING", "FULL_LOAD", None)
        assert (row["LoadId"], row["LoadStartTime"], row["LoadEndTime"]) == (
            before["LoadId"], before["LoadStartTime"], before["LoadEndTime"])
        # a stopped run claims nothing more
        assert [o.status for o in runtime.run(ctx, ["full_stop"])] == ["SKIPPED"]
        assert store.get("full_stop")["LoadStatus"] == "PENDING"

        [done] = run_loads(spark, warehouse, store, [cfg], generate=False)
        assert done.status == "SUCCESS", done.error
        assert actual_rows(read_target(spark, warehouse, cfg)) == expected_rows(api, D1, D9)
    assert [r["LoadStatus"] for r in _audit(spark, warehouse, store, "full_stop")] == [
        "INTERRUPTED", "SUCCESS"]


def test_a_stop_at_a_page_checkpoint_resumes_from_it(spark, warehouse, store):
    with DemoApi(seed=53, records_per_resource=200, end=END, max_page_size=10) as api:
        cfg = source(api.base_url, "cursor", "batch_stop", end=D3, delta_column=True, window="none",
                     limits={"pages_per_commit": 2})
        [full] = run_loads(spark, warehouse, store, [cfg])
        assert full.status == "SUCCESS", full.error
        store.generate([cfg], now=END)  # one long INCREMENTAL window [D3, D9)
        ctx = _ctx(spark, warehouse, store, "segment_committed")
        [stopped] = runtime.run(ctx, ["batch_stop"])
        assert stopped.status == "INTERRUPTED", stopped.error
        assert "stopped after page batch 1" in stopped.error
        assert stopped.rows_written == 20  # the first batch of two pages stays committed
        assert store.get("batch_stop")["LoadStatus"] == "PENDING"

        api.clear_log()
        [done] = run_loads(spark, warehouse, store, [cfg], generate=False)
        assert done.status == "SUCCESS", done.error
        first = [e for e in api.request_log if e["path"] == "/api/cursor/issues"][0]
        assert first["query"].get("cursor"), "the next run resumes after the checkpoint"
        df = read_target(spark, warehouse, cfg)
        assert actual_rows(df) == expected_rows(api, D1, "2024-01-09T00:00:00Z")


def test_sigterm_drains_restlake_run_and_the_next_run_finishes_the_load(
        spark, warehouse, store, tmp_path):
    with DemoApi(seed=57, records_per_resource=240, end=END, max_page_size=10,
                 latency_ms=150) as api:
        cfg = source(api.base_url, "cursor", "sigterm", end=D3, delta_column=True,
                     limits={"concurrency": 1, "windows_per_commit": 1})
        [full] = run_loads(spark, warehouse, store, [cfg])
        assert full.status == "SUCCESS", full.error
        store.generate([cfg], now=END)  # INCREMENTAL [D3, D9): six daily windows
        load_id = store.get("sigterm")["LoadId"]
        log = tmp_path / "run.log"
        proc = start_run(warehouse.root, "sigterm", log)
        wait_for(lambda: requested(api, D4) or proc.poll() is not None, "the run's second window")
        assert proc.poll() is None, log.read_text()[-3000:]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=600) == 128 + signal.SIGTERM, log.read_text()[-3000:]
        assert "INTERRUPTED" in log.read_text()

        row = store.get("sigterm")
        assert (row["LoadStatus"], row["ClaimedBy"], row["LoadId"]) == ("PENDING", None, load_id)
        [interrupted] = _audit(spark, warehouse, store, "sigterm")[1:]
        assert interrupted["LoadStatus"] == "INTERRUPTED" and interrupted["WindowsLoaded"] >= 1
        assert "SIGTERM received" in interrupted["ErrorMessage"]

        [done] = run_loads(spark, warehouse, store, [cfg], generate=False)
        assert done.status == "SUCCESS", done.error
        assert done.audit["LoadId"] == load_id
        assert done.audit["WindowsSkipped"] == interrupted["WindowsLoaded"]  # committed work stays
        df = read_target(spark, warehouse, cfg)
        assert actual_rows(df) == expected_rows(api, D1, D9)  # no duplicate, no gap
