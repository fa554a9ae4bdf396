"""The webhook receiver end to end: real HTTP on 127.0.0.1, real spool, real Spark + Delta.

Signed events are acknowledged only once on disk and stored once however often they
are delivered; unsigned, wrongly signed, replayed, oversized or unknown ones are refused
and store nothing; a full queue asks the sender to retry; a receiver killed with SIGKILL
after acknowledging events loses none of them, and a flush cut between its Delta commit
and its checkpoint stores nothing twice when it is redone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from chispa import assert_df_equality

from framework.config import parse_source
from framework.lake.tables import TableRef
from framework.push.receiver import Receiver
from framework.push.signatures import sign
from framework.service.hooks import receiver_app
from tests.unit._service import ServiceThread, free_port

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec-test-secret-0123"
CLOCK = 1_714_000_000.0


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("RL_HOOK_SECRET", SECRET)


def push_config(config_id: str, scheme: str = "github", **webhook) -> dict:
    return {
        "config_id": config_id, "api_name": "Hooks", "source_system": "hooks",
        "webhook": {"signature": scheme, "secret": "env:RL_HOOK_SECRET", "event_id_path": "id",
                    "batch_events": 100_000, "batch_seconds": 3600, "max_body_bytes": 1024,
                    **webhook},
        "primary_key": ["issue_id"], "required_fields": ["action"],
        "target": {"catalog": "raw", "schema": "hooks", "table": config_id},
    }


def event(n: int, action: str = "opened", issue: int | None = None) -> bytes:
    return json.dumps({"id": f"evt_{n}", "issue_id": issue if issue is not None else n,
                       "action": action, "title": f"issue {n}"}).encode()


def headers(scheme: str, body: bytes, *, at: float = CLOCK, secret: str = SECRET) -> dict:
    key = secret.encode()
    if scheme == "github":
        return {"X-Hub-Signature-256": sign("github", key, body), "X-GitHub-Event": "issues"}
    if scheme == "stripe":
        return {"Stripe-Signature": sign("stripe", key, body, timestamp=int(at))}
    return {"X-Signature": sign("hmac_sha256", key, body)}


def read(warehouse, table: str, suffix: str = ""):
    from deltalake import DeltaTable

    path = warehouse.path(TableRef("raw", "hooks", table + suffix))
    return DeltaTable(path).to_pyarrow_table().to_pylist() if Path(path).exists() else []


def receiver_for(spark, warehouse, tmp_path) -> Receiver:
    return Receiver(warehouse, spool=tmp_path / "spool", spark_factory=lambda: spark,
                    clock=lambda: CLOCK)


def test_signed_events_are_stored_once_and_every_refusal_stores_nothing(spark, store, warehouse,
                                                                       tmp_path):
    schemes = ("github", "stripe", "hmac_sha256")
    store.generate([parse_source(push_config(f"h_{s}", s)) for s in schemes])
    assert {r["ConfigId"]: (r["LoadType"], r["LoadStatus"]) for r in store.rows()} == {
        f"h_{s}": ("PUSH", "SUCCESS") for s in schemes}
    receiver = receiver_for(spark, warehouse, tmp_path).start()
    try:
        with ServiceThread(receiver_app(receiver)) as svc:
            for scheme in schemes:
                url = f"/hooks/h_{scheme}"
                for n in (1, 2, 3, 2):  # event 2 is delivered twice
                    body = event(n)
                    r = svc.post(url, data=body, headers=headers(scheme, body))
                    assert r.status_code == 202 and r.json()["event_id"] == f"evt_{n}", r.text
                refusals = [
                    (401, event(7), headers(scheme, event(7), secret="wrong-secret")),
                    (401, event(7), {}),
                    (401, event(7), headers(scheme, event(8))),  # signed another body
                    (400, b"not json", headers(scheme, b"not json")),
                    (400, b'{"no_id": 1}', headers(scheme, b'{"no_id": 1}')),
                    (413, b'{"id": "' + b"x" * 2048 + b'"}', {}),
                ]
                if scheme == "stripe":  # signed an hour ago, replayed now
                    refusals.append((401, event(7), headers(scheme, event(7), at=CLOCK - 3600)))
                for status, body, hdrs in refusals:
                    r = svc.post(url, data=body, headers=hdrs)
                    assert r.status_code == status, (scheme, status, r.text)
                    assert r.headers["content-type"] == "application/problem+json"
                    assert SECRET not in r.text
            r = svc.post("/hooks/nope", data=event(1), headers=headers("github", event(1)))
            assert r.status_code == 404 and "no push source 'nope'" in r.json()["detail"]
            assert receiver.state()["h_github"]["pending"] == 4
        results = receiver.flush()
    finally:
        receiver.stop()
    assert [(r.events, r.stored, r.duplicates, r.rejected) for r in results] == [(4, 3, 1, 0)] * 3
    for scheme in schemes:
        table = f"h_{scheme}"
        rows = sorted((r["issue_id"], r["_event_id"], r["action"]) for r in read(warehouse, table))
        assert rows == [(1, "evt_1", "opened"), (2, "evt_2", "opened"), (3, "evt_3", "opened")]
        raw = read(warehouse, table, "_raw")
        assert sorted(json.loads(r["body"])["id"] for r in raw) == ["evt_1", "evt_2", "evt_2",
                                                                   "evt_3"]
        assert all(SECRET not in r["headers"] for r in raw)
    github_raw = read(warehouse, "h_github", "_raw")
    assert json.loads(github_raw[0]["headers"])["x-github-event"] == "issues"
    audit = [r for r in store.audit_rows(limit=10) if r["LoadType"] == "PUSH"]
    assert sorted((r["ConfigId"], r["LoadStatus"], r["EventsReceived"], r["TargetRowCount"],
                   r["DuplicateRows"], r["RejectedRows"]) for r in audit) == sorted(
        (f"h_{s}", "SUCCESS", 4, 3, 1, 0) for s in schemes)


def test_updates_merge_on_the_key_and_bad_records_go_to_quarantine(spark, store, warehouse,
                                                                   tmp_path):
    store.generate([parse_source(push_config("h_upd"))])
    receiver = receiver_for(spark, warehouse, tmp_path).start()
    try:
        for body in (event(1), event(2), event(3, action="closed", issue=1),
                     json.dumps({"id": "evt_4", "issue_id": 9}).encode(),  # no action: rejected
                     event(3, action="closed", issue=1)):  # a redelivery
            receiver.receive("h_upd", body, headers("github", body))
        [first] = receiver.flush()
        receiver.receive("h_upd", event(5, action="edited", issue=2),
                         headers("github", event(5, action="edited", issue=2)))
        [second] = receiver.flush()
    finally:
        receiver.stop()
    # evt_1 is superseded by evt_3 (same issue) in the same flush, evt_3 comes twice
    assert (first.events, first.records, first.stored, first.duplicates, first.rejected) == (
        5, 5, 2, 2, 1)
    assert (second.stored, second.duplicates) == (1, 0)
    df = spark.read.format("delta").load(warehouse.path(TableRef("raw", "hooks", "h_upd")))
    got = df.select("issue_id", "action", "_event_id").orderBy("issue_id")
    expected = spark.createDataFrame([(1, "closed", "evt_3"), (2, "edited", "evt_5")],
                                     "issue_id long, action string, _event_id string")
    assert_df_equality(got, expected, ignore_nullable=True)
    quarantine = read(warehouse, "h_upd", "_quarantine")
    assert len(quarantine) == 1 and "required field 'action'" in quarantine[0]["reason"]


def test_an_event_that_cannot_be_staged_is_quarantined_and_the_rest_of_its_flush_loads(
        spark, store, warehouse, tmp_path):
    """A lone UTF-16 surrogate escape is valid JSON but no text: an event holding one (spooled
    by a receiver that took it) goes to the quarantine with its id, and never blocks the source."""
    cfg = {**push_config("h_sur", queue_events=5), "parser": "flatten"}
    store.generate([parse_source(cfg)])
    receiver = receiver_for(spark, warehouse, tmp_path)  # not started: flushed below
    good = [json.dumps({"id": f"evt_{n}", "action": "opened", "issue_id": n}).encode()
            for n in (1, 3)]
    bad = b'{"id":"evt_2","action":"edited","issue_id":2,"issue":{"title":"\\udc00"}}'
    spool = receiver.source("h_sur").spool
    for n, body in enumerate((good[0], bad, good[1])):
        spool.append_durable({"id": json.loads(body)["id"], "at": int(CLOCK * 1e6) + n, "h": {}},
                             body, timeout=10)
    try:
        [result] = receiver.flush()
    finally:
        spool.close()
    assert result.error is None, result.error
    assert (result.events, result.stored, result.rejected) == (3, 2, 1)
    assert spool.pending == 0
    assert sorted(r["issue_id"] for r in read(warehouse, "h_sur")) == [1, 3]
    [quarantined] = read(warehouse, "h_sur", "_quarantine")
    assert "evt_2" in quarantined["reason"] and "surrogate" in quarantined["reason"]
    assert len(read(warehouse, "h_sur", "_raw")) == 3


def _redelivered_in_flushes(spark, store, warehouse, tmp_path, config_id: str) -> list:
    """Issue 7 opened, closed and its "opened" delivered again, a flush each; then issue 8's
    three such deliveries in one flush. Returns the flushes' results."""
    store.generate([parse_source(push_config(config_id))])
    receiver = receiver_for(spark, warehouse, tmp_path)  # not started: flushed here
    opened, closed = event(1, "opened", issue=7), event(2, "closed", issue=7)
    other_opened, other_closed = event(3, "opened", issue=8), event(4, "closed", issue=8)
    results = []
    try:
        for batch in ([opened], [closed], [opened],  # a flush each
                      [other_opened, other_closed, other_opened]):  # all in one flush
            for body in batch:
                receiver.receive(config_id, body, headers("github", body))
            results += receiver.flush()
    finally:
        receiver.stop()
    return results


