"""Field names that pass validation work: keys, cursor and required fields with ``.`` or ``-``
name the record's field and its written column alike (``updated-at`` -> ``updated_at``)."""

from __future__ import annotations

import datetime as dt

import pytest
from deltalake import DeltaTable as RsDeltaTable

from framework.config import parse_source
from tests.integration.helpers import read_target, run_loads, target_ref
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc
OLD, NEW = "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"


def _config(url: str, config_id: str, **keys) -> object:
    return parse_source({
        "config_id": config_id, "api_name": "Names", "source_system": "names", "endpoint": url,
        "data_path": "data", "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-03T00:00:00Z",
        "target": {"catalog": "raw", "schema": "names", "table": config_id},
        "limits": {"timeout_s": 5, "max_retries": 0}, **keys})


def test_keys_cursor_and_required_fields_with_dots_and_dashes(spark, warehouse, store):
    page = {"data": [
        # the same key twice in one batch: the later updated-at wins though it comes first
        {"ext-id": 1, "updated-at": NEW, "user.login": "mona", "v": "new"},
        {"ext-id": 1, "updated-at": OLD, "user.login": "mona", "v": "old"},
        {"ext-id": 2, "updated-at": OLD, "user.login": "hubot", "v": "two"},
        {"ext-id": 3, "updated-at": OLD, "user.login": None, "v": "no login"},  # quarantined
    ]}
    with FakeApi() as api:
        api.route("/items", Reply(200, page))
        cfg = _config(api.url("/items"), "dashed", primary_key=["ext-id"], delta_column=True,
                      cursor_field="updated-at", required_fields=["user.login"])
        [full] = run_loads(spark, warehouse, store, [cfg])
        assert full.status == "SUCCESS", full.error
        df = read_target(spark, warehouse, cfg)
        assert sorted((r["ext_id"], r["v"]) for r in df.collect()) == [(1, "new"), (2, "two")]
        assert full.audit["RejectedRows"] == 1

        # INCREMENTAL: MERGE on ext_id updates one row and inserts another
        api.route("/items", Reply(200, {"data": [
            {"ext-id": 2, "updated-at": NEW, "user.login": "hubot", "v": "two again"},
            {"ext-id": 4, "updated-at": NEW, "user.login": "octo", "v": "four"}]}))
        [incr] = run_loads(spark, warehouse, store, [cfg], now=dt.datetime(2024, 1, 4, tzinfo=UTC))
        assert incr.status == "SUCCESS", incr.error
        assert incr.audit["LoadType"] == "INCREMENTAL" and incr.rows_written == 2
    rows = RsDeltaTable(warehouse.path(target_ref(cfg))).to_pyarrow_table(
        columns=["ext_id", "v", "user_login"]).to_pylist()
    assert sorted((r["ext_id"], r["v"], r["user_login"]) for r in rows) == [
        (1, "new", "mona"), (2, "two again", "hubot"), (4, "four", "octo")]


def test_a_dashed_cursor_field_decides_among_duplicate_keys(spark, warehouse, store):
    with FakeApi() as api:
        api.route("/items", Reply(200, {"data": [
            {"id": 1, "updated-at": NEW, "v": "new"}, {"id": 1, "updated-at": OLD, "v": "old"}]}))
        cfg = _config(api.url("/items"), "cursor_dash", primary_key=["id"],
                      cursor_field="updated-at")
        [outcome] = run_loads(spark, warehouse, store, [cfg])
    assert outcome.status == "SUCCESS", outcome.error
    assert [(r["id"], r["v"]) for r in read_target(spark, warehouse, cfg).collect()] == [(1, "new")]


