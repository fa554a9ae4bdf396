"""No secret is stored in any table: real loads with the raw archive, page batches (with a
resume from a checkpoint), a ``${ENV}`` key in the endpoint and a Link header that echoes
the API key; then every Delta table under the warehouse is read with the ``deltalake``
reader and every string column searched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from framework.demoapi import DemoApi
from tests.integration.helpers import UTC, actual_rows, expected_rows, read_target, run_loads, source

pytestmark = pytest.mark.spark

API_KEY = "rl-nosecret-ApiKey-8c1d2e3f4a"
URL_SIG = "rl-nosecret-UrlSig-5b6c7d8e9f"


def _delta_tables(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("_delta_log") if p.is_dir())


def _string_cells(table: Path) -> list[str]:
    from deltalake import DeltaTable

    data = DeltaTable(str(table)).to_pyarrow_table()
    cells = []
    for name in data.column_names:
        column = data.column(name)
        if str(column.type) in ("string", "large_string"):
            cells += [v for v in column.to_pylist() if v is not None]
    return cells


def test_no_secret_is_stored_in_any_table(spark, warehouse, store, monkeypatch):
    monkeypatch.setenv("RL_NOSECRET_KEY", API_KEY)
    monkeypatch.setenv("RL_NOSECRET_SIG", URL_SIG)
    auth = {"method": "api_key", "secret": "env:RL_NOSECRET_KEY", "query": "api_key"}
    with DemoApi(seed=23, records_per_resource=120, end=dt.datetime(2024, 1, 7, tzinfo=UTC),
                 max_page_size=10, auth={"method": "api_key", "query": "api_key", "key": API_KEY}) as api:
        endpoint = api.base_url + "/api/link_header/issues?sig=${RL_NOSECRET_SIG}"
        archived = source(api.base_url, "link_header", "nosecret_archive", endpoint=endpoint,
                          auth=auth, archive=True, params={"since": "{window_start}",
                                                           "until": "{window_end}", "per_page": 10})
        batched = source(api.base_url, "link_header", "nosecret_batches", endpoint=endpoint,
                         auth=auth, delta_column=True, window="none", end="2024-01-02T00:00:00Z",
                         params={"since": "{window_start}", "until": "{window_end}", "per_page": 10},
                         limits={"max_retries": 0, "pages_per_commit": 2})
        api.clear_log()
        outcomes = run_loads(spark, warehouse, store, [archived, batched])
        assert [o.status for o in outcomes] == ["SUCCESS", "SUCCESS"], [o.error for o in outcomes]
        echoed = any(e["query"].get("page") == "2" and e["query"].get("sig") == URL_SIG
                     for e in api.request_log)  # the Link header echoed key and signature

        # incremental load of the batched source in page batches; the 6th page fails, so a
        # rerun resumes from a checkpoint whose next link echoed the key and the signature
        now = dt.datetime(2024, 1, 5, tzinfo=UTC)
        api.faults.add("500", times=None, path="/api/link_header/issues", after=5)
        [failed] = run_loads(spark, warehouse, store, [batched], now=now)
        assert failed.status == "PARTIAL"
        api.faults.clear()
        api.clear_log()
        [resumed] = run_loads(spark, warehouse, store, [batched], now=now + dt.timedelta(minutes=5))
        assert resumed.status == "SUCCESS", resumed.error
        resumed_log = list(api.request_log)
        expected = expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z")
    assert actual_rows(read_target(spark, warehouse, batched)) == expected

    tables = _delta_tables(Path(warehouse.root))
    names = {t.name for t in tables}
    assert {"api_control_table", "api_audit_table", "api_window_log", "t_nosecret_archive",
            "t_nosecret_archive_raw", "t_nosecret_batches"} <= names, names
    cells = [cell for t in tables for cell in _string_cells(t)]
    text = "\n".join(cells)
    leaks = sorted({(t.name, name) for t in tables for c in _string_cells(t)
                    for name, value in (("api key", API_KEY), ("url signature", URL_SIG))
                    if value in c})
    assert leaks == []
    # we looked at real content: the archived URL, the checkpoints, the templates
    assert "CHECKPOINT" in text and "${RL_NOSECRET_SIG}" in text and "page=2" in text
    assert echoed  # the Link header really echoed the key and the signature
    first = resumed_log[0]["query"]
    assert first.get("page") not in (None, "1")  # the rerun resumed from the checkpoint ...
    assert first.get("sig") == URL_SIG  # ... with the masked signature restored
    assert all(e["auth"] and e["status"] == 200 for e in resumed_log)
