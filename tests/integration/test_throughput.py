"""Throughput features must not change what lands: concurrency, distributed fetch."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.demoapi import DemoApi
from framework.load.distributed import fetch_windows_distributed
from framework.load.fetch import WindowFetcher
from framework.errors import HttpError
from framework.load.staging import RunStaging
from framework.load.writers import TargetWriter
from framework.windows import split
from tests.integration.helpers import (UTC, actual_rows, expected_rows, read_target, run_loads,
                                       source, target_ref)

pytestmark = pytest.mark.spark

END = dt.datetime(2024, 1, 11, tzinfo=UTC)
# Lineage that differs between two runs by design; everything else must be identical.
VOLATILE = ("_run_id", "collected_at_utc")


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=5, records_per_resource=400, end=END, max_page_size=20) as server:
        yield server


def _rows(df):
    cols = sorted(c for c in df.columns if c not in VOLATILE)
    return sorted((tuple(r) for r in df.select(*cols).collect()), key=repr), cols


def test_concurrency_does_not_change_loaded_data(spark, warehouse, store, api):
    common = dict(delta_column=True, end="2024-01-09T00:00:00Z", lookback="P2D")
    serial = source(api.base_url, "cursor", "serial",
                    limits={"concurrency": 1, "windows_per_commit": 1}, **common)
    wide = source(api.base_url, "cursor", "wide",
                  limits={"concurrency": 8, "windows_per_commit": 8}, **common)
    first = run_loads(spark, warehouse, store, [serial, wide])
    assert [o.status for o in first] == ["SUCCESS", "SUCCESS"], [o.error for o in first]

    # an incremental run over edited and new records: MERGE batches differ (1 vs 8 windows)
    at = dt.datetime(2024, 1, 9, 5, tzinfo=UTC)
    edited = [r["id"] for r in api.dataset.records_in("2024-01-07T00:00:00Z", "2024-01-08T00:00:00Z")][:5]
    api.dataset.touch(edited, at=at)
    api.dataset.add(4, at=at)
    second = run_loads(spark, warehouse, store, [serial, wide], now=dt.datetime(2024, 1, 10, tzinfo=UTC))
    assert [o.status for o in second] == ["SUCCESS", "SUCCESS"], [o.error for o in second]
    assert second[0].audit["WindowsTotal"] == second[1].audit["WindowsTotal"] >= 3

    serial_rows, cols = _rows(read_target(spark, warehouse, serial))
    wide_rows, wide_cols = _rows(read_target(spark, warehouse, wide))
    assert cols == wide_cols
    assert serial_rows == wide_rows
    assert actual_rows(read_target(spark, warehouse, wide)) == expected_rows(
        api, "2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z")


def test_distributed_fetch_lands_the_same_target_as_local_fetch(spark, warehouse, tmp_path, api):
    local_cfg = source(api.base_url, "page", "local_fetch", end="2024-01-07T00:00:00Z",
                       limits={"concurrency": 3, "requests_per_second": 200})
    dist_cfg = source(api.base_url, "page", "dist_fetch", end="2024-01-07T00:00:00Z",
                      limits={"concurrency": 3, "requests_per_second": 200})
    windows = split(local_cfg.load_start, local_cfg.load_end, local_cfg.window)
    todo = list(enumerate(windows))

    local_stage = RunStaging(tmp_path / "stage", "local_fetch", "run-1")
    with WindowFetcher(local_cfg, "run-1", local_stage, None, None) as fetch:
        local_results = [fetch(i, w) for i, w in todo]
    local_writer = TargetWriter(spark, warehouse, local_cfg, target_ref(local_cfg), "run-1", "local_fetch")
    local_writer.overwrite([r.stage for r in local_results], None)

    dist_stage = RunStaging(tmp_path / "stage", "dist_fetch", "run-1")
    outcomes = fetch_windows_distributed(spark, dist_cfg, todo, "run-1", dist_stage, None)
    assert [(i, w) for i, w, _ in outcomes] == todo
    dist_results = [f.result() for _, _, f in outcomes]
    assert [(r.records, r.pages) for r in dist_results] == [(r.records, r.pages) for r in local_results]
    assert sum(r.telemetry.requests for r in dist_results) >= sum(r.pages for r in dist_results)
    dist_writer = TargetWriter(spark, warehouse, dist_cfg, target_ref(dist_cfg), "run-1", "dist_fetch")
    dist_writer.overwrite([r.stage for r in dist_results], None)

    local_rows, cols = _rows(read_target(spark, warehouse, local_cfg))
    dist_rows, dist_cols = _rows(read_target(spark, warehouse, dist_cfg))
    assert cols == dist_cols and local_rows == dist_rows
    assert actual_rows(read_target(spark, warehouse, dist_cfg)) == expected_rows(
        api, "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z")

    # a window that fails on an executor comes back as its own error, typed
    broken = source(api.base_url + "/nope", "page", "dist_broken", end="2024-01-02T00:00:00Z")
    [(_, _, future)] = fetch_windows_distributed(
        spark, broken, [(0, windows[0])], "run-1", RunStaging(tmp_path / "stage", "b", "r"), None)
    with pytest.raises(HttpError, match="404"):
        future.result()
