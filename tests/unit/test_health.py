"""Health checks: the up rule, the bounded recorder, incident spans, the HTTP observer."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.ops.health import INGEST, PROBE, HealthRecorder, incident_spans, is_up, probe
from framework.http.client import HttpClient
from framework.http.models import PageRequest
from framework.http.retry import RetryPolicy

try:
    from _httpd import FakeApi, Reply
except ImportError:  # pragma: no cover
    from tests.unit._httpd import FakeApi, Reply

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_up_rule():
    assert is_up(INGEST, 404) and is_up(INGEST, 429) and not is_up(INGEST, 503)
    assert not is_up(INGEST, None)
    assert is_up(PROBE, 204) and not is_up(PROBE, 404)
    assert is_up(PROBE, 404, expected=[404]) and not is_up(PROBE, 200, expected=[404])


def test_incident_spans_consecutive_failures():
    checks = [
        {"ConfigId": "a", "CheckedAt": at(3), "Ok": False, "ErrorMessage": "503"},
        {"ConfigId": "a", "CheckedAt": at(0), "Ok": True},
        {"ConfigId": "a", "CheckedAt": at(1), "Ok": False, "ErrorKind": "timeout"},
        {"ConfigId": "a", "CheckedAt": at(5), "Ok": True},
        {"ConfigId": "a", "CheckedAt": at(6), "Ok": False, "ErrorMessage": "reset"},
        {"ConfigId": "b", "CheckedAt": at(2), "Ok": True},
    ]
    spans = incident_spans(checks)
    assert [(i.config_id, i.started_at, i.ended_at, i.failed_checks, i.last_error) for i in spans] == [
        ("a", at(1), at(5), 2, "503"),
        ("a", at(6), None, 1, "reset"),
    ]
    assert spans[0].duration(at(100)) == dt.timedelta(minutes=4)
    assert spans[1].ongoing and spans[1].duration(at(10)) == dt.timedelta(minutes=4)


def test_recorder_is_bounded_and_keeps_failures():
    rec = HealthRecorder("a", "sys", "r1", max_rows=3, clock=lambda: T0)
    for _ in range(5):
        rec.observe("GET", "http://x/y?token=abc123", 200, 0.01, None)
    rec.observe("GET", "http://x/y", 503, 0.02, "http_status")
    rows = rec.rows()
    assert len(rows) == 3 and rec.dropped == 3
    assert [r["Ok"] for r in rows] == [True, True, False]
    assert "abc123" not in rows[0]["Url"]
    assert rows[-1]["ElapsedMs"] == 20.0 and rows[-1]["ErrorKind"] == "http_status"


def test_http_client_reports_each_attempt():
    seen = []
    with FakeApi() as api:
        api.route("/p", Reply(503, {"error": "busy"}), Reply(200, {"ok": 1}))
        api.route("/slow", Reply(200, {}, delay_s=0.6))
        client = HttpClient(policy=RetryPolicy(max_retries=2, backoff_base_s=0, backoff_max_s=0),
                            timeout_s=0.3, sleep=lambda s: None,
                            on_attempt=lambda *a: seen.append(a))
        client.send(PageRequest("GET", api.url("/p")))
        with pytest.raises(Exception):
            client.send(PageRequest("GET", api.url("/slow")))
    assert [(m, s, k) for m, _u, s, _e, k in seen[:2]] == [("GET", 503, "http_status"), ("GET", 200, None)]
    assert [k for *_x, k in seen[2:]] == ["timeout"] * 3
    assert all(e >= 0 for *_a, e, _k in seen)


def test_an_observer_error_never_breaks_the_request():
    def boom(*_a):
        raise RuntimeError("observer bug")

    with FakeApi() as api:
        api.route("/p", Reply(200, {"ok": 1}))
        response = HttpClient(on_attempt=boom).send(PageRequest("GET", api.url("/p")))
    assert response.status == 200


def test_probe_uses_auth_and_page_size_one(monkeypatch):
    from framework.config import parse_source

    monkeypatch.setenv("PROBE_TOKEN", "s3cret-probe-token")
    with FakeApi() as api:
        api.route("/items", Reply(200, {"data": [], "total": 0}))
        api.route("/gone", Reply(404, {"message": "no such thing s3cret-probe-token"}))
        base = {"api_name": "X", "load_start": "2024-01-01T00:00:00Z",
                "auth": {"method": "bearer", "secret": "env:PROBE_TOKEN"},
                "pagination": {"style": "offset", "page_size": 50},
                "target": {"catalog": "c", "schema": "s", "table": "t"}}
        up = probe(parse_source({**base, "config_id": "up", "endpoint": api.url("/items")}), now=T0)
        down = probe(parse_source({**base, "config_id": "down", "endpoint": api.url("/gone")}), now=T0)
        sent = api.requests_to("/items")[0]
    assert up["Ok"] and up["StatusCode"] == 200 and up["CheckKind"] == "probe"
    assert sent.headers["Authorization"] == "Bearer s3cret-probe-token"
    assert sent.query["limit"] == ["1"]
    assert not down["Ok"] and down["StatusCode"] == 404 and down["ErrorKind"] == "http_status"
    assert "s3cret-probe-token" not in str(down) and "404" in down["ErrorMessage"]


def test_probe_follows_the_config_health_block():
    from framework.config import parse_source

    with FakeApi() as api:
        api.route("/empty", Reply(204, b""))
        api.route("/slow", Reply(200, {"data": []}, delay_s=1.0))
        base = {"api_name": "X", "load_start": "2024-01-01T00:00:00Z",
                "limits": {"timeout_s": 30}, "target": {"catalog": "c", "schema": "s", "table": "t"}}
        plain = parse_source({**base, "config_id": "plain", "endpoint": api.url("/empty")})
        expects = parse_source({**base, "config_id": "expects", "endpoint": api.url("/empty"),
                                "health": {"expected_status": [200, 204]}})
        strict = parse_source({**base, "config_id": "strict", "endpoint": api.url("/slow"),
                               "health": {"timeout_s": 0.2}})
        # 204 is a 2xx: up by default; and up when listed
        assert probe(plain, now=T0)["Ok"] and probe(expects, now=T0)["Ok"]
        only_200 = probe(expects, now=T0, expected=[200])  # an explicit expectation wins
        assert not only_200["Ok"] and only_200["ErrorMessage"] == "status 204, expected 200"
        timed_out = probe(strict, now=T0)  # health.timeout_s, not limits.timeout_s
        assert not timed_out["Ok"] and timed_out["ErrorKind"] == "timeout"
        assert probe(strict, now=T0, timeout_s=5)["Ok"]


def test_probe_many_runs_probes_at_once_bounded_by_workers():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from framework.config import parse_source
    from framework.ops.health import probe_many

    workers, sources = 4, 8
    barrier = threading.Barrier(workers, timeout=20)  # passes only when `workers` wait together
    lock, inflight, peak = threading.Lock(), [0], [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            with lock:
                inflight[0] += 1
                peak[0] = max(peak[0], inflight[0])
            try:
                barrier.wait()
                status = 200
            except threading.BrokenBarrierError:
                status = 500
            with lock:
                inflight[0] -= 1
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/p"
        configs = [parse_source({"config_id": f"s{i}", "api_name": "X", "endpoint": url,
                                 "load_start": "2024-01-01T00:00:00Z",
                                 "target": {"catalog": "c", "schema": "s", "table": "t"}})
                   for i in range(sources)]
        rows = probe_many(configs, now=T0, run_id="r1", workers=workers)
    finally:
        server.shutdown()
        server.server_close()
    assert [r["ConfigId"] for r in rows] == [f"s{i}" for i in range(sources)]
    assert all(r["Ok"] for r in rows), [r["ErrorMessage"] for r in rows]
    assert peak[0] == workers
    assert probe_many([], now=T0) == []
