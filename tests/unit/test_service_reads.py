"""The read side of the service over Delta tables written without a JVM, through real HTTP:
paging, query parameters, the keyless health answer, the OpenAPI document."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess

import pytest

from framework.lake.tables import TableRef, Warehouse
from framework.ops.health_store import HEALTH_SCHEMA
from framework.service.access import ApiKeys
from tests.unit._lake import (AUDIT_COLUMNS, AUDIT_TYPES, CONTROL_COLUMNS, CONTROL_TYPES,
                              HEALTH_TYPES, UTC, health_rows, write)
from tests.unit._service import DashboardDom, ServiceThread

try:
    from _httpd import FakeApi, Reply
except ImportError:  # pragma: no cover - run from the repository root
    from tests.unit._httpd import FakeApi, Reply

KEY = "reads-key-41c9e07d"
H = {"X-API-Key": KEY}
NOW = dt.datetime(2026, 12, 3, 5, 50, tzinfo=UTC)
#: A check row of a log written before rows had a CheckId.
OLD_HEALTH_COLUMNS = [f.name for f in HEALTH_SCHEMA.fields if f.name != "CheckId"]
AUDIT_STATUSES = ("SUCCESS", "FAILED", "PARTIAL", "FAILED_QUALITY", "INTERRUPTED", "LEASE_LOST")


def _control(cid: str, endpoint: str) -> dict:
    return {"ConfigId": cid, "APIName": "Demo", "LoadType": "FULL_LOAD", "LoadStatus": "SUCCESS",
            "TargetCatalog": "raw", "TargetSchema": "demo", "TargetTable": cid,
            "TriggerFrequency": "daily", "Enabled": True, "Attempt": 0, "AuthMethod": "none",
            "APIEndpoint": endpoint, "SourceSystem": "demo"}


@pytest.fixture(scope="module")
def fake_api():
    with FakeApi() as fake:
        fake.route("/ping", Reply(200, {"ok": True}))
        yield fake


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, fake_api):
    wh = Warehouse(tmp_path_factory.mktemp("reads") / "wh")
    write(wh, TableRef("main", "metadata", "api_control_table"),
          [_control("a", fake_api.url("/ping")), _control("b", fake_api.url("/ping"))],
          CONTROL_TYPES, CONTROL_COLUMNS)
    audit = [{"ConfigId": "a", "RunId": f"run-{i}", "LoadType": "FULL_LOAD", "LoadStatus": status,
              "LoggedAt": NOW - dt.timedelta(hours=1, minutes=i), "ErrorMessage": None}
             for i, status in enumerate(AUDIT_STATUSES)]
    write(wh, TableRef("main", "metadata", "api_audit_table"), audit, AUDIT_TYPES, AUDIT_COLUMNS)
    # a log written by an older restlake: no CheckId column
    write(wh, TableRef("main", "metadata", "api_health_log"),
          health_rows("b", NOW - dt.timedelta(hours=2), [True, False, False]), HEALTH_TYPES,
          OLD_HEALTH_COLUMNS, append_only=True)
    return wh


@pytest.fixture(scope="module")
def svc(warehouse):
    from framework.service.api import create_app

    import os

    os.environ["RL_READS_KEY"] = KEY
    app = create_app(warehouse, keys=ApiKeys.from_references("env:RL_READS_KEY"), clock=lambda: NOW)
    with ServiceThread(app) as running:
        yield running


def get(svc, path, **kw):
    resp = svc.get(path, headers=H, **kw)
    assert resp.status_code == 200, (path, resp.status_code, resp.text)
    return resp.json()


def walk(svc, path, limit, **params):
    items, cursor = [], None
    while True:
        body = get(svc, path, params={"limit": limit, **params} | ({"cursor": cursor} if cursor else {}))
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_history_pages_return_every_check_once_when_checks_share_a_second_and_a_run(svc, warehouse,
                                                                                      fake_api):
    from framework.config import parse_source
    from framework.ops.health import probe
    from framework.ops.health_store import append_checks

    cfg = parse_source({"config_id": "b", "api_name": "Demo", "endpoint": fake_api.url("/ping"),
                        "load_start": "2026-01-01T00:00:00Z",
                        "target": {"catalog": "raw", "schema": "demo", "table": "b"}})
    # manual checks of one process: one RunId, CheckedAt in whole seconds
    checks = [probe(cfg, now=NOW, run_id="check-host:4242:ab12") for _ in range(7)]
    assert len({(c["CheckedAt"], c["RunId"]) for c in checks}) == 1
    append_checks(None, warehouse, checks)

    unpaged = get(svc, "/api/v1/stats/history/b", params={"limit": 500})["items"]
    assert len(unpaged) == 10
    for limit in (1, 2, 3):
        paged = walk(svc, "/api/v1/stats/history/b", limit)
        assert paged == unpaged, limit


def _cursor(parts) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


@pytest.mark.parametrize("path, parts", [
    ("/api/v1/sources", [1]), ("/api/v1/sources", [None]), ("/api/v1/sources", [{"t": 1}]),
    ("/api/v1/loads", [1, 2, 3]), ("/api/v1/loads", ["x", "y", "z"]),
    ("/api/v1/loads", [{"t": "2026-01-01T00:00:00Z"}, 2, "a"]),
    ("/api/v1/sources/a/loads", [{"t": "nope"}, "r", "a"]),
    ("/api/v1/stats/history/b", [1, 2]), ("/api/v1/stats/history/b", [{"t": "2026-01-01T00:00:00Z"}, []]),
    ("/api/v1/incidents", ["x", "y", "z"]), ("/api/v1/stale", [[1]]),
])
def test_an_edited_cursor_is_a_422_naming_the_cursor(svc, path, parts):
    resp = svc.get(path, headers=H, params={"cursor": _cursor(parts)})
    assert resp.status_code == 422, (path, parts, resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert "cursor" in body["detail"] and [e["field"] for e in body["errors"]] == ["cursor"]
    assert "Traceback" not in resp.text and "Error" not in body["detail"]


def test_the_cursors_the_service_returns_are_accepted(svc):
    for path in ("/api/v1/sources", "/api/v1/loads", "/api/v1/sources/a/loads", "/api/v1/stats/history/b"):
        first = get(svc, path, params={"limit": 1})
        assert first["next_cursor"], path
        assert get(svc, path, params={"limit": 1, "cursor": first["next_cursor"]})["items"], path


@pytest.mark.parametrize("since", ["December 3 2026 05:50", "2024-W01", "yesterday", "2026-12-03T25:00:00Z",
                                   "2026-12", "5"])
def test_since_takes_iso_8601_only(svc, since):
    for path in ("/api/v1/loads", "/api/v1/stats/history/b"):
        resp = svc.get(path, headers=H, params={"since": since})
        assert resp.status_code == 422, (path, since, resp.text)
        body = resp.json()
        assert "since" in body["detail"] and [e["field"] for e in body["errors"]] == ["since"]


def test_an_unencoded_plus_of_an_offset_is_refused_with_a_hint_not_misread(svc):
    # '+' in a query string is a space: the offset arrives as ' 03:00'
    resp = svc.get("/api/v1/loads?since=2026-12-03T08:50:00+03:00", headers=H)
    assert resp.status_code == 422, resp.text
    assert "since" in resp.json()["detail"] and "%2B" in resp.json()["detail"]
    # encoded, it is 05:50Z: after every load of the fixture (04:45Z .. 04:50Z)
    assert get(svc, "/api/v1/loads?since=2026-12-03T08:50:00%2B03:00")["items"] == []
    assert len(get(svc, "/api/v1/loads", params={"since": "2026-12-03T07:47:30+03:00"})["items"]) == 3
    assert len(get(svc, "/api/v1/loads", params={"since": "2026-12-03T04:47:30Z"})["items"]) == 3
    assert len(get(svc, "/api/v1/loads", params={"since": "2026-12-03"})["items"]) == 6


def test_every_audit_status_is_filterable_and_failed_loads_are_the_summarys(svc):
    from control.states import RunResult

    for status in RunResult:
        items = get(svc, "/api/v1/loads", params={"status": status.value})["items"]
        assert [a["LoadStatus"] for a in items] == [status.value], status
    failed = get(svc, "/api/v1/loads", params={"failed": "true"})["items"]
    assert [a["LoadStatus"] for a in failed] == ["FAILED", "PARTIAL", "FAILED_QUALITY"]
    summary = get(svc, "/api/v1/stats/summary")
    assert summary["failed_loads_24h"] == 3 and summary["loads_24h"] == 6
    assert get(svc, "/api/v1/loads", params={"failed": "true", "since": summary["loads_since"]}
               )["items"] == failed
    both = get(svc, "/api/v1/loads", params={"failed": "true", "status": "SUCCESS"})
    assert both["items"] == [] and both["next_cursor"] is None
    assert [a["LoadStatus"] for a in get(svc, "/api/v1/sources/a/loads", params={"failed": "true"}
                                         )["items"]] == ["FAILED", "PARTIAL", "FAILED_QUALITY"]


# ------------------------------------------------------------------------ the dashboard
def dashboard(url: str, tmp_path, budget_ms: int = 20000) -> DashboardDom:
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         f"--virtual-time-budget={budget_ms}", "--dump-dom", url], capture_output=True, text=True,
        timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = DashboardDom()
    page.feed(dom.stdout)
    assert page.body_state == "ready", dom.stdout[:3000]
    return page


@pytest.fixture(scope="module")
def public(warehouse):
    from framework.service.api import create_app

    with ServiceThread(create_app(warehouse, public_read=True, clock=lambda: NOW)) as running:
        yield running


needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="needs Debian's chromium (see .ci/run)")


@needs_chromium
def test_the_dashboards_failed_loads_are_the_loads_its_headline_counts(public, tmp_path):
    page = dashboard(public.url + "/", tmp_path)
    assert page.cards["failed loads 24h"] == "3"
    assert page.rows["failures"] == 3


# -------------------------------------------------------------------------------- health
def test_health_without_a_key_shows_counts_and_states_only(warehouse, monkeypatch):
    from control.store import ControlStore
    from framework.service.api import create_app
    from framework.service.scheduler import Scheduler

    def no_spark():
        raise AssertionError("no Spark for a health answer")

    monkeypatch.setenv("RL_READS_KEY", KEY)
    scheduler = Scheduler(None, ControlStore(None, warehouse, spark_factory=no_spark), clock=lambda: NOW)
    # what a load round and a probe round leave behind
    scheduler.jobs["loads"].last_result = {"at": "2026-12-03T05:49:00Z", "planned": 2, "loaded": 2,
                                           "failed": ["demo_issues_link"], "skipped": ["a"]}
    scheduler.jobs["probes"].last_result = {"at": "2026-12-03T05:49:00Z", "probed": 2, "down": ["hostile_nl"]}
    scheduler.jobs["report"].last_error = "OSError: [Errno 13] Permission denied: '/srv/ops/b_report.html'"
    app = create_app(warehouse, keys=ApiKeys.from_references("env:RL_READS_KEY"), scheduler=scheduler,
                     clock=lambda: NOW)
    with ServiceThread(app) as running:
        keyless = running.get("/health")
        keyed = running.get("/health", headers=H)
    assert keyless.status_code == 200 and keyed.status_code == 200
    text = keyless.text
    for name in ("demo_issues_link", "hostile_nl", "b_report", "Permission", '"a"', "/srv/"):
        assert name not in text, name
    body = keyless.json()
    assert body["status"] == "ok" and body["warehouse"]["readable"] is True
    sched = body["scheduler"]
    assert sched["attached"] is True and sched["state"] == "created" and sched["spark"]
    assert sched["jobs"]["loads"]["last_result"] == {"planned": 2, "loaded": 2, "failed": 1, "skipped": 1}
    assert sched["jobs"]["probes"]["last_result"] == {"probed": 2, "down": 1}
    assert sched["jobs"]["report"]["failed"] is True and sched["jobs"]["loads"]["failed"] is False
    assert "runner" not in sched
    # with a key: the whole state
    full = keyed.json()["scheduler"]
    assert full["jobs"]["loads"]["last_result"]["failed"] == ["demo_issues_link"]
    assert "Permission denied" in full["jobs"]["report"]["last_error"] and full["runner"]


@pytest.fixture(scope="module")
def counted(warehouse):
    """A public-read service that counts the dashboard's refreshes (its summary requests)."""
    from framework.service.api import create_app

    app = create_app(warehouse, public_read=True, clock=lambda: NOW)
    app.state.summaries = 0

    @app.middleware("http")
    async def count(request, call_next):
        if request.url.path == "/api/v1/stats/summary":
            app.state.summaries += 1
        return await call_next(request)

    with ServiceThread(app) as running:
        running.app = app
        yield running


