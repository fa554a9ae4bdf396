"""The pull path against an API that turns hostile mid-run, through the real runtime:
an OAuth token revoked while detail requests of three windows are in flight, a 403 on
a later window of an incremental load (PARTIAL, a clear audit row, a rerun that resumes
exactly once), and ``restlake run`` killed with SIGKILL inside a detail fan-out load
committed in page batches (its api key in the query, which the next links echo)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from framework.config import load_file
from framework.demoapi import DemoApi
from framework.demoapi.endpoints import Reply
from tests.integration.helpers import UTC, read_target, run_killed_at, run_loads, source

pytestmark = pytest.mark.spark

CLIENT_SECRET = "hostile-client-Secret-4d1f7a"
QUERY_KEY = "hostile-query-Key-9b2c5e"


def _hook(api, before):
    """Call ``before(call)`` ahead of every request the demo API dispatches; a reply it
    returns is sent instead of the endpoint's."""
    original = api.dispatch

    def dispatch(call):
        return before(call) or original(call)

    api.dispatch = dispatch


def _detail_rows(api, since, until):
    return sorted((r["id"], r["title"], f"Issue #{r['number']}: {r['title']}")
                  for r in api.dataset.records_in(since, until))


def _loaded(spark, warehouse, cfg):
    df = read_target(spark, warehouse, cfg)
    assert df.select("id").distinct().count() == df.count(), "duplicate keys in the target"
    return sorted((r["id"], r["title"], r["body"]) for r in df.select("id", "title", "body").collect())


