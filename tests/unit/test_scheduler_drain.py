"""framework.service.scheduler without Spark: the drain, request_run, state (jobs stubbed)."""

from __future__ import annotations

import datetime as dt
import threading
from types import SimpleNamespace

from framework.service.scheduler import Scheduler, SchedulerSettings

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 5, 0, 5, tzinfo=UTC)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class NoRows:
    warehouse = SimpleNamespace(root=None)
    control_ref = SimpleNamespace(catalog="main")

    def rows(self):
        return []


def scheduler(clock: Clock) -> tuple[Scheduler, list[str]]:
    sched = Scheduler(None, NoRows(), SchedulerSettings(poll=dt.timedelta(minutes=1)), clock=clock)
    calls: list[str] = []
    sched._funcs = {name: (lambda name=name: calls.append(name) or {}) for name in sched._funcs}
    return sched, calls


def test_stop_waits_for_the_job_in_flight_and_says_when_the_grace_ran_out():
    sched, _ = scheduler(Clock(T0))
    entered, release = threading.Event(), threading.Event()

    def slow_round():
        entered.set()
        release.wait(30)
        return {"loaded": 1}

    sched._funcs["loads"] = slow_round
    worker = threading.Thread(target=sched._run_job, args=("loads",))
    worker.start()
    assert entered.wait(10)
    assert sched.stop(grace_s=0.05) is False          # still loading: the grace ran out
    assert sched.state()["state"] == "stopped (grace exceeded)"
    assert sched.state()["jobs"]["loads"]["running"] is True
    release.set()
    assert sched.stop(grace_s=30) is True             # the load reached its end: drained
    worker.join(10)
    assert sched.state()["state"] == "stopped"
    assert sched.state()["jobs"]["loads"]["last_result"] == {"loaded": 1}


def test_no_job_starts_once_a_stop_was_asked():
    clock = Clock(T0)
    sched, calls = scheduler(clock)
    sched.prepare()
    assert sched.run_pending() == ["loads"] and calls == ["loads"]
    sched.request_stop()
    clock.now = T0 + dt.timedelta(hours=1)
    assert sched.run_pending() == [] and calls == ["loads"]


def test_request_run_brings_the_loads_job_forward():
    clock = Clock(T0)
    sched, calls = scheduler(clock)
    sched.prepare()
    sched.run_pending()
    assert sched.next_wakeup() == T0 + dt.timedelta(minutes=1)   # the next poll
    clock.now = T0 + dt.timedelta(seconds=20)
    sched.request_run("gh_issues")
    assert sched.next_wakeup() == clock.now
    assert sched.run_pending() == ["loads"] and calls == ["loads", "loads"]


def test_a_failing_round_is_recorded_and_the_next_one_runs():
    clock = Clock(T0)
    sched, calls = scheduler(clock)

    def broken():
        raise RuntimeError("Delta said no")

    sched._funcs["loads"] = broken
    sched.prepare()
    sched.run_pending()
    state = sched.state()
    assert state["jobs"]["loads"]["last_error"] == "RuntimeError: Delta said no"
    assert state["jobs"]["loads"]["runs"] == 1 and not state["jobs"]["loads"]["running"]
    assert state["attached"] and state["state"] == "running" and state["sources"] == 0


class Rows(NoRows):
    """A store whose rows are claimable until a load claims them."""

    def __init__(self, *ids: str) -> None:
        self.pending = list(ids)

    def claimable_ids(self, now=None):
        return list(self.pending)


class Loads:
    """``runtime.run`` of rows that load until the test lets each one end (or, when they
    heed it, their run context is asked to stop); records what ran at once."""

    def __init__(self, store: Rows, block: bool = True) -> None:
        self.store, self.block = store, block
        self.heed_stop = True
        self.lock = threading.Lock()
        self.started: dict[str, threading.Event] = {}
        self.release: dict[str, threading.Event] = {}
        self.running: set[str] = set()
        self.most = 0
        self.ctx = {}

    def __call__(self, ctx, ids):
        [cid] = ids
        with self.lock:
            self.store.pending.remove(cid)  # the claim
            self.running.add(cid)
            self.most = max(self.most, len(self.running))
            self.ctx[cid] = ctx
            release = self.release.setdefault(cid, threading.Event())
            self.started.setdefault(cid, threading.Event()).set()
        while self.block and not release.wait(0.01):
            if self.heed_stop and ctx.stop.is_set():
                break
        stopped = ctx.stop.is_set()
        with self.lock:
            self.running.discard(cid)
        return [SimpleNamespace(config_id=cid, status="INTERRUPTED" if stopped else "SUCCESS",
                                failed=False, interrupted=stopped, audit={})]

    def wait_started(self, cid: str) -> bool:
        with self.lock:
            event = self.started.setdefault(cid, threading.Event())
        return event.wait(10)

    def end(self, cid: str) -> None:
        with self.lock:
            self.release.setdefault(cid, threading.Event()).set()


