"""Concurrency, bad input, schema drift and rejects on real Delta tables."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from deltalake import DeltaTable as RsDeltaTable

from framework.load import runtime
from framework.demoapi import DemoApi
from tests.integration.helpers import (UTC, actual_rows, expected_rows, read_target, run_loads,
                                       source, target_ref)

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=9, records_per_resource=200, end=dt.datetime(2024, 1, 9, tzinfo=UTC),
                 max_page_size=40) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(api):
    api.faults.clear()
    yield
    api.faults.clear()


def test_four_runners_process_each_row_exactly_once(spark, warehouse, store, api):
    styles = ["offset", "cursor", "page", "next_key", "has_more", "link_header"]
    configs = [source(api.base_url, s, f"conc_{i}", window="P3D") for i, s in enumerate(styles)]
    store.generate(configs)
    outcomes: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def runner() -> None:
        ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging")
        barrier.wait()
        result = runtime.run(ctx, [c.config_id for c in configs])
        with lock:
            outcomes.extend(result)

    threads = [threading.Thread(target=runner) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [o for o in outcomes if o.status != "SKIPPED"]
    assert sorted(o.config_id for o in done) == sorted(c.config_id for c in configs)
    assert all(o.status == "SUCCESS" for o in done), [o.error for o in done]
    audit = warehouse.read(spark, store.audit_ref).collect()
    assert sorted(r["ConfigId"] for r in audit) == sorted(c.config_id for c in configs)
    expected = expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z")
    for cfg in configs:
        assert actual_rows(read_target(spark, warehouse, cfg)) == expected
        row = store.get(cfg.config_id)
        assert row["LoadStatus"] == "SUCCESS" and row["Attempt"] == 1


def test_hand_edited_bad_rows_fail_with_the_column_named_and_others_still_run(spark, warehouse, store, api):
    from pyspark.sql import functions as F

    good = source(api.base_url, "offset", "bad_good", window="none")
    bad_json = source(api.base_url, "offset", "bad_json", window="none")
    hostile = source(api.base_url, "offset", "bad_ident", window="none")
    bad_parser = source(api.base_url, "offset", "bad_parser", window="none")
    store.generate([good, bad_json, hostile, bad_parser])
    control = warehouse.delta(spark, store.control_ref)
    control.update(F.col("ConfigId") == F.lit("bad_json"), {"PaginationConfig": F.lit("{style: offset")})
    control.update(F.col("ConfigId") == F.lit("bad_ident"), {"TargetTable": F.lit("x`; DROP TABLE y")})
    control.update(F.col("ConfigId") == F.lit("bad_parser"), {"ParserName": F.lit("nope")})
    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging")
    outcomes = {o.config_id: o for o in runtime.run(ctx, None)}
    assert outcomes["bad_good"].status == "SUCCESS"
    assert "PaginationConfig" in outcomes["bad_json"].error and "JSON" in outcomes["bad_json"].error
    assert "TargetTable" in outcomes["bad_ident"].error
    assert "ParserName" in outcomes["bad_parser"].error and "records" in outcomes["bad_parser"].error
    for cid in ("bad_json", "bad_ident", "bad_parser"):
        row = store.get(cid)
        assert row["LoadStatus"] == "FAILED" and row["ErrorMessage"] == outcomes[cid].error
    assert not (warehouse.root / "raw" / "tests" / "x`; DROP TABLE y").exists()
    assert actual_rows(read_target(spark, warehouse, good)) == expected_rows(
        api, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z")


def test_bad_response_fails_the_load_and_keeps_what_was_loaded(spark, warehouse, store, api):
    cfg = source(api.base_url, "cursor", "bad_body", delta_column=True, end="2024-01-02T00:00:00Z",
                 limits={"max_retries": 0})
    [ok] = run_loads(spark, warehouse, store, [cfg])
    assert ok.status == "SUCCESS"
    before = actual_rows(read_target(spark, warehouse, cfg))
    # the config now caps bodies below the size of a page of 40 records: the window fails clearly
    capped = source(api.base_url, "cursor", "bad_body", delta_column=True, end="2024-01-02T00:00:00Z",
                    limits={"max_retries": 0, "max_body_bytes": 4096})
    [bad] = run_loads(spark, warehouse, store, [capped], now=dt.datetime(2024, 1, 3, tzinfo=UTC))
    assert bad.status == "FAILED" and "max_body_bytes" in bad.error
    assert actual_rows(read_target(spark, warehouse, cfg)) == before
    assert store.get("bad_body")["LoadStatus"] == "FAILED"


def test_schema_drift_rescue_evolve_fail_and_quarantine(spark, warehouse, store, api):
    base = dict(delta_column=True, end="2024-01-02T00:00:00Z", window="none")
    rescue = source(api.base_url, "offset", "drift_rescue", required_fields=["id", "title"], **base)
    evolve = source(api.base_url, "offset", "drift_evolve", schema_mode="evolve", **base)
    fail = source(api.base_url, "offset", "drift_fail", schema_mode="fail", **base)
    assert all(o.status == "SUCCESS" for o in run_loads(spark, warehouse, store, [rescue, evolve, fail]))

    at = dt.datetime(2024, 1, 2, 12, tzinfo=UTC)
    ids = api.dataset.add(6, at=at)
    api.faults.add("schema_drift", times=None, path="/api/offset/issues")
    now = dt.datetime(2024, 1, 3, tzinfo=UTC)
    outcomes = {o.config_id: o for o in run_loads(spark, warehouse, store, [rescue, evolve, fail], now=now)}
    api.faults.clear()

    r = outcomes["drift_rescue"]
    assert r.status == "SUCCESS", r.error
    df = read_target(spark, warehouse, rescue)
    assert "priority" not in df.columns
    drifted = df.where(df.id.isin(ids)).collect()
    assert len(drifted) == 6
    for row in drifted:
        rescued = json.loads(row["_rescued_data"])
        assert rescued["priority"] == "high" and isinstance(rescued["comments"], str)
        assert row["comments"] is None  # the type change is rescued, not a crash
    audit = store.audit_rows("drift_rescue")[0]
    assert json.loads(audit["SchemaChanges"]) == ["priority"] and audit["RescuedRows"] >= 6

    e = outcomes["drift_evolve"]
    assert e.status == "SUCCESS", e.error
    edf = read_target(spark, warehouse, evolve)
    assert "priority" in edf.columns
    assert {row["priority"] for row in edf.where(edf.id.isin(ids)).collect()} == {"high"}
    assert RsDeltaTable(warehouse.path(target_ref(evolve))).schema().fields  # independent reader opens it

    f = outcomes["drift_fail"]
    assert f.status == "FAILED" and "priority" in f.error and "schema_mode: fail" in f.error
    assert "priority" not in read_target(spark, warehouse, fail).columns


def test_records_missing_required_fields_go_to_quarantine(spark, warehouse, store, api):
    cfg = source(api.base_url, "offset", "rejects", window="none", required_fields=["id", "closed_at"])
    [outcome] = run_loads(spark, warehouse, store, [cfg])
    expected = api.dataset.records_in("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z")
    with_milestone = [r for r in expected if r.get("closed_at")]
    assert outcome.status == "SUCCESS"
    audit = store.audit_rows("rejects")[0]
    assert audit["RejectedRows"] == len(expected) - len(with_milestone) > 0
    quarantine = warehouse.read(spark, target_ref(cfg).suffixed("_quarantine"))
    rows = quarantine.collect()
    assert len(rows) == audit["RejectedRows"]
    assert all("closed_at" in r["reason"] for r in rows)
    assert {json.loads(r["raw_payload"])["id"] for r in rows} == {
        r["id"] for r in expected if not r.get("closed_at")}
    if with_milestone:
        assert read_target(spark, warehouse, cfg).count() == len(with_milestone)
