"""The control-row state machine: pure functions, no Spark.

States per ``LoadType``::

    (new) -> FULL_LOAD PENDING
    PENDING -> RUNNING (claim, with a lease)
    RUNNING -> SUCCESS | FAILED (finish)
    RUNNING -> PENDING, same range and LoadId (release: the runner was asked to stop)
    RUNNING with an expired lease -> claimable again (a crashed runner)
    FAILED -> PENDING, same range and LoadId (retry; generate does it for INCREMENTAL)
    FULL_LOAD SUCCESS -> INCREMENTAL (when DeltaColumn) -> next rolling window
    FULL_LOAD SUCCESS without DeltaColumn -> FULL_LOAD PENDING again on the next refresh
    (push source) -> PUSH SUCCESS, for good: the webhook receiver loads it, never ``run``

Every function takes the current :class:`ControlState` and returns a new one (or
raises :class:`InvalidTransition`); the control store applies it to Delta.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, replace
from typing import Optional, Union

from dateutil.relativedelta import relativedelta

from framework.timeutil import iso, to_utc

Duration = Union[dt.timedelta, relativedelta]


class LoadStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


class LoadType(str, enum.Enum):
    FULL_LOAD = "FULL_LOAD"
    INCREMENTAL = "INCREMENTAL"
    PUSH = "PUSH"  # a webhook source: events are pushed to the receiver, nothing is planned


class RunResult(str, enum.Enum):
    """What an audit row says of a run.

    ``LEASE_LOST``: the runner lost its claim (its lease ran out and another runner took
    the row over) and stopped before its next commit; the row is the new holder's.
    ``INTERRUPTED``: a stop was requested; committed work stays and the row went back to
    PENDING (same range and LoadId) for the next run.
    """

    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    PARTIAL = "PARTIAL"
    FAILED_QUALITY = "FAILED_QUALITY"  # a quality check of severity fail did not pass
    LEASE_LOST = "LEASE_LOST"
    INTERRUPTED = "INTERRUPTED"


class InvalidTransition(ValueError):
    """The requested transition is not allowed from the current state."""


@dataclass(frozen=True)
class ControlState:
    """The state part of one control row."""

    load_type: LoadType = LoadType.FULL_LOAD
    load_status: Optional[LoadStatus] = None
    load_start: Optional[dt.datetime] = None
    load_end: Optional[dt.datetime] = None
    last_load_time: Optional[dt.datetime] = None
    load_id: Optional[str] = None
    attempt: int = 0
    claimed_by: Optional[str] = None
    lease_expires_at: Optional[dt.datetime] = None
    run_id: Optional[str] = None
    error: Optional[str] = None
    generated_at: Optional[dt.datetime] = None

    def __repr__(self) -> str:
        return (f"ControlState({self.load_type.value} {self.load_status.value if self.load_status else 'NEW'} "
                f"{iso(self.load_start)}..{iso(self.load_end)} load={self.load_id} "
                f"attempt={self.attempt} by={self.claimed_by})")


@dataclass(frozen=True)
class LoadPolicy:
    """What the config says about ranges: the history start/end, DeltaColumn, lookback."""

    history_start: dt.datetime
    history_end: Optional[dt.datetime] = None
    delta_column: bool = False
    lookback: Duration = dt.timedelta(0)


def new_load_id(now: dt.datetime) -> str:
    """A sortable, unique id for one generated load (one range)."""
    return f"L{to_utc(now).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def is_claimable(state: ControlState, now: dt.datetime) -> bool:
    """PENDING rows, and RUNNING rows whose lease expired (their runner crashed)."""
    if state.load_status == LoadStatus.PENDING:
        return True
    if state.load_status == LoadStatus.RUNNING:
        return state.lease_expires_at is None or to_utc(state.lease_expires_at) <= to_utc(now)
    return False


def claim_note(state: ControlState, now: dt.datetime) -> Optional[str]:
    """Why a RUNNING row is not claimed now, or whether it is (``status``): a runner that
    was killed leaves its row RUNNING, taken over only once its lease ends."""
    if state.load_status != LoadStatus.RUNNING:
        return None
    if is_claimable(state, now):
        ended = f"ended at {iso(state.lease_expires_at)}" if state.lease_expires_at else "is unset"
        return (f"RUNNING, but the lease of {state.claimed_by or 'its runner'} {ended}: "
                "the next run takes the load over")
    return (f"RUNNING by {state.claimed_by}, lease until {iso(state.lease_expires_at)} (renewed "
            "while its load runs; should that runner be gone, another run takes the load over then)")


def plan_next(state: ControlState, policy: LoadPolicy, now: dt.datetime,
              load_id: Optional[str] = None) -> Optional[ControlState]:
    """Mark the next load PENDING with its range, or return ``None`` when nothing changes.

    * a new row (no status) -> FULL_LOAD PENDING over the history range;
    * PENDING or RUNNING -> unchanged (already queued or being loaded);
    * INCREMENTAL FAILED -> PENDING with the same range and LoadId (automatic retry);
    * FULL_LOAD FAILED -> unchanged: a failed full load is retried with ``retry``;
    * INCREMENTAL SUCCESS -> PENDING ``[LastLoadTime - lookback, now)``;
    * FULL_LOAD SUCCESS (no DeltaColumn) -> FULL_LOAD PENDING over the history range.

    No range ends after ``now``: a history end in the future means "up to now, then
    incrementally on" (a load's end becomes its watermark, and a watermark in the future
    would skip every record changed before it). A watermark already in the future (set by
    a load planned that way) is taken back to when that load was generated.
    """
    now = to_utc(now)
    load_id = load_id or new_load_id(now)
    status = state.load_status
    if status is None:
        end = _history_end(policy, now)
        if end <= to_utc(policy.history_start):
            return None
        return replace(state, load_type=LoadType.FULL_LOAD, load_status=LoadStatus.PENDING,
                       load_start=to_utc(policy.history_start), load_end=end, load_id=load_id,
                       attempt=0, claimed_by=None, lease_expires_at=None, error=None,
                       generated_at=now)
    if status in (LoadStatus.PENDING, LoadStatus.RUNNING):
        return None
    if status == LoadStatus.FAILED:
        if state.load_type == LoadType.INCREMENTAL:
            return retry(state, now)
        return None
    # SUCCESS
    if state.load_type == LoadType.INCREMENTAL:
        watermark = to_utc(state.last_load_time or state.load_end or policy.history_start)
        if watermark > now:
            # what that load read was the source as of its generation, at the latest
            generated = state.generated_at and to_utc(state.generated_at)
            watermark = generated if generated and generated <= now else to_utc(
                state.load_start or policy.history_start)
        start = watermark - policy.lookback
        if now <= watermark:
            return None
        return replace(state, load_status=LoadStatus.PENDING, load_start=start, load_end=now,
                       load_id=load_id, attempt=0, claimed_by=None, lease_expires_at=None,
                       error=None, generated_at=now)
    end = _history_end(policy, now)
    return replace(state, load_type=LoadType.FULL_LOAD, load_status=LoadStatus.PENDING,
                   load_start=to_utc(policy.history_start), load_end=end, load_id=load_id,
                   attempt=0, claimed_by=None, lease_expires_at=None, error=None,
                   generated_at=now)


def plan_full(state: ControlState, policy: LoadPolicy, now: dt.datetime,
              load_id: Optional[str] = None) -> Optional[ControlState]:
    """An INCREMENTAL row whose target holds none of its history (the source was moved to
    a table that does not exist yet) -> FULL_LOAD PENDING over the history range: its next
    increment alone would leave the history behind in the old table.

    Returns ``None`` for a row that is RUNNING (its load finishes first), whose range ends
    before it starts, or that is not INCREMENTAL (its next load is a full one anyway).
    """
    if state.load_type != LoadType.INCREMENTAL or state.load_status == LoadStatus.RUNNING:
        return None
    now = to_utc(now)
    end = _history_end(policy, now)
    if end <= to_utc(policy.history_start):
        return None
    return replace(state, load_type=LoadType.FULL_LOAD, load_status=LoadStatus.PENDING,
                   load_start=to_utc(policy.history_start), load_end=end,
                   load_id=load_id or new_load_id(now), attempt=0, claimed_by=None,
                   lease_expires_at=None, error=None, generated_at=now)


def _history_end(policy: LoadPolicy, now: dt.datetime) -> dt.datetime:
    """The end of a full load's range: the config's ``load_end``, but never after ``now``."""
    return min(to_utc(policy.history_end), now) if policy.history_end else now


def register_push(state: ControlState, now: dt.datetime) -> Optional[ControlState]:
    """The state of a push source's row: ``PUSH SUCCESS`` (never PENDING, so never claimed).

    Returns ``None`` when the row already is, or while a pull load holds it (``RUNNING``:
    it finishes first; the next ``generate`` turns it into a push row).
    """
    if state.load_type == LoadType.PUSH and state.load_status == LoadStatus.SUCCESS:
        return None
    if state.load_status == LoadStatus.RUNNING:
        return None
    return replace(state, load_type=LoadType.PUSH, load_status=LoadStatus.SUCCESS,
                   load_start=None, load_end=None, load_id=None, attempt=0, claimed_by=None,
                   lease_expires_at=None, error=None, generated_at=to_utc(now))


def claim(state: ControlState, runner: str, run_id: str, now: dt.datetime,
          lease: dt.timedelta) -> ControlState:
    """PENDING (or RUNNING with an expired lease) -> RUNNING held by ``runner`` until the lease ends."""
    if not is_claimable(state, now):
        held = f" by {state.claimed_by} until {iso(state.lease_expires_at)}" if (
            state.load_status == LoadStatus.RUNNING) else ""
        raise InvalidTransition(f"cannot claim a {state.load_status.value if state.load_status else 'new'}"
                                f" row{held}")
    return replace(state, load_status=LoadStatus.RUNNING, claimed_by=runner, run_id=run_id,
                   lease_expires_at=to_utc(now) + lease, attempt=state.attempt + 1, error=None)


def renew_lease(state: ControlState, runner: str, now: dt.datetime, lease: dt.timedelta) -> ControlState:
    """Extend the lease of a row this runner holds."""
    _check_holder(state, runner)
    return replace(state, lease_expires_at=to_utc(now) + lease)


def succeed(state: ControlState, runner: str, policy: LoadPolicy) -> ControlState:
    """RUNNING -> SUCCESS: the watermark advances to the range end; FULL -> INCREMENTAL with DeltaColumn."""
    _check_holder(state, runner)
    load_type = state.load_type
    if load_type == LoadType.FULL_LOAD and policy.delta_column:
        load_type = LoadType.INCREMENTAL
    return replace(state, load_type=load_type, load_status=LoadStatus.SUCCESS,
                   last_load_time=state.load_end, claimed_by=None, lease_expires_at=None,
                   error=None)


def fail(state: ControlState, runner: str, error: str) -> ControlState:
    """RUNNING -> FAILED with the (already sanitized) error; the range is kept for the retry."""
    _check_holder(state, runner)
    return replace(state, load_status=LoadStatus.FAILED, claimed_by=None, lease_expires_at=None,
                   error=error)


def release(state: ControlState, runner: str) -> ControlState:
    """RUNNING -> PENDING with the same range, LoadId and attempt count (a stopped load).

    The next claim resumes it: committed windows are skipped, as on a retry.
    """
    _check_holder(state, runner)
    return replace(state, load_status=LoadStatus.PENDING, claimed_by=None, lease_expires_at=None,
                   error=None)


def retry(state: ControlState, now: dt.datetime) -> ControlState:
    """FAILED -> PENDING with the same range and LoadId (completed windows are skipped)."""
    if state.load_status != LoadStatus.FAILED:
        raise InvalidTransition(f"only FAILED rows can be retried; this row is "
                                f"{state.load_status.value if state.load_status else 'new'}")
    return replace(state, load_status=LoadStatus.PENDING, claimed_by=None, lease_expires_at=None,
                   generated_at=to_utc(now))


def _check_holder(state: ControlState, runner: str) -> None:
    if state.load_status != LoadStatus.RUNNING:
        raise InvalidTransition(f"row is {state.load_status.value if state.load_status else 'new'}, "
                                "not RUNNING")
    if state.claimed_by != runner:
        raise InvalidTransition(f"row is held by {state.claimed_by}, not {runner} "
                                "(its lease expired and another runner claimed it)")


# ------------------------------------------------------------------ schedules
def last_scheduled_instant(time_hhmm: str, frequency: str, now: dt.datetime) -> Optional[dt.datetime]:
    """The most recent scheduled instant at or before ``now`` (``None`` for ``once``).

    ``daily`` at 02:00 -> today 02:00 (or yesterday's when it is earlier than 02:00);
    ``hourly`` uses the minutes of ``time``; ``weekly`` fires on Mondays; ``monthly`` on
    the 1st; an ISO-8601 duration (``PT15M``) fires every that long from midnight UTC, and a
    calendar one (``P3M``) every that many months from January 1st.
    """
    from framework.windows import parse_window

    now = to_utc(now)
    hh, mm = (int(x) for x in time_hhmm.split(":"))
    freq = frequency.lower()
    if freq == "once":
        return None
    if freq == "hourly":
        at = now.replace(minute=mm, second=0, microsecond=0)
        return at if at <= now else at - dt.timedelta(hours=1)
    at = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if freq == "daily":
        return at if at <= now else at - dt.timedelta(days=1)
    if freq == "weekly":
        at -= dt.timedelta(days=at.weekday())
        return at if at <= now else at - dt.timedelta(weeks=1)
    if freq == "monthly":
        at = at.replace(day=1)
        return at if at <= now else at - relativedelta(months=1)
    step = parse_window(frequency.upper())
    if step is None:
        return None
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if isinstance(step, relativedelta):
        # Calendar steps (P1M, P3M, P1Y) count whole months from January 1st.
        months = step.years * 12 + step.months
        if months <= 0:
            return midnight
        elapsed = now.month - 1
        return midnight.replace(month=1, day=1) + relativedelta(months=elapsed // months * months)
    seconds = step.total_seconds()
    elapsed = (now - midnight).total_seconds()
    return midnight + dt.timedelta(seconds=(elapsed // seconds) * seconds)


def next_scheduled_instant(time_hhmm: str, frequency: str, now: dt.datetime) -> Optional[dt.datetime]:
    """The first scheduled instant strictly after ``now`` (``None`` for ``once``).

    The same rule as :func:`last_scheduled_instant`: the step after the latest instant,
    except that a duration's count restarts at midnight UTC (``PT7M`` fires at 23:55 and
    then at 00:00) and a calendar one's on January 1st.
    """
    from framework.windows import parse_window

    last = last_scheduled_instant(time_hhmm, frequency, now)
    if last is None:
        return None
    freq = frequency.lower()
    fixed = {"hourly": dt.timedelta(hours=1), "daily": dt.timedelta(days=1),
             "weekly": dt.timedelta(weeks=1)}
    if freq in fixed:
        return last + fixed[freq]
    if freq == "monthly":
        return last + relativedelta(months=1)
    step = parse_window(frequency.upper())
    if isinstance(step, relativedelta):
        months = step.years * 12 + step.months
        year_start = last.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        next_year = year_start + relativedelta(years=1)
        if months <= 0:
            return last.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
        return min(last + relativedelta(months=months), next_year)
    midnight = last.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    return min(last + step, midnight)


def is_due(state: ControlState, time_hhmm: str, frequency: str, now: dt.datetime) -> bool:
    """True when the schedule has fired since the row's last load was generated."""
    if state.load_status is None:
        return True
    instant = last_scheduled_instant(time_hhmm, frequency, now)
    if instant is None:
        return False
    if state.generated_at is None:
        return True
    return to_utc(state.generated_at) < instant
