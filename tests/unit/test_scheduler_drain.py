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


class OneRow(NoRows):
    """A store with one claimable row, once."""

    def __init__(self) -> None:
        self.handed = False

    def claimable_ids(self, now=None):
        if self.handed:
            return []
        self.handed = True
        return ["slow"]


def test_stop_drains_the_load_in_flight_through_its_run_context(monkeypatch, tmp_path):
    import control.generate
    from framework.load import runtime

    monkeypatch.setattr(control.generate, "generate", lambda store, **kw: [])
    monkeypatch.setattr(runtime, "staging_root", lambda warehouse: tmp_path)
    started = threading.Event()
    seen = {}

    def run(ctx, ids):  # a load that stops only when its context is asked to
        seen["ctx"] = ctx
        started.set()
        stopped = ctx.stop.wait(30)
        return [SimpleNamespace(config_id=ids[0], status="INTERRUPTED" if stopped else "SUCCESS",
                                failed=False, interrupted=stopped, audit={})]

    monkeypatch.setattr(runtime, "run", run)
    sched = Scheduler(None, OneRow(), SchedulerSettings(poll=dt.timedelta(minutes=1), parallel=1),
                      clock=Clock(T0))
    rounds = []
    worker = threading.Thread(target=lambda: rounds.append(sched.load_round()))
    worker.start()
    assert started.wait(10)
    assert sched.stop(grace_s=30) is True
    worker.join(10)
    assert seen["ctx"].stopping and seen["ctx"].stop_reason == "the scheduler is stopping"
    assert rounds[0]["interrupted"] == ["slow"] and rounds[0]["loaded"] == 0
