"""The runtime end to end on the demo API and real Delta tables.

The README's guarantees hold whichever executor fetches the windows: each test runs on
the threaded fetch and on Spark tasks (``run --distributed``), through the ``executor``
fixture.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable as RsDeltaTable

from framework.demoapi import DemoApi
from tests.integration.helpers import (STYLE_SOURCES, UTC, actual_rows, expected_rows,
                                       read_target, run_loads, source, target_ref)

pytestmark = pytest.mark.spark

END = dt.datetime(2024, 1, 11, tzinfo=UTC)


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=3, records_per_resource=300, end=END, max_page_size=25) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_faults(api):
    api.faults.clear()
    yield
    api.faults.clear()


def test_every_pagination_style_loads_exactly_the_source(spark, warehouse, store, api, executor):
    configs = [source(api.base_url, style, f"style_{style}") for style in STYLE_SOURCES]
    outcomes = run_loads(spark, warehouse, store, configs, executor=executor)
    assert [o.status for o in outcomes] == ["SUCCESS"] * len(configs), [o.error for o in outcomes]
    expected = expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z")
    assert len(expected) > 60
    schema = "id long, title string, updated_at string"
    for cfg, outcome in zip(configs, outcomes):
        df = read_target(spark, warehouse, cfg)
        assert actual_rows(df) == expected, cfg.pagination.style
        assert df.select("id").distinct().count() == df.count(), cfg.pagination.style
        assert_df_equality(df.select("id", "title", "updated_at"),
                           spark.createDataFrame(expected, schema),
                           ignore_row_order=True, ignore_nullable=True)
        assert outcome.source_rows == len(expected)
    # the contract columns are there and filled
    df = read_target(spark, warehouse, configs[0])
    row = df.orderBy("id").first()
    assert row["source_system"] == "demo" and row["entity_key"] == str(row["id"])
    assert len(row["payload_hash"]) == 64 and row["collected_at_utc"] is not None
    assert row["_window_start"] <= dt.datetime.fromisoformat(row["updated_at"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert row["_run_id"] == outcomes[0].audit["RunId"]


def test_full_then_incremental_equals_source_and_rerun_changes_nothing(spark, warehouse, store, api,
                                                                     executor):
    cfg = source(api.base_url, "cursor", "incr", delta_column=True, lookback="P1D",
                 end="2024-01-05T00:00:00Z")
    [first] = run_loads(spark, warehouse, store, [cfg], executor=executor)
    assert first.status == "SUCCESS"
    row = store.get("incr")
    assert (row["LoadType"], row["LoadStatus"]) == ("INCREMENTAL", "SUCCESS")
    assert row["LastLoadTime"] == dt.datetime(2024, 1, 5, tzinfo=UTC)

    changed = [r["id"] for r in api.dataset.records_in("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z")][:4]
    at = dt.datetime(2024, 1, 5, 6, tzinfo=UTC)
    api.dataset.touch(changed, at=at)
    added = api.dataset.add(3, at=at)
    now = dt.datetime(2024, 1, 6, tzinfo=UTC)
    [second] = run_loads(spark, warehouse, store, [cfg], now=now, executor=executor)
    assert second.status == "SUCCESS", second.error
    assert second.audit["LoadType"] == "INCREMENTAL"
    assert second.audit["LoadStartTime"] == dt.datetime(2024, 1, 4, tzinfo=UTC)  # lookback P1D
    df = read_target(spark, warehouse, cfg)
    source_now = {r["id"]: r for r in api.dataset.records_in("2024-01-01T00:00:00Z", "2024-01-06T00:00:00Z")}
    assert actual_rows(df) == sorted((i, r["title"], r["updated_at"]) for i, r in source_now.items())
    assert set(added) <= {r["id"] for r in df.select("id").collect()}
    for rid in changed:
        assert "[rev" in df.where(f"id = {rid}").first()["title"]

    # the next run re-reads a day it already loaded (lookback P1D): unchanged rows are not
    # rewritten, so every data file of the table survives; only the new half hour is added
    files = set(RsDeltaTable(warehouse.path(target_ref(cfg))).file_uris())
    later = dt.datetime(2024, 1, 6, 0, 30, tzinfo=UTC)
    fresh = api.dataset.records_in("2024-01-06T00:00:00Z", "2024-01-06T00:30:00Z")
    [third] = run_loads(spark, warehouse, store, [cfg], now=later, executor=executor)
    assert third.status == "SUCCESS" and third.source_rows > len(fresh)
    assert third.rows_written == len(fresh)
    table = RsDeltaTable(warehouse.path(target_ref(cfg)))
    assert files <= set(table.file_uris())
    df = read_target(spark, warehouse, cfg)
    assert actual_rows(df) == expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-06T00:30:00Z")


def test_failed_window_writes_nothing_and_retry_completes_without_duplicates(spark, warehouse, store,
                                                                            api, executor):
    cfg = source(api.base_url, "page", "fail_window", delta_column=True,
                 end="2024-01-02T00:00:00Z",
                 limits={"concurrency": 2, "max_retries": 1, "windows_per_commit": 1})
    [full] = run_loads(spark, warehouse, store, [cfg], executor=executor)
    assert full.status == "SUCCESS" and store.get("fail_window")["LoadType"] == "INCREMENTAL"
    # INCREMENTAL [Jan 2, Jan 5): 3 daily windows; the 2nd window's 2nd page keeps failing
    # (windows are fetched concurrently: the fault names its page, not an arrival order)
    api.faults.add("500", times=None, path="/api/page/issues",
                   query={"since": "2024-01-03T00:00:00Z", "page": 2})
    now = dt.datetime(2024, 1, 5, tzinfo=UTC)
    [failed] = run_loads(spark, warehouse, store, [cfg], now=now, executor=executor)
    assert failed.status == "PARTIAL"
    assert "500" in failed.error
    df = read_target(spark, warehouse, cfg)
    assert actual_rows(df) == expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z")
    log = warehouse.read(spark, store.window_ref).where("ConfigId = 'fail_window'").collect()
    assert sorted(r["Status"] for r in log) == ["FAILED", "SUCCESS", "SUCCESS"]
    row = store.get("fail_window")
    assert row["LoadStatus"] == "FAILED" and "500" in row["ErrorMessage"]

    api.faults.clear()
    # an INCREMENTAL FAILED row is re-planned by generate with the same range and LoadId
    [done] = run_loads(spark, warehouse, store, [cfg], now=now + dt.timedelta(hours=1),
                       executor=executor)
    assert done.status == "SUCCESS", done.error
    assert done.audit["LoadId"] == failed.audit["LoadId"]
    assert done.audit["WindowsSkipped"] == 1 and done.audit["WindowsLoaded"] == 2
    df = read_target(spark, warehouse, cfg)
    assert actual_rows(df) == expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z")
    assert df.select("id").distinct().count() == df.count()


def test_failed_full_load_leaves_the_old_table_intact(spark, warehouse, store, api, executor):
    cfg = source(api.base_url, "offset", "full_keep", limits={"max_retries": 0})
    [ok] = run_loads(spark, warehouse, store, [cfg], executor=executor)
    assert ok.status == "SUCCESS"
    before = actual_rows(read_target(spark, warehouse, cfg))
    version = RsDeltaTable(warehouse.path(target_ref(cfg))).version()
    api.faults.add("error_body", times=None, path="/api/offset/issues", after=3)
    # FULL without delta_column: the next generate plans FULL again
    [bad] = run_loads(spark, warehouse, store, [cfg], now=dt.datetime(2024, 2, 1, tzinfo=UTC),
                      executor=executor)
    assert bad.status == "FAILED"
    assert "error" in bad.error.lower()
    assert RsDeltaTable(warehouse.path(target_ref(cfg))).version() == version
    assert actual_rows(read_target(spark, warehouse, cfg)) == before


def test_audit_row_and_health_log_count_requests_retries_and_statuses(spark, warehouse, store, api,
                                                                      executor):
    from pyspark.sql import functions as F

    from framework.ops.health_store import read_checks

    cfg = source(api.base_url, "offset", "audited", window="none")
    api.faults.add("503", times=2, path="/api/offset/issues")
    api.faults.add("429", times=1, path="/api/offset/issues", retry_after=0)
    [outcome] = run_loads(spark, warehouse, store, [cfg], executor=executor)
    assert outcome.status == "SUCCESS", outcome.error
    audit = store.audit_rows("audited")[0]
    statuses = json.loads(audit["HttpStatusCounts"])
    assert statuses.get("503") == 2 and statuses.get("429") == 1 and statuses.get("200") >= 4
    assert audit["Retries"] == 3
    assert audit["Requests"] == sum(statuses.values())
    assert audit["SourceRowCount"] == audit["TargetRowCount"] == audit["TargetTotalRowCount"]
    assert audit["ExpectedRowCount"] == audit["SourceRowCount"]
    assert audit["WindowsTotal"] == 1 and audit["Pages"] >= 4 and audit["BytesReceived"] > 0
    assert audit["LoadStatus"] == "SUCCESS" and audit["ErrorMessage"] is None
    assert audit["RunDuration"] >= 0
    # every attempt reached the health log, from the driver or from a Spark task
    checks = [r.asDict() for r in read_checks(spark, warehouse).where(
        F.col("RunId") == audit["RunId"]).collect()]
    assert len(checks) == audit["Requests"]
    assert sorted(c["StatusCode"] for c in checks) == sorted(
        int(status) for status, n in statuses.items() for _ in range(n))
    assert {c["ErrorKind"] for c in checks if not c["Ok"]} == {"http_status"}


def test_a_failed_loads_audit_row_counts_the_requests_it_made(spark, warehouse, store, api,
                                                              executor):
    # A load that gave up recorded Requests 0, Retries 0 and no status counts (the health
    # log had every attempt): the failed window's counts were dropped with its error, and
    # so were those of windows fetched beside it.
    from pyspark.sql import functions as F

    from framework.ops.health_store import read_checks

    cfg = source(api.base_url, "offset", "gives_up", window="daily",
                 start="2024-01-01T00:00:00Z", end="2024-01-03T00:00:00Z",
                 limits={"max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.01})
    api.faults.add("500", times=None, path="/api/offset/issues",
                   query={"since": "2024-01-02T00:00:00Z"})  # the second window fails
    [outcome] = run_loads(spark, warehouse, store, [cfg], executor=executor)
    assert outcome.status == "FAILED" and "gave up after 3 attempts" in outcome.error
    audit = store.audit_rows("gives_up")[0]
    statuses = json.loads(audit["HttpStatusCounts"])
    assert statuses.get("500") == 3 and audit["Retries"] >= 2
    assert audit["Requests"] == sum(statuses.values())
    checks = read_checks(spark, warehouse).where(F.col("RunId") == audit["RunId"]).count()
    assert audit["Requests"] == checks


def test_a_load_end_in_the_future_loads_up_to_now_then_incrementally(spark, warehouse, store):
    # load_end 2030 is "up to now, then incrementally on": the first load stops at now and
    # its watermark too, so what changes after it is loaded by the next incremental load
    now = dt.datetime(2024, 1, 11, tzinfo=UTC)
    with DemoApi(seed=5, records_per_resource=80, end=now, max_page_size=25) as api:
        cfg = source(api.base_url, "offset", "future_end", delta_column=True, window="monthly",
                     end="2030-01-01T00:00:00Z")
        [first] = run_loads(spark, warehouse, store, [cfg], now=now)
        assert first.status == "SUCCESS", first.error
        assert first.audit["LoadEndTime"] == now
        row = store.get("future_end")
        assert (row["LoadType"], row["LastLoadTime"]) == ("INCREMENTAL", now)

        changed = [r["id"] for r in api.dataset.records_in("2024-01-02T00:00:00Z",
                                                           "2024-01-03T00:00:00Z")][:3]
        at = dt.datetime(2024, 1, 12, tzinfo=UTC)
        api.dataset.touch(changed, at=at)
        later = dt.datetime(2024, 1, 13, tzinfo=UTC)
        [second] = run_loads(spark, warehouse, store, [cfg], now=later)
        assert second.status == "SUCCESS", second.error
        assert (second.audit["LoadType"], second.audit["LoadStartTime"]) == ("INCREMENTAL", now)
        expected = expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-13T00:00:00Z")
        assert actual_rows(read_target(spark, warehouse, cfg)) == expected
        rs = RsDeltaTable(str(warehouse.path(target_ref(cfg)))).to_pyarrow_table(
            columns=["id", "title"]).to_pylist()
        titles = {r["id"]: r["title"] for r in rs}
        assert all("[rev 2]" in titles[i] for i in changed)
        assert store.get("future_end")["LastLoadTime"] == later


def test_a_first_load_that_finds_no_record_succeeds_and_the_next_one_creates_the_target(
        spark, warehouse, store, api):
    # a newly onboarded quiet source: its first (full) load finds nothing; no target is
    # written (its columns are unknown until a record arrives), the load succeeds
    cfg = source(api.base_url, "offset", "quiet", delta_column=True,
                 start="2023-06-01T00:00:00Z", end="2023-06-04T00:00:00Z")
    [first] = run_loads(spark, warehouse, store, [cfg])
    assert first.status == "SUCCESS", first.error
    assert (first.rows_written, first.source_rows) == (0, 0)
    row = store.get("quiet")
    assert (row["LoadType"], row["LoadStatus"]) == ("INCREMENTAL", "SUCCESS")
    assert not warehouse.exists(spark, target_ref(cfg))

    [second] = run_loads(spark, warehouse, store, [cfg], now=dt.datetime(2024, 1, 3, tzinfo=UTC))
    assert second.status == "SUCCESS", second.error
    expected = expected_rows(api, "2023-06-01T00:00:00Z", "2024-01-03T00:00:00Z")
    assert len(expected) > 0 and actual_rows(read_target(spark, warehouse, cfg)) == expected
    ids = RsDeltaTable(str(warehouse.path(target_ref(cfg)))).to_pyarrow_table(columns=["id"])
    assert sorted(ids.column("id").to_pylist()) == sorted(r[0] for r in expected)


def test_a_load_whose_every_record_is_rejected_quarantines_them_all(spark, warehouse, store, api):
    # user is nested: user.login is never a field of its own, so every record is rejected
    cfg = source(api.base_url, "offset", "all_rejected", end="2024-01-03T00:00:00Z",
                 required_fields=["closed_at", "user.login"])
    [outcome] = run_loads(spark, warehouse, store, [cfg])
    expected = api.dataset.records_in("2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z")
    assert outcome.status == "SUCCESS", outcome.error
    assert (outcome.rows_written, outcome.source_rows) == (0, len(expected))
    audit = store.audit_rows("all_rejected")[0]
    assert (audit["SourceRowCount"], audit["RejectedRows"]) == (len(expected), len(expected))
    quarantine = RsDeltaTable(str(warehouse.path(target_ref(cfg).suffixed("_quarantine"))))
    rows = quarantine.to_pyarrow_table(columns=["reason", "raw_payload"]).to_pylist()
    assert sorted(json.loads(r["raw_payload"])["id"] for r in rows) == sorted(
        r["id"] for r in expected)
    assert all("closed_at" in r["reason"] or "user.login" in r["reason"] for r in rows)


def test_a_replay_of_an_older_run_never_puts_back_an_older_version(spark, warehouse, store):
    from framework.load.archive import replay

    with DemoApi(seed=6, records_per_resource=40, end=dt.datetime(2024, 1, 3, tzinfo=UTC),
                 max_page_size=25) as api:
        cfg = source(api.base_url, "offset", "replayed", delta_column=True, archive=True,
                     end="2024-01-03T00:00:00Z")
        [first] = run_loads(spark, warehouse, store, [cfg])
        assert first.status == "SUCCESS", first.error
        changed = [r["id"] for r in api.dataset.records_in("2024-01-01T00:00:00Z",
                                                           "2024-01-02T00:00:00Z")][:3]
        api.dataset.touch(changed, at=dt.datetime(2024, 1, 3, 6, tzinfo=UTC))
        added = api.dataset.add(1, at=dt.datetime(2024, 1, 3, 7, tzinfo=UTC))
        [second] = run_loads(spark, warehouse, store, [cfg],
                             now=dt.datetime(2024, 1, 4, tzinfo=UTC))
        assert second.status == "SUCCESS", second.error
        newest = expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z")
        assert actual_rows(read_target(spark, warehouse, cfg)) == newest

        # the first run's pages hold the changed records' older versions
        result = replay(spark, store, "replayed", first.audit["RunId"], warehouse.root / "_staging")
        assert result.records > 0
    assert actual_rows(read_target(spark, warehouse, cfg)) == newest
    rs = RsDeltaTable(str(warehouse.path(target_ref(cfg)))).to_pyarrow_table(
        columns=["id", "title"]).to_pylist()
    assert all("[rev 2]" in r["title"] for r in rs if r["id"] in changed)
    assert added[0] in {r["id"] for r in rs}