def test_a_primary_key_the_parser_never_produces_fails_before_any_write(spark, warehouse, store):
    with FakeApi() as api:
        api.route("/items", Reply(200, {"data": [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}]}))
        cfg = _config(api.url("/items"), "no_uid", primary_key=["uid"])
        [outcome] = run_loads(spark, warehouse, store, [cfg])
    assert outcome.status == "FAILED"
    assert outcome.error == ("primary_key field uid is not in the parsed records "
                             "(fields seen: id, title)")
    ref = target_ref(cfg)
    assert not warehouse.exists(spark, ref) and not warehouse.exists(spark, ref.suffixed("_quarantine"))
    assert store.audit_rows("no_uid")[0]["ErrorMessage"] == outcome.error


def test_keys_cursor_and_required_fields_with_spaces_commas_and_symbols(spark, warehouse, store):
    # Names as APIs send them ("record id", "last, first", "@timestamp", "2fa"): validation
    # refused every one ("is not a valid field name"), so such a source could not be keyed.
    # The key holds a comma, so the control row keeps it in the bracket (JSON list) form,
    # and the incremental generate reads it back as the same key (no "changed key" refusal).
    page = {"data": [
        {"record id": 1, "last, first": "Doe, J", "@timestamp": NEW, "2fa": True, "v": "new"},
        {"record id": 1, "last, first": "Doe, J", "@timestamp": OLD, "2fa": True, "v": "old"},
        {"record id": 2, "last, first": "Roe, R", "@timestamp": OLD, "2fa": False, "v": "two"},
        {"record id": 3, "last, first": "Poe, E", "@timestamp": OLD, "v": "no 2fa"},  # quarantined
    ]}
    with FakeApi() as api:
        api.route("/items", Reply(200, page))
        cfg = _config(api.url("/items"), "spaced", primary_key=["record id", "last, first"],
                      delta_column=True, cursor_field="@timestamp", required_fields=["2fa"])
        assert store.generate([cfg])[0].action == "created"
        assert store.get("spaced")["PrimaryColumn"] == '["record id","last, first"]'
        [full] = run_loads(spark, warehouse, store, [cfg], generate=False)
        assert full.status == "SUCCESS", full.error
        assert full.audit["RejectedRows"] == 1
        assert sorted((r["record_id"], r["last__first"], r["v"])
                      for r in read_target(spark, warehouse, cfg).collect()) == [
            (1, "Doe, J", "new"), (2, "Roe, R", "two")]

        # INCREMENTAL: MERGE on (record_id, last__first); an older @timestamp never wins
        api.route("/items", Reply(200, {"data": [
            {"record id": 2, "last, first": "Roe, R", "@timestamp": NEW, "2fa": True, "v": "two again"},
            {"record id": 1, "last, first": "Doe, J", "@timestamp": OLD, "2fa": True, "v": "stale"},
            {"record id": 2, "last, first": "Zoe, Z", "@timestamp": NEW, "2fa": True, "v": "other"}]}))
        [incr] = run_loads(spark, warehouse, store, [cfg], now=dt.datetime(2024, 1, 4, tzinfo=UTC))
        assert incr.status == "SUCCESS", incr.error
        assert incr.audit["LoadType"] == "INCREMENTAL"
    rows = RsDeltaTable(warehouse.path(target_ref(cfg))).to_pyarrow_table(
        columns=["record_id", "last__first", "v", "_2fa"]).to_pylist()
    assert sorted((r["record_id"], r["last__first"], r["v"], r["_2fa"]) for r in rows) == [
        (1, "Doe, J", "new", True), (2, "Roe, R", "two again", True), (2, "Zoe, Z", "other", True)]


def test_a_record_field_named_as_a_contract_column_in_another_case_is_rescued(spark, warehouse,
                                                                              store):
    with FakeApi() as api:
        api.route("/items", Reply(200, {"data": [{"id": 1, "Source_System": "theirs", "v": "a"}]}))
        cfg = _config(api.url("/items"), "cased", primary_key=["id"])
        [outcome] = run_loads(spark, warehouse, store, [cfg])
    assert outcome.status == "SUCCESS", outcome.error
    [row] = read_target(spark, warehouse, cfg).collect()
    assert row["source_system"] == "names" and '"Source_System":"theirs"' in row["_rescued_data"]