def test_a_redelivered_event_never_undoes_a_later_one(spark, store, warehouse, tmp_path):
    """GitHub's "Redeliver" sends an old event again, byte for byte (same id): applied
    again, it put the issue back to "opened" after its "closed"."""
    results = _redelivered_in_flushes(spark, store, warehouse, tmp_path, "h_again")
    rows = sorted((r["issue_id"], r["action"], r["_event_id"]) for r in read(warehouse, "h_again"))
    assert rows == [(7, "closed", "evt_2"), (8, "closed", "evt_4")]
    assert [(r.events, r.stored, r.duplicates) for r in results] == [
        (1, 1, 0), (1, 1, 0), (1, 0, 1), (3, 1, 2)]
    audit = sorted((r["RunId"], r["TargetRowCount"], r["DuplicateRows"])
                   for r in store.audit_rows("h_again") if r["LoadType"] == "PUSH")
    assert [a[1:] for a in audit] == [(1, 0), (1, 0), (0, 1), (1, 2)]
    assert len(read(warehouse, "h_again", "_raw")) == 6  # every delivery is archived


def test_a_replay_of_a_flush_applies_no_event_the_flush_counted_as_delivered_again(
        spark, store, warehouse, tmp_path):
    """The flush skipped a redelivered event; its replay applied it, and put the issue
    back to "opened" after its "closed" (in a flush of its own, and within one flush)."""
    from framework.load.archive import replay
    from framework.load.runtime import staging_root

    results = _redelivered_in_flushes(spark, store, warehouse, tmp_path, "h_rerun")
    assert [r.duplicates for r in results] == [0, 0, 1, 2]
    replayed = [replay(spark, store, "h_rerun", r.run_id, staging_root(warehouse))
                for r in results[2:]]
    assert [(r.pages, r.records) for r in replayed] == [(1, 1), (3, 3)]
    rows = sorted((r["issue_id"], r["action"], r["_event_id"]) for r in read(warehouse, "h_rerun"))
    assert rows == [(7, "closed", "evt_2"), (8, "closed", "evt_4")]


