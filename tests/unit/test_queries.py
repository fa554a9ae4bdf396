"""Read questions over Delta tables written without a JVM: uptime metrics, incidents,
audit pages, freshness from file statistics."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.lake.reader import TableReader
from framework.lake.tables import TableRef, Warehouse
from framework.ops.health import incident_spans
from framework.ops.queries import Queries, audit_key
from tests.unit._lake import (AUDIT_COLUMNS, AUDIT_TYPES, CONTROL_COLUMNS, CONTROL_TYPES, TS, UTC,
                              health_rows, write, write_health)

NOW = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _queries(wh: Warehouse) -> Queries:
    return Queries(TableReader(wh), clock=lambda: NOW)


def test_uptime_metrics_of_the_health_log(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    # a: 6 checks in the last hour, 2 failed; 4 older checks (3 days ago), all ok
    recent = health_rows("a", NOW - dt.timedelta(minutes=59), [True, False, False, True, True, True])
    old = health_rows("a", NOW - dt.timedelta(days=3), [True] * 4)
    # b: down since its last two checks (an open incident); one check 40 days ago (outside 30 d)
    b = health_rows("b", NOW - dt.timedelta(minutes=30), [True, False, False])
    ancient = health_rows("b", NOW - dt.timedelta(days=40), [False])
    write_health(wh, recent + old)
    write_health(wh, b + ancient)
    q = _queries(wh)

    uptime = {u["ConfigId"]: u for u in q.health_metric("api_uptime")}
    assert uptime["a"]["checks_24h"] == 6 and uptime["a"]["uptime_pct_24h"] == pytest.approx(66.667)
    assert uptime["a"]["checks_7d"] == 10 and uptime["a"]["uptime_pct_7d"] == pytest.approx(80.0)
    assert uptime["b"]["checks_30d"] == 3 and uptime["b"]["last_ok"] is False
    rt = {r["ConfigId"]: r for r in q.health_metric("api_response_times")}
    assert rt["a"]["min_ms"] == 20.0 and rt["a"]["max_ms"] == 25.0 and rt["a"]["responses_7d"] == 10

    sql = sorted((i["ConfigId"], i["started_at"], i["ended_at"], i["failed_checks"], i["ongoing"])
                 for i in q.health_metric("api_incidents"))
    every = recent + old + b + ancient
    rule = sorted((i.config_id, i.started_at, i.ended_at, i.failed_checks, i.ongoing)
                  for i in incident_spans(every))
    assert sql == rule  # the SQL metric and the pure rule agree
    [summary] = q.health_metric("api_health_summary")
    assert (summary["sources"], summary["sources_up"], summary["sources_down"]) == (2, 1, 1)
    assert summary["open_incidents"] == 1 and summary["checks_24h"] == 9

    buckets = q.uptime_buckets(hours=24, bucket_s=3600)
    assert sum(b["checks"] for b in buckets["a"]) == 6
    assert [b["bucket_start"] for b in buckets["a"]] == sorted(b["bucket_start"] for b in buckets["a"])


def test_metrics_follow_the_clock_and_new_checks(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    write_health(wh, health_rows("a", NOW - dt.timedelta(hours=1), [False]))
    clock = [NOW]
    q = Queries(TableReader(wh), clock=lambda: clock[0])
    assert q.health_metric("api_uptime")[0]["checks_24h"] == 1
    clock[0] = NOW + dt.timedelta(days=2)  # the check leaves the 24 h window
    assert q.health_metric("api_uptime")[0]["checks_24h"] == 0
    write_health(wh, health_rows("a", clock[0] - dt.timedelta(minutes=1), [True]))
    assert q.health_metric("api_uptime")[0]["checks_24h"] == 1


def _control(wh: Warehouse, rows: list[dict]) -> None:
    write(wh, TableRef("main", "metadata", "api_control_table"), rows, CONTROL_TYPES, CONTROL_COLUMNS)


def test_audit_pages_are_newest_first_and_never_repeat_or_skip(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    rows = [{"ConfigId": f"s{i % 3}", "RunId": f"run-{i:03d}", "LoadType": "INCREMENTAL",
             "LoadStatus": "FAILED" if i % 4 == 0 else "SUCCESS",
             "LoggedAt": NOW - dt.timedelta(minutes=i // 2), "TargetRowCount": i} for i in range(23)]
    write(wh, TableRef("main", "metadata", "api_audit_table"), rows, AUDIT_TYPES, AUDIT_COLUMNS,
          append_only=True)
    q = _queries(wh)
    seen, after = [], None
    while True:
        page = q.audit_rows(limit=5, after=after)
        seen += page
        if len(page) < 5:
            break
        after = audit_key(page[-1])
    assert len(seen) == 23 and len({r["RunId"] for r in seen}) == 23
    assert [r["LoggedAt"] for r in seen] == sorted((r["LoggedAt"] for r in seen), reverse=True)
    failed = q.audit_rows(limit=None, statuses=["FAILED"])
    assert {r["RunId"] for r in failed} == {f"run-{i:03d}" for i in range(0, 23, 4)}
    since = q.audit_since(NOW - dt.timedelta(minutes=2))
    assert {r["RunId"] for r in since} == {f"run-{i:03d}" for i in range(6)}
    assert set(q.latest_loads()) == {"s0", "s1", "s2"}
    assert q.latest_loads()["s0"]["RunId"] == "run-000"


def test_freshness_reads_the_newest_row_from_file_statistics(tmp_path):
    import pyarrow as pa
    from deltalake import write_deltalake

    wh = Warehouse(tmp_path / "wh")
    _control(wh, [
        {"ConfigId": "fresh", "TargetCatalog": "raw", "TargetSchema": "s", "TargetTable": "t1",
         "TriggerFrequency": "hourly", "LoadType": "INCREMENTAL", "APIName": "x"},
        {"ConfigId": "late", "TargetCatalog": "raw", "TargetSchema": "s", "TargetTable": "t2",
         "TriggerFrequency": "hourly", "LoadType": "INCREMENTAL", "APIName": "x"},
        {"ConfigId": "empty", "TargetCatalog": "raw", "TargetSchema": "s", "TargetTable": "t3",
         "TriggerFrequency": "daily", "LoadType": "FULL_LOAD", "APIName": "x"},
        {"ConfigId": "off", "TargetCatalog": "raw", "TargetSchema": "s", "TargetTable": "t4",
         "TriggerFrequency": "daily", "LoadType": "FULL_LOAD", "APIName": "x", "Enabled": False}])
    ts = pa.timestamp("us", tz="UTC")
    for table, newest in (("t1", NOW - dt.timedelta(minutes=30)), ("t2", NOW - dt.timedelta(hours=3))):
        for minutes in (0, 60):  # two files: the max of their statistics is the newest row
            data = pa.table({"id": [1], "collected_at_utc": pa.array([newest - dt.timedelta(minutes=minutes)], ts)})
            write_deltalake(wh.path(TableRef("raw", "s", table)), data, mode="append")
    q = _queries(wh)
    fresh = {f.config_id: f for f in q.freshness()}
    assert set(fresh) == {"fresh", "late", "empty"}
    assert not fresh["fresh"].stale and fresh["fresh"].newest == NOW - dt.timedelta(minutes=30)
    assert fresh["late"].stale and fresh["late"].newest == NOW - dt.timedelta(hours=3)
    assert fresh["empty"].stale and fresh["empty"].newest is None


def _quality_row(cid, run, minutes, check, passed, severity="warn", field=None, detail=None):
    return {"ConfigId": cid, "LoadId": f"L-{run}", "RunId": run, "LoadType": "FULL_LOAD",
            "Phase": "before_commit", "CheckName": check, "Field": field, "ObservedValue": 1.0,
            "Threshold": 0.0, "Severity": severity, "Passed": passed, "Message": f"{check} said",
            "Detail": detail, "CheckedAt": NOW - dt.timedelta(minutes=minutes)}


def _control_row(config_id: str, **quality) -> dict:
    from control.mapping import config_to_row
    from framework.config import parse_source

    cfg = parse_source({"config_id": config_id, "api_name": "Q", "endpoint": "https://api.example.com/q",
                        "load_start": "2024-01-01T00:00:00Z",
                        "target": {"catalog": "raw", "schema": "q", "table": config_id},
                        **({"quality": quality} if quality else {})})
    return {**config_to_row(cfg), "LoadType": "FULL_LOAD", "LoadStatus": "SUCCESS"}


def test_quality_results_latest_state_and_sla_without_a_jvm(tmp_path):
    import pyarrow as pa

    from control.schemas import QUALITY_SCHEMA

    wh = Warehouse(tmp_path / "wh")
    q = _queries(wh)
    assert q.quality_results() == [] and q.quality_states() == {}  # no table yet
    types = {"ObservedValue": pa.float64(), "Threshold": pa.float64(), "Passed": pa.bool_(),
             "CheckedAt": pa.timestamp("us", tz="UTC")}
    removed = '{"change": "removed"}'
    write(wh, q.quality_ref, [
        _quality_row("a", "r1", 90, "not_null", False, field="state"),
        _quality_row("a", "r2", 30, "not_null", True, field="state"),
        _quality_row("a", "r2", 30, "schema_drift", False, field="title", detail=removed),
        _quality_row("b", "r3", 60, "min_rows", False, "fail"),
        _quality_row("old", "r0", 60 * 24 * 40, "min_rows", False, "fail"),  # 40 days ago
    ], types, [f.name for f in QUALITY_SCHEMA.fields], append_only=True)

    assert [r["RunId"] for r in q.quality_results(["a"])] == ["r2", "r2", "r1"]  # newest first
    assert len(q.quality_results(["a"], since=NOW - dt.timedelta(hours=1))) == 2
    assert len(q.quality_results(limit=1)) == 1 and q.quality_results([]) == []
    latest = q.latest_quality()
    assert {(r["ConfigId"], r["RunId"]) for r in latest} == {("a", "r2"), ("b", "r3")}
    assert q.removed_fields(["a", "b"]) == {"a": {"title"}}

    # SLAs: c loaded within the 24 h before today's 03:00 deadline, d two days ago
    control = [_control_row("c", freshness_sla="03:00"),
               _control_row("d", freshness_sla={"value": "03:00", "severity": "fail"}),
               _control_row("e")]
    write(wh, q.control_ref, control, {k: (TS if isinstance(v, dt.datetime) else
                                           pa.bool_() if isinstance(v, bool) else pa.string())
                                       for k, v in control[0].items()}, control[0])
    audit = [{"ConfigId": "c", "RunId": "x1", "LoadStatus": "SUCCESS",
              "LoggedAt": dt.datetime(2024, 2, 29, 4, tzinfo=UTC)},
             {"ConfigId": "d", "RunId": "x2", "LoadStatus": "SUCCESS",
              "LoggedAt": NOW - dt.timedelta(days=2)},
             {"ConfigId": "d", "RunId": "x3", "LoadStatus": "FAILED_QUALITY",
              "LoggedAt": NOW - dt.timedelta(hours=10)}]
    write(wh, q.audit_ref, audit, AUDIT_TYPES, AUDIT_COLUMNS, append_only=True)
    slas = {s.config_id: s for s in q.sla_statuses()}
    assert set(slas) == {"c", "d"} and slas["c"].met and not slas["d"].met
    assert slas["d"].deadline == NOW.replace(hour=3) and slas["d"].severity == "fail"
    states = q.quality_states()
    assert states["a"].state == "WARNED" and states["a"].warned == ("schema_drift title",)
    assert states["b"].text == "FAILED: min_rows" and states["d"].level == "bad"
    assert states["c"].text == "SLA 03:00 met" and "old" not in states
    assert q.load_counts(hours=24)["failed"] == 1  # FAILED_QUALITY is a failed load



def test_incidents_are_as_of_the_clock(tmp_path):
    # A caller whose clock is behind the log (the scheduler on its own clock, a check of
    # another host a little ahead) saw an outage ended by a check it had not reached yet.
    wh = Warehouse(tmp_path / "wh")
    write_health(wh, health_rows("a", NOW - dt.timedelta(hours=1), [False, False]))
    write_health(wh, health_rows("a", NOW + dt.timedelta(hours=1), [True]))
    clock = [NOW]
    q = Queries(TableReader(wh), clock=lambda: clock[0])
    [seen] = q.health_metric("api_incidents")
    assert seen["ongoing"] and seen["ended_at"] is None and seen["failed_checks"] == 2
    assert seen["duration_s"] == 3600.0
    assert q.health_metric("api_health_summary")[0]["open_incidents"] == 1
    [incident] = q.incidents(now=NOW)
    assert incident.ongoing and incident.started_at == NOW - dt.timedelta(hours=1)
    clock[0] = NOW + dt.timedelta(hours=2)  # the success is in the past now
    [over] = q.health_metric("api_incidents")
    assert not over["ongoing"] and over["ended_at"] == NOW + dt.timedelta(hours=1)
    assert q.health_metric("api_health_summary")[0]["open_incidents"] == 0
    assert [i.ended_at for i in q.incidents(["a"])] == [NOW + dt.timedelta(hours=1)]
    assert q.incidents(["b"]) == []
    assert q.incidents(now=NOW - dt.timedelta(days=1)) == []  # before its first check
