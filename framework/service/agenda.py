"""When the scheduler's jobs fire: pure time arithmetic, no Spark, no threads.

* **loads** fire at each source's next scheduled instant (the rule of
  :func:`control.states.next_scheduled_instant`, the one ``generate --due`` uses), and on
  a poll grid (``anchor + k × poll``) so loads planned elsewhere (``POST /run``, another
  ``generate``, a retry) are picked up;
* **probes** fire on each source's own grid ``anchor + k × health.interval``; the sources
  due at one instant form a *round* (sources with intervals of 1 and 5 minutes meet every
  5 minutes), and a source probed late keeps its grid (no drift);
* **report** fires daily at the configured ``HH:MM`` UTC.

Each ``next_*`` takes the previous fire time and answers from the grids alone, not from
what the job did: a trigger is asked for its next time as soon as its job is submitted,
before the job runs. The methods may be called from several threads (the scheduler's
jobs and its triggers).
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, TypeVar

from control.states import next_scheduled_instant
from framework.timeutil import to_utc


@dataclass(frozen=True)
class Source:
    """What the agenda needs to know of one source.

    Attributes:
        config_id: the source.
        time: ``schedule.time`` (``HH:MM`` UTC).
        frequency: ``schedule.frequency``.
        probe_every: ``health.interval`` (``None``: not probed).
    """

    config_id: str
    time: str = "00:00"
    frequency: str = "once"
    probe_every: Optional[dt.timedelta] = None


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: "Agenda", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


def next_on_grid(anchor: dt.datetime, step: dt.timedelta, after: dt.datetime) -> dt.datetime:
    """The first instant ``anchor + k × step`` strictly after ``after`` (``anchor`` if later)."""
    if after < anchor:
        return anchor
    return anchor + step * ((after - anchor) // step + 1)


class Agenda:
    """The sources' cadences and health intervals, and when each job fires next.

    Args:
        anchor: where the grids start (the scheduler's start).
        poll: how often the loads job looks for rows planned elsewhere.
        report_time: ``HH:MM`` UTC of the daily report (``None``: no report).
    """

    def __init__(self, anchor: dt.datetime, poll: dt.timedelta,
                 report_time: Optional[str] = None) -> None:
        self.anchor = to_utc(anchor)
        self.poll = poll
        self.report_time = report_time
        self.sources: dict[str, Source] = {}
        self.probed: dict[str, dt.datetime] = {}
        self._lock = threading.RLock()

    @_locked
    def update(self, sources: Iterable[Source]) -> bool:
        """Replace the known sources; True when anything changed."""
        new = {s.config_id: s for s in sources}
        changed = new != self.sources
        self.sources = new
        for gone in set(self.probed) - set(new):
            del self.probed[gone]
        return changed

    # ------------------------------------------------------------------ loads
    @_locked
    def next_load(self, previous: Optional[dt.datetime]) -> dt.datetime:
        """The loads job's next fire time: at the start, then the next poll tick or scheduled
        instant of any source, whichever comes first."""
        if previous is None:
            return self.anchor
        previous = to_utc(previous)
        out = next_on_grid(self.anchor, self.poll, previous)
        for s in self.sources.values():
            at = next_scheduled_instant(s.time, s.frequency, previous)
            if at is not None and at < out:
                out = at
        return out

    # ----------------------------------------------------------------- probes
    def _due(self, s: Source) -> dt.datetime:
        assert s.probe_every is not None
        last = self.probed.get(s.config_id)
        return self.anchor if last is None else next_on_grid(self.anchor, s.probe_every, last)

    @_locked
    def next_probe(self, previous: Optional[dt.datetime]) -> dt.datetime:
        """The probes job's next fire time (with no source to probe: the next poll tick)."""
        previous = to_utc(previous) if previous is not None else None
        candidates = []
        for s in self.sources.values():
            if s.probe_every is None:
                continue
            due = self._due(s)
            if previous is not None and due <= previous:
                due = next_on_grid(self.anchor, s.probe_every, previous)
            candidates.append(due)
        if candidates:
            return min(candidates)
        return next_on_grid(self.anchor, self.poll, previous or self.anchor)

    @_locked
    def probes_due(self, now: dt.datetime) -> list[str]:
        """The sources whose probe is due at ``now`` (never probed, or their next grid
        instant has come), in ConfigId order."""
        now = to_utc(now)
        return sorted(s.config_id for s in self.sources.values()
                      if s.probe_every is not None and self._due(s) <= now)

    @_locked
    def mark_probed(self, config_ids: Iterable[str], at: dt.datetime) -> None:
        for cid in config_ids:
            self.probed[cid] = to_utc(at)

    # ----------------------------------------------------------------- report
    @_locked
    def next_report(self, previous: Optional[dt.datetime], now: dt.datetime) -> Optional[dt.datetime]:
        """The next ``report_time`` after ``previous`` (or after ``now`` at the start)."""
        if self.report_time is None:
            return None
        return next_scheduled_instant(self.report_time, "daily", to_utc(previous or now))

    def __repr__(self) -> str:
        probed = sum(1 for s in self.sources.values() if s.probe_every is not None)
        return (f"Agenda({len(self.sources)} sources, {probed} probed, poll {self.poll}, "
                f"report {self.report_time or 'off'})")
