"""framework.service.agenda: when the scheduler's loads, probes and report fire (pure)."""

from __future__ import annotations

import datetime as dt

from framework.service.agenda import Agenda, Source, next_on_grid

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 5, 0, 5, tzinfo=UTC)
M = dt.timedelta(minutes=1)


def at(hh: int, mm: int, ss: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, 5, hh, mm, ss, tzinfo=UTC)


def fires(next_fire, first, until):
    out, previous = [], None
    t = first
    while t <= until:
        out.append(t)
        previous = t
        t = next_fire(previous)
    return out


def test_next_on_grid():
    assert next_on_grid(T0, 5 * M, T0 - M) == T0
    assert next_on_grid(T0, 5 * M, T0) == T0 + 5 * M
    assert next_on_grid(T0, 5 * M, T0 + 7 * M) == T0 + 10 * M


def test_loads_fire_at_the_start_then_at_each_cadence_instant_and_poll_tick():
    agenda = Agenda(T0, poll=dt.timedelta(hours=1))
    agenda.update([Source("a", "00:00", "PT15M"), Source("b", "00:30", "hourly"),
                   Source("c", "02:00", "once")])
    assert agenda.next_load(None) == T0
    got = fires(agenda.next_load, T0, at(1, 20))
    assert got == [T0, at(0, 15), at(0, 30), at(0, 45), at(1, 0), at(1, 5), at(1, 15)]


def test_probes_follow_each_source_interval_in_rounds_without_drift():
    agenda = Agenda(T0, poll=M)
    agenda.update([Source("a", probe_every=M), Source("b", probe_every=5 * M), Source("quiet")])
    assert agenda.next_probe(None) == T0 and agenda.probes_due(T0) == ["a", "b"]
    agenda.mark_probed(["a", "b"], T0)
    assert agenda.next_probe(T0) == T0 + M and agenda.probes_due(T0 + M) == ["a"]
    agenda.mark_probed(["a"], T0 + M)
    # a late round (at +5:30 instead of +2) probes both once, and the grid stays where it was
    late = T0 + 5 * M + dt.timedelta(seconds=30)
    assert agenda.probes_due(late) == ["a", "b"]
    agenda.mark_probed(["a", "b"], late)
    assert agenda.next_probe(late) == T0 + 6 * M
    assert agenda.probes_due(T0 + 6 * M) == ["a"] and agenda.probes_due(T0 + 10 * M) == ["a", "b"]


def test_next_probe_does_not_repeat_a_round_whose_probes_have_not_run_yet():
    # APScheduler asks for the next time as soon as it submits the job, before it runs
    agenda = Agenda(T0, poll=M)
    agenda.update([Source("a", probe_every=2 * M)])
    assert agenda.next_probe(T0) == T0 + 2 * M
    assert agenda.next_probe(T0 + 2 * M) == T0 + 4 * M


def test_without_probed_sources_the_probes_job_polls():
    agenda = Agenda(T0, poll=M)
    agenda.update([Source("a")])
    assert agenda.next_probe(None) == T0 + M and agenda.next_probe(T0 + M) == T0 + 2 * M
    assert agenda.probes_due(T0 + M) == []


def test_update_reports_changes_and_forgets_removed_sources():
    agenda = Agenda(T0, poll=M)
    assert agenda.update([Source("a", probe_every=M)])
    agenda.mark_probed(["a"], T0)
    assert not agenda.update([Source("a", probe_every=M)])
    assert agenda.update([Source("b", probe_every=M)]) and agenda.probed == {}
    assert "1 sources, 1 probed" in repr(agenda)


def test_report_fires_daily_at_its_time():
    agenda = Agenda(T0, poll=M, report_time="06:00")
    first = agenda.next_report(None, T0)
    assert first == at(6, 0) and agenda.next_report(first, first) == at(6, 0) + dt.timedelta(days=1)
    assert Agenda(T0, poll=M).next_report(None, T0) is None
