"""The shared rate budget, measured where it matters: on the demo server's request log.

Windows are fetched the way the runtime fetches them (threads per load, one limiter
per host from ``limiter_for``), against a real local HTTP server; no Spark.
"""

from __future__ import annotations

import bisect
import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from framework.config import parse_source
from framework.demoapi import DemoApi
from framework.load.fetch import WindowFetcher
from framework.http.ratelimit import limiter_for, reset_limiters
from framework.load.staging import RunStaging
from framework.windows import split

UTC = dt.timezone.utc
START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 9, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_limiters():
    reset_limiters()
    yield
    reset_limiters()


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=11, records_per_resource=400, end=END, max_page_size=10) as server:
        yield server


def _config(api: DemoApi, config_id: str, style: str, **limits) -> object:
    return parse_source({
        "config_id": config_id, "api_name": "Demo", "endpoint": f"{api.base_url}/api/{style}/issues",
        "params": {"since": "{window_start}", "until": "{window_end}", "limit": 10},
        "pagination": {"style": style}, "data_path": "data", "primary_key": ["id"],
        "load_start": START.isoformat(), "load_end": END.isoformat(), "window": "daily",
        "target": {"catalog": "raw", "schema": "tests", "table": config_id},
        "limits": {"timeout_s": 5, "max_retries": 3, "backoff_base_s": 0.01,
                   "backoff_max_s": 0.05, **limits},
    })


def _load(cfg, tmp_path) -> int:
    """Fetch every window of ``cfg`` with ``limits.concurrency`` threads, as the runtime does."""
    limiter = limiter_for(cfg.endpoint, cfg.limits.requests_per_second)
    staging = RunStaging(tmp_path, cfg.config_id, "run-1")
    windows = split(START, END, cfg.window)
    with WindowFetcher(cfg, "run-1", staging, None, limiter) as fetch, \
            ThreadPoolExecutor(cfg.limits.concurrency) as pool:
        results = list(pool.map(lambda iw: fetch(*iw), enumerate(windows)))
    return sum(r.records for r in results)


def _most_in_any(times: list[float], span: float) -> int:
    """The largest number of requests that started within any ``span`` seconds."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + span) - i for i, t in enumerate(times))


def _data_times(api: DemoApi) -> list[float]:
    return [e["t"] for e in api.request_log if e["path"].startswith("/api/")]


def test_budget_holds_across_windows_and_across_two_loads_on_one_host(api, tmp_path):
    rps = 25.0
    one = _config(api, "load_a", "cursor", concurrency=6, requests_per_second=rps)
    two = _config(api, "load_b", "has_more", concurrency=6, requests_per_second=rps)
    api.clear_log()
    with ThreadPoolExecutor(2) as loads:
        counts = list(loads.map(lambda c: _load(c, tmp_path), [one, two]))
    assert counts == [400, 400]

    times = _data_times(api)
    assert len(times) >= 80  # 2 loads x 8 windows x 5+ pages
    # A token bucket with burst 1 allows at most 1 + rps * T requests in any T seconds;
    # one request of slack covers the jitter between the client's send and the log stamp.
    for span in (0.2, 0.5, 1.0, 2.0):
        assert _most_in_any(times, span) <= 1 + rps * span + 1, span
    # ...and the budget is used, not just respected (12 workers want far more).
    rate = (len(times) - 1) / (max(times) - min(times))
    assert rate > 0.8 * rps


def test_429_retry_after_pauses_every_worker_of_the_host(api, tmp_path):
    cfg = _config(api, "paused", "cursor", concurrency=6)
    api.clear_log()
    api.faults.add("429", times=1, path="/api/cursor/issues", after=15, retry_after=1)
    try:
        assert _load(cfg, tmp_path) == 400
    finally:
        api.faults.clear()

    log = sorted((e for e in api.request_log if e["path"].startswith("/api/")),
                 key=lambda e: e["t"])
    [hit] = [e for e in log if e["status"] == 429]
    after = [e["t"] - hit["t"] for e in log if e["t"] > hit["t"]]
    # Until the 429 reaches its worker, the other workers may still be sending: each can
    # have one request on the wire and send at most one more before the pause is seen.
    # Then nothing, from any worker, until Retry-After has passed.
    in_flight = [d for d in after if d < 0.05]
    assert len(in_flight) <= 2 * (cfg.limits.concurrency - 1)
    assert not [d for d in after if 0.05 <= d < 0.95]
    assert min(d for d in after if d >= 0.05) >= 0.95
    # Without the pause the six workers keep the server busy: gaps stay small.
    gaps = [b["t"] - a["t"] for a, b in zip(log, log[1:]) if a["t"] > hit["t"] + 1]
    assert max(gaps) < 0.5