def test_an_event_sent_in_utf_16_is_archived_as_its_text_and_replays_as_it_was_flushed(
        spark, store, warehouse, tmp_path):
    """JSON in UTF-16 (with its BOM) is read by the receiver and the flush alike; its raw
    row held the bytes decoded as UTF-8 (NULs and U+FFFD), so the replay quarantined it."""
    from framework.load.archive import replay
    from framework.load.runtime import staging_root

    store.generate([parse_source(push_config("h_utf16"))])
    receiver = receiver_for(spark, warehouse, tmp_path)  # not started: flushed below
    text = json.dumps({"id": "evt_1", "issue_id": 1, "action": "opened", "title": "caf\u00e9"},
                      ensure_ascii=False)
    body = text.encode("utf-16")
    try:
        receiver.receive("h_utf16", body, headers("github", body))
        [flushed] = receiver.flush()
    finally:
        receiver.stop()
    assert (flushed.stored, flushed.rejected) == (1, 0)
    [raw] = read(warehouse, "h_utf16", "_raw")
    assert json.loads(raw["body"]) == json.loads(text) and raw["bytes"] == len(body)
    replayed = replay(spark, store, "h_utf16", flushed.run_id, staging_root(warehouse))
    assert replayed.records == 1
    assert read(warehouse, "h_utf16", "_quarantine") == []
    assert [(r["title"], r["_event_id"]) for r in read(warehouse, "h_utf16")] == [
        ("caf\u00e9", "evt_1")]


