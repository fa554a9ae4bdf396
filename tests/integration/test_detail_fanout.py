"""Detail fan-out on real Delta tables, on both executors: faults on the list and the
detail calls, a 404 quarantined with its id, the audit's DetailRequests."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from deltalake import DeltaTable as RsDeltaTable

from framework.demoapi import DemoApi
from tests.integration.helpers import UTC, read_target, run_loads, source, target_ref

pytestmark = pytest.mark.spark

SINCE, UNTIL = "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=11, records_per_resource=60, end=dt.datetime(2024, 1, 5, tzinfo=UTC),
                 max_page_size=10) as server:
        yield server


@pytest.mark.parametrize("executor", ["threads", "spark"])
def test_detail_fan_out_loads_complete_records_and_quarantines_a_404(spark, warehouse, store, api,
                                                                     executor):
    api.faults.clear()
    listed = api.dataset.records_in(SINCE, UNTIL)
    gone, flaky = listed[3]["id"], listed[-2]["id"]
    api.faults.add("404", times=None, path=f"/api/offset/issues/{gone}")
    api.faults.add("503", times=1, path=f"/api/offset/issues/{flaky}")
    api.faults.add("500", times=1, path="/api/offset/issues", query={"offset": "10"})
    cfg = source(api.base_url, "offset", f"detail_{executor}", end=UNTIL,
                 pagination={"page_size": 10},
                 detail={"endpoint": api.base_url + "/api/offset/issues/{id}", "concurrency": 4,
                         "on_404": "quarantine"})
    try:
        [outcome] = run_loads(spark, warehouse, store, [cfg], executor=executor)
    finally:
        api.faults.clear()
    assert outcome.status == "SUCCESS", outcome.error
    rows = {r["id"]: r for r in read_target(spark, warehouse, cfg).collect()}
    assert set(rows) == {r["id"] for r in listed} - {gone}
    assert all(rows[i]["body"] == f"Issue #{rows[i]['number']}: {rows[i]['title']}" for i in rows)
    # the same through delta-rs
    rs = RsDeltaTable(str(warehouse.path(target_ref(cfg)))).to_pyarrow_table(columns=["id", "body"])
    assert sorted(rs.column("id").to_pylist()) == sorted(rows)
    quarantine = warehouse.read(spark, target_ref(cfg).suffixed("_quarantine")).collect()
    assert [json.loads(q["raw_payload"])["id"] for q in quarantine] == [gone]
    assert str(gone) in quarantine[0]["reason"] and "404" in quarantine[0]["reason"]
    audit = store.audit_rows(cfg.config_id)[0]
    # every listed record had one detail request; the 503 was retried once
    assert audit["DetailRequests"] == len(listed) + 1
    assert audit["Requests"] == audit["Pages"] + 1 + audit["DetailRequests"]
    assert audit["RejectedRows"] == 1 and audit["SourceRowCount"] == len(listed)
