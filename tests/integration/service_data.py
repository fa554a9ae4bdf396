"""A small warehouse for the service tests, built by real loads of the demo API."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from framework.demoapi import DemoApi
from framework.lake.tables import Warehouse
from tests.integration.helpers import UTC, run_loads, source

END = dt.datetime(2024, 1, 4, tzinfo=UTC)
#: An error text holding HTML and rich markup: every consumer must show it as text.
MARKUP = '<img src=x onerror="alert(1)"> [red]boom[/red]'


def build_warehouse(spark, root: Path, api: DemoApi) -> tuple[Warehouse, list]:
    """Three sources loaded for real (one fails), a failed audit row whose error holds
    markup, and probes that leave one source in an open incident."""
    from control.store import ControlStore
    from framework.ops.health_store import append_checks

    warehouse = Warehouse(root)
    store = ControlStore(spark, warehouse)
    store.init()
    alerts = source(api.base_url, "offset", "alerts", table="cache_monitoring_alerts", window="none",
                    schedule={"frequency": "PT15M"})
    issues = source(api.base_url, "cursor", "issues", schedule={"frequency": "daily"},
                    auth={"method": "none"})
    broken = source(api.base_url, "page", "broken", window="none", limits={"max_retries": 1},
                    schedule={"frequency": "daily"})
    outcomes = run_loads(spark, warehouse, store, [alerts, issues])
    api.faults.add("500", times=None, path="/api/page/issues")
    outcomes += run_loads(spark, warehouse, store, [broken])
    api.faults.clear()
    now = dt.datetime.now(UTC)
    store.append_audit({"ConfigId": "broken", "RunId": "run-markup", "LoadId": "L-markup",
                        "LoadType": "FULL_LOAD", "LoadStatus": "FAILED", "ErrorMessage": MARKUP,
                        "LoggedAt": now})
    checks = []
    for i, (cid, ok) in enumerate([("alerts", True), ("issues", True), ("broken", True),
                                   ("broken", False), ("broken", False), ("alerts", True)]):
        checks.append({"ConfigId": cid, "SourceSystem": "demo", "CheckKind": "probe",
                       "CheckedAt": now - dt.timedelta(minutes=30 - i), "Method": "GET",
                       "Url": api.base_url, "StatusCode": 200 if ok else 503, "Ok": ok,
                       "ElapsedMs": 10.0 + i, "ErrorKind": None if ok else "http_status",
                       "ErrorMessage": None if ok else f"HTTP 503 {MARKUP}", "RunId": f"probe-{i}"})
    append_checks(spark, warehouse, checks)
    return warehouse, outcomes


