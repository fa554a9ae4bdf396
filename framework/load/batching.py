"""Commit batches of an incremental load, and the version each batch commits under (no Spark).

Consecutive windows share one target commit (``limits.windows_per_commit``). Which
windows share it depends on their indices only, never on which fetch finished first:
batch ``b`` holds the windows ``b * per_commit .. (b + 1) * per_commit - 1`` that the
load still has to commit. A rerun of the load (same LoadId) therefore groups its windows
exactly as the crashed run did, and a keyless batch committed just before the crash (its
window-log row lost) is re-sent under the same Delta ``txnVersion`` and skipped.

Delta skips an idempotent append whose ``txnVersion`` is at or below the last one
recorded for its ``txnAppId``, so versions grow with the window index:

* page batch ``s`` of window ``i`` (``limits.pages_per_commit``): ``i * SPAN + s``;
* batch ``b``: ``(b + 1) * per_commit * SPAN``, above every page batch of its windows
  and below every version of the next batch.
"""

from __future__ import annotations

from typing import Iterable

#: Room for the page batches of one window between two window versions.
SEGMENT_SPAN = 100_000


def plan_batches(indices: Iterable[int], per_commit: int) -> list[list[int]]:
    """Group window indices into commit batches, in window order.

    Args:
        indices: the indices (in the load's full window list) still to commit.
        per_commit: ``limits.windows_per_commit`` (1 when windows commit in page batches).

    Returns:
        the batches, each a list of ascending indices sharing ``index // per_commit``.
    """
    if per_commit < 1:
        raise ValueError(f"per_commit must be >= 1, got {per_commit}")
    batches: dict[int, list[int]] = {}
    for index in sorted(set(indices)):
        batches.setdefault(index // per_commit, []).append(index)
    return [batches[b] for b in sorted(batches)]


def batch_version(batch: list[int], per_commit: int) -> int:
    """The ``txnVersion`` of a batch from :func:`plan_batches` (a function of its indices)."""
    if not batch:
        raise ValueError("an empty batch has no version")
    return (batch[0] // per_commit + 1) * per_commit * SEGMENT_SPAN


def segment_version(index: int, segment: int) -> int:
    """The ``txnVersion`` of page batch ``segment`` (1-based) of window ``index``."""
    if not 0 < segment < SEGMENT_SPAN:
        raise ValueError(f"segment must be in 1..{SEGMENT_SPAN - 1}, got {segment}")
    return index * SEGMENT_SPAN + segment
