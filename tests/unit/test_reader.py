"""The JVM-free read path: versions, Arrow tables cached by version, incremental appends."""

from __future__ import annotations

import datetime as dt

from framework.lake.reader import TableReader
from framework.lake.tables import TableRef, Warehouse
from framework.ops.queries import HEALTH_COLUMNS
from tests.unit._lake import UTC, health_rows, write_health

REF = TableRef("main", "metadata", "api_health_log")
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def test_a_table_is_read_once_per_version_and_appends_read_only_new_files(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    reader = TableReader(wh)
    assert reader.version(REF) is None and reader.table(REF) is None

    write_health(wh, health_rows("a", T0, [True, False, True]))
    assert reader.version(REF) == 0
    first = reader.table(REF, HEALTH_COLUMNS)
    assert first.num_rows == 3 and (reader.reads, reader.files_read) == (1, 1)
    assert reader.table(REF, HEALTH_COLUMNS) is first  # same version: served from the cache
    assert (reader.reads, reader.files_read) == (1, 1)

    write_health(wh, health_rows("b", T0, [True, True]))
    write_health(wh, health_rows("c", T0, [False]))
    assert reader.version(REF) == 2
    grown = reader.table(REF, HEALTH_COLUMNS)
    assert sorted(grown.column("ConfigId").to_pylist()) == ["a", "a", "a", "b", "b", "c"]
    # append-only table: only the two new files were read
    assert (reader.reads, reader.files_read) == (2, 3)
    assert grown.schema == first.schema

    fresh = TableReader(wh).table(REF, HEALTH_COLUMNS)  # a full read of the same version
    key = lambda r: (r["ConfigId"], r["RunId"])  # noqa: E731
    assert sorted(fresh.to_pylist(), key=key) == sorted(grown.to_pylist(), key=key)


def test_answers_are_recomputed_only_when_a_version_moves(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    write_health(wh, health_rows("a", T0, [True]))
    reader = TableReader(wh)
    calls = []

    def count_rows():
        calls.append(1)
        return reader.table(REF).num_rows

    assert reader.cached("n", [REF], count_rows) == 1
    assert reader.cached("n", [REF], count_rows) == 1
    assert len(calls) == 1
    write_health(wh, health_rows("a", T0 + dt.timedelta(hours=1), [True, True]))
    assert reader.cached("n", [REF], count_rows) == 3
    assert len(calls) == 2


def test_a_table_dropped_and_created_again_is_read_anew(tmp_path):
    import shutil

    wh = Warehouse(tmp_path / "wh")
    for _ in range(3):
        write_health(wh, health_rows("a", T0, [True]))
    reader = TableReader(wh)
    assert reader.version(REF) == 2 and reader.table(REF).num_rows == 3
    shutil.rmtree(wh.path(REF))
    write_health(wh, health_rows("z", T0, [False]))
    assert reader.version(REF) == 0
    assert reader.table(REF).column("ConfigId").to_pylist() == ["z"]


def test_duckdb_queries_bind_values_as_parameters(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    write_health(wh, health_rows("a", T0, [True, False]) + health_rows("b'; DROP", T0, [True]))
    reader = TableReader(wh)
    rows = reader.query("SELECT ConfigId, count(*) AS n FROM h WHERE ConfigId = $cid GROUP BY 1",
                        {"h": reader.table(REF)}, {"cid": "b'; DROP"})
    assert rows == [{"ConfigId": "b'; DROP", "n": 1}]
    [row] = reader.query("SELECT max(CheckedAt) AS t FROM h", {"h": reader.table(REF)})
    assert row["t"] == T0 + dt.timedelta(minutes=10) and row["t"].tzinfo == UTC


def test_a_background_answer_serves_the_previous_one_until_recomputed(tmp_path):
    import threading

    wh = Warehouse(tmp_path / "wh")
    write_health(wh, health_rows("a", T0, [True]))
    reader = TableReader(wh)
    release, done = threading.Event(), threading.Event()

    def count(wait: bool):
        def compute():
            if wait:
                release.wait(10)
            n = reader.table(REF).num_rows
            if wait:
                done.set()
            return n
        return compute

    assert reader.cached("n", [REF], count(False), background=True) == 1  # first: computed in the call
    write_health(wh, health_rows("a", T0, [True]))
    assert reader.cached("n", [REF], count(True), background=True) == 1  # previous answer, at once
    assert reader.cached("n", [REF], count(True), background=True) == 1  # one refresh at a time
    release.set()
    assert done.wait(10)
    for _ in range(100):
        if reader.cached("n", [REF], count(False), background=True) == 2:
            break
        threading.Event().wait(0.05)
    assert reader.cached("n", [REF], count(False), background=True) == 2


def test_a_warehouse_folder_with_a_percent_sign_is_refused_with_the_folder_named(tmp_path, capsys):
    # delta-rs reads '%' in a table path as an escape: status, audit and every other
    # JVM-free read of a warehouse in "ops%20wh" looked in "ops wh" and failed with a
    # "file not found" naming a folder the user never made.
    import pytest

    from framework.cli.app import main
    from framework.errors import ConfigError

    folder = tmp_path / "ops%20wh"
    with pytest.raises(ConfigError, match=r"ops%20wh.*'%'"):
        Warehouse(folder)
    assert main(["--warehouse", str(folder), "status"]) == 1
    out = capsys.readouterr()
    assert "ops%20wh" in out.out + out.err and "'%'" in out.out + out.err
    assert Warehouse(tmp_path / "ops wh ü").root == (tmp_path / "ops wh ü").resolve()