def test_a_redelivered_event_of_several_records_counts_all_of_them_as_duplicates(
        spark, store, warehouse, tmp_path):
    """An event of three records delivered again was audited as one record and one
    duplicate (its first delivery: three records stored)."""
    store.generate([parse_source({**push_config("h_many"), "data_path": "items"})])
    receiver = receiver_for(spark, warehouse, tmp_path)  # not started: flushed below
    body = json.dumps({"id": "evt_1", "items": [
        {"issue_id": n, "action": "opened"} for n in (1, 2, 3)]}).encode()
    results = []
    try:
        for _ in range(2):
            receiver.receive("h_many", body, headers("github", body))
            results += receiver.flush()
    finally:
        receiver.stop()
    assert [(r.events, r.records, r.stored, r.duplicates) for r in results] == [
        (1, 3, 3, 0), (1, 3, 0, 3)]
    audit = sorted((r["SourceRowCount"], r["TargetRowCount"], r["DuplicateRows"])
                   for r in store.audit_rows("h_many") if r["LoadType"] == "PUSH")
    assert audit == [(3, 0, 3), (3, 3, 0)]


def test_a_flush_holds_one_event_body_at_a_time_not_its_whole_batch(spark, store, warehouse,
                                                                     tmp_path):
    """A flush read its whole batch into memory (batch_events x max_body_bytes: 1 000 x
    1 MiB by default), and a receiver that died of it redid the same range on every start."""
    import tracemalloc

    store.generate([parse_source(push_config("h_big", max_body_bytes=1 << 20))])
    receiver = receiver_for(spark, warehouse, tmp_path)  # not started: flushed below
    bodies = [json.dumps({"id": f"evt_{n}", "issue_id": n, "action": "opened",
                          "title": f"{n}" + "x" * 250_000}).encode() for n in range(100)]
    try:
        for body in bodies:
            receiver.receive("h_big", body, headers("github", body))
        spark.range(1).count()  # the session's own first-use allocations are not the flush's
        tracemalloc.start()
        try:
            [result] = receiver.flush()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        receiver.stop()
    assert (result.error, result.stored) == (None, 100)
    # what stays is bounded (a staged file's write buffer, an event or two): not the batch
    assert peak < sum(map(len, bodies)) / 2, (peak, sum(map(len, bodies)))


