"""A batch whose staging proved every primary key distinct is written without the
one-row-per-key pass (a shuffle of every row); a batch with a repeated key, or keys the
staging could not prove distinct, is deduped as before. The rows are the same either way."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable as RsDeltaTable

from framework.config import parse_source
from framework.load import writers
from tests.integration.helpers import read_target, run_loads, target_ref
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc


def _config(url: str, config_id: str, **extra) -> object:
    return parse_source({
        "config_id": config_id, "api_name": "Keys", "source_system": "keys", "endpoint": url,
        "data_path": "data", "primary_key": ["id"], "cursor_field": "updated_at",
        "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-03T00:00:00Z",
        "target": {"catalog": "raw", "schema": "keys", "table": config_id},
        "limits": {"timeout_s": 5, "max_retries": 0}, **extra})


def _records(ids: list, v: str) -> list[dict]:
    return [{"id": i, "updated_at": "2024-01-02T00:00:00Z", "v": f"{v}{n}"}
            for n, i in enumerate(ids)]


def _load(spark, warehouse, store, api, cfg, records, now=None) -> tuple[object, int]:
    """Run one load of ``records``; (its outcome, the Spark stages its jobs ran)."""
    api.route("/items", Reply(200, {"data": records}))
    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup(None))
    [outcome] = run_loads(spark, warehouse, store, [cfg], now=now)
    jobs = set(tracker.getJobIdsForGroup(None)) - before
    stages = sum(len(tracker.getJobInfo(j).stageIds) for j in jobs if tracker.getJobInfo(j))
    assert outcome.status == "SUCCESS", outcome.error
    return outcome, stages


def test_distinct_keys_skip_the_dedupe_and_a_repeated_key_does_not(spark, warehouse, store):
    with FakeApi() as api:
        unique_cfg = _config(api.url("/items"), "keys_unique")
        repeat_cfg = _config(api.url("/items"), "keys_repeat")
        unique, unique_stages = _load(spark, warehouse, store, api, unique_cfg,
                                      _records([1, 2, 3, 4], "u"))
        # the same rows and key 3 again, older: its later updated_at wins, not arrival
        repeat, repeat_stages = _load(spark, warehouse, store, api, repeat_cfg, _records(
            [1, 2, 3, 4], "r") + [{"id": 3, "updated_at": "2024-01-01T00:00:00Z", "v": "older"}])
    assert unique.rows_written == 4 and repeat.rows_written == 4
    assert unique_stages < repeat_stages  # the window over the keys is a stage of its own
    got = read_target(spark, warehouse, repeat_cfg).select("id", "v")
    assert_df_equality(got, spark.createDataFrame(
        [(1, "r0"), (2, "r1"), (3, "r2"), (4, "r3")], "id long, v string"),
        ignore_row_order=True)
    rows = RsDeltaTable(warehouse.path(target_ref(unique_cfg))).to_pyarrow_table(
        columns=["id", "v", "entity_key"]).to_pylist()
    assert sorted((r["id"], r["v"], r["entity_key"]) for r in rows) == [
        (1, "u0", "1"), (2, "u1", "2"), (3, "u2", "3"), (4, "u3", "4")]


def test_keys_one_column_type_could_equate_are_deduped(spark, warehouse, store):
    """1 and 1.0 are distinct texts but one key once the column is a double."""
    with FakeApi() as api:
        cfg = _config(api.url("/items"), "keys_float")
        records = [{"id": 1, "updated_at": "2024-01-01T00:00:00Z", "v": "old"},
                   {"id": 1.0, "updated_at": "2024-01-02T00:00:00Z", "v": "new"}]
        _load(spark, warehouse, store, api, cfg, records)
    assert [(r["id"], r["v"]) for r in read_target(spark, warehouse, cfg).collect()] == [(1.0, "new")]


def test_an_incremental_batch_of_distinct_keys_merges_as_before(spark, warehouse, store):
    with FakeApi() as api:
        cfg = _config(api.url("/items"), "keys_merge", delta_column=True)
        _load(spark, warehouse, store, api, cfg, _records([1, 2, 3], "a"))
        incr, _ = _load(spark, warehouse, store, api, cfg,
                        [{"id": 2, "updated_at": "2024-01-03T00:00:00Z", "v": "changed"},
                         {"id": 3, "updated_at": "2024-01-02T00:00:00Z", "v": "a2"},  # unchanged
                         {"id": 5, "updated_at": "2024-01-03T00:00:00Z", "v": "new"}],
                        now=dt.datetime(2024, 1, 4, tzinfo=UTC))
    assert incr.audit["LoadType"] == "INCREMENTAL" and incr.rows_written == 2
    got = read_target(spark, warehouse, cfg).select("id", "v")
    assert_df_equality(got, spark.createDataFrame(
        [(1, "a0"), (2, "changed"), (3, "a2"), (5, "new")], "id long, v string"),
        ignore_row_order=True)


@pytest.mark.parametrize("broadcast_rows", [writers.BROADCAST_ROWS, 0], ids=["broadcast", "planned"])
def test_only_new_and_changed_rows_reach_the_merge(spark, warehouse, store, monkeypatch,
                                                   broadcast_rows):
    """The unchanged rows are taken out by (key, payload_hash) whether the batch is broadcast
    or Spark plans the joins; with a key repeated in the batch only its latest row counts."""
    monkeypatch.setattr(writers, "BROADCAST_ROWS", broadcast_rows)
    with FakeApi() as api:
        cfg = _config(api.url("/items"), f"keys_changed_{broadcast_rows}", delta_column=True)
        _load(spark, warehouse, store, api, cfg, _records([1, 2, 3, 4], "a"))
        day2 = "2024-01-02T00:00:00Z"
        incr, _ = _load(spark, warehouse, store, api, cfg, [
            {"id": 1, "updated_at": day2, "v": "a0"},                      # unchanged
            {"id": 2, "updated_at": "2024-01-03T00:00:00Z", "v": "changed"},
            {"id": 3, "updated_at": day2, "v": "a2"},                      # as in the target ...
            {"id": 3, "updated_at": "2024-01-03T00:00:00Z", "v": "b3"},    # ... then changed
            {"id": 4, "updated_at": "2024-01-01T00:00:00Z", "v": "x"},     # an older change ...
            {"id": 4, "updated_at": day2, "v": "a3"},                      # ... the latest is as is
            {"id": 5, "updated_at": "2024-01-03T00:00:00Z", "v": "new"}],
            now=dt.datetime(2024, 1, 4, tzinfo=UTC))
    assert incr.audit["LoadType"] == "INCREMENTAL"
    assert incr.rows_written == 3  # 2, 3 and 5: the rows 1 and 4 never reached the MERGE
    got = read_target(spark, warehouse, cfg).select("id", "v")
    assert_df_equality(got, spark.createDataFrame(
        [(1, "a0"), (2, "changed"), (3, "b3"), (4, "a3"), (5, "new")], "id long, v string"),
        ignore_row_order=True)
    rows = RsDeltaTable(warehouse.path(target_ref(cfg))).to_pyarrow_table(columns=["id", "v"])
    assert sorted(zip(*rows.to_pydict().values())) == [
        (1, "a0"), (2, "changed"), (3, "b3"), (4, "a3"), (5, "new")]
