"""Freshness SLAs: "this source's data is loaded by 03:00 UTC each day" (pure, no Spark).

The rule, judged at ``now`` (an injected clock):

    the deadline is the latest ``HH:MM`` UTC at or before ``now``; the SLA is **met**
    when a load of the source succeeded in the 24 hours up to that deadline
    (``deadline - 24h < LoggedAt <= deadline``), else it is **missed**.

A source whose first load ran after the deadline is not judged yet (it was not in
service). Each deadline is one incident: ``sla_missed`` is sent once per source per
day, and a load after the deadline does not undo a miss (it counts for the next one).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Optional

from framework.timeutil import iso, to_utc

DAY = dt.timedelta(days=1)


def deadline_at(hhmm: str, now: dt.datetime) -> dt.datetime:
    """The latest ``HH:MM`` UTC at or before ``now``."""
    now = to_utc(now)
    hours, minutes = (int(x) for x in hhmm.split(":"))
    today = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    return today if today <= now else today - DAY


@dataclass(frozen=True)
class SlaStatus:
    """The SLA of one source at its latest deadline."""

    config_id: str
    sla: str
    deadline: dt.datetime
    met: bool
    last_success: Optional[dt.datetime]
    severity: str = "warn"

    @property
    def message(self) -> str:
        last = f"last successful load {iso(self.last_success)}" if self.last_success else \
            "no successful load yet"
        if self.met:
            return f"loaded by {self.sla} UTC on {self.deadline:%Y-%m-%d} ({last})"
        return (f"not loaded by {self.sla} UTC on {self.deadline:%Y-%m-%d}: no successful "
                f"load in the 24 h before the deadline ({last})")

    def __repr__(self) -> str:
        return f"SlaStatus({self.config_id} {'met' if self.met else 'MISSED'} {iso(self.deadline)})"


def assess_sla(config_id: str, sla: str, successes: Iterable[dt.datetime],
               first_run: Optional[dt.datetime], now: dt.datetime,
               severity: str = "warn") -> Optional[SlaStatus]:
    """Judge one source's SLA at ``now``; ``None`` when it is not in service yet.

    Args:
        sla: ``HH:MM`` (UTC).
        successes: when its successful loads finished (audit ``LoggedAt``).
        first_run: when its first load of any outcome finished (``None``: never ran).
        now: the clock.
    """
    deadline = deadline_at(sla, now)
    if first_run is None or to_utc(first_run) > deadline:
        return None
    done = sorted(to_utc(t) for t in successes if to_utc(t) <= deadline)
    last = done[-1] if done else None
    met = last is not None and last > deadline - DAY
    return SlaStatus(config_id, sla, deadline, met, last, severity)
