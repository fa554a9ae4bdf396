"""The receiver's HTTP answers without Spark: a real uvicorn on 127.0.0.1, a real spool."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from framework.config import parse_source
from framework.lake.tables import Warehouse
from framework.push.receiver import Receiver
from framework.push.signatures import sign
from framework.push.spool import Spool
from framework.service.hooks import receiver_app
from tests.unit._service import ServiceThread

SECRET = "unit-hook-secret-42"
NOW = 1_714_000_000.0


@pytest.fixture
def make(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_UNIT_HOOK", SECRET)
    made = []

    def build(queue_events: int = 5, max_body_bytes: int = 1024) -> Receiver:
        cfgs = [parse_source({
            "config_id": cid, "api_name": "Unit",
            "webhook": {"signature": scheme, "secret": "env:RL_UNIT_HOOK", "event_id_path": "id",
                        "max_body_bytes": max_body_bytes, "queue_events": queue_events,
                        "batch_events": 1000, "batch_seconds": 3600},
            "target": {"catalog": "raw", "schema": "hooks", "table": cid},
        }) for cid, scheme in (("gh", "github"), ("st", "stripe"))]
        rec = Receiver(Warehouse(tmp_path / "wh"), spool=tmp_path / "spool", configs=cfgs,
                       clock=lambda: NOW)
        made.append(rec)
        return rec  # not started: no flusher (nothing here needs Spark)

    yield build
    for rec in made:
        for cid in ("gh", "st"):
            rec.source(cid).spool.close()


def body(n: int) -> bytes:
    return json.dumps({"id": f"e{n}", "n": n}).encode()


def gh(data: bytes) -> dict:
    return {"X-Hub-Signature-256": sign("github", SECRET.encode(), data)}


def test_answers_and_what_each_leaves_in_the_spool(make, tmp_path):
    receiver = make()
    with ServiceThread(receiver_app(receiver)) as svc:
        r = svc.post("/hooks/gh", data=body(1), headers=gh(body(1)))
        assert r.status_code == 202 and r.json() == {"status": "stored", "config_id": "gh",
                                                     "event_id": "e1"}
        cases = [
            ("/hooks/zz", body(2), gh(body(2)), 404),
            ("/hooks/gh", body(2), {}, 401),
            ("/hooks/gh", body(2), gh(body(3)), 401),
            ("/hooks/gh", b"[1,", gh(b"[1,"), 400),
            ("/hooks/gh", b'{"x": 1}', gh(b'{"x": 1}'), 400),
            ("/hooks/gh", b'{"id": "' + b"y" * 2000 + b'"}', {}, 413),
            ("/hooks/st", body(2), {"Stripe-Signature": sign(
                "stripe", SECRET.encode(), body(2), timestamp=int(NOW) - 301)}, 401),
        ]
        for path, data, hdrs, status in cases:
            r = svc.post(path, data=data, headers=hdrs)
            assert r.status_code == status, (path, status, r.text)
            assert r.json()["status"] == status and SECRET not in r.text
        ok = svc.post("/hooks/st", data=body(2), headers={"Stripe-Signature": sign(
            "stripe", SECRET.encode(), body(2), timestamp=int(NOW) - 299)})
        assert ok.status_code == 202
        for n in range(3, 8):  # the queue holds 5: the 6th pending event is refused
            r = svc.post("/hooks/gh", data=body(n), headers=gh(body(n)))
        assert r.status_code == 503 and r.headers["Retry-After"] == "3600"
        assert receiver.state()["gh"]["pending"] == 5
    receiver.source("gh").spool.close()
    spool = Spool(tmp_path / "spool" / "gh")
    events = list(spool.read(0, 10 ** 9))
    assert [e.meta["id"] for e in events] == ["e1", "e3", "e4", "e5", "e6"]
    assert events[0].body == body(1)  # the raw body, byte for byte
    spool.close()


def test_concurrent_deliveries_are_all_acknowledged_after_an_fsync(make):
    receiver = make(queue_events=10_000)
    with ServiceThread(receiver_app(receiver)) as svc:
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda n: svc.post("/hooks/gh", data=body(n),
                                                     headers=gh(body(n))).status_code,
                                  range(300)))
    spool = receiver.source("gh").spool
    assert codes == [202] * 300 and spool.pending == 300
    # every answer waited for an fsync (test_push_spool proves that they are shared)
    assert 1 <= spool.fsyncs <= 300 and spool.unsynced_bytes == 0


def test_sigterm_stops_restlake_receive_cleanly(tmp_path):
    """SIGTERM: uvicorn shuts down, then the receiver drains and the process exits 0
    (uvicorn re-raises the signal after its shutdown, which would skip the drain)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import requests

    from tests.unit._service import free_port

    root = Path(__file__).resolve().parents[2]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(root), RESTLAKE_SPOOL=str(tmp_path / "spool"))
    proc = subprocess.Popen([sys.executable, "-m", "framework.cli", "--warehouse",
                             str(tmp_path / "wh"), "receive", "--port", str(port)], env=env,
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        r = requests.post(f"http://127.0.0.1:{port}/hooks/nothing", data=b"{}", timeout=5)
        assert r.status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stdout.read().decode()[-2000:]
    finally:
        proc.kill()


def test_the_hook_route_is_documented_in_both_openapi_documents(make, tmp_path):
    from framework.service.api import create_app

    receiver = make()
    apps = {"receive": receiver_app(receiver),
            "serve": create_app(Warehouse(tmp_path / "wh"), receiver=receiver, public_read=True)}
    for name, app in apps.items():
        with ServiceThread(app) as svc:
            doc = svc.get("/openapi.json").json()
        post = doc["paths"]["/hooks/{config_id}"]["post"]
        assert set(post["responses"]) >= {"202", "401", "404", "413", "503"}, name
        assert "Retry-After" in post["responses"]["503"]["headers"], name
        assert [p["name"] for p in post["parameters"] if p["in"] == "path"] == ["config_id"]


def test_receive_health_names_sources_only_for_the_api_key(make, monkeypatch):
    from framework.service.access import ApiKeys

    receiver = make()
    receiver.source("gh")
    keys = ApiKeys(["unit-api-key-7"], ["env:RL_UNIT_KEY"])
    with ServiceThread(receiver_app(receiver, keys=keys)) as svc:
        anonymous = svc.get("/health")
        wrong = svc.get("/health", headers={"X-API-Key": "not-the-key"})
        keyed = svc.get("/health", headers={"X-API-Key": "unit-api-key-7"})
    for r in (anonymous, wrong):
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert "sources" not in r.json() and "gh" not in r.text
    assert keyed.json()["status"] == "ok" and keyed.json()["sources"]["gh"]["pending"] == 0


def test_a_rotated_secret_is_taken_after_reload_secret_without_a_restart(tmp_path, caplog):
    from framework.service.access import ApiKeys

    current = tmp_path / "hook_secret"
    current.write_text("first-rotation-secret-1")
    cfg = parse_source({
        "config_id": "gh", "api_name": "Unit",
        "webhook": {"signature": "github", "secret": f"file:{current}", "event_id_path": "id",
                    "batch_events": 1000, "batch_seconds": 3600},
        "target": {"catalog": "raw", "schema": "hooks", "table": "gh"}})
    receiver = Receiver(Warehouse(tmp_path / "wh"), spool=tmp_path / "spool", configs=[cfg],
                        clock=lambda: NOW)

    def signed(n: int, secret: str) -> dict:
        return {"data": body(n), "headers": {
            "X-Hub-Signature-256": sign("github", secret.encode(), body(n))}}

    texts = []
    with ServiceThread(receiver_app(receiver, ApiKeys(["unit-api-key-7"], ["env:K"]))) as svc:
        assert svc.post("/hooks/gh", **signed(1, "first-rotation-secret-1")).status_code == 202
        current.write_text("second-rotation-secret-2")  # rotated behind the same reference
        assert svc.post("/hooks/gh", **signed(2, "second-rotation-secret-2")).status_code == 401
        refused = [svc.post("/hooks/gh/reload-secret"),
                   svc.post("/hooks/gh/reload-secret", headers={"X-API-Key": "wrong"})]
        assert [r.status_code for r in refused] == [401, 401]
        reload = svc.post("/hooks/gh/reload-secret", headers={"X-API-Key": "unit-api-key-7"})
        assert reload.status_code == 200
        assert reload.json() == {"status": "reloaded", "config_id": "gh", "secrets": 1}
        new = svc.post("/hooks/gh", **signed(3, "second-rotation-secret-2"))
        old = svc.post("/hooks/gh", **signed(4, "first-rotation-secret-1"))
        assert (new.status_code, old.status_code) == (202, 401)
        current.unlink()  # a reference that no longer resolves: named, the secret in use kept
        broken = svc.post("/hooks/gh/reload-secret", headers={"X-API-Key": "unit-api-key-7"})
        assert broken.status_code == 500 and "webhook.secret" in broken.json()["detail"]
        assert svc.post("/hooks/gh", **signed(5, "second-rotation-secret-2")).status_code == 202
        texts += [r.text for r in (*refused, reload, new, old, broken)]
    receiver.source("gh").spool.close()
    for secret in ("first-rotation-secret-1", "second-rotation-secret-2"):
        assert secret not in caplog.text and not any(secret in t for t in texts)


def test_the_previous_secret_is_accepted_until_its_overlap_ends(tmp_path, monkeypatch):
    from framework.push.receiver import ReceiveError

    monkeypatch.setenv("RL_HOOK_NEW", "new-hook-secret-aa")
    monkeypatch.setenv("RL_HOOK_OLD", "old-hook-secret-bb")
    cfg = parse_source({
        "config_id": "gh", "api_name": "Unit",
        "webhook": {"signature": "github", "secret": "env:RL_HOOK_NEW", "event_id_path": "id",
                    "previous_secret": "env:RL_HOOK_OLD",
                    "previous_secret_until": "2024-04-25T00:00:00Z",  # NOW + 53 min
                    "batch_events": 1000, "batch_seconds": 3600},
        "target": {"catalog": "raw", "schema": "hooks", "table": "gh"}})
    now = [NOW]
    receiver = Receiver(Warehouse(tmp_path / "wh"), spool=tmp_path / "spool", configs=[cfg],
                        clock=lambda: now[0])

    def deliver(n: int, secret: str) -> int:
        try:
            receiver.receive("gh", body(n), {"X-Hub-Signature-256": sign(
                "github", secret.encode(), body(n))}, timeout=10)
            return 202
        except ReceiveError as exc:
            assert secret not in exc.detail
            return exc.status

    assert [deliver(1, "new-hook-secret-aa"), deliver(2, "old-hook-secret-bb"),
            deliver(3, "never-configured-cc")] == [202, 202, 401]
    now[0] = dt.datetime(2024, 4, 25, tzinfo=dt.timezone.utc).timestamp()  # the overlap ended
    assert [deliver(4, "new-hook-secret-aa"), deliver(5, "old-hook-secret-bb")] == [202, 401]
    receiver.source("gh").spool.close()


def test_event_ids_beyond_64_bits_stay_exact(make):
    """orjson reads integers from 2**64 up as floats: two ids one apart were one id."""
    receiver = make()
    ids = []
    with ServiceThread(receiver_app(receiver)) as svc:
        for n in (2 ** 64 + 1, 2 ** 64 + 2):
            data = json.dumps({"id": n}).encode()
            r = svc.post("/hooks/gh", data=data, headers=gh(data))
            assert r.status_code == 202, r.text
            ids.append(r.json()["event_id"])
    assert ids == [str(2 ** 64 + 1), str(2 ** 64 + 2)]


def test_a_body_that_is_json_but_not_text_is_refused_with_400_naming_it(make):
    """A lone UTF-16 surrogate escape decodes (Python's json takes it) to a string no
    UTF-8 file or Delta table can hold: refused, nothing stored; a valid pair is kept."""
    receiver = make()
    lone = b'{"id": "e1", "action": "edited", "issue": {"id": 2, "title": "\\udc00"}}'
    pair = b'{"id": "e2", "title": "\\ud83d\\ude00"}'
    with ServiceThread(receiver_app(receiver)) as svc:
        refused = svc.post("/hooks/gh", data=lone, headers=gh(lone))
        kept = svc.post("/hooks/gh", data=pair, headers=gh(pair))
    assert refused.status_code == 400, refused.text
    assert "surrogate" in refused.json()["detail"] and "\\udc00" in refused.json()["detail"]
    assert kept.status_code == 202
    assert receiver.state()["gh"]["pending"] == 1


def test_a_second_receiver_on_the_same_spool_is_refused_at_start(make, tmp_path):
    from framework.push.spool import SpoolInUse

    first, second = make().start(), make()
    try:
        with pytest.raises(SpoolInUse, match=str(tmp_path / "spool")):
            second.start()
    finally:
        first.stop()
    second.start().stop()  # free again once the first stopped


def test_nan_and_infinity_are_refused_with_400_as_json_has_neither(make):
    """Python's json takes them and they became null, nothing rescued or counted."""
    receiver = make()
    bodies = [b'{"id": "e1", "score": NaN}', b'{"id": "e2", "score": -Infinity}',
              b'{"id": "e3", "score": [Infinity]}']
    kept = b'{"id": "e4", "note": "NaN and Infinity as text are fine"}'
    with ServiceThread(receiver_app(receiver)) as svc:
        refused = [svc.post("/hooks/gh", data=b, headers=gh(b)) for b in bodies]
        ok = svc.post("/hooks/gh", data=kept, headers=gh(kept))
    assert [r.status_code for r in refused] == [400] * 3, [r.text for r in refused]
    assert all("NaN" in r.json()["detail"] for r in refused)
    assert ok.status_code == 202 and receiver.state()["gh"]["pending"] == 1


def test_a_body_nested_too_deep_to_read_is_refused_with_400_naming_it(make):
    receiver = make(max_body_bytes=64 * 1024)
    deep = b'{"id": "e1", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with ServiceThread(receiver_app(receiver)) as svc:
        refused = svc.post("/hooks/gh", data=deep, headers=gh(deep))
    assert refused.status_code == 400, refused.text
    assert "nested deeper" in refused.json()["detail"]
    assert receiver.state()["gh"]["pending"] == 0


def test_a_flush_that_cannot_record_its_range_is_a_failure_retried_and_the_flusher_lives_on(
        tmp_path, monkeypatch):
    """The spool's state.json cannot be written (here: a directory stands in its place, as
    a full or read-only disk would refuse it): the flusher thread died of the OSError, so
    /health said ok and the events were never flushed, even once the disk was fine again."""
    import os
    import time

    monkeypatch.setenv("RL_UNIT_HOOK", SECRET)
    cfg = parse_source({
        "config_id": "gh", "api_name": "Unit",
        "webhook": {"signature": "github", "secret": "env:RL_UNIT_HOOK", "event_id_path": "id",
                    "batch_events": 1, "batch_seconds": 3600},
        "target": {"catalog": "raw", "schema": "hooks", "table": "gh"}})

    def no_spark():
        raise RuntimeError("no Spark in this test")

    rec = Receiver(Warehouse(tmp_path / "wh"), spool=tmp_path / "spool", configs=[cfg],
                   clock=lambda: NOW, spark_factory=no_spark, tick_s=0.05).start()

    def failing(at_least: int) -> dict:
        for _ in range(600):
            state = rec.state()["gh"]
            if state["failing"] >= at_least:
                return state
            time.sleep(0.05)
        raise AssertionError(f"the flush did not fail {at_least} time(s): {rec.state()}")

    try:
        state_json = tmp_path / "spool" / "gh" / "state.json"
        rec.source("gh")  # its spool: state.json written
        os.remove(state_json)
        state_json.mkdir()  # no state can be written now
        assert rec.receive("gh", body(1), gh(body(1)), timeout=10) == "e1"
        first = failing(1)
        assert first["pending"] == 1 and "state.json" in first["last_error"]
        with ServiceThread(receiver_app(rec)) as svc:
            assert svc.get("/health").json() == {"status": "degraded"}
        state_json.rmdir()  # the disk is fine again: the retry records its range
        second = failing(2)
        assert "no Spark in this test" in second["last_error"]
        assert json.loads(state_json.read_text())["intent"]["events"] == 1
    finally:
        rec.stop(drain=False)


def test_a_form_encoded_github_delivery_is_refused_naming_the_content_type_to_set(make):
    """GitHub's default content type is application/x-www-form-urlencoded (payload=...):
    the 400 said only "the body is not JSON", not what to change at the sender."""
    from urllib.parse import urlencode

    receiver = make()
    form = urlencode({"payload": body(1).decode()}).encode()
    with ServiceThread(receiver_app(receiver)) as svc:
        r = svc.post("/hooks/gh", data=form, headers={
            **gh(form), "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400
        assert r.json()["detail"] == (
            "the body is not JSON (Content-Type application/x-www-form-urlencoded): set the "
            "sender's content type to application/json")
        r = svc.post("/hooks/gh", data=b"[1,", headers={**gh(b"[1,"),
                                                       "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["detail"] == "the body is not JSON"
    assert receiver.source("gh").spool.pending == 0


def test_a_number_beyond_a_double_is_refused_with_400_naming_it(make):
    """1e400 is JSON, but it reads as infinity and was stored as null, nothing rescued."""
    receiver = make(max_body_bytes=4096)
    bodies = [b'{"id": "e1", "score": 1e400}', b'{"id": "e2", "score": -2E+309}',
              b'{"id": "e3", "score": ' + b"9" * 400 + b'.5}']
    kept = [b'{"id": "e4", "score": 1e300, "n": ' + b"7" * 400 + b'}']
    with ServiceThread(receiver_app(receiver)) as svc:
        refused = [svc.post("/hooks/gh", data=b, headers=gh(b)) for b in bodies]
        ok = [svc.post("/hooks/gh", data=b, headers=gh(b)) for b in kept]
    assert [r.status_code for r in refused] == [400] * 3, [r.text for r in refused]
    assert all("beyond" in r.json()["detail"] for r in refused), [r.text for r in refused]
    assert [r.status_code for r in ok] == [202] and receiver.state()["gh"]["pending"] == 1
