"""Fencing a claim: may this runner still write for the row it claimed? (no Spark)

A runner holds a control row until its lease ends (``LeaseExpiresAt``); once that time
has passed, another runner may claim the row and load it. So before every target
commit, window-log append and control-row update, the runner asks its :class:`Fence`:

* ``GO`` while the lease known from the last successful renewal ends more than
  ``margin`` from now: no I/O at all, so a healthy load pays nothing per commit;
* ``CONFIRM`` when the lease ends within the margin, or the last renewal failed: the
  caller renews the lease conditionally on the row still holding this exact claim
  (runner, run id, attempt). When that renewal succeeds the write goes ahead while the
  renewed lease still holds (:meth:`Fence.held_at`: the renewal proved the row was
  this claim's when it committed, and nobody can claim it before the new end; on a
  slow control plane a renewal may eat into the margin, and the heartbeat keeps
  extending the lease meanwhile). When it fails, the write goes ahead only while the
  lease known so far ends more than the margin from now (:meth:`Fence.valid_at`);
* ``LOST`` once a renewal found the row held by another claim (or not RUNNING): the
  runner writes nothing more.

What fencing cannot close: a runner paused between a ``GO`` and the commit it guards
for longer than what is left of its lease (at least ``margin`` without a renewal; a
stop-the-world pause, a frozen VM) commits after its lease ended. Clocks of different hosts also drift. MERGE on the key, and the per-load
idempotent append of keyless targets, make such a late commit of the same window
harmless to the target's content; the runner then stops at its next check.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Optional

from framework.timeutil import iso, to_utc


class FenceDecision(str, enum.Enum):
    GO = "GO"
    CONFIRM = "CONFIRM"
    LOST = "LOST"


def default_margin(lease: dt.timedelta) -> dt.timedelta:
    """A third of the lease: the heartbeat renews every third, so a healthy load never confirms."""
    return lease / 3


@dataclass
class Fence:
    """What one runner knows of its claim's lease.

    Attributes:
        expires_at: the lease end written by the claim or the last successful renewal.
        margin: how long before ``expires_at`` a write needs a confirmation first.
        suspect: the last renewal failed, so ``expires_at`` may be stale.
        lost: why the claim is lost, once it is (final).
    """

    expires_at: dt.datetime
    margin: dt.timedelta
    suspect: bool = False
    lost: Optional[str] = None

    def __post_init__(self) -> None:
        self.expires_at = to_utc(self.expires_at)

    def decide(self, now: dt.datetime) -> FenceDecision:
        """Whether a write may go ahead at ``now``."""
        if self.lost is not None:
            return FenceDecision.LOST
        if self.suspect or to_utc(now) + self.margin >= self.expires_at:
            return FenceDecision.CONFIRM
        return FenceDecision.GO

    def held_at(self, now: dt.datetime) -> bool:
        """The claim holds the row at ``now`` (its lease has not ended yet)."""
        return self.lost is None and to_utc(now) < self.expires_at

    def valid_at(self, now: dt.datetime) -> bool:
        """The known lease, unconfirmed, still ends more than ``margin`` after ``now``."""
        return self.lost is None and to_utc(now) + self.margin < self.expires_at

    def renewed(self, expires_at: dt.datetime) -> None:
        """A renewal (conditional on the claim) succeeded: the lease now ends at ``expires_at``."""
        if self.lost is None:
            self.expires_at = to_utc(expires_at)
            self.suspect = False

    def renewal_failed(self) -> None:
        """A renewal raised (the control table could not be read or written)."""
        self.suspect = True

    def lose(self, reason: str) -> None:
        """The row is held by another claim: final."""
        if self.lost is None:
            self.lost = reason

    def __repr__(self) -> str:
        state = f"lost: {self.lost}" if self.lost else ("suspect" if self.suspect else "held")
        return f"Fence({state}, until {iso(self.expires_at)}, margin {self.margin})"
