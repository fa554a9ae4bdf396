"""The scheduler on an injected clock: two cadences, two health intervals, notifications and
the daily report, on a real warehouse against the demo API (no sleeping to pass time)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import defaultdict

import pytest

from framework.demoapi import DemoApi
from framework.ops.notify import parse_notifications
from framework.service.scheduler import Scheduler, SchedulerSettings
from framework.timeutil import to_utc
from tests.integration.helpers import (UTC, actual_rows, expected_rows, read_target, source,
                                       wait_for)
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark


def at(hh: int, mm: int) -> dt.datetime:
    return dt.datetime(2024, 1, 5, hh, mm, tzinfo=UTC)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_loads_probes_notifications_and_report_fire_on_their_own_times(spark, store, warehouse,
                                                                        tmp_path, monkeypatch):
    start, end = at(0, 5), at(0, 45)
    with DemoApi(seed=13, records_per_resource=150, end=dt.datetime(2024, 1, 6, tzinfo=UTC)) as api, \
            FakeApi() as hook:
        hook.route("/hook", Reply(200, {}))
        monkeypatch.setenv("RL_SCHED_HOOK", hook.url("/hook"))
        quarter = source(api.base_url, "cursor", "every_15m", end=None, delta_column=True,
                         schedule={"time": "00:00", "frequency": "PT15M"},
                         health={"interval": "PT10M"})
        half_past = source(api.base_url, "offset", "hourly_30", end=None, delta_column=True,
                           schedule={"time": "00:30", "frequency": "hourly"},
                           health={"interval": "PT20M", "expected_status": [200]})
        store.generate([quarter, half_past], now=start)  # the operator's 'restlake generate'
        settings = SchedulerSettings(
            poll=dt.timedelta(hours=1), parallel=1, probe_workers=4, report_time="00:40",
            report_out=str(tmp_path / "ops"),
            notifications=parse_notifications({"notifications": {
                "events": ["down", "up"], "down_after": 1,
                "webhook": {"url": "env:RL_SCHED_HOOK", "retries": 0}}}))
        clock = Clock(start)
        scheduler = Scheduler(spark, store, settings, clock=clock)
        scheduler.prepare()

        ticks: list[tuple[dt.datetime, list[str]]] = []
        messages: dict[dt.datetime, list[str]] = {}
        while (wake := scheduler.next_wakeup()) is not None and wake <= end:
            clock.now = wake
            sent = len(hook.requests_to("/hook"))
            ticks.append((wake, scheduler.run_pending()))
            messages[wake] = [r.json()["text"] for r in hook.requests_to("/hook")[sent:]]
            if wake == start:  # the next request to the offset API (a probe at 00:25) fails
                api.faults.add("503", path="/api/offset")

    assert ticks == [(at(0, 5), ["loads", "probes"]), (at(0, 15), ["loads", "probes"]),
                     (at(0, 25), ["probes"]), (at(0, 30), ["loads"]), (at(0, 35), ["probes"]),
                     (at(0, 40), ["report"]), (at(0, 45), ["loads", "probes"])]

    # loads: what ran when, as the audit table tells it (range ends = the scheduled instants)
    audit = store.warehouse.read(spark, store.audit_ref).collect()
    ran = sorted((r["ConfigId"], r["LoadType"], to_utc(r["LoadEndTime"]), r["LoadStatus"])
                 for r in audit)
    assert ran == [
        ("every_15m", "FULL_LOAD", at(0, 5), "SUCCESS"),
        ("every_15m", "INCREMENTAL", at(0, 15), "SUCCESS"),
        ("every_15m", "INCREMENTAL", at(0, 30), "SUCCESS"),
        ("every_15m", "INCREMENTAL", at(0, 45), "SUCCESS"),
        ("hourly_30", "FULL_LOAD", at(0, 5), "SUCCESS"),
        ("hourly_30", "INCREMENTAL", at(0, 30), "SUCCESS"),
    ]
    for cfg, until in ((quarter, at(0, 45)), (half_past, at(0, 30))):
        assert actual_rows(read_target(spark, warehouse, cfg)) == \
            expected_rows(api, "2024-01-01T00:00:00Z", until.isoformat().replace("+00:00", "Z"))

    # probes: each source on its own interval, rounds where they meet, in one commit each
    from framework.ops.health_store import read_checks

    probes = defaultdict(set)
    status = {}
    for r in read_checks(spark, warehouse).where("CheckKind = 'probe'").collect():
        probes[to_utc(r["CheckedAt"])].add(r["ConfigId"])
        status[(r["ConfigId"], to_utc(r["CheckedAt"]))] = r["Ok"]
    assert dict(probes) == {at(0, 5): {"every_15m", "hourly_30"}, at(0, 15): {"every_15m"},
                            at(0, 25): {"every_15m", "hourly_30"}, at(0, 35): {"every_15m"},
                            at(0, 45): {"every_15m", "hourly_30"}}
    assert [t for (cid, t), ok in sorted(status.items()) if not ok] == [at(0, 25)]

    # notifications: the outage once when it was seen, its end once when it was over
    sent = {t: m for t, m in messages.items() if m}
    assert list(sent) == [at(0, 25), at(0, 45)]
    assert "hourly_30: source is DOWN" in sent[at(0, 25)][0] and len(sent[at(0, 25)]) == 1
    assert "hourly_30: source is back UP" in sent[at(0, 45)][0] and len(sent[at(0, 45)]) == 1

    # the daily report at its time
    ops = tmp_path / "ops"
    assert (ops / "output" / "monitoring_daily.html").exists()
    assert (ops / "logs" / "monitoring_run_20240105.log").exists()

    state = scheduler.state()
    # at 00:05 and 00:30 two rows were due for one slot (parallel: 1): when the first load
    # ended, the loads job ran again for the second
    assert {n: j["runs"] for n, j in state["jobs"].items()} == {"loads": 6, "probes": 5, "report": 1}
    assert state["loads"]["finished"] == {"SUCCESS": 6} and state["loads"]["running"] == []
    assert state["state"] == "running" and state["sources"] == 2
    assert all(j["last_error"] is None for j in state["jobs"].values()), json.dumps(state)


def test_a_long_load_holds_one_slot_while_a_run_request_loads_another_source(spark, store,
                                                                            warehouse):
    """``parallel: 2``: a source whose API answers only when the test lets it holds one load
    slot; a source planned meanwhile (``POST /run``) is claimed on the free slot, loaded and
    finished while the first load still waits for its API. Order of events, not timing."""
    day3 = "2024-01-03T00:00:00Z"
    answer = threading.Event()  # the long load's API answers once this is set
    with DemoApi(seed=41, records_per_resource=60, end=dt.datetime(2024, 1, 3, tzinfo=UTC),
                 latency_ms=1, wait=lambda _: answer.wait(600)) as slow_api, \
            DemoApi(seed=42, records_per_resource=60,
                    end=dt.datetime(2024, 1, 3, tzinfo=UTC)) as api:
        long = source(slow_api.base_url, "cursor", "long_full", end=day3, window="none",
                      limits={"timeout_s": 900, "concurrency": 1}, health={"enabled": False})
        short = source(api.base_url, "cursor", "short_full", end=day3, window="none",
                       health={"enabled": False})
        store.generate([long])
        scheduler = Scheduler(spark, store, SchedulerSettings(poll=dt.timedelta(hours=1),
                                                              parallel=2, probe_workers=1))

        def audited(config_id: str) -> bool:
            time.sleep(0.2)  # a read of the audit table 5 times a second, not 20
            return bool(store.audit_rows(config_id, 1))

        scheduler.start()  # its first loads job claims and starts the long load
        try:
            wait_for(lambda: slow_api.request_log, "the long load to ask its API", 600)
            store.generate([short])            # POST /api/v1/sources
            scheduler.request_run("short_full")  # POST /api/v1/sources/short_full/run
            wait_for(lambda: audited("short_full"), "the short load's audit row", 300)
            # the short load finished while the long one still waited for its first page
            assert not answer.is_set()
            assert store.get("short_full")["LoadStatus"] == "SUCCESS"
            assert store.get("long_full")["LoadStatus"] == "RUNNING"
            assert store.audit_rows("long_full", 1) == []
            loads = scheduler.state()["loads"]
            assert [r["config_id"] for r in loads["running"]] == ["long_full"]
            assert loads["finished"] == {"SUCCESS": 1}
            answer.set()
            wait_for(lambda: audited("long_full"), "the long load's audit row", 600)
        finally:
            answer.set()
            drained = scheduler.stop(grace_s=300)
    assert drained
    [first], [then] = store.audit_rows("short_full", 1), store.audit_rows("long_full", 1)
    assert first["LoadStatus"] == then["LoadStatus"] == "SUCCESS"
    # (the order itself was seen above: the short load's audit row while the long row ran;
    # LoggedAt is kept to the second, so the two may be equal here)
    assert first["LoggedAt"] <= then["LoggedAt"]
    assert actual_rows(read_target(spark, warehouse, short)) == \
        expected_rows(api, "2024-01-01T00:00:00Z", day3)
    assert actual_rows(read_target(spark, warehouse, long)) == \
        expected_rows(slow_api, "2024-01-01T00:00:00Z", day3)
    state = scheduler.state()
    assert state["loads"]["running"] == [] and state["loads"]["finished"] == {"SUCCESS": 2}
    assert state["jobs"]["loads"]["last_error"] is None and state["state"] == "stopped"
