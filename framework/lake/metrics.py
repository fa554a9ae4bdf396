"""What a Delta MERGE reports: its row counts, read from the frame ``execute()`` returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from framework.errors import LoadError

_COUNTS = ("num_inserted_rows", "num_updated_rows", "num_deleted_rows")


@dataclass(frozen=True)
class MergeCounts:
    """Rows one MERGE inserted, updated and deleted."""

    inserted: int
    updated: int
    deleted: int

    @property
    def written(self) -> int:
        """Inserted plus updated: the rows the MERGE wrote."""
        return self.inserted + self.updated


def merge_counts(metrics: Any) -> MergeCounts:
    """The counts of a MERGE, from the metrics DataFrame ``DeltaMergeBuilder.execute()`` returns.

    Raises:
        LoadError: the metrics cannot be read or lack a count. The MERGE did commit: the
            caller fails rather than report a count it does not know (never a silent 0).
    """
    try:
        row = metrics.first()
    except Exception as exc:  # noqa: BLE001 - reported, never turned into a count
        raise LoadError(f"could not read the MERGE metrics: {type(exc).__name__}: {exc}") from None
    values = row.asDict() if row is not None else {}
    counts = [values.get(k) for k in _COUNTS]
    if any(c is None for c in counts):
        raise LoadError(f"the MERGE returned no inserted/updated/deleted row counts "
                        f"(metrics: {values})")
    return MergeCounts(*(int(c) for c in counts))
