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
    from framework.lake.reader import TableReader
    from framework.ops.monitoring import build_report
    from framework.ops.queries import Queries
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

    # one definition of each metric: its DuckDB rendering (the JVM-free read path) agrees
    # with the Spark view on the same data
    duck = Queries(TableReader(warehouse)).health_metrics()
    for view, key in (("api_uptime", "ConfigId"), ("api_response_times", "ConfigId"),
                      ("api_incidents", "started_at"), ("api_health_summary", None)):
        spark_rows = sorted((_plain(r.asDict()) for r in spark.table(view).collect()),
                            key=lambda r: str(r[key]) if key else "")
        duck_rows = sorted(duck[view], key=lambda r: str(r[key]) if key else "")
        assert len(spark_rows) == len(duck_rows) > 0, view
        for a, b in zip(spark_rows, duck_rows):
            assert set(a) == set(b), view
            for col in a:
                if col == "duration_s" and a["ongoing"]:
                    continue  # measured up to "now", which differs between the two runs
                # both engines round to 3 decimals; a value on a rounding boundary may land
                # one unit apart (5.213 / 5.214 for 5.2135 summed in another order)
                expected = (pytest.approx(a[col], abs=1.001e-3) if isinstance(a[col], float)
                            else a[col])
                assert b[col] == expected, (view, col, a, b)

    # A disabled source is no longer probed: its failure stayed an open incident and a
    # source down for ever. The metrics count enabled sources only, in both renderings;
    # the raw log keeps its checks.
    assert store.set_enabled("broken", False)
    register_views(spark, warehouse)
    summary = spark.table("api_health_summary").first()
    assert (summary["sources"], summary["sources_down"], summary["open_incidents"]) == (1, 0, 0)
    assert {r["ConfigId"] for r in spark.table("api_incidents").collect()} <= {"alerts"}
    disabled = Queries(TableReader(warehouse))
    [duck_summary] = disabled.health_metric("api_health_summary")
    assert (duck_summary["sources"], duck_summary["sources_down"],
            duck_summary["open_incidents"]) == (1, 0, 0)
    assert not [i for i in disabled.health_metric("api_incidents") if i["ConfigId"] == "broken"]
    assert {c["ConfigId"] for c in disabled.checks(limit=None)} == {"alerts", "broken"}
    assert store.set_enabled("broken", True)
    register_views(spark, warehouse)
    assert spark.table("api_health_summary").first()["sources_down"] == 1

    later = dt.datetime.now(UTC) + dt.timedelta(minutes=30)
    queries = Queries(TableReader(warehouse))
    fresh = {f.config_id: f for f in queries.freshness(store.rows(), later)}
    assert fresh["alerts"].stale and fresh["broken"].stale and fresh["broken"].newest is None

    report = build_report(queries)
    assert len(report.section("critical_alerts").rows) == 15
    assert report.section("critical_alerts").rows[0]["Status"] == "open"
    assert [d["Resource"] for d in report.section("down_resources").rows] == ["broken"]
    # "Stale data warnings" lists the stale sources only (it listed every source, the
    # fresh ones too, and the report's summary counted them all as warnings)
    [stale] = report.section("stale_data").rows
    assert stale["ConfigId"] == "broken" and stale["NewestCollectedAt"] is None
    assert report.section("stale_data").note.startswith("1 of 2 sources stale")
    assert report.headline["stale sources"] == 1
    [failure] = report.section("ingestion_failures").rows
    assert failure["ConfigId"] == "broken" and "500" in failure["ErrorMessage"]
    assert render_html(report).count("data:image/png;base64,") == 3
    assert write_xlsx(report, tmp_path / "r.xlsx").stat().st_size > 0


def test_incident_views_are_as_of_now_in_both_renderings(spark, warehouse):
    # A check dated after "now" (a host whose clock is ahead) ended an outage in the
    # views before it was over.
    from framework.lake.reader import TableReader
    from framework.ops.health_store import append_checks, register_views
    from framework.ops.queries import Queries

    now = dt.datetime.now(UTC)
    rows = [{"ConfigId": "x", "CheckKind": "probe", "CheckedAt": now + offset, "Ok": ok,
             "StatusCode": 200 if ok else 503, "ElapsedMs": 5.0,
             "ErrorKind": None if ok else "http_status"}
            for offset, ok in ((dt.timedelta(hours=-2), False), (dt.timedelta(hours=-1), False),
                               (dt.timedelta(days=1), True))]
    append_checks(spark, warehouse, rows)
    register_views(spark, warehouse)
    [view] = spark.table("api_incidents").collect()
    assert view["ongoing"] and view["ended_at"] is None and view["failed_checks"] == 2
    assert spark.table("api_health_summary").first()["open_incidents"] == 1
    [duck] = Queries(TableReader(warehouse)).health_metric("api_incidents")
    assert duck["ongoing"] and duck["failed_checks"] == 2


def _plain(row: dict) -> dict:
    from framework.timeutil import to_utc

    return {k: (to_utc(v) if isinstance(v, dt.datetime) else v) for k, v in row.items()}


def test_break_fix_drills_through_the_command_line(spark, tmp_path, capsys):
    from framework.cli.app import main

    wh = tmp_path / "wh"
    assert main(["--warehouse", str(wh), "drill", "auth", "timeout", "reject", "quality"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1].rstrip(":") for line in out.splitlines()
            if line.startswith("PASS ")] == ["auth", "timeout", "reject", "quality"], out
    assert "NO" not in out.split()
    assert len(list((wh / "_ops" / "drills").glob("*.log"))) >= 4


def test_drills_page_nobody_when_notifications_are_configured(spark, tmp_path, monkeypatch, capsys):
    from framework.cli.app import main
    from tests.unit._httpd import FakeApi, Reply

    wh = tmp_path / "wh"
    with FakeApi() as hook:
        hook.route("/hook", Reply(200, "ok"))
        conf = tmp_path / "notifications.yaml"
        conf.write_text("notifications:\n  webhook: {url: " + hook.url("/hook") + "}\n")
        monkeypatch.setenv("RESTLAKE_NOTIFICATIONS", str(conf))  # as set for `restlake run`
        assert main(["--warehouse", str(wh), "drill", "auth", "quality"]) == 0, \
            capsys.readouterr().out
        assert hook.requests_to("/hook") == []
    assert not (wh / "_ops" / "notifications_state.json").exists()