@needs_chromium
@pytest.mark.parametrize("refresh, shown", [("1e9", "3600"), ("Infinity", "30"), ("-Infinity", "30"),
                                            ("abc", "30"), ("-5", "30"), ("1", "5"), ("10", "10"),
                                            ("7200", "3600")])
def test_the_dashboard_refresh_is_clamped_to_5_s_to_1_h(counted, tmp_path, refresh, shown):
    counted.app.state.summaries = 0
    page = dashboard(f"{counted.url}/?refresh={refresh}", tmp_path, budget_ms=4000)
    # in 4 s of the page's (virtual) time: the first refresh only
    assert counted.app.state.summaries == 1, counted.app.state.summaries
    assert page.refresh_s == shown


# ------------------------------------------------------------------------------ OpenAPI
def test_openapi_describes_the_key_and_the_problem_format(svc):
    spec = get(svc, "/openapi.json")
    schemes = spec["components"]["securitySchemes"]
    [(name, scheme)] = schemes.items()
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-API-Key"}
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "errors"} <= set(problem["properties"])
    assert "HTTPValidationError" not in json.dumps(spec)
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            keyed = path.startswith("/api/v1/")
            assert (op.get("security") == [{name: []}]) == keyed, (method, path)
            if keyed:
                assert op["responses"]["401"]["content"] == {"application/problem+json": {"schema": ref}}
            if op.get("parameters") or op.get("requestBody"):
                assert op["responses"]["422"]["content"] == {"application/problem+json": {"schema": ref}}, \
                    (method, path)
    # what the service sends is what the document says
    sent = svc.get("/api/v1/loads", headers=H, params={"limit": 0}).json()
    assert set(sent) <= set(problem["properties"]) and sent["errors"][0]["field"] == "limit"
    item = spec["components"]["schemas"]["FieldError"]["properties"]
    assert set(sent["errors"][0]) <= set(item)
    assert svc.get("/health").status_code == 200 and "security" not in spec["paths"]["/health"]["get"]


