"""``replay`` reads every archived page as the run read it: a body the run read in UTF-16
(kept as UTF-8) and a ``204 No Content`` page (an empty page of a ``$`` data path)."""

from __future__ import annotations

import json

import pytest
from deltalake import DeltaTable as RsDeltaTable

from framework.config import parse_source
from framework.load.archive import replay
from tests.integration.helpers import run_loads, target_ref
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark

RECORDS = [{"id": 1, "name": "Zürich 😀"}, {"id": 2, "name": "naïve"}]


def _answer(got):
    if got.query["since"] == ["2024-01-01T00:00:00Z"]:
        return Reply(200, json.dumps(RECORDS, ensure_ascii=False).encode("utf-16"))
    return Reply(204)  # nothing in this window


def test_a_replay_reads_a_utf16_page_and_a_no_content_page_as_the_run_did(spark, warehouse, store):
    with FakeApi() as api:
        api.route("/items", _answer)
        cfg = parse_source({
            "config_id": "pages", "api_name": "Pages", "source_system": "pages",
            "endpoint": api.url("/items"), "params": {"since": "{window_start}"},
            "data_path": "$", "primary_key": ["id"], "archive": True, "window": "daily",
            "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-03T00:00:00Z",
            "target": {"catalog": "raw", "schema": "pages", "table": "pages"},
            "limits": {"timeout_s": 5, "max_retries": 0}})
        [run] = run_loads(spark, warehouse, store, [cfg])
        assert run.status == "SUCCESS", run.error
        asked = len(api.received)
        result = replay(spark, store, "pages", run.audit["RunId"], warehouse.root / "_staging")
        assert len(api.received) == asked  # no API call
    assert (result.pages, result.records) == (2, 2)
    rows = RsDeltaTable(str(warehouse.path(target_ref(cfg)))).to_pyarrow_table(
        columns=["id", "name"]).to_pylist()
    assert sorted(rows, key=lambda r: r["id"]) == RECORDS
    audit = store.audit_rows("pages")[0]
    assert (audit["LoadType"], audit["LoadStatus"]) == ("REPLAY", "SUCCESS"), audit["ErrorMessage"]
