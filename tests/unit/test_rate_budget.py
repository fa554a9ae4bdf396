"""The shared rate budget, through the load's fetch stack, against a real local HTTP server.

Windows are fetched the way the runtime fetches them (threads over one
:class:`~framework.load.fetch.WindowFetcher`, one limiter per host); no Spark. The
limiter runs on a virtual clock (a tick per reading, and the waits workers sleep), so
what is asserted is counted, not timed: which request got a token at which instant of
the budget's own time, and how many requests the server saw.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from framework.config import parse_source
from framework.demoapi import DemoApi
from framework.http.ratelimit import RateLimiter, reset_limiters
from framework.load.fetch import WindowFetcher, load_limiter
from framework.load.staging import RunStaging
from framework.windows import split

UTC = dt.timezone.utc
START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 9, tzinfo=UTC)


class VirtualClock:
    """Seconds that pass by a tick at each reading (work takes time) and when threads sleep.

    A sleeper wakes at its own last reading plus the sleep, so threads that start waiting
    at the same instant wake at the same instant, as they would on a real clock.
    """

    def __init__(self, tick: float = 0.001) -> None:
        self._now = 0.0
        self._tick = tick
        self._lock = threading.Lock()
        self._local = threading.local()

    def __call__(self) -> float:
        with self._lock:
            self._now += self._tick
            self._local.read = self._now
            return self._now

    @property
    def last_read(self) -> float:
        """What this thread last read."""
        return self._local.read

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now = max(self._now, getattr(self._local, "read", self._now) + seconds)


class RecordingLimiter(RateLimiter):
    """A limiter that records the virtual instant of every grant and every pause."""

    def __init__(self, requests_per_second: float | None, clock: VirtualClock) -> None:
        super().__init__(requests_per_second, clock=clock, sleep=clock.sleep)
        self.virtual = clock
        self.grants: list[float] = []
        self.pause_log: list[tuple[float, float]] = []  # (the instant it was set, until when)
        self._record = threading.Lock()

    def acquire(self, cancel=None) -> float:
        waited = super().acquire(cancel)
        with self._record:  # the last reading of this thread is the one that got the token
            self.grants.append(self.virtual.last_read)
        return waited

    def pause_until(self, deadline: float) -> None:
        with self._record:
            self.pause_log.append((self.virtual.last_read, deadline))
        super().pause_until(deadline)


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


def _load(cfg, limiter, tmp_path) -> int:
    """Fetch every window of ``cfg`` with ``limits.concurrency`` threads, as the runtime does."""
    staging = RunStaging(tmp_path, cfg.config_id, "run-1")
    windows = split(START, END, cfg.window)
    with WindowFetcher(cfg, "run-1", staging, None, limiter) as fetch, \
            ThreadPoolExecutor(cfg.limits.concurrency) as pool:
        results = list(pool.map(lambda iw: fetch(*iw), enumerate(windows)))
    return sum(r.records for r in results)


def _most_in_any(times: list[float], span: float) -> int:
    """The largest number of grants within any ``span`` of virtual seconds."""
    times = sorted(times)
    return max(bisect.bisect_right(times, t + span) - i for i, t in enumerate(times))


def _data_requests(api: DemoApi) -> list[dict]:
    return [e for e in api.request_log if e["path"].startswith("/api/")]


def test_budget_holds_across_windows_and_across_two_loads_on_one_host(api, tmp_path):
    rps = 25.0
    one = _config(api, "load_a", "cursor", concurrency=6, requests_per_second=rps)
    two = _config(api, "load_b", "has_more", concurrency=6, requests_per_second=rps)
    # the runtime gives both loads the one limiter of their host
    assert load_limiter(one) is load_limiter(two)
    limiter = RecordingLimiter(rps, VirtualClock())
    api.clear_log()
    with ThreadPoolExecutor(2) as loads:
        counts = list(loads.map(lambda c: _load(c, limiter, tmp_path), [one, two]))
    assert counts == [400, 400]

    # every request the server saw drew a token from the one budget
    assert len(_data_requests(api)) == len(limiter.grants) >= 80  # 2 loads x 8 windows x 5+ pages
    # A token bucket with burst 1 grants at most 1 + rps * T tokens in any T seconds...
    for span in (0.04, 0.2, 0.5, 1.0, 2.0):
        assert _most_in_any(limiter.grants, span) <= 1 + rps * span + 1e-9, span
    # ...and the budget is used, not just respected (12 workers want far more).
    first, last = min(limiter.grants), max(limiter.grants)
    assert (len(limiter.grants) - 1) / (last - first) >= 0.9 * rps


def test_429_retry_after_pauses_every_worker_of_the_host(api, tmp_path):
    cfg = _config(api, "paused", "cursor", concurrency=6)
    limiter = RecordingLimiter(None, VirtualClock())  # unlimited: only the 429 holds workers back
    api.clear_log()
    api.faults.add("429", times=1, path="/api/cursor/issues", after=15, retry_after=1)
    try:
        assert _load(cfg, limiter, tmp_path) == 400
    finally:
        api.faults.clear()

    served = _data_requests(api)
    [hit] = [i for i, e in enumerate(served) if e["status"] == 429]
    # one pause, as long as Retry-After
    [(paused_at, until)] = limiter.pause_log
    assert until - paused_at == pytest.approx(1.0)
    before = [t for t in limiter.grants if t <= paused_at]
    after = [t for t in limiter.grants if t > paused_at]
    # nothing, from any worker, while the host is paused...
    assert min(after) >= until
    # ...except what was already under way when the 429 arrived: each other worker may have
    # had one request on the wire and sent at most one more before the pause was set.
    assert len(before) - (hit + 1) <= 2 * (cfg.limits.concurrency - 1)
    # every worker resumed after the pause and the load completed
    assert len(after) == len(served) - len(before) > cfg.limits.concurrency
