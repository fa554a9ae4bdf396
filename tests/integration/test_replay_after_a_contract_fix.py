"""``replay`` after the user fixes the contract: the archived pages of a run are shaped
against the fixed one, so what that run quarantined or rescued lands in its columns."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from deltalake import DeltaTable as RsDeltaTable

from framework.config import parse_source
from framework.load.archive import replay
from tests.integration.helpers import read_target, run_loads, target_ref
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc


def _config(url: str, **keys):
    return parse_source({
        "config_id": "fixed", "api_name": "Fixed", "source_system": "fixed", "endpoint": url,
        "data_path": "data", "primary_key": ["id"], "delta_column": True, "archive": True,
        "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-02T00:00:00Z", "window": "none",
        "target": {"catalog": "raw", "schema": "fixed", "table": "fixed"},
        "limits": {"timeout_s": 5, "max_retries": 0}, **keys})


def test_a_replay_after_the_contract_is_fixed_lands_what_the_run_rescued_or_quarantined(
        spark, warehouse, store):
    with FakeApi() as api:
        api.route("/items", Reply(200, {"data": [{"id": 1, "email": "a@x", "n": 1}]}))
        strict = _config(api.url("/items"), required_fields=["email"])
        [first] = run_loads(spark, warehouse, store, [strict])
        assert first.status == "SUCCESS", first.error
        # the API starts sending a new field and a record without email
        api.route("/items", Reply(200, {"data": [
            {"id": 1, "email": "a@x", "n": 1, "priority": "high"},
            {"id": 2, "email": None, "n": 2, "priority": "low"}]}))
        [drifted] = run_loads(spark, warehouse, store, [strict],
                              now=dt.datetime(2024, 1, 3, tzinfo=UTC))
        assert drifted.status == "SUCCESS", drifted.error
        assert drifted.audit["RejectedRows"] == 1 and drifted.audit["RescuedRows"] == 1

        # the contract is fixed: new columns are added, email is no longer required
        fixed = _config(api.url("/items"), schema_mode="evolve")
        store.generate([fixed], now=dt.datetime(2024, 1, 3, 1, tzinfo=UTC))
        result = replay(spark, store, "fixed", drifted.audit["RunId"], warehouse.root / "_staging")
    assert result.rows_written == 2
    rows = RsDeltaTable(str(warehouse.path(target_ref(fixed)))).to_pyarrow_table(
        columns=["id", "email", "n", "priority", "_rescued_data"]).to_pylist()
    assert sorted(rows, key=lambda r: r["id"]) == [
        {"id": 1, "email": "a@x", "n": 1, "priority": "high", "_rescued_data": None},
        {"id": 2, "email": None, "n": 2, "priority": "low", "_rescued_data": None}]
    assert read_target(spark, warehouse, fixed).count() == 2
    audit = store.audit_rows("fixed")[0]
    assert (audit["LoadType"], audit["LoadStatus"], audit["TargetRowCount"]) == (
        "REPLAY", "SUCCESS", 2)
    assert json.loads(audit["SchemaChanges"]) == ["priority"]


def test_a_full_load_into_a_shared_table_after_a_contract_fix_puts_rescued_fields_in_columns(
        spark, warehouse, store):
    # a full load of a table other sources share replaces this source's rows by MERGE: an
    # unchanged record shaped against the fixed contract changed all the same
    def config(url: str, system: str, **keys):
        return parse_source({
            "config_id": system, "api_name": system, "source_system": system, "endpoint": url,
            "data_path": "data", "primary_key": ["id"], "load_start": "2024-01-01T00:00:00Z",
            "load_end": "2024-01-02T00:00:00Z", "window": "none",
            "target": {"catalog": "raw", "schema": "fixed", "table": "shared"},
            "limits": {"timeout_s": 5, "max_retries": 0}, **keys})

    with FakeApi() as api:
        api.route("/a", Reply(200, {"data": [{"id": 1, "v": "a"}]}))
        api.route("/b", Reply(200, {"data": [{"id": 2, "v": "b", "extra": "x"}]}))
        a, b = config(api.url("/a"), "sys_a"), config(api.url("/b"), "sys_b")
        assert all(o.status == "SUCCESS" for o in run_loads(spark, warehouse, store, [a]))
        assert all(o.status == "SUCCESS" for o in run_loads(spark, warehouse, store, [b]))
        fixed = config(api.url("/b"), "sys_b", schema_mode="evolve")
        [again] = run_loads(spark, warehouse, store, [fixed],
                            now=dt.datetime(2024, 1, 3, tzinfo=UTC))
        assert again.status == "SUCCESS", again.error
    rows = RsDeltaTable(str(warehouse.path(target_ref(fixed)))).to_pyarrow_table(
        columns=["id", "v", "extra", "_rescued_data"]).to_pylist()
    assert sorted(rows, key=lambda r: r["id"]) == [
        {"id": 1, "v": "a", "extra": None, "_rescued_data": None},
        {"id": 2, "v": "b", "extra": "x", "_rescued_data": None}]
