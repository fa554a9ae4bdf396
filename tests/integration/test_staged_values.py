"""A record's values land the same in a new target and in the target a first load made.

A load into an existing target stages each record as its canonical JSON, like a first
load: a nested value bound for a string column and an int bound for a double column are
staged as they came, and the staged rows' reader (Spark's JSON reader, against the
target's schema) makes the first its canonical JSON text and the second a double.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable as RsDeltaTable

from framework.config import parse_source
from framework.schema import canonical_json, payload_hash
from tests.integration.helpers import read_target, run_loads, target_ref
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc

FIRST = [
    {"id": 1, "updated_at": "2024-01-01T01:00:00Z", "score": 2.5, "labels": ["b", "a"],
     "user": {"z": 1, "a": "é\"x\u0001/", "f": 1.5, "big": 2 ** 62}},
    {"id": 2, "updated_at": "2024-01-01T02:00:00Z", "score": 0.1, "labels": [],
     "user": {"n": None, "t": True, "e": {}, "l": [1.0, -0.0, 1e20, 1.5e-7]}},
]
# the same fields with other values, into the target FIRST made (score is a double column
# there, labels and user string columns); ints come as ints, and key order differs
LATER = [
    {"score": 7, "id": 2, "updated_at": "2024-01-02T02:00:00Z",
     "labels": [{"k": [1, None]}, "ü"], "user": {"y": 0.30000000000000004, "b": {"d": 1, "c": 2}}},
    {"id": 3, "updated_at": "2024-01-02T03:00:00Z", "score": 2 ** 53 - 1, "labels": ["x"],
     "user": {"id": 2 ** 63 - 1, "f": 1e-5}},
]


def _config(url: str, name: str = "staged_values") -> object:
    return parse_source({
        "config_id": name, "api_name": "Values", "source_system": "values",
        "endpoint": url, "data_path": "data", "primary_key": ["id"], "cursor_field": "updated_at",
        "delta_column": True, "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-03T00:00:00Z",
        "target": {"catalog": "raw", "schema": "values", "table": name},
        "limits": {"timeout_s": 5, "max_retries": 0}})


def _expected(records: list[dict]) -> list[tuple]:
    return [(r["id"], float(r["score"]), canonical_json(r["labels"]), canonical_json(r["user"]))
            for r in records]


def test_nested_values_and_ints_land_the_same_in_a_new_and_an_existing_target(
        spark, warehouse, store):
    with FakeApi() as api:
        cfg = _config(api.url("/items"))
        api.route("/items", Reply(200, {"data": FIRST}))
        [first] = run_loads(spark, warehouse, store, [cfg])
        assert first.status == "SUCCESS", first.error
        api.route("/items", Reply(200, {"data": LATER}))
        [later] = run_loads(spark, warehouse, store, [cfg],
                            now=dt.datetime(2024, 1, 4, tzinfo=UTC))
        assert later.status == "SUCCESS", later.error

    rows = _expected([FIRST[0], *LATER])
    got = read_target(spark, warehouse, cfg).select("id", "score", "labels", "user")
    assert dict(got.dtypes) == {"id": "bigint", "score": "double", "labels": "string",
                                "user": "string"}
    want = spark.createDataFrame(rows, got.schema)
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    assert read_target(spark, warehouse, cfg).where("_rescued_data IS NOT NULL").count() == 0

    # the same values through an independent reader
    table = RsDeltaTable(warehouse.path(target_ref(cfg))).to_pyarrow_table(
        columns=["id", "score", "labels", "user"]).to_pylist()
    assert sorted((r["id"], r["score"], r["labels"], r["user"]) for r in table) == sorted(rows)


def test_integers_a_double_column_cannot_hold_exactly_are_rescued_with_every_digit(
        spark, warehouse, store, executor):
    # score is a double column (the field had floats); a double holds every integer up to
    # 2**53 - 1 only: beyond, the value goes to _rescued_data as it came, never rounded
    first = [{"id": 1, "updated_at": "2024-01-01T01:00:00Z", "score": 2.5},
             {"id": 2, "updated_at": "2024-01-01T02:00:00Z", "score": 2 ** 53 + 1},
             {"id": 3, "updated_at": "2024-01-01T03:00:00Z", "score": 2 ** 53 - 1}]
    later = [{"id": 4, "updated_at": "2024-01-02T01:00:00Z", "score": -(2 ** 60) - 3},
             {"id": 5, "updated_at": "2024-01-02T02:00:00Z", "score": 2 ** 62 + 1, "extra": "x"},
             {"id": 6, "updated_at": "2024-01-02T03:00:00Z", "score": 7}]
    with FakeApi() as api:
        cfg = _config(api.url("/items"), "wide_ints")
        api.route("/items", Reply(200, {"data": first}))
        [full] = run_loads(spark, warehouse, store, [cfg], executor=executor)
        assert full.status == "SUCCESS", full.error
        api.route("/items", Reply(200, {"data": later}))
        [inc] = run_loads(spark, warehouse, store, [cfg], executor=executor,
                          now=dt.datetime(2024, 1, 4, tzinfo=UTC))
        assert inc.status == "SUCCESS", inc.error

    table = RsDeltaTable(warehouse.path(target_ref(cfg))).to_pyarrow_table(
        columns=["id", "score", "_rescued_data", "payload_hash"]).to_pylist()
    got = {r["id"]: (r["score"], json.loads(r["_rescued_data"]) if r["_rescued_data"] else None)
           for r in table}
    assert got == {1: (2.5, None), 2: (None, {"score": 2 ** 53 + 1}),
                   3: (float(2 ** 53 - 1), None), 4: (None, {"score": -(2 ** 60) - 3}),
                   5: (None, {"extra": "x", "score": 2 ** 62 + 1}), 6: (7.0, None)}
    # the hash is the record's, whatever was rescued
    hashes = {r["id"]: r["payload_hash"] for r in table}
    assert hashes == {r["id"]: payload_hash(r) for r in first + later}
    assert dict(read_target(spark, warehouse, cfg).select("score").dtypes) == {"score": "double"}
    assert full.audit["RescuedRows"] == 1 and inc.audit["RescuedRows"] == 2
    drift = {r["Field"]: json.loads(r["Detail"]) for r in store.quality_results(["wide_ints"])
             if r["RunId"] == inc.audit["RunId"]}
    assert drift == {"score": {"change": "retyped", "was": "double", "now": "long"},
                     "extra": {"change": "new"}}


def test_nan_and_infinity_land_as_such_and_hash_apart_from_null(spark, warehouse, store):
    # APIs that send NaN / Infinity (not JSON, but read): they landed as null, and a record
    # with NaN had the payload_hash of the one with null, so a change between them was lost
    first = (b'{"data": [{"id": 1, "x": NaN}, {"id": 2, "x": null}, {"id": 3, "x": Infinity},'
             b' {"id": 4, "x": 1.5}]}')
    later = b'{"data": [{"id": 2, "x": NaN}, {"id": 5, "x": -Infinity, "y": "new"}]}'
    with FakeApi() as api:
        cfg = parse_source({
            "config_id": "non_finite", "api_name": "Values", "source_system": "values",
            "endpoint": api.url("/items"), "data_path": "data", "primary_key": ["id"],
            "delta_column": True, "load_start": "2024-01-01T00:00:00Z",
            "load_end": "2024-01-02T00:00:00Z",
            "target": {"catalog": "raw", "schema": "values", "table": "non_finite"},
            "limits": {"timeout_s": 5, "max_retries": 0}})
        api.route("/items", Reply(200, first))
        [full] = run_loads(spark, warehouse, store, [cfg])
        assert full.status == "SUCCESS", full.error
        api.route("/items", Reply(200, later))
        [inc] = run_loads(spark, warehouse, store, [cfg], now=dt.datetime(2024, 1, 3, tzinfo=UTC))
        assert inc.status == "SUCCESS", inc.error

    table = RsDeltaTable(warehouse.path(target_ref(cfg))).to_pyarrow_table(
        columns=["id", "x", "_rescued_data"]).to_pylist()
    got = {r["id"]: (r["x"], r["_rescued_data"]) for r in table}
    assert set(got) == {1, 2, 3, 4, 5}
    assert math.isnan(got[1][0]) and math.isnan(got[2][0])  # id 2 changed from null to NaN
    assert (got[3][0], got[4][0], got[5][0]) == (math.inf, 1.5, -math.inf)
    assert json.loads(got[5][1]) == {"y": "new"}
    assert inc.rows_written == 2
