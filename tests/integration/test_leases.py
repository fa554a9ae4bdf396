"""Leases and fencing with real processes: a runner paused past its lease (SIGSTOP) finds
its row taken over when it resumes, writes nothing more and audits LEASE_LOST."""

from __future__ import annotations

import datetime as dt
import os
import signal

import pytest

from framework.demoapi import DemoApi
from framework.load import runtime
from tests.integration.helpers import (UTC, actual_rows, expected_rows, read_target, requested,
                                       source, start_run, wait_for)

pytestmark = pytest.mark.spark
D1, D3, D7, D9 = "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z", "2024-01-07T00:00:00Z", "2024-01-09T00:00:00Z"


def test_a_paused_runner_loses_its_lease_writes_nothing_more_and_audits_lease_lost(
        spark, warehouse, store, tmp_path):
    with DemoApi(seed=41, records_per_resource=240, end=dt.datetime(2024, 1, 9, tzinfo=UTC),
                 max_page_size=10, latency_ms=150) as api:
        cfg = source(api.base_url, "cursor", "paused", start=D1, end=D7,
                     limits={"concurrency": 1, "windows_per_commit": 1})
        store.generate([cfg])
        log = tmp_path / "runner_a.log"
        # runner A: a 30 s lease, renewed every 10 s while it runs
        a = start_run(warehouse.root, "paused", log, "--lease-minutes", "0.5")
        try:
            wait_for(lambda: requested(api, D3) or a.poll() is not None, "runner A's third window")
            assert a.poll() is None, log.read_text()[-3000:]
            os.kill(a.pid, signal.SIGSTOP)  # A freezes mid-load: no heartbeat, no commit
            wait_for(lambda: "paused" in store.claimable_ids(), "runner A's lease to run out", 300)
            # runner B takes the row over and finishes the load
            ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging")
            [b] = runtime.run(ctx, ["paused"])
            assert b.status == "SUCCESS", b.error
        finally:
            os.kill(a.pid, signal.SIGCONT)
        assert a.wait(timeout=600) == 1, log.read_text()[-3000:]
    output = log.read_text()
    assert "LEASE_LOST" in output and "lease lost" in output

    audits = [r for r in warehouse.read(spark, store.audit_ref).collect() if r["ConfigId"] == "paused"]
    assert sorted(r["LoadStatus"] for r in audits) == ["LEASE_LOST", "SUCCESS"]
    [lost] = [r for r in audits if r["LoadStatus"] == "LEASE_LOST"]
    assert lost["RunId"] != b.audit["RunId"] and lost["LoadId"] == b.audit["LoadId"]
    assert "RUNNING by" in lost["ErrorMessage"] or "is SUCCESS" in lost["ErrorMessage"]
    row = store.get("paused")
    assert (row["LoadStatus"], row["LastJobRunId"], row["ClaimedBy"]) == (
        "SUCCESS", b.audit["RunId"], None)  # A did not touch B's finished row
    df = read_target(spark, warehouse, cfg)
    assert actual_rows(df) == expected_rows(api, D1, D7)


def test_the_lease_is_limits_lease_s_unless_the_run_gives_one(spark, warehouse, store):
    with DemoApi(seed=43, records_per_resource=40, end=dt.datetime(2024, 1, 3, tzinfo=UTC)) as api:
        configured = source(api.base_url, "offset", "lease_cfg", end=D3, limits={"lease_s": 240})
        given = source(api.base_url, "offset", "lease_run", end=D3, limits={"lease_s": 240})
        store.generate([configured, given])
        leases: dict[str, dt.timedelta] = {}

        def on_event(event: str, data: dict) -> None:
            if event == "load_started":  # the row as claimed: LeaseExpiresAt - claim time
                row = store.get(data["config_id"])
                leases[data["config_id"]] = row["LeaseExpiresAt"] - row["LastUpdatedTime"]

        staging = warehouse.root / "_staging"
        runtime.run(runtime.RunContext(spark, warehouse, store, staging, on_event=on_event),
                    ["lease_cfg"])
        runtime.run(runtime.RunContext(spark, warehouse, store, staging, on_event=on_event,
                                       lease=dt.timedelta(minutes=7)), ["lease_run"])
    assert leases == {"lease_cfg": dt.timedelta(seconds=240), "lease_run": dt.timedelta(minutes=7)}