def test_a_backlog_of_one_source_does_not_hold_back_the_flushes_of_another(spark, store,
                                                                           warehouse, tmp_path):
    """The flusher drained a source's whole backlog before it looked at the next source, whose
    events waited past their batch_seconds and whose queue could fill (503 to its senders)."""
    store.generate([parse_source(push_config(cid, batch_events=1))
                    for cid in ("h_busy", "h_quiet")])
    first = receiver_for(spark, warehouse, tmp_path)  # not started: spools the events only
    for n in range(3):
        first.receive("h_busy", event(n), headers("github", event(n)))
    first.receive("h_quiet", event(9), headers("github", event(9)))
    for cid in ("h_busy", "h_quiet"):
        first.source(cid).spool.close()
    receiver = receiver_for(spark, warehouse, tmp_path).start()  # flushes what is spooled
    receiver.stop()
    audit = sorted((r["LoggedAt"], r["ConfigId"]) for r in store.audit_rows(limit=10)
                   if r["LoadType"] == "PUSH")
    assert [cid for _, cid in audit] == ["h_busy", "h_quiet", "h_busy", "h_busy"]
    assert sorted(r["issue_id"] for r in read(warehouse, "h_busy")) == [0, 1, 2]


def test_a_flush_whose_receipt_times_go_back_with_the_clock_loads(spark, store, warehouse,
                                                                   tmp_path):
    """The host's clock stepped back (NTP) between two events: the flush's span was from its
    first event to its last, an end before its start, and the flush failed on every retry."""
    store.generate([parse_source(push_config("h_clock"))])
    now = [CLOCK]
    receiver = Receiver(warehouse, spool=tmp_path / "spool", spark_factory=lambda: spark,
                        clock=lambda: now[0])
    try:
        for n, at in ((1, CLOCK), (2, CLOCK - 5.0)):
            now[0] = at
            receiver.receive("h_clock", event(n), headers("github", event(n), at=at))
        [result] = receiver.flush()
    finally:
        receiver.stop()
    assert (result.error, result.stored) == (None, 2)
    assert (result.first_received.timestamp(), result.last_received.timestamp()) == (
        CLOCK - 5.0, CLOCK)


def test_schema_drift_of_pushed_events_is_audited_and_judged(spark, store, warehouse, tmp_path):
    """As for a pulled load: rescued rows and new fields in the flush's audit row, and the
    drift (new, retyped) in api_quality_results."""
    store.generate([parse_source(push_config("h_drift"))])
    receiver = receiver_for(spark, warehouse, tmp_path)  # not started: flushed below
    first = json.dumps({"id": "evt_1", "issue_id": 1, "action": "opened", "votes": 3}).encode()
    drifted = json.dumps({"id": "evt_2", "issue_id": 2, "action": "opened",
                          "votes": "a great many", "labels": ["bug"]}).encode()
    results = []
    try:
        for body in (first, drifted):
            receiver.receive("h_drift", body, headers("github", body))
            results += receiver.flush()
    finally:
        receiver.stop()
    assert [r.error for r in results] == [None, None]
    [row] = [r for r in read(warehouse, "h_drift") if r["issue_id"] == 2]
    assert row["_rescued_data"] and "a great many" in row["_rescued_data"]
    audit = {r["RunId"]: r for r in store.audit_rows("h_drift") if r["LoadType"] == "PUSH"}
    second = audit[results[1].run_id]
    assert second["RescuedRows"] == 1
    assert "labels" in json.loads(second["SchemaChanges"])
    drift = {r["Field"]: json.loads(r["Detail"])["change"]
             for r in store.quality_results(["h_drift"]) if r["RunId"] == results[1].run_id}
    assert drift == {"labels": "new", "votes": "retyped"}


