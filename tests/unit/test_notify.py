"""Notifications against real local servers: an HTTP receiver and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from framework.errors import ConfigError
from framework.ops.freshness import assess
from framework.ops.health import Incident
from framework.ops.notify import (Event, NotificationState, Notifier, build_message, events_from_audit,
                              events_from_freshness, events_from_incidents, parse_notifications)

try:
    from _httpd import FakeApi, Reply
except ImportError:  # pragma: no cover
    from tests.unit._httpd import FakeApi, Reply

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
SECRET = "xoxb-super-secret-1234"


def failed_audit(run_id: str, load_id: str = "L1", **kw):
    return {"ConfigId": "gh", "LoadStatus": "FAILED", "LoadType": "INCREMENTAL", "RunId": run_id,
            "LoadId": load_id, "Retries": 3, "LoggedAt": T0,
            "ErrorMessage": f"GET https://api/x returned 401: bad token {SECRET}", **kw}


def test_config_parses_and_names_bad_fields():
    cfg = parse_notifications({"notifications": {
        "webhook": {"url": "env:HOOK"}, "telegram": {"bot_token": "env:TG", "chat_id": 5},
        "email": {"host": "localhost", "sender": "a@b", "to": ["c@d"], "tls": "none"}}})
    assert cfg.channels == ["webhook", "email", "telegram"] and cfg.down_after == 2
    assert parse_notifications({"sources": []}) is None
    with pytest.raises(ConfigError, match="notifications.telegram.bot_token"):
        parse_notifications({"notifications": {"telegram": {"bot_token": "123:literal", "chat_id": 1}}})
    with pytest.raises(ConfigError, match="notifications.events"):
        parse_notifications({"notifications": {"events": ["explode"]}})


def test_events_one_per_incident():
    # three attempts of the same failing LoadId are one incident; a new LoadId is another
    events = events_from_audit([failed_audit("r1"), failed_audit("r2"), failed_audit("r3", "L2"),
                                {**failed_audit("r4"), "LoadStatus": "SUCCESS"}])
    assert [e.key for e in events] == ["load_failed:gh:L1", "load_failed:gh:L2"]
    stale = assess("gh", "c.s.t", "hourly", T0, T0 + dt.timedelta(hours=3))
    fresh = assess("gh2", "c.s.t2", "hourly", T0, T0 + dt.timedelta(minutes=30))
    assert [e.key for e in events_from_freshness([stale, fresh])] == ["stale:gh:2024-01-01T00:00:00Z"]
    inc = [Incident("gh", T0, T0 + dt.timedelta(minutes=10), 4, "503"),
           Incident("gh2", T0, None, 1, "timeout")]  # one failed check is not an outage
    out = events_from_incidents(inc, down_after=2)
    assert [(e.kind, e.requires) for e in out] == [("down", None), ("up", "down:gh:2024-01-01T00:00:00Z")]


@pytest.fixture(autouse=True)
def secret_known():
    """The token of the failed audit rows is a registered secret (as a resolved auth
    secret is) in every test here."""
    from framework.secrets import register

    register(SECRET)


def test_message_is_redacted(monkeypatch):
    subject, text = build_message(events_from_audit([failed_audit("r1")])[0])
    assert subject == "[restlake] gh: load FAILED"
    assert SECRET not in text and "401" in text and "***" in text


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver(FakeApi):
    """An HTTP receiver: answers 500 first (to prove the retry), then 200."""


def test_webhook_and_telegram_retry_and_dedupe(monkeypatch, tmp_path):
    monkeypatch.setenv("HOOK_PATH", "/hooks/T000/B000")
    monkeypatch.setenv("TG_TOKEN", "987654:tg-secret-token")
    with Receiver() as api:
        api.route("/hooks/T000/B000", Reply(500, {"error": "busy"}), Reply(200, "ok"))
        api.route("/bot987654:tg-secret-token/sendMessage", Reply(200, {"ok": True}))
        monkeypatch.setenv("HOOK_URL", api.url("/hooks/T000/B000"))
        cfg = parse_notifications({"notifications": {
            "webhook": {"url": "env:HOOK_URL", "backoff_s": 0},
            "telegram": {"bot_token": "env:TG_TOKEN", "chat_id": "-100", "api_base": api.base_url,
                         "backoff_s": 0}}})
        state = NotificationState(tmp_path / "state.json")
        events = events_from_audit([failed_audit("r1")])
        first = Notifier(cfg, state).notify(events, T0)
        # the next run sees the same incident again (a retry of the load): nothing is sent
        again = Notifier(cfg, NotificationState(tmp_path / "state.json")).notify(
            events_from_audit([failed_audit("r2")]), T0)
        hooks = api.requests_to("/hooks/T000/B000")
        tg = api.requests_to("/bot987654:tg-secret-token/sendMessage")
    assert first[0].channels == ["webhook", "telegram"] and not first[0].errors
    assert again[0].skipped == "already notified" and not again[0].channels
    assert len(hooks) == 2  # 500, then retried
    body = hooks[-1].json()
    assert body["text"].startswith("[restlake] gh: load FAILED") and SECRET not in body["text"]
    assert len(tg) == 1 and tg[0].json()["chat_id"] == "-100"
    assert "tg-secret-token" not in tg[0].json()["text"]
    saved = json.loads((tmp_path / "state.json").read_text())
    assert list(saved["sent"]) == ["load_failed:gh:L1"]


def test_failed_channel_is_retried_next_time_and_errors_are_redacted(monkeypatch, tmp_path):
    monkeypatch.setenv("TG_TOKEN2", "111:another-secret")
    with FakeApi() as api:
        api.route("/bot111:another-secret/sendMessage", Reply(403, {"description": "forbidden"}))
        cfg = parse_notifications({"notifications": {
            "telegram": {"bot_token": "env:TG_TOKEN2", "chat_id": 1, "api_base": api.base_url}}})
        state = NotificationState(tmp_path / "s.json")
        [d] = Notifier(cfg, state).notify([Event("down", "gh", "down:gh:1", "503s")], T0)
    assert not d.channels and "403" in d.errors[0] and "another-secret" not in d.errors[0]
    assert "down:gh:1" not in state


def test_notifiers_that_read_the_state_at_once_send_each_incident_once(tmp_path):
    # the loads of one run finishing together, or `restlake notify` next to `restlake run`:
    # both notifiers read the state file before either has sent
    a = Event("load_failed", "a", "load_failed:a:L1", "boom")
    b = Event("load_failed", "b", "load_failed:b:L2", "boom")
    path = tmp_path / "state.json"
    with FakeApi() as api:
        api.route("/hook", Reply(200, "ok"))
        cfg = parse_notifications({"notifications": {"webhook": {"url": api.url("/hook")}}})
        first, second = NotificationState(path), NotificationState(path)
        [sent_a] = Notifier(cfg, first).notify([a], T0)
        again_a, sent_b = Notifier(cfg, second).notify([a, b], T0)
        later = Notifier(cfg, NotificationState(path)).notify([a, b], T0)
        texts = [r.json()["text"] for r in api.requests_to("/hook")]
    assert sent_a.channels == ["webhook"] and sent_b.channels == ["webhook"]
    assert again_a.skipped == "already notified"
    assert [d.skipped for d in later] == ["already notified", "already notified"]
    assert [t.split(":")[0] for t in texts] == ["[restlake] a", "[restlake] b"]
    assert sorted(json.loads(path.read_text())["sent"]) == ["load_failed:a:L1", "load_failed:b:L2"]


def test_up_needs_its_down(tmp_path):
    cfg = parse_notifications({"notifications": {"webhook": {"url": "http://127.0.0.1:9/x"}}})
    [d] = Notifier(cfg, NotificationState(tmp_path / "s.json")).notify(
        [Event("up", "gh", "up:gh:1", "back", requires="down:gh:1")], T0)
    assert d.skipped == "down:gh:1 was never notified"


def test_email_via_local_smtp_server(monkeypatch, tmp_path):
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.handlers import Message

    received = []

    class Collect(Message):
        def handle_message(self, message):
            received.append(message)

    port = free_port()
    controller = aiosmtpd.Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cfg = parse_notifications({"notifications": {"email": {
            "host": "127.0.0.1", "port": port, "tls": "none", "sender": "restlake@example.com",
            "to": ["oncall@example.com"]}}})
        state = NotificationState(tmp_path / "s.json")
        events = events_from_audit([failed_audit("r1")])
        Notifier(cfg, state).notify(events, T0)
        Notifier(cfg, state).notify(events, T0)  # same incident: no second mail
    finally:
        controller.stop()
    assert len(received) == 1
    mail = received[0]
    assert mail["Subject"] == "[restlake] gh: load FAILED" and mail["To"] == "oncall@example.com"
    assert SECRET not in mail.get_payload()


def test_starttls_to_a_server_without_tls_fails_cleanly(tmp_path):
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.handlers import Sink

    port = free_port()
    controller = aiosmtpd.Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cfg = parse_notifications({"notifications": {"email": {
            "host": "127.0.0.1", "port": port, "tls": "starttls", "sender": "a@b", "to": ["c@d"],
            "username": "u", "password": "env:NOPE_NOT_SET"}}})
        [d] = Notifier(cfg, NotificationState(tmp_path / "s.json")).notify(
            [Event("stale", "gh", "stale:gh:x", "old")], T0)
    finally:
        controller.stop()
    assert not d.channels and "email" in d.errors[0] and "STARTTLS" in d.errors[0].upper()


def quality_row(run, load, check, field, passed, severity="warn", minute=0, change=None):
    return {"ConfigId": "gh", "RunId": run, "LoadId": load, "LoadType": "INCREMENTAL",
            "CheckName": check, "Field": field, "Passed": passed, "Severity": severity,
            "Message": f"{check} {field} message", "CheckedAt": T0 + dt.timedelta(minutes=minute),
            "Detail": json.dumps({"change": change}) if change else None}


def test_quality_events_one_per_incident():
    from framework.ops.notify import events_from_quality

    rows = [
        # load 1: a fail check refused the commit; its retry (same LoadId) fails again
        quality_row("r1", "L1", "max_row_drop_pct", None, False, "fail", 0),
        quality_row("r2", "L1", "max_row_drop_pct", None, False, "fail", 5),
        # loads 2-3: a warning starts and persists; drift appears on load 2 and stays
        quality_row("r3", "L2", "not_null", "state", False, minute=10),
        quality_row("r3", "L2", "schema_drift", "title", False, minute=10, change="removed"),
        quality_row("r4", "L3", "not_null", "state", False, minute=20),
        quality_row("r4", "L3", "schema_drift", "title", False, minute=20, change="removed"),
        # load 4: a second warning joins (new incident); load 5 clean; load 6 it comes back
        quality_row("r5", "L4", "not_null", "state", False, minute=30),
        quality_row("r5", "L4", "max_null_pct", "email", False, minute=30),
        quality_row("r6", "L5", "not_null", "state", True, minute=40),
        quality_row("r7", "L6", "not_null", "state", False, minute=50),
    ]
    events = events_from_quality(reversed(rows))  # newest-first input, as the table reads
    assert [e.key for e in events] == [
        "quality_failed:gh:L1", "quality_warned:gh:L2", "schema_drift:gh:L2",
        "quality_warned:gh:L4", "quality_warned:gh:L6"]
    subject, text = build_message(events[3])
    assert subject == "[restlake] gh: quality WARNING" and "max_null_pct email" in text
    assert "FAILED_QUALITY" in events[0].detail and "max_row_drop_pct" in events[0].detail


def test_sla_events_once_per_deadline():
    from framework.ops.notify import events_from_sla
    from framework.ops.sla import assess_sla

    first = T0 - dt.timedelta(days=5)
    missed = assess_sla("gh", "03:00", [], first, T0 + dt.timedelta(hours=4))
    met = assess_sla("gh2", "03:00", [T0 + dt.timedelta(hours=1)], first, T0 + dt.timedelta(hours=4))
    [event] = events_from_sla([missed, met])
    assert event.kind == "sla_missed" and event.key == "sla_missed:gh:2024-01-01T03:00:00Z"
    assert build_message(event)[0] == "[restlake] gh: SLA MISSED"


def test_event_kinds_are_configurable():
    from framework.ops.notify import EVENT_KINDS

    cfg = parse_notifications({"notifications": {"events": ["quality_failed", "sla_missed"]}})
    assert cfg.events == ["quality_failed", "sla_missed"]
    assert {"quality_warned", "schema_drift"} <= set(EVENT_KINDS)
    assert parse_notifications({"notifications": {}}).events == list(EVENT_KINDS)


def test_an_outage_longer_than_30_days_is_one_down_message(monkeypatch, tmp_path):
    # Outages were rebuilt from the last 30 days of checks: once one lasted longer, its
    # first check moved with the clock and each day's `restlake notify` sent a new "down".
    from framework.lake.reader import TableReader
    from framework.lake.tables import Warehouse
    from framework.ops.notify import collect_events
    from framework.ops.queries import Queries
    from tests.unit._lake import health_rows, write_health

    began = T0 - dt.timedelta(days=40)
    every_6h = dt.timedelta(hours=6)
    wh = Warehouse(tmp_path / "wh")
    write_health(wh, health_rows("gh", began, [False] * 161, step=every_6h))  # .. T0
    # an outage that ended 35 days ago, never told: history, not news
    write_health(wh, health_rows("old", T0 - dt.timedelta(days=36), [False] * 5 + [True],
                                 step=every_6h))
    with FakeApi() as api:
        api.route("/hook", Reply(200, {}))
        monkeypatch.setenv("RL_DOWN_HOOK", api.url("/hook"))
        cfg = parse_notifications({"notifications": {"webhook": {"url": "env:RL_DOWN_HOOK"}}})
        for day in (T0, T0 + dt.timedelta(days=1)):
            if day > T0:  # a day of failed checks more
                write_health(wh, health_rows("gh", T0 + every_6h, [False] * 4, step=every_6h))
            queries = Queries(TableReader(wh), clock=lambda day=day: day)
            Notifier(cfg, NotificationState(tmp_path / "state.json")).notify(
                collect_events(queries, cfg, day), day)
        texts = [r.json()["text"] for r in api.requests_to("/hook")]
    assert len(texts) == 1 and "gh: source is DOWN" in texts[0], texts
    assert "since 2023-11-22T00:00:00Z" in texts[0]  # the outage's first check


def test_many_new_incidents_in_one_run_are_one_digest_message(tmp_path):
    # a new warehouse of 400 never-loaded sources: 400 "stale" messages were sent one by one
    with FakeApi() as api:
        api.route("/hook", Reply(200, "ok"))
        cfg = parse_notifications({"notifications": {"webhook": {"url": api.url("/hook")}}})
        state = NotificationState(tmp_path / "s.json")
        stale = [Event("stale", f"src_{i:03d}", f"stale:src_{i:03d}:never", "never loaded")
                 for i in range(400)]
        outage = [Event("down", "gh", "down:gh:1", "503s"),
                  Event("up", "gh", "up:gh:1", "back", requires="down:gh:1")]
        first = Notifier(cfg, state).notify(stale + outage, T0)
        again = Notifier(cfg, NotificationState(tmp_path / "s.json")).notify(stale + outage, T0)
        few = Notifier(cfg, state).notify([Event("stale", "x", "stale:x:1", "old"),
                                           Event("stale", "y", "stale:y:1", "old")], T0)
        texts = [r.json()["text"] for r in api.requests_to("/hook")]
    assert len(texts) == 3  # the digest, then the two of a quiet run one by one
    digest = texts[0]
    assert digest.startswith("[restlake] 402 incidents: 400 data is STALE, 1 source is DOWN, "
                             "1 source is back UP")
    assert "- src_000: data is STALE: never loaded" in digest and "more (restlake notify" in digest
    assert len(digest) <= 3500
    # every incident of the digest counts as told (the up with its down, sent together)
    assert all(d.channels == ["webhook"] for d in first)
    assert {d.skipped for d in again} == {"already notified"}
    assert [t.split(":")[0] for t in texts[1:]] == ["[restlake] x", "[restlake] y"]
    assert [d.channels for d in few] == [["webhook"], ["webhook"]]


def test_a_digest_no_channel_took_is_sent_again_next_run(tmp_path):
    with FakeApi() as api:
        api.route("/hook", Reply(404, {"error": "no such hook"}), Reply(200, "ok"))
        cfg = parse_notifications({"notifications": {"webhook": {"url": api.url("/hook")},
                                                     "digest_after": 2}})
        events = [Event("stale", f"s{i}", f"stale:s{i}:1", "old") for i in range(3)]
        failed = Notifier(cfg, NotificationState(tmp_path / "s.json")).notify(events, T0)
        sent = Notifier(cfg, NotificationState(tmp_path / "s.json")).notify(events, T0)
    assert all(not d.channels and "404" in d.errors[0] for d in failed)
    assert all(d.channels == ["webhook"] for d in sent)


def test_the_state_file_forgets_what_can_no_longer_be_told(tmp_path):
    with FakeApi() as api:
        api.route("/hook", Reply(200, "ok"))
        cfg = parse_notifications({"notifications": {"webhook": {"url": api.url("/hook")}}})
        path = tmp_path / "s.json"
        old = [Event("load_failed", "a", "load_failed:a:L1", "401"),
               Event("stale", "b", "stale:b:never", "never loaded")]
        Notifier(cfg, NotificationState(path)).notify(old, T0)
        later = T0 + dt.timedelta(days=100)
        # 100 days on, the failure is history (not among the run's events); b is still stale
        Notifier(cfg, NotificationState(path)).notify([old[1]], later,
                                                      forget_after=dt.timedelta(days=90))
        kept = json.loads(path.read_text())["sent"]
        # a run that judges only some events (the scheduler's outages) forgets nothing
        Notifier(cfg, NotificationState(path)).notify([], later + dt.timedelta(days=1))
        texts = [r.json()["text"] for r in api.requests_to("/hook")]
    assert sorted(kept) == ["stale:b:never"]  # still told, so never sent again
    assert sorted(json.loads(path.read_text())["sent"]) == ["stale:b:never"]
    assert len(texts) == 2
