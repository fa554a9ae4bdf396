"""framework.lake.rows on delta-rs: guarded merges, appends and reads of small tables.

No Spark: tables are made and read with ``deltalake`` only; the Spark path of the same
calls runs in tests/integration/test_control_store.py (``RESTLAKE_SMALL_WRITES=spark``).
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.sql.types import IntegerType, StringType, StructField, StructType, TimestampType

from framework.lake.commits import is_conflict, retry_conflicts
from framework.lake.rows import (ENGINE_ENV, Guarded, append_rows, arrow_schema, merge_rows,
                                 read_rows, uses_delta_rs)
from framework.lake.tables import TableRef, Warehouse

UTC = dt.timezone.utc
SCHEMA = StructType([StructField("Id", StringType(), False), StructField("Status", StringType()),
                     StructField("Attempt", IntegerType()), StructField("At", TimestampType())])
REF = TableRef("main", "metadata", "rows")
GUARD = ["Status", "Attempt"]


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    wh = Warehouse(tmp_path / "wh")
    rows = [{"Id": f"r{i}", "Status": "PENDING", "Attempt": 0, "At": None} for i in range(3)]
    write_deltalake(wh.path(REF), pa.Table.from_pylist(rows, schema=arrow_schema(SCHEMA)))
    return wh


def table(wh: Warehouse) -> dict[str, dict]:
    return {r["Id"]: r for r in DeltaTable(wh.path(REF)).to_pyarrow_table().to_pylist()}


def claim(row_id: str, runner: str, expect_status="PENDING", expect_attempt=0) -> Guarded:
    return Guarded({"Id": row_id, "Status": runner, "Attempt": expect_attempt + 1},
                   {"Status": expect_status, "Attempt": expect_attempt})


def test_a_guarded_merge_writes_only_rows_still_as_read(warehouse):
    n = merge_rows(None, warehouse, REF, SCHEMA, "Id", ["Status", "Attempt"], GUARD,
                   [claim("r0", "A"), claim("r1", "A", expect_status="RUNNING")])
    assert n == 1
    rows = table(warehouse)
    assert (rows["r0"]["Status"], rows["r0"]["Attempt"]) == ("A", 1)
    assert (rows["r1"]["Status"], rows["r1"]["Attempt"]) == ("PENDING", 0)


def test_of_two_writers_that_read_the_same_row_one_wins_and_the_other_conflicts(
        warehouse, monkeypatch):
    import deltalake

    # B read the table before A's commit: its MERGE runs on that older version.
    stale = DeltaTable(warehouse.path(REF))
    merge_rows(None, warehouse, REF, SCHEMA, "Id", ["Status", "Attempt"], GUARD, [claim("r0", "A")])
    with monkeypatch.context() as m:
        m.setattr(deltalake, "DeltaTable", lambda path: stale)
        with pytest.raises(Exception) as raised:
            merge_rows(None, warehouse, REF, SCHEMA, "Id", ["Status", "Attempt"], GUARD,
                       [claim("r0", "B")])
    assert is_conflict(raised.value)
    # Retried after a fresh read, B's guard no longer holds: nothing is written.
    assert retry_conflicts(lambda: merge_rows(None, warehouse, REF, SCHEMA, "Id",
                                              ["Status", "Attempt"], GUARD, [claim("r0", "B")]),
                           "claim") == 0
    assert table(warehouse)["r0"]["Status"] == "A"


def test_the_guard_matches_nulls_null_safely(warehouse):
    at = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    row = Guarded({"Id": "r2", "At": at}, {"Status": "PENDING", "At": None})
    assert merge_rows(None, warehouse, REF, SCHEMA, "Id", ["At"], ["Status", "At"], [row]) == 1
    assert table(warehouse)["r2"]["At"] == at
    # The same guard again: At is no longer null, so nothing matches.
    assert merge_rows(None, warehouse, REF, SCHEMA, "Id", ["At"], ["Status", "At"], [row]) == 0


def test_insert_adds_absent_keys_and_never_duplicates_a_key_whose_guard_failed(warehouse):
    rows = [Guarded({"Id": "new", "Status": "PENDING", "Attempt": 0}, {"Status": None}),
            Guarded({"Id": "r0", "Status": "X", "Attempt": 5}, {"Status": "RUNNING"})]
    assert merge_rows(None, warehouse, REF, SCHEMA, "Id", ["Status", "Attempt"], ["Status"], rows,
                      insert=True) == 1
    ids = [r["Id"] for r in DeltaTable(warehouse.path(REF)).to_pyarrow_table().to_pylist()]
    assert sorted(ids) == ["new", "r0", "r1", "r2"]
    assert table(warehouse)["r0"]["Status"] == "PENDING"


@pytest.mark.parametrize("name", ['Status" = "x', "a b", "1x", "t.Status"])
def test_a_column_that_is_not_an_identifier_is_refused(warehouse, name):
    with pytest.raises(ValueError, match="not a column name"):
        merge_rows(None, warehouse, REF, SCHEMA, "Id", [name], [], [Guarded({"Id": "r0"}, {})])


def test_two_rows_of_one_key_are_refused_before_any_write(warehouse):
    version = DeltaTable(warehouse.path(REF)).version()
    with pytest.raises(ValueError, match="two rows with one Id"):
        merge_rows(None, warehouse, REF, SCHEMA, "Id", ["Status"], [],
                   [Guarded({"Id": "r0", "Status": "a"}, {}), Guarded({"Id": "r0", "Status": "b"}, {})])
    assert DeltaTable(warehouse.path(REF)).version() == version


def test_a_value_that_looks_like_sql_is_stored_as_data(warehouse):
    text = "x' OR 1=1 --"
    merge_rows(None, warehouse, REF, SCHEMA, "Id", ["Status"], [],
               [Guarded({"Id": "r1", "Status": text}, {})])
    rows = table(warehouse)
    assert rows["r1"]["Status"] == text
    assert [r["Status"] for k, r in rows.items() if k != "r1"] == ["PENDING", "PENDING"]


def test_append_adds_rows_and_a_wider_schema_only_when_asked(warehouse):
    wider = StructType(list(SCHEMA.fields) + [StructField("Note", StringType())])
    with pytest.raises(ValueError, match="lacks the columns"):
        append_rows(None, warehouse, REF, wider, [{"Id": "a", "Note": "n"}], "rows")
    append_rows(None, warehouse, REF, wider, [{"Id": "a", "Note": "n"}, {"Id": "b"}], "rows",
                merge_schema=True)
    rows = table(warehouse)
    assert (rows["a"]["Note"], rows["b"]["Note"], rows["r0"]["Note"]) == ("n", None, None)


def test_reads_filter_files_written_by_appends_and_by_merges_alike(warehouse):
    # A file a delta-rs MERGE wrote holds string_view columns; an append's holds strings.
    merge_rows(None, warehouse, REF, SCHEMA, "Id", ["Status"], [],
               [Guarded({"Id": "r0", "Status": "DONE"}, {})])
    append_rows(None, warehouse, REF, SCHEMA, [{"Id": "r9", "Status": "DONE"}], "rows")
    done = read_rows(None, warehouse, REF, {"Status": "DONE"})
    assert sorted(r["Id"] for r in done) == ["r0", "r9"]
    assert [r["Id"] for r in read_rows(None, warehouse, REF, {"Id": ["r1", "r9"], "Status": "DONE"},
                                       ["Id"])] == ["r9"]


def test_a_local_warehouse_writes_with_delta_rs_unless_told_spark(warehouse, monkeypatch):
    assert uses_delta_rs(warehouse)
    assert not uses_delta_rs(Warehouse(None))
    monkeypatch.setenv(ENGINE_ENV, "spark")
    assert not uses_delta_rs(warehouse)
