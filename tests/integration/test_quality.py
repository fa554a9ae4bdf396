"""Data quality gates, schema drift and SLAs end to end: demo API, real Delta targets."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable as RsDeltaTable

from framework.config import parse_source
from framework.demoapi import DemoApi
from tests.integration.helpers import UTC, read_target, run_loads, source, target_ref
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark

END = dt.datetime(2024, 1, 4, tzinfo=UTC)


@pytest.fixture
def api():
    """A fresh demo API per test: tests change its data."""
    with DemoApi(seed=11, records_per_resource=120, end=END, max_page_size=25) as server:
        yield server


def _queries(warehouse):
    from framework.lake.reader import TableReader
    from framework.ops.queries import Queries

    return Queries(TableReader(warehouse))  # what status, quality, notify and the report read


def _full(api, cid, **quality):
    return source(api.base_url, "offset", cid, window="none", end="2024-01-04T00:00:00Z",
                  quality=quality)


def test_a_40_pct_row_drop_under_fail_refuses_the_commit_and_keeps_the_table(
        spark, warehouse, store, api):
    cfg = _full(api, "q_drop", max_row_drop_pct={"value": 10, "severity": "fail"},
                not_null=["state"], max_null_pct={"closed_at": 100},
                max_spike_pct={"value": 50, "baseline": "loads", "loads": 3})
    [first] = run_loads(spark, warehouse, store, [cfg])
    assert first.status == "SUCCESS", first.error
    path = warehouse.path(target_ref(cfg))
    before = read_target(spark, warehouse, cfg).localCheckpoint()
    version_before = RsDeltaTable(path).version()

    api.dataset.degrade(drop_pct=40, null_field="state")
    [second] = run_loads(spark, warehouse, store, [cfg])

    assert second.status == "FAILED_QUALITY", second.error
    assert "max_row_drop_pct" in second.error
    # nothing was committed: same Delta version, same rows (Spark and delta-rs agree)
    assert RsDeltaTable(path).version() == version_before
    assert_df_equality(read_target(spark, warehouse, cfg), before, ignore_row_order=True)
    assert RsDeltaTable(path).to_pyarrow_table().num_rows == before.count()
    row = store.get("q_drop")
    assert row["LoadStatus"] == "FAILED" and "max_row_drop_pct" in row["ErrorMessage"]
    audit = store.audit_rows("q_drop", 1)[0]
    assert audit["LoadStatus"] == "FAILED_QUALITY"
    # the records the checks judged were read: counted, none written
    kept = len(api.dataset.records_in("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z"))
    assert second.source_rows == audit["SourceRowCount"] == kept
    assert second.rows_written == audit["TargetRowCount"] == 0

    results = {(r["CheckName"], r["Field"]): r for r in store.quality_results(["q_drop"])
               if r["RunId"] == second.audit["RunId"]}
    # the JVM-free reader (status, quality, notify, report) reads the same rows
    assert sorted(map(repr, _queries(warehouse).quality_results(["q_drop"]))) == \
        sorted(map(repr, store.quality_results(["q_drop"])))
    drop = results[("max_row_drop_pct", None)]
    assert 0.3 < 1 - kept / first.source_rows < 0.5  # the API quietly serves ~40 % fewer rows
    assert drop["Passed"] is False and drop["Severity"] == "fail" and drop["Phase"] == "before_commit"
    assert drop["ObservedValue"] == pytest.approx(100 * (first.source_rows - kept) / first.source_rows, abs=1e-3)
    assert drop["ObservedValue"] > 25 and drop["Threshold"] == 10
    nulls = results[("not_null", "state")]
    assert nulls["Passed"] is False and nulls["Severity"] == "warn" and nulls["ObservedValue"] == kept
    assert results[("max_null_pct", "closed_at")]["Passed"] is True
    spike = results[("max_spike_pct", None)]  # fewer rows than the audit's last loads: no spike
    assert spike["Passed"] is True and json.loads(spike["Detail"]) == {
        "baseline": "loads", "median": first.source_rows, "loads": 1}


def test_incremental_checks_see_the_whole_load_before_its_one_commit(spark, warehouse, store, api):
    cfg = source(api.base_url, "offset", "q_incr", delta_column=True, end="2024-01-02T00:00:00Z",
                 limits={"windows_per_commit": 1},
                 quality={"min_rows": {"value": 1, "severity": "fail"},
                          "accepted_values": {"state": ["open"]},
                          "max_spike_pct": {"value": 100}})
    [full] = run_loads(spark, warehouse, store, [cfg])
    assert full.status == "SUCCESS", full.error
    path = warehouse.path(target_ref(cfg))
    version = RsDeltaTable(path).version()
    burst = api.dataset.add(80, at=dt.datetime(2024, 1, 3, 12, tzinfo=UTC))  # one busy day
    [inc] = run_loads(spark, warehouse, store, [cfg], now=dt.datetime(2024, 1, 5, tzinfo=UTC))

    assert inc.status == "SUCCESS", inc.error  # warnings do not stop a load
    # three daily windows, windows_per_commit 1, yet one commit: the checks saw them all first
    assert RsDeltaTable(path).version() == version + 1
    assert {r["id"] for r in read_target(spark, warehouse, cfg).collect()} >= set(burst)
    results = {(r["CheckName"], r["Field"]): r for r in store.quality_results(["q_incr"])
               if r["RunId"] == inc.audit["RunId"]}
    assert results[("min_rows", None)]["Passed"] is True
    assert results[("min_rows", None)]["ObservedValue"] == inc.source_rows
    spike = results[("max_spike_pct", None)]
    assert spike["Passed"] is False and spike["Severity"] == "warn" and spike["ObservedValue"] > 100
    closed = [r for r in api.dataset.records_in("2024-01-02T00:00:00Z", "2024-01-05T00:00:00Z")
              if r["state"] != "open"]
    accepted = results[("accepted_values", "state")]
    assert accepted["Passed"] is False and accepted["ObservedValue"] == len(closed) > 0
    assert json.loads(accepted["Detail"])["sample"] == ["closed"]
    assert results[("schema_drift", None)]["Passed"] is True


def test_unique_is_judged_on_the_target_after_the_commit(spark, warehouse, store, api):
    keyed = _full(api, "q_unique_ok", unique={"value": ["id"], "severity": "fail"})
    broken = _full(api, "q_unique_bad", unique={"value": ["state"], "severity": "fail"})
    ok, bad = run_loads(spark, warehouse, store, [keyed, broken])
    assert ok.status == "SUCCESS", ok.error
    assert bad.status == "FAILED_QUALITY" and "unique" in bad.error and "after the commit" in bad.error
    # the check marks the load; it never removes what was loaded
    assert read_target(spark, warehouse, broken).count() == bad.rows_written == 120
    assert store.get("q_unique_bad")["LoadStatus"] == "FAILED"
    [row] = [r for r in store.quality_results(["q_unique_bad"]) if r["CheckName"] == "unique"]
    assert row["Phase"] == "after_commit" and row["ObservedValue"] == 2 and not row["Passed"]
    [good] = [r for r in store.quality_results(["q_unique_ok"]) if r["CheckName"] == "unique"]
    assert good["Passed"] and good["ObservedValue"] == 0


def test_a_removed_field_raises_schema_drift_once(spark, warehouse, store, api, tmp_path, monkeypatch):
    from framework.ops.notify import events_from_quality
    from framework.ops.worksheet import build

    cfg = source(api.base_url, "offset", "q_drift", delta_column=True, window="none",
                 end="2024-01-02T00:00:00Z")  # no quality block: drift is judged for every source
    with FakeApi() as hook:
        hook.route("/hook", Reply(200, {}))
        conf = tmp_path / "notify.yaml"
        conf.write_text(f"notifications:\n  webhook: {{url: {hook.url('/hook')}, retries: 0}}\n")
        monkeypatch.setenv("RESTLAKE_NOTIFICATIONS", str(conf))
        monkeypatch.setenv("RESTLAKE_NOTIFY_STATE", str(tmp_path / "state.json"))
        [full] = run_loads(spark, warehouse, store, [cfg])
        assert full.status == "SUCCESS" and store.quality_results(["q_drift"]) == []

        api.dataset.degrade(remove_field="title")
        api.faults.add("schema_drift", times=None, path="/api/offset/issues")  # + priority, comments
        outcomes = []
        for day in (3, 4):
            at = dt.datetime(2024, 1, day - 1, 12, tzinfo=UTC)
            api.dataset.add(3, at=at)
            [o] = run_loads(spark, warehouse, store, [cfg], now=dt.datetime(2024, 1, day, tzinfo=UTC))
            assert o.status == "SUCCESS", o.error
            outcomes.append(o)
        sent = [r.json()["text"] for r in hook.requests_to("/hook")]

    rows = store.quality_results(["q_drift"])
    first = {r["Field"]: json.loads(r["Detail"]) for r in rows if r["RunId"] == outcomes[0].audit["RunId"]}
    assert first == {"title": {"change": "removed"}, "priority": {"change": "new"},
                     "comments": {"change": "retyped", "was": "long", "now": "string"}}
    assert all(r["Severity"] == "warn" and not r["Passed"] for r in rows)
    # the drift persists on the next load: recorded again, but one incident, one message
    assert len([r for r in rows if r["RunId"] == outcomes[1].audit["RunId"]]) == 3
    assert [e.kind for e in events_from_quality(rows)] == ["schema_drift"]
    assert len(sent) == 1 and "schema DRIFT" in sent[0] and "title" in sent[0]
    # the worksheet flags the removed field against the same contract
    [sheet] = build([cfg], _queries(warehouse).observe_contract([cfg]))
    assert "title" in sheet.fields and sheet.removed == ("title",)


def test_a_missed_sla_raises_sla_missed_with_an_injected_clock(spark, warehouse, store, api, tmp_path):
    from framework.ops.notify import (NotificationState, Notifier, events_from_sla,
                                      parse_notifications)
    from framework.ops.quality import summarize
    from framework.ops.notify import quality_events
    from framework.ops.sla import deadline_at

    cfg = _full(api, "q_sla", freshness_sla={"value": "03:00", "severity": "fail"})
    [ok] = run_loads(spark, warehouse, store, [cfg])
    assert ok.status == "SUCCESS", ok.error
    loaded = ok.audit["LoggedAt"]
    due = deadline_at("03:00", loaded) + dt.timedelta(days=1)  # the first deadline after the load

    queries = _queries(warehouse)
    [met] = queries.sla_statuses(now=due + dt.timedelta(minutes=1))
    assert met.met and met.deadline == due
    assert [e.kind for e in quality_events(queries, due + dt.timedelta(minutes=1))] == []

    later = due + dt.timedelta(days=1, minutes=1)  # no load in the 24 h before the next deadline
    [missed] = queries.sla_statuses(now=later)
    assert not missed.met and missed.deadline == due + dt.timedelta(days=1)
    assert summarize([], [missed])["q_sla"].level == "bad"
    [event] = [e for e in quality_events(queries, later) if e.config_id == "q_sla"]
    assert event.kind == "sla_missed" and event.key == f"sla_missed:q_sla:{missed.deadline:%Y-%m-%dT%H:%M:%SZ}"
    with FakeApi() as hook:
        hook.route("/hook", Reply(200, {}))
        config = parse_notifications({"notifications": {"webhook": {"url": hook.url("/hook")}}})
        for _ in range(2):  # one message per deadline, however often notify runs
            Notifier(config, NotificationState(tmp_path / "s.json")).notify(
                events_from_sla([missed]), later)
        [message] = [r.json()["text"] for r in hook.requests_to("/hook")]
    assert "SLA MISSED" in message and "03:00" in message


def test_quality_command_and_status_show_the_latest_state(spark, warehouse, store, api, capsys):
    from framework.cli.app import main

    cfg = _full(api, "q_cli", min_rows={"value": 10_000, "severity": "fail"},
                not_null=["title"])
    [bad] = run_loads(spark, warehouse, store, [cfg])
    assert bad.status == "FAILED_QUALITY"
    wh = str(warehouse.root)
    assert main(["--warehouse", wh, "quality", "--config-id", "q_cli"]) == 1
    out = capsys.readouterr().out
    assert "min_rows" in out and "10000" in out and "not_null" in out
    assert main(["--warehouse", wh, "status"]) == 0
    assert "FAILED:" in capsys.readouterr().out  # the Quality column (errors say "failed")


def test_the_scheduler_notifies_a_refused_load_once(spark, warehouse, store, monkeypatch):
    from framework.ops.notify import parse_notifications
    from framework.service.scheduler import Scheduler, SchedulerSettings

    start = dt.datetime(2024, 1, 5, 0, 5, tzinfo=UTC)
    with DemoApi(seed=13, records_per_resource=60, end=dt.datetime(2024, 1, 6, tzinfo=UTC)) as api, \
            FakeApi() as hook:
        hook.route("/hook", Reply(200, {}))
        cfg = source(api.base_url, "cursor", "q_sched", end=None, window="none",
                     schedule={"time": "00:00", "frequency": "PT15M"},
                     health={"enabled": False},
                     quality={"min_rows": {"value": 10_000, "severity": "fail"}})
        store.generate([cfg], now=start)
        settings = SchedulerSettings(
            poll=dt.timedelta(hours=1), parallel=1, probe_workers=1,
            notifications=parse_notifications({"notifications": {
                "events": ["quality_failed", "load_failed"],
                "webhook": {"url": hook.url("/hook"), "retries": 0}}}))
        now = [start]
        scheduler = Scheduler(spark, store, settings, clock=lambda: now[0])
        scheduler.prepare()
        for minutes in (0, 10, 25):  # the refused load, then rounds with nothing new to say
            now[0] = start + dt.timedelta(minutes=minutes)
            scheduler.run_pending()
        texts = [r.json()["text"] for r in hook.requests_to("/hook")]
    assert store.audit_rows("q_sched", 1)[0]["LoadStatus"] == "FAILED_QUALITY"
    assert len(texts) == 1 and "q_sched: quality check FAILED" in texts[0] and "min_rows" in texts[0]


def _fake(url, cid, quality, **overrides):
    raw = {"config_id": cid, "api_name": "Fake", "source_system": "fake", "endpoint": url,
           "primary_key": ["id"], "load_start": "2024-01-01T00:00:00Z",
           "load_end": "2024-01-02T00:00:00Z", "window": "none",
           "target": {"catalog": "raw", "schema": "tests", "table": f"t_{cid}"},
           "limits": {"timeout_s": 5, "max_retries": 0}, "quality": quality, **overrides}
    return parse_source(raw)


def _results(store, cid, run_id):
    return {(r["CheckName"], r["Field"]): r for r in store.quality_results([cid])
            if r["RunId"] == run_id}


def test_fields_named_in_another_case_than_the_api_are_checked_on_their_column(
        spark, warehouse, store):
    # Delta's column names ignore case, and so does the load (State lands in column state
    # once the target has it): the checks find a field's column whatever its case.
    first = [{"ID": 1, "State": "open", "EMail": None}, {"ID": 2, "State": "closed", "EMail": "a"}]
    later = [{"ID": 3, "state": "open", "email": "b"}, {"ID": 4, "state": "open", "email": "c"}]
    with FakeApi() as api:
        api.route("/things", Reply(200, first), Reply(200, later))
        cfg = _fake(api.url("/things"), "q_case", {
            "severity": "fail", "not_null": ["state"], "max_null_pct": {"email": 50},
            "accepted_values": {"STATE": ["open", "closed"]}, "unique": ["Id"]},
            primary_key=["ID"])
        outcomes = [run_loads(spark, warehouse, store, [cfg])[0] for _ in range(2)]
    for out in outcomes:
        assert out.status == "SUCCESS", out.error
        got = _results(store, "q_case", out.audit["RunId"])
        assert {k: (r["Passed"], r["ObservedValue"]) for k, r in got.items()
                if k[0] != "schema_drift"} == {
            ("not_null", "state"): (True, 0), ("max_null_pct", "email"): (True, 50 if out is outcomes[0] else 0),
            ("accepted_values", "STATE"): (True, 0), ("unique", "Id"): (True, 0)}


def test_accepted_values_written_as_text_match_a_number_column_and_back(spark):
    from framework.ops.quality_store import observe_rows
    from framework.ops.quality import evaluate_before, RowsObserved

    df = spark.createDataFrame([(200, "1", 1.5), (404, "2", 2.0), (500, "3", 2.5)],
                               "code long, level string, ratio double")
    block = parse_source({
        "config_id": "q_lit", "api_name": "A", "endpoint": "https://api.example.com/x",
        "load_start": "2024-01-01T00:00:00Z", "target": {"catalog": "c", "schema": "s", "table": "t"},
        "quality": {"accepted_values": {"code": ["200", "404"], "level": [1, 2],
                                        "ratio": ["1.5", 2]}}}).quality
    seen = observe_rows(df, block)
    assert seen["outside"] == {"code": 1, "level": 1, "ratio": 1}
    assert seen["outside_sample"] == {"code": ("500",), "level": ("3",), "ratio": ("2.5",)}
    results = evaluate_before(block, RowsObserved("FULL_LOAD", rows=3, **{
        k: seen[k] for k in ("outside", "outside_sample", "missing")}))
    assert [r.observed for r in results] == [1, 1, 1]


def test_unique_does_not_count_rows_without_a_key_as_duplicates(spark, warehouse):
    from pyspark.sql import functions as F

    from framework.lake.tables import TableRef
    from framework.ops.quality_store import duplicate_keys

    ref = TableRef("raw", "tests", "t_q_nullkey")
    rows = [(1, None, "a"), (2, None, "a"), (3, "x@e", "a"), (4, "x@e", "a"), (5, "y@e", "b"),
            (6, None, None), (7, None, None)]
    (spark.createDataFrame(rows, "id long, email string, kind string")
     .withColumn("source_system", F.lit("s"))
     .write.format("delta").save(str(warehouse.path(ref))))
    # an absent email is no email shared by two users; only x@e is a duplicate
    got = duplicate_keys(spark, warehouse, ref, "s", ["email"])
    assert (got["duplicates"], got["rows"], got["sample"]) == (1, 2, ('["x@e"]',))
    # a key with one of its fields present is a key: (null, a) twice is a duplicate
    got = duplicate_keys(spark, warehouse, ref, "s", ["email", "kind"])
    assert (got["duplicates"], got["rows"]) == (2, 4)
