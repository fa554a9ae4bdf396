"""The receiver's HTTP answers without Spark: a real uvicorn on 127.0.0.1, a real spool."""

from __future__ import annotations

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

    def build(queue_events: int = 5) -> Receiver:
        cfgs = [parse_source({
            "config_id": cid, "api_name": "Unit",
            "webhook": {"signature": scheme, "secret": "env:RL_UNIT_HOOK", "event_id_path": "id",
                        "max_body_bytes": 1024, "queue_events": queue_events,
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
        assert svc.get("/health").json()["sources"]["gh"]["pending"] == 5
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