def test_a_token_revoked_mid_run_is_fetched_once_again_for_every_request_it_failed(
        spark, warehouse, store, monkeypatch):
    monkeypatch.setenv("RL_HOSTILE_SECRET", CLIENT_SECRET)
    end = dt.datetime(2024, 1, 5, tzinfo=UTC)
    with DemoApi(seed=41, records_per_resource=120, end=end, max_page_size=10,
                 auth={"method": "oauth2", "client_id": "cid", "client_secret": CLIENT_SECRET,
                       "token_ttl_s": 3600}) as api:
        details = iter(range(1, 10_000))
        lock = threading.Lock()

        def revoke_at_the_40th_detail(call):
            if "/issues/" in call.path:
                with lock:
                    if next(details) == 40:  # ~3 windows' detail requests are in flight
                        api.revoke_tokens()

        _hook(api, revoke_at_the_40th_detail)
        cfg = source(api.base_url, "offset", "hostile_oauth", end="2024-01-04T00:00:00Z",
                     pagination={"page_size": 10},
                     auth={"method": "oauth2_client_credentials", "client_id": "cid",
                           "client_secret": "env:RL_HOSTILE_SECRET", "token_url": api.token_url},
                     detail={"endpoint": api.base_url + "/api/offset/issues/{id}",
                             "concurrency": 4})
        [outcome] = run_loads(spark, warehouse, store, [cfg])
        tokens = [e for e in api.request_log if e["path"] == "/oauth/token"]
        expected = _detail_rows(api, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z")
    assert outcome.status == "SUCCESS", outcome.error
    assert _loaded(spark, warehouse, cfg) == expected
    audit = store.audit_rows(cfg.config_id)[0]
    statuses = json.loads(audit["HttpStatusCounts"])
    assert statuses.get("401", 0) >= 1  # requests did meet the revoked token
    # every request rejected with the revoked token shared one refresh: one token more
    assert len(tokens) == 2, [e["path"] for e in tokens]
    assert CLIENT_SECRET not in repr(audit)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_on_a_later_window_keeps_the_committed_ones_and_the_rerun_resumes(
        spark, warehouse, store, monkeypatch, status):
    monkeypatch.setenv("RL_HOSTILE_KEY", QUERY_KEY)
    end = dt.datetime(2024, 1, 9, tzinfo=UTC)
    with DemoApi(seed=43, records_per_resource=200, end=end, max_page_size=10,
                 auth={"method": "api_key", "query": "api_key", "key": QUERY_KEY}) as api:
        cfg = source(api.base_url, "link_header", f"hostile_{status}", delta_column=True,
                     end="2024-01-02T00:00:00Z",
                     auth={"method": "api_key", "secret": "env:RL_HOSTILE_KEY", "query": "api_key"},
                     limits={"max_retries": 1, "concurrency": 1, "windows_per_commit": 1})
        [full] = run_loads(spark, warehouse, store, [cfg])
        assert full.status == "SUCCESS", full.error
        refusing = {"on": True}

        def refuse_the_third_day(call):
            if refusing["on"] and call.query.get("since", "").startswith("2024-01-04"):
                return Reply(status, {"error": {"message": f"key revoked ({status}) for "
                                                           f"api_key={QUERY_KEY}"}})

        _hook(api, refuse_the_third_day)
        now = dt.datetime(2024, 1, 6, tzinfo=UTC)
        [failed] = run_loads(spark, warehouse, store, [cfg], now=now)
        assert failed.status == "PARTIAL", (failed.status, failed.error)
        audit = store.audit_rows(cfg.config_id)[0]
        assert audit["LoadStatus"] == "PARTIAL" and str(status) in audit["ErrorMessage"]
        assert "key revoked" in audit["ErrorMessage"]
        assert QUERY_KEY not in repr(audit) and QUERY_KEY not in str(failed.error)
        row = store.get(cfg.config_id)
        assert (row["LoadType"], row["LoadStatus"]) == ("INCREMENTAL", "FAILED")
        # the two days before the refused one are committed
        loaded = {r["id"] for r in read_target(spark, warehouse, cfg).select("id").collect()}
        assert loaded == {r["id"] for r in api.dataset.records_in("2024-01-01T00:00:00Z",
                                                                   "2024-01-04T00:00:00Z")}

        refusing["on"] = False
        api.clear_log()
        [done] = run_loads(spark, warehouse, store, [cfg], now=now + dt.timedelta(minutes=5))
        assert done.status == "SUCCESS", done.error
        assert done.audit["LoadId"] == failed.audit["LoadId"]
        asked = {e["query"].get("since") for e in api.request_log if e["path"].endswith("/issues")}
        assert not any(s.startswith(("2024-01-02", "2024-01-03")) for s in asked if s), asked
        df = read_target(spark, warehouse, cfg)
        assert df.select("id").distinct().count() == df.count()
        assert sorted(r["id"] for r in df.select("id").collect()) == sorted(
            r["id"] for r in api.dataset.records_in("2024-01-01T00:00:00Z", "2024-01-06T00:00:00Z"))


# -- SIGKILL inside a detail fan-out load committed in page batches -----------------------------

DAY1, DAY2, DAY6 = "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-06T00:00:00Z"


def _kill_config(base_url: str, path: Path) -> Path:
    cfg = {
        "config_id": "killdetail", "api_name": "Demo", "source_system": "demo",
        "endpoint": base_url + "/api/link_header/issues",
        "params": {"since": "{window_start}", "until": "{window_end}", "per_page": 10},
        "auth": {"method": "api_key", "secret": "env:RL_HOSTILE_KEY", "query": "api_key"},
        "pagination": {"style": "link_header"}, "data_path": "$",
        "primary_key": ["id"], "cursor_field": "updated_at", "delta_column": True,
        "load_start": DAY1, "load_end": DAY2, "window": "P2D",
        "target": {"catalog": "raw", "schema": "crash", "table": "detailed"},
        "detail": {"endpoint": base_url + "/api/link_header/issues/{id}", "concurrency": 4},
        "limits": {"timeout_s": 10, "max_retries": 2, "backoff_base_s": 0.05, "concurrency": 2,
                   "pages_per_commit": 2},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_cli(warehouse: Path, crash_at: str | None, store) -> subprocess.CompletedProcess:
    return run_killed_at(warehouse, "killdetail", crash_at, store, RL_HOSTILE_KEY=QUERY_KEY)


def test_sigkill_inside_page_batches_of_a_detail_load_then_rerun_loads_each_record_once(
        spark, store, warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("RL_HOSTILE_KEY", QUERY_KEY)
    with DemoApi(seed=47, records_per_resource=260, end=dt.datetime(2024, 1, 7, tzinfo=UTC),
                 max_page_size=10, auth={"method": "api_key", "query": "api_key",
                                         "key": QUERY_KEY}) as api:
        cfg = load_file(_kill_config(api.base_url, tmp_path / "killdetail.yaml"))[0]
        [full] = run_loads(spark, warehouse, store, [cfg])  # the FULL load, in this process
        assert full.status == "SUCCESS", full.error

        # the incremental load: two windows of two days, 6+ pages each, a batch = 2 pages
        assert len(api.dataset.records_in(DAY2, "2024-01-04T00:00:00Z")) > 60
        store.generate([cfg], now=dt.datetime(2024, 1, 6, tzinfo=UTC))
        kills = ["after_target_commit:1",  # a batch committed, its checkpoint not logged
                 "page_fetched:5"]         # mid-window, after a batch and its checkpoint
        firsts = []  # each run's first list request
        for point in kills + [None]:
            seen = len(api.request_log)
            result = _run_cli(warehouse.root, point, store)
            expected_rc = -signal.SIGKILL if point else 0
            assert result.returncode == expected_rc, (point, result.returncode,
                                                      result.stdout[-3000:], result.stderr[-3000:])
            firsts.append(next(e for e in api.request_log[seen:]
                               if e["path"] == "/api/link_header/issues"))
        listed = [e for e in api.request_log if e["path"] == "/api/link_header/issues"]
        expected = _detail_rows(api, DAY1, DAY6)
    assert store.get("killdetail")["LoadStatus"] == "SUCCESS"
    assert _loaded(spark, warehouse, cfg) == expected
    # the first kill came before any checkpoint was logged: the second run starts the window
    # again; the last run resumes from the checkpoint the second one logged, mid-window
    assert [f["query"].get("page") for f in firsts[:2]] == [None, None]
    assert firsts[2]["query"].get("page") not in (None, "1"), firsts[2]
    # the key the next links echoed was masked in the checkpoint: the resumed requests
    # carry the key itself again, never the mask
    assert {e["query"].get("api_key") for e in listed} == {QUERY_KEY}