def test_get_routes_answer_head(svc):
    import requests

    for path in ("/health", "/", "/api/v1/sources", "/api/v1/sources/a", "/api/v1/loads",
                 "/api/v1/stats/history/b", "/openapi.json"):
        resp = requests.head(svc.url + path, headers=H, timeout=30)
        assert resp.status_code == 200, (path, resp.status_code)
        assert resp.content == b"" and resp.headers["content-type"]
    assert requests.head(svc.url + "/api/v1/sources", timeout=30).status_code == 401
    assert requests.head(svc.url + "/api/v1/sources/nope", headers=H, timeout=30).status_code == 404
    refused = requests.head(svc.url + "/api/v1/sources/a/run", headers=H, timeout=30)
    assert refused.status_code == 405 and "POST" in refused.headers.get("allow", "")


# ---------------------------------------------------------------------------- config errors
MULTI_BAD = {"config_id": "multi", "api_name": "Demo", "endpoint": "ftp://x", "window": "fortnightly",
             "load_start": "notadate", "target": {"catalog": "raw", "schema": "demo", "table": "multi"}}


def test_a_posted_config_422_names_each_invalid_field(svc):
    resp = svc.post("/api/v1/sources", json=MULTI_BAD, headers=H)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert sorted(e["field"] for e in body["errors"]) == ["endpoint", "load_start", "window"]
    assert all(e["source"] == "multi" for e in body["errors"])
    for field in ("endpoint", "window", "load_start"):
        assert field in body["detail"]
    two = svc.post("/api/v1/sources", json={"sources": [MULTI_BAD, {**MULTI_BAD, "config_id": "other",
                                                                     "endpoint": "https://x"}]}, headers=H)
    assert sorted((e["source"], e["field"]) for e in two.json()["errors"]) == [
        ("multi", "endpoint"), ("multi", "load_start"), ("multi", "window"),
        ("other", "load_start"), ("other", "window")]


