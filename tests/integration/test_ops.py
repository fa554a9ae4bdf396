"""Operations end to end on Spark + Delta: health log from real loads, uptime views, report, drills."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.demoapi import DemoApi
from tests.integration.helpers import UTC, run_loads, source

pytestmark = pytest.mark.spark

END = dt.datetime(2024, 1, 4, tzinfo=UTC)


def test_loads_feed_the_health_log_views_and_the_report(spark, warehouse, store, tmp_path):
    from framework.ops.health import incident_spans
    from framework.ops.health_store import read_checks, register_views
    from framework.ops.monitoring import build_report, freshness
    from framework.ops.report import render_html, write_xlsx

    with DemoApi(seed=3, records_per_resource=80, end=END, max_page_size=25) as api:
        alerts = source(api.base_url, "offset", "alerts", table="cache_monitoring_alerts",
                        window="none", schedule={"frequency": "PT15M"})
        broken = source(api.base_url, "offset", "broken", window="none",
                        limits={"max_retries": 1}, schedule={"frequency": "daily"})
        api.faults.add("503", times=2, path="/api/offset/issues")  # retried: alerts still loads
        [ok] = run_loads(spark, warehouse, store, [alerts])
        api.faults.add("500", times=None, path="/api/offset/issues")
        [bad] = run_loads(spark, warehouse, store, [broken])
    assert ok.status == "SUCCESS" and bad.status == "FAILED"

    checks = [r.asDict() for r in read_checks(spark, warehouse).collect()]
    mine = [c for c in checks if c["ConfigId"] == "alerts"]
    assert len(mine) == ok.audit["Requests"]  # every ingestion attempt counted, one batch
    assert sorted(c["StatusCode"] for c in mine)[-2:] == [503, 503]
    assert {c["ErrorKind"] for c in mine if not c["Ok"]} == {"http_status"}

    names = register_views(spark, warehouse)
    assert names == ["api_health_log", "api_uptime", "api_response_times", "api_incidents",
                     "api_health_summary"]
    uptime = {r["ConfigId"]: r for r in spark.table("api_uptime").collect()}
    assert uptime["broken"]["uptime_pct_24h"] == 0.0 and uptime["broken"]["last_ok"] is False
    total = len(mine)
    assert uptime["alerts"]["uptime_pct_24h"] == pytest.approx(100 * (total - 2) / total, abs=1e-3)
    rt = spark.table("api_response_times").where("ConfigId = 'alerts'").first()
    assert rt["min_ms"] <= rt["avg_ms"] <= rt["max_ms"] and rt["p95_ms"] <= rt["max_ms"]
    sql_incidents = sorted((r["ConfigId"], r["failed_checks"], r["ongoing"])
                           for r in spark.table("api_incidents").collect())
    py_incidents = sorted((i.config_id, i.failed_checks, i.ongoing) for i in incident_spans(checks))
    assert sql_incidents == py_incidents and ("broken", 2, True) in sql_incidents
    summary = spark.table("api_health_summary").first()
    assert (summary["sources"], summary["sources_up"], summary["sources_down"]) == (2, 1, 1)
    assert summary["open_incidents"] == 1

    later = dt.datetime.now(UTC) + dt.timedelta(minutes=30)
    fresh = {f.config_id: f for f in freshness(spark, warehouse, store.rows(), later)}
    assert fresh["alerts"].stale and fresh["broken"].stale and fresh["broken"].newest is None

    report = build_report(spark, warehouse, store)
    assert len(report.section("critical_alerts").rows) == 15
    assert report.section("critical_alerts").rows[0]["Status"] == "open"
    assert [d["Resource"] for d in report.section("down_resources").rows] == ["broken"]
    [failure] = report.section("ingestion_failures").rows
    assert failure["ConfigId"] == "broken" and "500" in failure["ErrorMessage"]
    assert render_html(report).count("data:image/png;base64,") == 3
    assert write_xlsx(report, tmp_path / "r.xlsx").stat().st_size > 0


def test_break_fix_drills_through_the_command_line(spark, tmp_path, capsys):
    from framework.cli.app import main

    wh = tmp_path / "wh"
    assert main(["--warehouse", str(wh), "drill", "auth", "timeout", "reject"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1].rstrip(":") for line in out.splitlines()
            if line.startswith("PASS ")] == ["auth", "timeout", "reject"], out
    assert "NO" not in out.split()
    assert len(list((wh / "_ops" / "drills").glob("*.log"))) >= 3