def test_replay_of_a_flush_quarantines_its_bad_events_as_the_flush_did(spark, store, warehouse,
                                                                       tmp_path):
    from framework.load.archive import replay
    from framework.load.runtime import staging_root

    store.generate([parse_source(push_config("h_replay", event_id_path=None))])
    receiver = receiver_for(spark, warehouse, tmp_path)  # not started: flushed below
    bodies = [b"5", b'"just a string"', event(1)]
    try:
        for body in bodies:
            receiver.receive("h_replay", body, headers("github", body))
        [flushed] = receiver.flush()
    finally:
        receiver.stop()
    assert (flushed.stored, flushed.rejected) == (1, 2)
    result = replay(spark, store, "h_replay", flushed.run_id, staging_root(warehouse))
    assert (result.pages, result.records) == (3, 3)
    quarantine = [r for r in read(warehouse, "h_replay", "_quarantine")
                  if r["_run_id"] == result.run_id]
    assert len(quarantine) == 2 and all("event " in r["reason"] for r in quarantine)
    [audit] = [r for r in store.audit_rows("h_replay") if r["LoadType"] == "REPLAY"]
    assert (audit["LoadStatus"], audit["RejectedRows"]) == ("SUCCESS", 2)


def test_a_full_queue_answers_503_with_retry_after_and_stores_nothing(spark, store, warehouse,
                                                                     tmp_path):
    store.generate([parse_source(push_config("h_full", queue_events=2, batch_seconds=7))])
    receiver = receiver_for(spark, warehouse, tmp_path).start()
    try:
        with ServiceThread(receiver_app(receiver)) as svc:
            for n in (1, 2):
                assert svc.post("/hooks/h_full", data=event(n),
                                headers=headers("github", event(n))).status_code == 202
            r = svc.post("/hooks/h_full", data=event(3), headers=headers("github", event(3)))
            assert r.status_code == 503 and r.headers["Retry-After"] == "7"
            assert receiver.state()["h_full"]["pending"] == 2
            receiver.flush()
            assert svc.post("/hooks/h_full", data=event(3),
                            headers=headers("github", event(3))).status_code == 202
        receiver.flush()
    finally:
        receiver.stop()
    assert sorted(r["issue_id"] for r in read(warehouse, "h_full")) == [1, 2, 3]


def test_a_flush_redone_after_its_commit_stores_nothing_twice(spark, store, warehouse, tmp_path):
    """A crash between the Delta commits and the spool checkpoint: the next start redoes it."""
    from framework.load.runtime import staging_root
    from framework.push.flush import flush_events

    store.generate([parse_source(push_config("h_redo"))])
    receiver = receiver_for(spark, warehouse, tmp_path)  # not started: no flusher thread
    bodies = [event(1), event(2), json.dumps({"id": "evt_3", "issue_id": 3}).encode()]
    for body in bodies:
        receiver.receive("h_redo", body, headers("github", body))
    src = receiver.source("h_redo")
    intent = src.spool.begin_flush(100)
    cfg = src.cfg
    flush_events(spark, warehouse, cfg, lambda: src.spool.read(intent.start, intent.end),
                 intent.seq,
                 src.spool.spool_id, staging_root(warehouse))  # committed; the checkpoint is not
    src.spool.close()  # the crash
    again = receiver_for(spark, warehouse, tmp_path).start()  # drains the recovered intent
    again.stop()
    assert sorted(r["issue_id"] for r in read(warehouse, "h_redo")) == [1, 2]
    assert len(read(warehouse, "h_redo", "_raw")) == 3
    assert len(read(warehouse, "h_redo", "_quarantine")) == 1
    # audited with what the flush stored (by its first attempt), not as 2 duplicates
    audit = [r for r in store.audit_rows("h_redo") if r["LoadType"] == "PUSH"]
    assert [(r["TargetRowCount"], r["DuplicateRows"], r["RejectedRows"]) for r in audit] == [
        (2, 0, 1)]