def loading(monkeypatch, tmp_path, store: Rows, parallel: int, block: bool = True):
    import control.generate
    from framework.load import runtime

    monkeypatch.setattr(control.generate, "generate", lambda store, **kw: [])
    monkeypatch.setattr(runtime, "staging_root", lambda warehouse: tmp_path)
    loads = Loads(store, block)
    monkeypatch.setattr(runtime, "run", loads)
    clock = Clock(T0)
    sched = Scheduler(None, store, SchedulerSettings(poll=dt.timedelta(minutes=1),
                                                     parallel=parallel), clock=clock)
    return sched, loads, clock


def wait_until(condition) -> None:
    for _ in range(1000):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("condition never held")


def test_the_loads_job_starts_rows_on_the_free_slots_only_and_returns_while_they_load(
        monkeypatch, tmp_path):
    store = Rows("a", "b", "c")
    sched, loads, _ = loading(monkeypatch, tmp_path, store, parallel=2)
    first = sched.start_loads()                     # returns while a and b load
    assert first["started"] == ["a", "b"] and first["waiting"] == 1
    assert loads.wait_started("a") and loads.wait_started("b")
    store.pending.append("d")                       # planned meanwhile (POST /run)
    busy = sched.start_loads()                      # the next poll: no slot is free
    assert busy["started"] == [] and busy["running"] == ["a", "b"] and busy["waiting"] == 2
    loads.end("b")                                  # b's slot is free: the next look takes c
    wait_until(lambda: sched.state()["loads"]["finished"] == {"SUCCESS": 1})
    assert sched._wanted.is_set()                   # the job runs again at once
    again = sched.start_loads()
    assert again["started"] == ["c"] and again["running"] == ["a", "c"]
    assert again["waiting"] == 1
    assert loads.wait_started("c")
    for cid in ("a", "c"):
        loads.end(cid)
    wait_until(lambda: not sched.state()["loads"]["running"])
    assert sched.start_loads()["started"] == ["d"]
    loads.end("d")
    wait_until(lambda: sched.state()["loads"]["finished"] == {"SUCCESS": 4})
    assert loads.most == 2                          # never more loads at once than parallel
    state = sched.state()["loads"]
    assert state["parallel"] == 2 and state["running"] == [] and state["waiting"] == 0
    assert state["last_finished"]["config_id"] == "d" and state["last_error"] is None


def test_run_pending_returns_once_every_row_it_found_is_loaded(monkeypatch, tmp_path):
    store = Rows("a", "b", "c")
    sched, loads, _ = loading(monkeypatch, tmp_path, store, parallel=1, block=False)
    sched.prepare()
    assert sched.run_pending() == ["loads"]
    assert store.pending == [] and loads.most == 1
    state = sched.state()
    assert state["loads"]["finished"] == {"SUCCESS": 3} and state["loads"]["running"] == []


def test_stop_drains_the_load_in_flight_through_its_run_context(monkeypatch, tmp_path):
    store = Rows("slow", "next")
    sched, loads, _ = loading(monkeypatch, tmp_path, store, parallel=1)
    assert sched.start_loads()["started"] == ["slow"]
    assert loads.wait_started("slow")
    assert sched.stop(grace_s=30) is True           # returns once the load stopped
    ctx = loads.ctx["slow"]
    assert ctx.stopping and ctx.stop_reason == "the scheduler is stopping"
    state = sched.state()
    assert state["loads"]["finished"] == {"INTERRUPTED": 1} and state["loads"]["running"] == []
    assert store.pending == ["next"]                # no new claim once the stop was asked
    assert sched.start_loads()["started"] == []


def test_stop_says_when_the_grace_ran_out_with_a_load_in_flight(monkeypatch, tmp_path):
    store = Rows("stuck")
    sched, loads, _ = loading(monkeypatch, tmp_path, store, parallel=1)
    loads.heed_stop = False                         # it reaches no stop point in time
    sched.start_loads()
    assert loads.wait_started("stuck")
    assert sched.stop(grace_s=0.05) is False
    assert sched.state()["state"] == "stopped (grace exceeded)"
    assert [r["config_id"] for r in sched.state()["loads"]["running"]] == ["stuck"]
    loads.end("stuck")
    assert sched.stop(grace_s=30) is True

