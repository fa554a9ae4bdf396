"""Tests of framework.http.ratelimit, on a fake clock (no sleeping)."""

import threading

import pytest

from framework.http.ratelimit import KeyRing, RateLimiter, host_key, limiter_for, reset_limiters


class FakeClock:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def _limiter(rps, burst=1):
    clock = FakeClock()
    return RateLimiter(rps, burst, clock=clock, sleep=clock.sleep), clock


def _grants(limiter, clock, n):
    times = []
    for _ in range(n):
        limiter.acquire()
        times.append(clock())
    return times


@pytest.mark.parametrize("rps, burst", [(10, 1), (5, 3), (0.5, 2), (100, 10)])
def test_acquires_never_exceed_the_budget(rps, burst):
    limiter, clock = _limiter(rps, burst)
    times = _grants(limiter, clock, 60)
    # In any interval [t_i, t_j], at most burst + rate * (t_j - t_i) grants fit.
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + rps * (times[j] - times[i]) + 1e-6
    # ...and the limiter does not wait more than it must.
    assert times[-1] - times[0] == pytest.approx((60 - burst) / rps)


def test_burst_is_free_then_paced():
    limiter, clock = _limiter(2, burst=3)
    times = _grants(limiter, clock, 5)
    assert times == pytest.approx([1000, 1000, 1000, 1000.5, 1001.0])


def test_unlimited_never_waits():
    for rps in (None, 0):
        limiter, clock = _limiter(rps)
        _grants(limiter, clock, 1000)
        assert clock.sleeps == []
        assert "unlimited" in repr(limiter)


def test_pause_holds_back_even_an_unlimited_limiter():
    limiter, clock = _limiter(None)
    limiter.pause_until(clock() + 30)
    assert limiter.acquire() == pytest.approx(30)
    assert clock() == pytest.approx(1030)


def test_a_cancelled_acquire_stops_waiting_and_takes_no_token():
    cancel = threading.Event()
    clock = FakeClock()
    limiter = RateLimiter(1, 1, clock=clock, sleep=lambda s: (clock.sleep(s), cancel.set()))
    limiter.acquire()  # the burst's token
    limiter.acquire(cancel)  # waits one interval, is cancelled meanwhile: no token taken
    assert cancel.is_set() and clock.sleeps == [1.0]
    limiter.acquire()  # the token that accrued meanwhile is still there
    assert clock.sleeps == [1.0]


def test_pause_only_extends():
    limiter, clock = _limiter(10)
    limiter.pause_for(20)
    limiter.pause_for(5)
    assert "paused 20.0s" in repr(limiter) and limiter.pauses == 1  # the shorter one changed nothing
    limiter.acquire()
    assert clock() == pytest.approx(1020)


def test_pause_drops_saved_up_burst():
    limiter, clock = _limiter(1, burst=5)
    limiter.pause_for(10)
    times = _grants(limiter, clock, 3)
    assert times == pytest.approx([1010, 1011, 1012])


def test_tokens_accrue_at_the_rate_while_nobody_waits():
    limiter, clock = _limiter(25)
    limiter.acquire()  # the burst's one token
    clock.now += 0.02  # half a token's worth of time passes doing other work
    assert limiter.acquire() == pytest.approx(0.02)  # only the other half is waited for
    assert clock.sleeps == [pytest.approx(0.02)]


def test_threads_share_the_budget():
    # Eight threads, one bucket, the fake clock: 40 grants need 39 token intervals.
    limiter, clock = _limiter(400)
    stamps: list[float] = []
    lock = threading.Lock()

    def work():
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(clock())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert len(stamps) == 40
    for i in range(len(stamps)):
        for j in range(i, len(stamps)):
            assert j - i + 1 <= 1 + 400 * (stamps[j] - stamps[i]) + 1e-6


@pytest.mark.parametrize("kwargs", [{"requests_per_second": -1}, {"requests_per_second": 1, "burst": 0},
                                    {"requests_per_second": 1, "burst": 1.5}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)


def test_registry_shares_one_limiter_per_host():
    reset_limiters()
    try:
        a = limiter_for("https://API.example.com/v1/items?x=1", 10)
        b = limiter_for("api.example.com", 10)
        c = limiter_for("https://api.example.com:8443/v1", 10)
        assert a is b and a is not c
        limiter_for("https://api.example.com/other", 2)  # stricter budget wins
        assert a.requests_per_second == 2
        limiter_for("api.example.com", 50)
        limiter_for("api.example.com", None)
        assert a.requests_per_second == 2
    finally:
        reset_limiters()


def test_registry_unlimited_host_can_be_tightened():
    reset_limiters()
    try:
        a = limiter_for("h.example", None)
        assert a.requests_per_second is None
        limiter_for("h.example", 3)
        assert a.requests_per_second == 3
    finally:
        reset_limiters()


def test_host_key():
    assert host_key("https://Example.com:443/x") == "example.com:443"
    assert host_key("http://example.com/x") == "example.com"
    with pytest.raises(ValueError):
        limiter_for("", 1)


class TestKeyRing:
    def test_switches_to_an_available_key(self):
        clock = FakeClock()
        ring = KeyRing(["k1", "k2", "k3"], clock)
        assert ring.current == "k1"
        assert ring.block(30) == 0.0
        assert ring.current == "k2"
        assert ring.block(30) == 0.0
        assert ring.current == "k3"

    def test_all_blocked_returns_wait_until_earliest_reset(self):
        clock = FakeClock()
        ring = KeyRing(["k1", "k2"], clock)
        ring.block(30)           # k1 until +30
        clock.sleep(5)
        assert ring.block(60) == pytest.approx(25)   # k2 until +65; k1 resets first
        assert ring.current == "k1"

    def test_prefers_least_recently_blocked(self):
        clock = FakeClock()
        ring = KeyRing(["k1", "k2", "k3"], clock)
        ring.block(1)            # k1 blocked until +1 -> k2
        ring.block(2)            # k2 until +2 -> k3 (never blocked)
        clock.sleep(10)          # all reset
        ring.block(1)            # k3 blocked; k1 was blocked longest ago
        assert ring.current == "k1"

    def test_a_stale_report_does_not_block_the_new_key(self):
        clock = FakeClock()
        ring = KeyRing(["k1", "k2"], clock)
        assert ring.block(30, used="k1") == 0.0
        # A second worker reports the same 429 on k1: k2 stays in use.
        assert ring.block(30, used="k1") == 0.0
        assert ring.current == "k2"

    def test_missing_retry_after_uses_default_block(self):
        clock = FakeClock()
        ring = KeyRing(["k1"], clock, block_s=60)
        assert ring.block(None) == pytest.approx(60)
        assert "1 keys" in repr(ring)
