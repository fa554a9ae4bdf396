"""control.states: every transition of the control-row state machine, and schedules."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import pytest

from control.states import (ControlState, InvalidTransition, LoadPolicy, LoadStatus, LoadType, claim,
                            fail, is_claimable, is_due, last_scheduled_instant, new_load_id,
                            next_scheduled_instant, plan_full, plan_next, release, renew_lease,
                            retry, succeed)

UTC = dt.timezone.utc
H = dt.timedelta(hours=1)


def t(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


NOW = t(2024, 5, 10, 12)
HISTORY = LoadPolicy(history_start=t(2024, 1, 1), history_end=t(2024, 3, 1))
DELTA = LoadPolicy(history_start=t(2024, 1, 1), delta_column=True, lookback=dt.timedelta(hours=2))


def state(status: LoadStatus | None, load_type: LoadType = LoadType.FULL_LOAD, **kw: object) -> ControlState:
    base = dict(load_type=load_type, load_status=status, load_start=t(2024, 1, 1),
                load_end=t(2024, 3, 1), load_id="L1", attempt=1)
    base.update(kw)
    return ControlState(**base)  # type: ignore[arg-type]


def running(by: str = "runner-a", lease_until: dt.datetime = NOW + H, **kw: object) -> ControlState:
    return state(LoadStatus.RUNNING, claimed_by=by, lease_expires_at=lease_until, run_id="r1", **kw)


# ------------------------------------------------------------------ plan_next
def test_new_row_becomes_full_load_pending_over_history() -> None:
    out = plan_next(ControlState(), HISTORY, NOW, load_id="L9")

    assert out is not None
    assert (out.load_type, out.load_status) == (LoadType.FULL_LOAD, LoadStatus.PENDING)
    assert (out.load_start, out.load_end) == (t(2024, 1, 1), t(2024, 3, 1))
    assert (out.load_id, out.attempt, out.generated_at) == ("L9", 0, NOW)


def test_new_row_without_history_end_loads_until_now() -> None:
    out = plan_next(ControlState(), DELTA, NOW)
    assert out is not None and out.load_end == NOW
    assert out.load_id and out.load_id.startswith("L20240510T120000-")


def test_new_row_whose_history_starts_in_the_future_waits() -> None:
    assert plan_next(ControlState(), LoadPolicy(history_start=NOW + H), NOW) is None


@pytest.mark.parametrize("status", [LoadStatus.PENDING, LoadStatus.RUNNING])
@pytest.mark.parametrize("load_type", list(LoadType))
def test_pending_and_running_are_left_alone(status: LoadStatus, load_type: LoadType) -> None:
    assert plan_next(state(status, load_type), DELTA, NOW) is None


def test_incremental_failed_is_retried_with_same_range_and_load_id() -> None:
    failed = state(LoadStatus.FAILED, LoadType.INCREMENTAL, load_start=t(2024, 5, 1),
                   load_end=t(2024, 5, 2), error="HTTP 503")

    out = plan_next(failed, DELTA, NOW, load_id="L-new")

    assert out is not None and out.load_status == LoadStatus.PENDING
    assert (out.load_start, out.load_end, out.load_id) == (t(2024, 5, 1), t(2024, 5, 2), "L1")
    assert out.load_type == LoadType.INCREMENTAL and out.generated_at == NOW


def test_full_failed_waits_for_an_explicit_retry() -> None:
    assert plan_next(state(LoadStatus.FAILED), HISTORY, NOW) is None


def test_incremental_success_plans_the_next_range_with_lookback() -> None:
    done = state(LoadStatus.SUCCESS, LoadType.INCREMENTAL, last_load_time=t(2024, 5, 9))

    out = plan_next(done, DELTA, NOW, load_id="L2")

    assert out is not None
    assert (out.load_type, out.load_status) == (LoadType.INCREMENTAL, LoadStatus.PENDING)
    assert (out.load_start, out.load_end) == (t(2024, 5, 8, 22), NOW)
    assert (out.load_id, out.attempt, out.claimed_by) == ("L2", 0, None)


def test_incremental_success_without_last_load_time_starts_at_load_end() -> None:
    done = state(LoadStatus.SUCCESS, LoadType.INCREMENTAL, load_end=t(2024, 5, 1))
    out = plan_next(done, LoadPolicy(history_start=t(2024, 1, 1)), NOW)
    assert out is not None and out.load_start == t(2024, 5, 1)


def test_incremental_success_up_to_now_has_nothing_to_plan() -> None:
    done = state(LoadStatus.SUCCESS, LoadType.INCREMENTAL, last_load_time=NOW)
    assert plan_next(done, DELTA, NOW) is None


def test_full_success_without_delta_column_is_full_again() -> None:
    done = state(LoadStatus.SUCCESS, last_load_time=t(2024, 3, 1), load_id="L1")

    out = plan_next(done, HISTORY, NOW, load_id="L2")

    assert out is not None
    assert (out.load_type, out.load_status) == (LoadType.FULL_LOAD, LoadStatus.PENDING)
    assert (out.load_start, out.load_end, out.load_id) == (t(2024, 1, 1), t(2024, 3, 1), "L2")


def test_a_history_end_in_the_future_plans_up_to_now() -> None:
    future = LoadPolicy(history_start=t(2024, 1, 1), history_end=t(2030, 1, 1), delta_column=True)

    first = plan_next(ControlState(), future, NOW)
    again = plan_next(state(LoadStatus.SUCCESS), replace(future, delta_column=False), NOW)

    assert first is not None and (first.load_start, first.load_end) == (t(2024, 1, 1), NOW)
    assert again is not None and again.load_end == NOW


def test_a_watermark_in_the_future_goes_back_to_when_its_load_was_generated() -> None:
    # a load planned up to 2030 (before ranges stopped at now) left its watermark there
    done = state(LoadStatus.SUCCESS, LoadType.INCREMENTAL, load_end=t(2030, 1, 1),
                 last_load_time=t(2030, 1, 1), generated_at=t(2024, 5, 1))

    out = plan_next(done, DELTA, NOW)
    unknown = plan_next(replace(done, generated_at=None), DELTA, NOW)

    assert out is not None and (out.load_start, out.load_end) == (t(2024, 4, 30, 22), NOW)
    assert unknown is not None and unknown.load_start == t(2023, 12, 31, 22)  # load_start - lookback


# ------------------------------------------------------------------ claim
@pytest.mark.parametrize("status", [LoadStatus.SUCCESS, LoadStatus.FAILED, LoadStatus.PENDING])
def test_an_incremental_row_moved_to_a_new_table_plans_a_full_load(status: LoadStatus) -> None:
    was = state(status, LoadType.INCREMENTAL, load_start=t(2024, 5, 1), load_end=t(2024, 5, 2),
                last_load_time=t(2024, 5, 1))
    full = plan_full(was, HISTORY, NOW, load_id="L2")
    assert full == replace(was, load_type=LoadType.FULL_LOAD, load_status=LoadStatus.PENDING,
                           load_start=t(2024, 1, 1), load_end=t(2024, 3, 1), load_id="L2",
                           attempt=0, generated_at=NOW)


def test_a_moved_row_that_is_running_or_full_is_not_re_planned() -> None:
    assert plan_full(running(load_type=LoadType.INCREMENTAL), HISTORY, NOW) is None
    assert plan_full(state(LoadStatus.SUCCESS), HISTORY, NOW) is None
    future = LoadPolicy(history_start=NOW + H)
    assert plan_full(state(LoadStatus.SUCCESS, LoadType.INCREMENTAL), future, NOW) is None


def test_claim_from_pending() -> None:
    out = claim(state(LoadStatus.PENDING, attempt=0), "runner-a", "run-1", NOW, H)

    assert out.load_status == LoadStatus.RUNNING
    assert (out.claimed_by, out.run_id, out.lease_expires_at, out.attempt) == (
        "runner-a", "run-1", NOW + H, 1)
    assert (out.load_start, out.load_end, out.load_id) == (t(2024, 1, 1), t(2024, 3, 1), "L1")


def test_claim_from_running_with_expired_lease() -> None:
    crashed = running("runner-a", lease_until=NOW - dt.timedelta(seconds=1), attempt=1)

    out = claim(crashed, "runner-b", "run-2", NOW, H)

    assert (out.claimed_by, out.run_id, out.attempt) == ("runner-b", "run-2", 2)
    assert out.lease_expires_at == NOW + H


def test_claim_is_refused_while_the_lease_is_valid() -> None:
    with pytest.raises(InvalidTransition, match="by runner-a until 2024-05-10T13:00:00Z"):
        claim(running("runner-a"), "runner-b", "run-2", NOW, H)


@pytest.mark.parametrize("status", [None, LoadStatus.SUCCESS, LoadStatus.FAILED])
def test_claim_is_refused_from_other_states(status: LoadStatus | None) -> None:
    with pytest.raises(InvalidTransition, match="cannot claim"):
        claim(state(status), "runner-a", "run-1", NOW, H)


def test_is_claimable_at_the_lease_boundary() -> None:
    assert is_claimable(running(lease_until=NOW), NOW)
    assert not is_claimable(running(lease_until=NOW + dt.timedelta(seconds=1)), NOW)
    assert is_claimable(running(lease_until=None), NOW)  # type: ignore[arg-type]


# ------------------------------------------------------------------ finish
def test_succeed_advances_last_load_time_and_switches_to_incremental_with_delta_column() -> None:
    out = succeed(running(), "runner-a", DELTA)

    assert (out.load_type, out.load_status) == (LoadType.INCREMENTAL, LoadStatus.SUCCESS)
    assert out.last_load_time == t(2024, 3, 1)
    assert (out.claimed_by, out.lease_expires_at, out.error) == (None, None, None)


def test_succeed_keeps_full_load_without_delta_column() -> None:
    out = succeed(running(), "runner-a", HISTORY)
    assert (out.load_type, out.load_status) == (LoadType.FULL_LOAD, LoadStatus.SUCCESS)
    assert out.last_load_time == t(2024, 3, 1)


def test_succeed_keeps_incremental() -> None:
    out = succeed(running(load_type=LoadType.INCREMENTAL, load_end=NOW), "runner-a", HISTORY)
    assert out.load_type == LoadType.INCREMENTAL and out.last_load_time == NOW


def test_fail_keeps_the_range_for_the_retry() -> None:
    out = fail(running(last_load_time=t(2023, 12, 1)), "runner-a", "HTTP 500 after 5 retries")

    assert out.load_status == LoadStatus.FAILED and out.error == "HTTP 500 after 5 retries"
    assert (out.load_start, out.load_end, out.load_id) == (t(2024, 1, 1), t(2024, 3, 1), "L1")
    assert out.last_load_time == t(2023, 12, 1)
    assert out.claimed_by is None and out.lease_expires_at is None


def test_retry_from_failed_keeps_range_and_load_id() -> None:
    out = retry(state(LoadStatus.FAILED, error="boom"), NOW)

    assert out.load_status == LoadStatus.PENDING
    assert (out.load_start, out.load_end, out.load_id) == (t(2024, 1, 1), t(2024, 3, 1), "L1")
    assert out.generated_at == NOW and out.claimed_by is None


@pytest.mark.parametrize("status", [None, LoadStatus.PENDING, LoadStatus.RUNNING, LoadStatus.SUCCESS])
def test_retry_only_from_failed(status: LoadStatus | None) -> None:
    with pytest.raises(InvalidTransition, match="only FAILED rows can be retried"):
        retry(state(status), NOW)


@pytest.mark.parametrize("action", [
    lambda s: succeed(s, "runner-b", HISTORY),
    lambda s: fail(s, "runner-b", "x"),
    lambda s: renew_lease(s, "runner-b", NOW, H),
    lambda s: release(s, "runner-b"),
])
def test_only_the_holder_may_finish_or_renew(action) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidTransition, match="held by runner-a, not runner-b"):
        action(running("runner-a"))


@pytest.mark.parametrize("status", [LoadStatus.PENDING, LoadStatus.SUCCESS, LoadStatus.FAILED])
def test_finishing_needs_a_running_row(status: LoadStatus) -> None:
    with pytest.raises(InvalidTransition, match="not RUNNING"):
        succeed(state(status, claimed_by="runner-a"), "runner-a", HISTORY)
    with pytest.raises(InvalidTransition, match="not RUNNING"):
        fail(state(status, claimed_by="runner-a"), "runner-a", "x")


@pytest.mark.parametrize("load_type", list(LoadType))
def test_release_puts_the_row_back_to_pending_with_the_same_range_and_load(load_type: LoadType) -> None:
    held = running("runner-a", load_type=load_type, attempt=3, last_load_time=t(2023, 12, 1))
    out = release(held, "runner-a")
    assert out.load_status == LoadStatus.PENDING and out.load_type == load_type
    assert (out.load_start, out.load_end, out.load_id, out.attempt) == (
        held.load_start, held.load_end, "L1", 3)
    assert out.last_load_time == t(2023, 12, 1)  # the watermark does not move
    assert (out.claimed_by, out.lease_expires_at) == (None, None)
    assert is_claimable(out, NOW)
    # the next claim resumes it: a new attempt of the same load
    again = claim(out, "runner-b", "r2", NOW, H)
    assert (again.load_id, again.attempt, again.claimed_by) == ("L1", 4, "runner-b")


@pytest.mark.parametrize("status", [LoadStatus.PENDING, LoadStatus.SUCCESS, LoadStatus.FAILED])
def test_release_needs_a_running_row(status: LoadStatus) -> None:
    with pytest.raises(InvalidTransition, match="not RUNNING"):
        release(state(status, claimed_by="runner-a"), "runner-a")


def test_renew_lease_extends_it() -> None:
    out = renew_lease(running(), "runner-a", NOW + H, H)
    assert out.lease_expires_at == NOW + 2 * H and out.claimed_by == "runner-a"


def test_full_cycle_with_delta_column() -> None:
    policy = replace(DELTA, history_end=t(2024, 3, 1))
    planned = plan_next(ControlState(), policy, NOW, load_id="L1")
    assert planned is not None
    done = succeed(claim(planned, "a", "r1", NOW, H), "a", policy)
    later = NOW + 24 * H

    nxt = plan_next(done, policy, later, load_id="L2")

    assert nxt is not None
    assert (nxt.load_type, nxt.load_start, nxt.load_end) == (
        LoadType.INCREMENTAL, t(2024, 2, 29, 22), later)


def test_new_load_ids_sort_by_time_and_are_unique() -> None:
    a, b = new_load_id(t(2024, 1, 1)), new_load_id(t(2024, 1, 1))
    assert a != b and re.fullmatch(r"L20240101T000000-[0-9a-f]{8}", a)
    assert new_load_id(t(2024, 1, 2)) > a


def test_repr_is_a_useful_log_line() -> None:
    text = repr(running())
    assert "FULL_LOAD RUNNING 2024-01-01T00:00:00Z..2024-03-01T00:00:00Z" in text
    assert "by=runner-a" in text
    assert "NEW" in repr(ControlState())


# ------------------------------------------------------------------ schedules
@pytest.mark.parametrize("time_hhmm,frequency,now,expected", [
    ("02:00", "daily", t(2024, 5, 10, 3), t(2024, 5, 10, 2)),
    ("02:00", "daily", t(2024, 5, 10, 1, 59), t(2024, 5, 9, 2)),
    ("02:00", "daily", t(2024, 5, 10, 2), t(2024, 5, 10, 2)),
    ("02:00", "daily", t(2024, 1, 1, 0, 30), t(2023, 12, 31, 2)),
    ("00:15", "hourly", t(2024, 5, 10, 10, 20), t(2024, 5, 10, 10, 15)),
    ("00:15", "hourly", t(2024, 5, 10, 10, 10), t(2024, 5, 10, 9, 15)),
    ("02:00", "weekly", t(2024, 5, 8, 10), t(2024, 5, 6, 2)),  # Wednesday -> Monday
    ("02:00", "weekly", t(2024, 5, 6, 1), t(2024, 4, 29, 2)),  # Monday before 02:00
    ("02:00", "monthly", t(2024, 5, 10), t(2024, 5, 1, 2)),
    ("02:00", "monthly", t(2024, 5, 1, 1), t(2024, 4, 1, 2)),
    ("02:00", "monthly", t(2024, 1, 1, 1), t(2023, 12, 1, 2)),
    ("00:00", "PT15M", t(2024, 5, 10, 10, 37, 12), t(2024, 5, 10, 10, 30)),
    ("00:00", "PT15M", t(2024, 5, 10, 10, 45), t(2024, 5, 10, 10, 45)),
    ("00:00", "P3M", t(2024, 5, 10, 8), t(2024, 4, 1)),
    ("00:00", "P1M", t(2024, 5, 10, 8), t(2024, 5, 1)),
])
def test_last_scheduled_instant(time_hhmm: str, frequency: str, now: dt.datetime,
                                expected: dt.datetime) -> None:
    assert last_scheduled_instant(time_hhmm, frequency, now) == expected


def test_once_has_no_instant() -> None:
    assert last_scheduled_instant("02:00", "once", NOW) is None
    assert next_scheduled_instant("02:00", "once", NOW) is None


@pytest.mark.parametrize("time_hhmm,frequency,now,expected", [
    ("02:00", "daily", t(2024, 5, 10, 3), t(2024, 5, 11, 2)),
    ("02:00", "daily", t(2024, 5, 10, 2), t(2024, 5, 11, 2)),   # strictly after
    ("00:15", "hourly", t(2024, 5, 10, 10, 10), t(2024, 5, 10, 10, 15)),
    ("02:00", "weekly", t(2024, 5, 8, 10), t(2024, 5, 13, 2)),
    ("02:00", "monthly", t(2024, 12, 10), t(2025, 1, 1, 2)),
    ("00:00", "PT15M", t(2024, 5, 10, 10, 37, 12), t(2024, 5, 10, 10, 45)),
    ("00:00", "PT7M", t(2024, 5, 10, 23, 54), t(2024, 5, 10, 23, 55)),
    ("00:00", "PT7M", t(2024, 5, 10, 23, 56), t(2024, 5, 11)),      # the count restarts at midnight
    ("00:00", "P5M", t(2024, 11, 2), t(2025, 1, 1)),                # and on January 1st
])
def test_next_scheduled_instant(time_hhmm: str, frequency: str, now: dt.datetime,
                                expected: dt.datetime) -> None:
    assert next_scheduled_instant(time_hhmm, frequency, now) == expected


@pytest.mark.parametrize("time_hhmm,frequency", [
    ("02:00", "daily"), ("00:15", "hourly"), ("02:00", "weekly"), ("02:00", "monthly"),
    ("00:00", "PT15M"), ("00:00", "PT7M"), ("00:00", "PT6H"), ("00:00", "P3M"), ("00:00", "P5M"),
])
def test_next_instant_is_the_first_one_the_last_instant_rule_knows(time_hhmm: str, frequency: str) -> None:
    """Nothing fires between ``now`` and the next instant, and the next one does fire."""
    tick = dt.timedelta(microseconds=1)
    now = t(2023, 12, 20)
    for i in range(400):
        nxt = next_scheduled_instant(time_hhmm, frequency, now)
        assert nxt > now
        assert last_scheduled_instant(time_hhmm, frequency, nxt) == nxt
        assert last_scheduled_instant(time_hhmm, frequency, nxt - tick) == \
            last_scheduled_instant(time_hhmm, frequency, now)
        now = nxt if i % 2 else nxt + dt.timedelta(minutes=3, seconds=7)  # on and between instants


def test_new_row_is_always_due() -> None:
    assert is_due(ControlState(), "02:00", "once", NOW)


def test_once_is_never_due_again() -> None:
    assert not is_due(state(LoadStatus.SUCCESS, generated_at=t(2020, 1, 1)), "02:00", "once", NOW)


@pytest.mark.parametrize("generated_at,due", [
    (t(2024, 5, 10, 1), True),    # before today's 02:00
    (t(2024, 5, 10, 2), False),   # exactly at the instant
    (t(2024, 5, 10, 3), False),   # after it
    (None, True),
])
def test_daily_is_due_once_per_instant(generated_at: dt.datetime | None, due: bool) -> None:
    row = state(LoadStatus.SUCCESS, generated_at=generated_at)
    assert is_due(row, "02:00", "daily", NOW) is due


def test_pt15m_is_due_after_each_quarter() -> None:
    row = state(LoadStatus.SUCCESS, generated_at=t(2024, 5, 10, 11, 50))
    assert not is_due(row, "00:00", "PT15M", t(2024, 5, 10, 11, 59))
    assert is_due(row, "00:00", "PT15M", t(2024, 5, 10, 12, 0))
