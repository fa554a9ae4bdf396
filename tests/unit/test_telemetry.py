"""Tests of framework.http.telemetry."""

import json
import threading

from framework.http.telemetry import Telemetry


def test_counts_requests_by_status_and_bytes():
    t = Telemetry()
    t.count_request(200, 100)
    t.count_request(200, 50)
    t.count_request(503)
    t.count_request("timeout")
    t.count_request(None)
    t.count_retry()
    t.count_page()
    d = t.as_dict()
    assert d["requests"] == 5
    assert d["bytes_received"] == 150
    assert d["status_counts"] == {"200": 2, "503": 1, "connection_error": 1, "timeout": 1}
    assert d["retries"] == 1 and d["pages"] == 1
    json.dumps(d)  # ready for an audit row


def test_merge_adds_every_counter():
    a, b = Telemetry(), Telemetry()
    a.count_request(200, 10)
    b.count_request(200, 5)
    b.count_request(429)
    b.count_rate_limit_wait()
    b.count_token_refresh()
    assert a.merge(b) is a
    d = a.as_dict()
    assert d["requests"] == 3 and d["bytes_received"] == 15
    assert d["status_counts"] == {"200": 2, "429": 1}
    assert d["rate_limit_waits"] == 1 and d["token_refreshes"] == 1
    assert b.as_dict()["requests"] == 2  # the source is untouched


def test_thread_safe_counting():
    t = Telemetry()

    def work():
        for _ in range(2000):
            t.count_request(200, 1)
            t.count_retry()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.requests == 16000 and t.retries == 16000
    assert t.status_counts["200"] == 16000


def test_repr_is_a_useful_log_line():
    t = Telemetry()
    t.count_request(200, 7)
    text = repr(t)
    assert "requests=1" in text and "200: 1" in text and "bytes=7" in text
