"""The scheduler on an injected clock: two cadences, two health intervals, notifications and
the daily report, on a real warehouse against the demo API (no sleeping to pass time)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import pytest

from framework.demoapi import DemoApi
from framework.ops.notify import parse_notifications
from framework.service.scheduler import Scheduler, SchedulerSettings
from framework.timeutil import to_utc
from tests.integration.helpers import UTC, actual_rows, expected_rows, read_target, source
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
    assert {n: j["runs"] for n, j in state["jobs"].items()} == {"loads": 4, "probes": 5, "report": 1}
    assert state["state"] == "running" and state["sources"] == 2
    assert all(j["last_error"] is None for j in state["jobs"].values()), json.dumps(state)
