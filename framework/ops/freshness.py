"""Freshness: is a target's newest data older than its collection cadence allows?

One rule, shared by ``restlake status --stale``, the daily report and notifications:

    a target is **stale** when ``now - newest collected_at_utc > cadence × tolerance``
    (tolerance 1.5 by default: a run may be up to half a cycle late), or when it holds
    no data at all. ``frequency: once`` sources are never stale.

The cadence is the control row's ``TriggerFrequency`` (``hourly``, ``daily``, ``weekly``,
``monthly`` or an ISO-8601 duration such as ``PT15M``). Pure functions, no Spark.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from framework.timeutil import parse_duration, to_utc

DEFAULT_TOLERANCE = 1.5

_NAMED = {
    "hourly": dt.timedelta(hours=1),
    "daily": dt.timedelta(days=1),
    "weekly": dt.timedelta(weeks=1),
    "monthly": dt.timedelta(days=31),
}


def cadence_of(frequency: Optional[str]) -> Optional[dt.timedelta]:
    """The expected interval between collections, ``None`` for ``once`` (or no schedule).

    Raises:
        ValueError: ``frequency`` is neither a known name nor an ISO-8601 duration.
    """
    if frequency is None or not str(frequency).strip():
        return None
    name = str(frequency).strip().lower()
    if name == "once":
        return None
    if name in _NAMED:
        return _NAMED[name]
    step = parse_duration(name.upper())
    if isinstance(step, dt.timedelta):
        if step <= dt.timedelta(0):
            raise ValueError(f"frequency {frequency!r} is zero")
        return step
    # a relativedelta (months/years): measure it from a fixed date, the longest case
    probe = dt.datetime(2000, 1, 31)
    return (probe + step) - probe


def allowed_age(frequency: Optional[str], tolerance: float = DEFAULT_TOLERANCE
                ) -> Optional[dt.timedelta]:
    """How old the newest row may be before the target is stale (``None``: never stale)."""
    cadence = cadence_of(frequency)
    return None if cadence is None else cadence * tolerance


@dataclass(frozen=True)
class Freshness:
    """The freshness of one source's target.

    Attributes:
        config_id: the control row.
        target: ``catalog.schema.table``.
        frequency: the row's ``TriggerFrequency``.
        newest: the newest ``collected_at_utc`` (``None``: no data).
        age: ``now - newest``.
        allowed: the allowed age (``None``: never stale).
        stale: the verdict.
    """

    config_id: str
    target: str
    frequency: Optional[str]
    newest: Optional[dt.datetime]
    age: Optional[dt.timedelta]
    allowed: Optional[dt.timedelta]
    stale: bool

    @property
    def reason(self) -> str:
        """One line for a report or a message."""
        if self.allowed is None:
            return "no cadence (runs once)"
        if self.newest is None:
            return "no data collected yet"
        verdict = "stale" if self.stale else "fresh"
        return (f"{verdict}: newest row is {format_age(self.age)} old, "
                f"{self.frequency} cadence allows {format_age(self.allowed)}")

    def as_row(self) -> dict[str, Any]:
        """A plain row for tables, reports and messages."""
        return {
            "ConfigId": self.config_id, "Target": self.target, "Frequency": self.frequency,
            "NewestCollectedAt": self.newest,
            "AgeMinutes": round(self.age.total_seconds() / 60, 1) if self.age is not None else None,
            "AllowedMinutes": (round(self.allowed.total_seconds() / 60, 1)
                               if self.allowed is not None else None),
            "Stale": self.stale, "Reason": self.reason,
        }

    def __repr__(self) -> str:
        return f"Freshness({self.config_id}: {self.reason})"


def assess(config_id: str, target: str, frequency: Optional[str], newest: Optional[dt.datetime],
           now: dt.datetime, tolerance: float = DEFAULT_TOLERANCE) -> Freshness:
    """Apply the freshness rule to one target."""
    allowed = allowed_age(frequency, tolerance)
    newest_utc = to_utc(newest) if newest is not None else None
    age = (to_utc(now) - newest_utc) if newest_utc is not None else None
    if allowed is None:
        stale = False
    elif age is None:
        stale = True
    else:
        stale = age > allowed
    return Freshness(config_id, target, frequency, newest_utc, age, allowed, stale)


def assess_rows(rows: Iterable[dict[str, Any]], newest_by_target: dict[str, Optional[dt.datetime]],
                now: dt.datetime, tolerance: float = DEFAULT_TOLERANCE) -> list[Freshness]:
    """Freshness of every enabled control row.

    Args:
        rows: control rows (``ConfigId``, ``Target*``, ``TriggerFrequency``, ``Enabled``).
        newest_by_target: newest ``collected_at_utc`` per ``catalog.schema.table``.
        now: the current UTC time.
    """
    out = []
    for row in rows:
        if row.get("Enabled") is False:
            continue
        target = target_name(row)
        out.append(assess(row["ConfigId"], target, row.get("TriggerFrequency"),
                          newest_by_target.get(target), now, tolerance))
    return sorted(out, key=lambda f: (not f.stale, f.config_id))


def target_name(row: dict[str, Any]) -> str:
    """``catalog.schema.table`` of a control row."""
    return f"{row['TargetCatalog']}.{row['TargetSchema']}.{row['TargetTable']}"


def format_age(value: Optional[dt.timedelta]) -> str:
    """``3d 4h``, ``2h 5m``, ``12m`` (coarse, for people)."""
    if value is None:
        return "-"
    minutes = int(value.total_seconds() // 60)
    days, rem = divmod(minutes, 1440)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"
