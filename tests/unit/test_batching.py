"""Commit batches and their txn versions depend on window indices only."""

from __future__ import annotations

import pytest

from framework.load.batching import SEGMENT_SPAN, batch_version, plan_batches, segment_version


def test_batches_follow_the_index_grid_not_the_todo_list() -> None:
    assert plan_batches(range(10), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # a rerun that still has windows 2, 3 and 5.. regroups them as the first run did
    assert plan_batches([9, 2, 3, 5, 6, 7, 8], 4) == [[2, 3], [5, 6, 7], [8, 9]]
    assert plan_batches([], 4) == []
    assert plan_batches([3, 1], 1) == [[1], [3]]


def test_a_batch_keeps_its_version_when_a_rerun_resends_it() -> None:
    first = plan_batches(range(8), 4)
    rerun = plan_batches(range(8), 4)
    assert [batch_version(b, 4) for b in first] == [batch_version(b, 4) for b in rerun]
    # a batch that lost some windows (already committed in page batches) keeps its version
    assert batch_version([1, 2, 3], 4) == batch_version([0, 1, 2, 3], 4)


def test_versions_grow_with_the_window_index_and_page_batches_sit_between() -> None:
    versions = [batch_version(b, 3) for b in plan_batches(range(12), 3)]
    assert versions == sorted(set(versions))
    # page batches (one window per commit): window 4's batches above window 3, below window 5
    assert batch_version([3], 1) < segment_version(4, 1) < segment_version(4, SEGMENT_SPAN - 1) \
        < batch_version([4], 1) < segment_version(5, 1)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="per_commit"):
        plan_batches([1], 0)
    with pytest.raises(ValueError, match="empty batch"):
        batch_version([], 2)
    with pytest.raises(ValueError, match="segment"):
        segment_version(1, SEGMENT_SPAN)
