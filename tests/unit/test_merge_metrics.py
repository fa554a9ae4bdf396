"""A MERGE's row counts come from the metrics Delta returns, or the load fails: never a silent 0.

The writer used to return 0 whenever the metrics could not be read."""

from __future__ import annotations

import pytest

from framework.errors import LoadError
from framework.lake.metrics import merge_counts


class _Row:
    def __init__(self, **values: object) -> None:
        self.values = values

    def asDict(self) -> dict:  # noqa: N802 - pyspark's Row API
        return dict(self.values)


class _Metrics:
    def __init__(self, row: object = None, error: Exception | None = None) -> None:
        self.row, self.error = row, error

    def first(self) -> object:
        if self.error is not None:
            raise self.error
        return self.row


def test_inserted_plus_updated_rows() -> None:
    metrics = _Metrics(_Row(num_affected_rows=9, num_updated_rows=3, num_deleted_rows=2,
                            num_inserted_rows=4))
    counts = merge_counts(metrics)
    assert (counts.inserted, counts.updated, counts.deleted, counts.written) == (4, 3, 2, 7)


def test_a_zero_is_only_what_delta_reported() -> None:
    zero = _Row(num_updated_rows=0, num_inserted_rows=0, num_deleted_rows=0)
    assert merge_counts(_Metrics(zero)).written == 0


@pytest.mark.parametrize("metrics", [
    None,                                               # no metrics frame at all
    _Metrics(error=RuntimeError("py4j gateway gone")),  # reading it fails
    _Metrics(None),                                     # an empty frame
    _Metrics(_Row(num_affected_rows=5)),                # counts missing
], ids=["none", "read-fails", "empty", "no-counts"])
def test_metrics_that_cannot_be_read_fail_the_load(metrics) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LoadError, match="MERGE"):
        merge_counts(metrics)