def test_a_running_source_shows_its_holder_and_lease(tmp_path, monkeypatch):
    # A source left RUNNING by a killed runner looked like a load at work in the API and
    # on the dashboard, with nothing of the lease it waits for.
    from framework.service.api import create_app

    wh = Warehouse(tmp_path / "wh")
    lease = NOW + dt.timedelta(minutes=20)
    write(wh, TableRef("main", "metadata", "api_control_table"),
          [{**_control("held", "http://127.0.0.1:9/x"), "LoadStatus": "RUNNING",
            "ClaimedBy": "vm:41:ab12cd", "LeaseExpiresAt": lease},
           {**_control("gone", "http://127.0.0.1:9/x"), "LoadStatus": "RUNNING",
            "ClaimedBy": "vm:42:ef34ab", "LeaseExpiresAt": NOW - dt.timedelta(minutes=1)},
           _control("done", "http://127.0.0.1:9/x")],
          {**CONTROL_TYPES, "LeaseExpiresAt": CONTROL_TYPES["LoadStartTime"]},
          (*CONTROL_COLUMNS, "ClaimedBy", "LeaseExpiresAt"))
    monkeypatch.setenv("RL_READS_KEY", KEY)
    app = create_app(wh, keys=ApiKeys.from_references("env:RL_READS_KEY"), clock=lambda: NOW)
    with ServiceThread(app) as running:
        items = {i["config_id"]: i for i in get(running, "/api/v1/sources")["items"]}
    held = items["held"]["claim"]
    assert (held["by"], held["lease_expires_at"], held["expired"]) == (
        "vm:41:ab12cd", "2026-12-03T06:10:00Z", False)
    assert held["note"].startswith("RUNNING by vm:41:ab12cd, lease until 2026-12-03T06:10:00Z")
    assert items["gone"]["claim"]["expired"] is True
    assert "the next run takes the load over" in items["gone"]["claim"]["note"]
    assert items["done"]["claim"] is None
