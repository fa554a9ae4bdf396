"""Keeping a claim while its load runs: the heartbeat, and the fence every write passes.

A :class:`LeaseKeeper` renews the claim's lease every third of its length in a
background thread, and :meth:`LeaseKeeper.check` is called before each target commit,
window-log append and control-row update. The decision is :class:`control.fencing.Fence`'s:
while the known lease is comfortably valid a check costs nothing; close to its end, or
after a failed heartbeat, the check renews the lease (conditional on the claim) before
letting the write go; once another claim holds the row every check raises
:class:`~framework.errors.LeaseLostError`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Callable, Optional

from control.fencing import Fence, FenceDecision, default_margin
from control.store import Claim
from framework.errors import LeaseLostError
from framework.secrets import redact

log = logging.getLogger(__name__)


def precise_now() -> dt.datetime:
    """The current UTC time, to the microsecond (fencing must not round the clock down)."""
    return dt.datetime.now(dt.timezone.utc)


class LeaseKeeper:
    """Renews one claim's lease and fences the load's writes on it.

    Args:
        store: the control store (``renew_lease``, ``lost_reason``).
        claim: the claim of the load.
        clock: the current UTC time (injected by tests).
        margin: how long before the lease ends a write needs a renewal first
            (default: a third of the lease).
        interval_s: seconds between heartbeats (default: a third of the lease, at least 1).
    """

    def __init__(self, store: Any, claim: Claim, *, clock: Callable[[], dt.datetime] = precise_now,
                 margin: Optional[dt.timedelta] = None, interval_s: Optional[float] = None) -> None:
        if claim.state.lease_expires_at is None:
            raise ValueError(f"{claim!r} has no lease end")
        self.store, self.claim, self.clock = store, claim, clock
        self.fence = Fence(claim.state.lease_expires_at, margin or default_margin(claim.lease))
        self.interval_s = interval_s or max(1.0, claim.lease.total_seconds() / 3)
        self._lock = threading.Lock()  # one renewal at a time (heartbeat or check)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return f"LeaseKeeper({self.claim.config_id}, {self.fence!r})"

    @property
    def lost(self) -> Optional[str]:
        """Why the claim is lost, or ``None`` while it is held."""
        return self.fence.lost

    def check(self, before: str) -> None:
        """Let a write go only while the claim holds its row.

        Args:
            before: what is about to be written (named in the error).

        Raises:
            LeaseLostError: another claim holds the row, or the lease ends within the margin
                and could not be renewed.
        """
        with self._lock:
            if self.fence.decide(self.clock()) is FenceDecision.CONFIRM:
                error = self._renew()
                cid, ends = self.claim.config_id, f"{self.fence.expires_at:%Y-%m-%dT%H:%M:%SZ}"
                if self.fence.lost is None and error is not None \
                        and not self.fence.valid_at(self.clock()):
                    raise LeaseLostError(f"lease of {cid} ends {ends} and could not be renewed "
                                         f"before the {before}: {error}")
                if self.fence.lost is None and error is None \
                        and not self.fence.held_at(self.clock()):
                    raise LeaseLostError(
                        f"lease of {cid} was renewed but had already ended ({ends}) before the "
                        f"{before}: renewing takes longer than a lease of {self.claim.lease}; "
                        "raise limits.lease_s")
            if self.fence.lost is not None:
                raise LeaseLostError(f"{self.fence.lost}; stopped before the {before}")

    def beat(self) -> None:
        """One heartbeat: renew the lease now (failures are kept for the next check)."""
        with self._lock:
            if self.fence.lost is None:
                self._renew()

    def _renew(self) -> Optional[str]:
        """Renew under the lock; returns the error text of a failed renewal."""
        try:
            self.claim = self.store.renew_lease(self.claim, now=self._now_for_store())
        except LeaseLostError as exc:
            self.fence.lose(str(exc))
            log.error("%s: %s", self.claim.config_id, exc)
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - the next check decides; the load goes on
            self.fence.renewal_failed()
            text = redact(f"{type(exc).__name__}: {exc}".splitlines()[0])
            log.warning("%s: could not renew the lease: %s", self.claim.config_id, text)
            return text
        self.fence.renewed(self.claim.state.lease_expires_at)
        return None

    def _now_for_store(self) -> dt.datetime:
        # The row stores whole seconds; round down so the lease written never ends later
        # than the fence believes.
        return self.clock().replace(microsecond=0)

    # ------------------------------------------------------------------ heartbeat
    def __enter__(self) -> "LeaseKeeper":
        self._thread = threading.Thread(target=self._run, name="restlake-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """End the heartbeat (waits for a renewal in progress); a second call is a no-op."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s) and self.fence.lost is None:
            self.beat()
