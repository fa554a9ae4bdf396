"""Fencing decisions on an injected clock: no I/O while the lease is comfortably valid,
a conditional renewal near its end or after a failed heartbeat, and no write once lost."""

from __future__ import annotations

import datetime as dt

import pytest

from control.fencing import Fence, FenceDecision, default_margin
from control.states import ControlState, LoadStatus
from control.store import Claim
from framework.errors import LeaseLostError
from framework.load.lease import LeaseKeeper

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 12, tzinfo=UTC)
LEASE = dt.timedelta(minutes=30)


def test_the_decision_follows_the_known_lease_end() -> None:
    fence = Fence(T0 + LEASE, default_margin(LEASE))  # margin: 10 minutes
    assert fence.decide(T0) is FenceDecision.GO
    assert fence.decide(T0 + dt.timedelta(minutes=19, seconds=59)) is FenceDecision.GO
    assert fence.decide(T0 + dt.timedelta(minutes=20)) is FenceDecision.CONFIRM
    assert fence.decide(T0 + dt.timedelta(hours=5)) is FenceDecision.CONFIRM
    fence.renewed(T0 + dt.timedelta(hours=6))
    assert fence.decide(T0 + dt.timedelta(hours=5)) is FenceDecision.GO


def test_a_failed_renewal_asks_for_a_confirmation_and_lost_is_final() -> None:
    fence = Fence(T0 + LEASE, default_margin(LEASE))
    fence.renewal_failed()
    assert fence.decide(T0) is FenceDecision.CONFIRM
    assert fence.valid_at(T0)  # but the known lease still covers a write now
    fence.lose("taken over")
    fence.renewed(T0 + dt.timedelta(hours=9))  # a late renewal does not revive it
    assert fence.decide(T0) is FenceDecision.LOST and not fence.valid_at(T0)
    assert "lost: taken over" in repr(fence)


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class _Store:
    """Stands in for ControlStore.renew_lease: counts renewals, can fail or report a takeover."""

    def __init__(self) -> None:
        self.renewals = 0
        self.taken_over = False
        self.broken = False

    def renew_lease(self, claim: Claim, now: dt.datetime) -> Claim:
        self.renewals += 1
        if self.taken_over:
            raise LeaseLostError("lease lost: control row c1 is RUNNING by runner-b")
        if self.broken:
            raise OSError("control table unreachable")
        state = ControlState(load_status=LoadStatus.RUNNING, claimed_by=claim.runner,
                             run_id=claim.run_id, attempt=claim.attempt,
                             lease_expires_at=now + claim.lease)
        return Claim(claim.config_id, claim.runner, claim.run_id, state, claim.row, claim.lease)


def _keeper() -> tuple[LeaseKeeper, _Store, _Clock]:
    state = ControlState(load_status=LoadStatus.RUNNING, claimed_by="runner-a", run_id="r1",
                         attempt=1, lease_expires_at=T0 + LEASE)
    clock, store = _Clock(), _Store()
    claim = Claim("c1", "runner-a", "r1", state, {}, LEASE)
    return LeaseKeeper(store, claim, clock=clock), store, clock


def test_checks_cost_nothing_while_the_lease_is_comfortably_valid() -> None:
    keeper, store, clock = _keeper()
    for _ in range(50):
        keeper.check("target commit")
        clock.advance(seconds=20)  # 50 checks over 16 minutes: never within the margin
    assert store.renewals == 0


def test_a_check_close_to_the_end_renews_first_then_goes() -> None:
    keeper, store, clock = _keeper()
    clock.advance(minutes=25)
    keeper.check("target commit")
    assert store.renewals == 1
    assert keeper.fence.expires_at == T0 + dt.timedelta(minutes=25) + LEASE
    keeper.check("window log")
    assert store.renewals == 1


def test_a_paused_runner_whose_row_was_taken_over_stops_and_stays_stopped() -> None:
    keeper, store, clock = _keeper()
    clock.advance(hours=2)  # e.g. SIGSTOP: no heartbeat ran; another runner claimed the row
    store.taken_over = True
    with pytest.raises(LeaseLostError, match="runner-b.*stopped before the target commit"):
        keeper.check("target commit")
    store.taken_over = False
    with pytest.raises(LeaseLostError, match="stopped before the control update"):
        keeper.check("control update")
    assert store.renewals == 1 and keeper.lost


def test_a_failed_heartbeat_makes_the_next_check_confirm() -> None:
    keeper, store, clock = _keeper()
    store.broken = True
    keeper.beat()  # the heartbeat fails: the load goes on
    assert store.renewals == 1 and keeper.fence.suspect
    store.broken = False
    keeper.check("target commit")  # confirms, although the lease is far from its end
    assert store.renewals == 2 and not keeper.fence.suspect


def test_an_unconfirmable_lease_lets_a_write_go_only_while_it_is_valid() -> None:
    keeper, store, clock = _keeper()
    store.broken = True
    keeper.beat()
    keeper.check("target commit")  # cannot renew, but 30 minutes are left
    clock.advance(minutes=21)
    with pytest.raises(LeaseLostError, match="could not be renewed before the target commit"):
        keeper.check("target commit")
    assert not keeper.lost  # nobody took it: a later renewal may still succeed
    store.broken = False
    keeper.check("target commit")


def _slow_renewals(store: _Store, clock: _Clock, minutes: float):
    def renew(claim: Claim, now: dt.datetime) -> Claim:
        renewed = _Store.renew_lease(store, claim, now)
        clock.advance(minutes=minutes)  # the control table took this long to commit it
        return renewed
    return renew


def test_a_slow_renewal_still_vouches_while_the_renewed_lease_holds() -> None:
    keeper, store, clock = _keeper()
    clock.advance(minutes=25)
    store.renew_lease = _slow_renewals(store, clock, 21)  # type: ignore[method-assign]
    keeper.check("target commit")  # renewed to 55 min, now 46: the row is this claim's
    assert store.renewals == 1


def test_a_renewal_slower_than_the_lease_does_not_vouch_for_a_write() -> None:
    keeper, store, clock = _keeper()
    clock.advance(minutes=25)
    store.renew_lease = _slow_renewals(store, clock, 31)  # type: ignore[method-assign]
    with pytest.raises(LeaseLostError, match="renewing takes longer than a lease .*raise limits.lease_s"):
        keeper.check("target commit")