def _start_receiver(warehouse: Path, spool: Path, port: int, crash_at: str | None = None
                    ) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), RESTLAKE_SPOOL=str(spool),
               RESTLAKE_SPARK_MASTER="local[1]", RL_HOOK_SECRET=SECRET)
    env.pop("RESTLAKE_CRASH_AT", None)
    if crash_at:
        env["RESTLAKE_CRASH_AT"] = crash_at
    cmd = [sys.executable, "-m", "framework.cli", "--warehouse", str(warehouse), "receive",
           "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode()[-3000:])
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the receiver did not start")


def _send(port: int, numbers: range) -> list[int]:
    def one(n: int) -> int:
        body = event(n)
        return requests.post(f"http://127.0.0.1:{port}/hooks/h_kill", data=body,
                             headers=headers("github", body, at=time.time()), timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, numbers))


def test_sigkill_after_acknowledging_loses_no_event(spark, store, warehouse, tmp_path):
    """A real ``restlake receive`` acknowledges 60 events and is killed before any flush;
    the next start flushes all 60 from its spool, once."""
    store.generate([parse_source(push_config("h_kill"))])
    spool, port = tmp_path / "spool", free_port()
    proc = _start_receiver(warehouse.root, spool, port)
    try:
        assert _send(port, range(60)) == [202] * 60
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert read(warehouse, "h_kill") == []  # nothing was flushed before the kill
    receiver = Receiver(warehouse, spool=spool, spark_factory=lambda: spark).start()
    receiver.stop()  # the start flushed the recovered events; stop drains the rest
    assert sorted(r["issue_id"] for r in read(warehouse, "h_kill")) == list(range(60))
    assert len(read(warehouse, "h_kill", "_raw")) == 60


@pytest.mark.slow
def test_sigkill_of_a_real_receiver_between_commit_and_checkpoint(store, warehouse, tmp_path):
    """The whole cycle in subprocesses: killed after its Delta commit, restarted, drained."""
    store.generate([parse_source(push_config("h_kill", batch_events=20))])
    spool, port = tmp_path / "spool", free_port()
    proc = _start_receiver(warehouse.root, spool, port, crash_at="push_after_commit:1")
    assert _send(port, range(20)) == [202] * 20
    assert proc.wait(600) == -signal.SIGKILL
    port = free_port()
    proc = _start_receiver(warehouse.root, spool, port)
    try:
        assert _send(port, range(20, 25)) == [202] * 5
    finally:
        proc.send_signal(signal.SIGTERM)  # drains: flushes the redo and the 5 new events
        assert proc.wait(600) == 0
    assert sorted(r["issue_id"] for r in read(warehouse, "h_kill")) == list(range(25))
    assert len(read(warehouse, "h_kill", "_raw")) == 25


def test_an_audit_table_from_before_push_sources_gains_their_columns(spark, warehouse):
    from pyspark.sql.types import StructType

    from control.schemas import AUDIT_SCHEMA
    from control.store import ControlStore

    store = ControlStore(spark, warehouse)
    older = StructType([f for f in AUDIT_SCHEMA.fields
                        if f.name not in ("EventsReceived", "DuplicateRows")])
    warehouse.create_if_not_exists(spark, store.audit_ref, older, {"delta.appendOnly": "true"})
    store.append_audit({"ConfigId": "old", "LoadType": "FULL_LOAD", "SourceRowCount": 1})
    store.append_audit({"ConfigId": "h", "LoadType": "PUSH", "EventsReceived": 4,
                        "DuplicateRows": 1})
    rows = sorted(store.audit_rows(limit=5), key=lambda r: r["ConfigId"])
    assert [(r["ConfigId"], r["EventsReceived"], r["DuplicateRows"]) for r in rows] == [
        ("h", 4, 1), ("old", None, None)]
