"""Group commit: concurrent callers share commits, and each returns only once its item is in."""

from __future__ import annotations

import threading

import pytest

from framework.lake.groupcommit import GroupCommit


def test_items_arriving_during_a_commit_share_the_next_one():
    first_started, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def commit(items):
        batches.append(list(items))
        if len(batches) == 1:
            first_started.set()
            assert release.wait(10)
        return [i * 10 for i in items]

    group = GroupCommit(commit, "numbers")
    results: dict[int, int] = {}
    lead = threading.Thread(target=lambda: results.__setitem__(0, group.submit(0)))
    lead.start()
    assert first_started.wait(10)
    waiting = [threading.Thread(target=lambda i=i: results.__setitem__(i, group.submit(i)))
               for i in range(1, 5)]
    for t in waiting:
        t.start()
    while True:  # every later caller is queued behind the commit in progress
        with group._cond:
            if len(group._queue) == 4:
                break
    assert results == {}  # nobody returned before its commit
    release.set()
    for t in [lead, *waiting]:
        t.join(10)
    assert batches[0] == [0] and sorted(batches[1]) == [1, 2, 3, 4] and len(batches) == 2
    assert results == {i: i * 10 for i in range(5)}
    assert (group.commits, group.items) == (2, 5)


def test_a_failed_commit_raises_in_every_caller_of_its_batch_and_the_next_one_runs():
    calls = []

    def commit(items):
        calls.append(list(items))
        if items == ["bad"]:
            raise OSError("disk full")
        return list(items)

    group = GroupCommit(commit, "words")
    with pytest.raises(OSError, match="disk full"):
        group.submit("bad")
    assert group.submit("good") == "good"
    assert calls == [["bad"], ["good"]]


def test_a_commit_returning_too_few_results_is_an_error():
    group = GroupCommit(lambda items: [], "broken")
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        group.submit(1)


def test_on_commit_is_called_when_the_commit_holding_the_item_starts():
    first_started, release = threading.Event(), threading.Event()
    events: list[str] = []

    def commit(items):
        events.append(f"commit {sorted(items)}")
        if items == [0]:
            first_started.set()
            assert release.wait(10)
        return list(items)

    group = GroupCommit(commit, "numbers")
    lead = threading.Thread(target=lambda: group.submit(0, lambda: events.append("start 0")))
    lead.start()
    assert first_started.wait(10)
    queued = [threading.Thread(target=lambda i=i: group.submit(i, lambda i=i: events.append(
        f"start {i}"))) for i in (1, 2)]
    for t in queued:
        t.start()
    while True:
        with group._cond:
            if len(group._queue) == 2:
                break
    assert events == ["start 0", "commit [0]"]  # the queued items' commit has not started
    release.set()
    for t in [lead, *queued]:
        t.join(10)
    assert events[:2] == ["start 0", "commit [0]"] and events[-1] == "commit [1, 2]"
    assert sorted(events[2:4]) == ["start 1", "start 2"]
