"""Contract tests of the service: an HTTP client against a real service on 127.0.0.1 over a
warehouse built by real loads of the demo API (every endpoint, 401/404/422, pagination)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from framework.demoapi import DemoApi
from framework.service.access import ApiKeys
from tests.integration.service_data import END, MARKUP, build_warehouse
from tests.unit._service import ServiceThread

pytestmark = pytest.mark.spark

KEY = "svc-key-7f3a9c21d0"
SECRET = "demo-bearer-value-5521"
BAD_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "bad"


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=5, records_per_resource=60, end=END, max_page_size=20) as demo:
        yield demo


@pytest.fixture(scope="module")
def built(spark, api, tmp_path_factory):
    return build_warehouse(spark, tmp_path_factory.mktemp("svc") / "wh", api)


@pytest.fixture(scope="module")
def svc(spark, built):
    from framework.service.api import create_app

    warehouse, _ = built
    import os

    os.environ["RL_SVC_KEY"] = KEY
    app = create_app(warehouse, keys=ApiKeys.from_references("env:RL_SVC_KEY"),
                     spark_factory=lambda: spark)
    with ServiceThread(app) as running:
        yield running


H = {"X-API-Key": KEY}


def get(svc, path, **kw):
    resp = svc.get(path, headers=H, **kw)
    assert resp.status_code == 200, (path, resp.status_code, resp.text)
    return resp.json()


def walk(svc, path, limit):
    """Every item of a list, page by page; asserts no page repeats an item."""
    items, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        body = get(svc, path, params=params)
        assert len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


def test_read_endpoints_answer_from_the_loaded_warehouse(svc, built):
    _, outcomes = built
    assert [o.status for o in outcomes] == ["SUCCESS", "SUCCESS", "FAILED"]
    health = get(svc, "/health")
    assert health["status"] == "ok" and health["warehouse"]["readable"]
    assert health["scheduler"] == {"attached": False} and health["version"]

    sources = {s["config_id"]: s for s in get(svc, "/api/v1/sources")["items"]}
    assert set(sources) == {"alerts", "broken", "issues"}
    alerts = sources["alerts"]
    assert alerts["status"] == "SUCCESS" and alerts["last_load"]["status"] == "SUCCESS"
    assert alerts["rows"] == outcomes[0].audit["TargetTotalRowCount"] > 0
    assert alerts["freshness"]["stale"] is False
    assert alerts["uptime"]["24h"] is not None and alerts["sparkline"]
    assert sources["broken"]["last_load"]["status"] == "FAILED"
    assert sources["broken"]["freshness"]["stale"] is True  # no data at all

    detail = get(svc, "/api/v1/sources/alerts")
    assert detail["control_row"]["ConfigId"] == "alerts"
    assert detail["config"]["pagination"]["style"] == "offset" and detail["config_error"] is None

    loads = get(svc, "/api/v1/sources/broken/loads")["items"]
    assert [a["RunId"] for a in loads][0] == "run-markup" and len(loads) == 2
    failed = get(svc, "/api/v1/loads", params={"status": "FAILED"})["items"]
    assert {a["ConfigId"] for a in failed} == {"broken"}
    assert any(a["ErrorMessage"] == MARKUP for a in failed)  # data, returned as it is
    assert get(svc, "/api/v1/loads", params={"since": "2999-01-01T00:00:00Z"})["items"] == []

    for period in ("24h", "7d", "30d"):
        up = get(svc, "/api/v1/stats/uptime/broken", params={"period": period})
        assert up["period"] == period and up["last_ok"] is False and up["checks"] >= 3
        assert up["series"] and 0 <= up["uptime_pct"] < 100
    rt = get(svc, "/api/v1/stats/response-times/alerts")
    assert rt["min_ms"] <= rt["avg_ms"] <= rt["p95_ms"] <= rt["max_ms"] and rt["responses"] > 0
    history = get(svc, "/api/v1/stats/history/broken")["items"]
    probes = [h["RunId"] for h in history if h["CheckKind"] == "probe"]
    assert probes == ["probe-4", "probe-3", "probe-2"]  # newest first
    assert [h["CheckedAt"] for h in history] == sorted((h["CheckedAt"] for h in history), reverse=True)

    summary = get(svc, "/api/v1/stats/summary")
    assert summary["sources"] == 3 and summary["stale"] >= 1
    assert summary["failed_loads_24h"] == 2 and summary["health"]["open_incidents"] == 1
    assert summary["health"]["sources_down"] == 1

    [incident] = get(svc, "/api/v1/incidents", params={"open": "true"})["items"]
    assert incident["config_id"] == "broken" and incident["ongoing"] is True
    assert incident["failed_checks"] >= 2
    closed = get(svc, "/api/v1/incidents", params={"open": "false"})["items"]
    assert all(not i["ongoing"] for i in closed)
    stale = {s["config_id"] for s in get(svc, "/api/v1/stale")["items"]}
    assert "broken" in stale and "alerts" not in stale


def test_lists_are_paginated_without_repeats_or_gaps(svc):
    every = [s["config_id"] for s in get(svc, "/api/v1/sources", params={"limit": 500})["items"]]
    one_by_one, pages = walk(svc, "/api/v1/sources", 1)
    assert [s["config_id"] for s in one_by_one] == every and pages == len(every)
    loads, pages = walk(svc, "/api/v1/loads", 2)
    all_loads = get(svc, "/api/v1/loads", params={"limit": 500})["items"]
    assert [a["RunId"] + a["ConfigId"] for a in loads] == [a["RunId"] + a["ConfigId"] for a in all_loads]
    assert pages == (len(all_loads) + 1) // 2 or pages == len(all_loads) // 2 + 1
    checks, _ = walk(svc, "/api/v1/stats/history/alerts", 7)
    assert len(checks) == len({(c["CheckedAt"], c["RunId"], c["StatusCode"], c["ElapsedMs"]) for c in checks})
    bad = svc.get("/api/v1/loads", headers=H, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and "cursor" in bad.json()["detail"]


def test_keys_are_required_and_a_wrong_key_is_logged_without_the_key(svc, caplog):
    caplog.set_level(logging.WARNING, logger="framework.service")
    assert svc.get("/api/v1/sources").status_code == 401
    wrong = svc.get("/api/v1/sources", headers={"X-API-Key": KEY + "x"})
    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert svc.post("/api/v1/sources/alerts/run", headers={"X-API-Key": "nope"}).status_code == 401
    assert svc.post("/api/v1/sources", data="{}", headers={"Content-Type": "application/json"}
                    ).status_code == 401
    assert "wrong API key" in caplog.text and "no API key" in caplog.text
    assert KEY not in caplog.text and "nope" not in caplog.text
    assert svc.get("/health").status_code == 200  # liveness needs no key


def test_unknown_sources_and_paths_are_404_problems(svc):
    for path in ("/api/v1/sources/nope", "/api/v1/sources/nope/loads", "/api/v1/stats/uptime/nope",
                 "/api/v1/stats/response-times/nope", "/api/v1/stats/history/nope", "/api/v1/nothing"):
        resp = svc.get(path, headers=H)
        assert resp.status_code == 404, path
        body = resp.json()
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert body["status"] == 404 and body["detail"] and body["instance"] == path
    for action in ("run", "check", "disable", "enable"):
        assert svc.post(f"/api/v1/sources/nope/{action}", headers=H).status_code == 404


def test_bad_parameters_are_422_problems_naming_the_field(svc):
    cases = {"/api/v1/stats/uptime/alerts?period=1y": "period", "/api/v1/sources?limit=0": "limit",
             "/api/v1/loads?since=yesterday": "since", "/api/v1/loads?status=DONE": "status",
             "/api/v1/incidents?open=maybe": "open"}
    for path, field in cases.items():
        resp = svc.get(path, headers=H)
        assert resp.status_code == 422, path
        body = resp.json()
        assert field in body["detail"] and any(e["field"] == field for e in body["errors"]), body


def test_post_sources_validates_like_validate_and_upserts_the_control_row(svc, api, built):
    from framework.config import load_file
    from framework.errors import ConfigError

    cfg = {"config_id": "posted", "api_name": "Demo", "endpoint": api.base_url + "/api/offset/issues",
           "params": {"since": "{window_start}", "until": "{window_end}"},
           "pagination": {"style": "offset", "page_size": 20}, "data_path": "data",
           "primary_key": ["id"], "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-02T00:00:00Z",
           "auth": {"method": "bearer", "secret": "env:RL_POSTED_TOKEN"},
           "target": {"catalog": "raw", "schema": "tests", "table": "posted"}}
    created = svc.post("/api/v1/sources", json=cfg, headers=H)
    assert created.status_code == 201, created.text
    assert created.json()["results"][0]["action"] == "created"
    assert get(svc, "/api/v1/sources/posted")["control_row"]["LoadStatus"] == "PENDING"

    cfg["owner"] = "Ops"
    updated = svc.post("/api/v1/sources", data=yaml.safe_dump(cfg), headers={**H, "Content-Type": "application/yaml"})
    assert updated.status_code == 200, updated.text
    detail = get(svc, "/api/v1/sources/posted")
    assert detail["config"]["owner"] == "Ops"

    # the same error as 'restlake validate', naming the field
    for name in ("unknown_pagination_style", "literal_bearer_secret", "bad_config_id_chars"):
        path = BAD_CONFIGS / f"{name}.yaml"
        with pytest.raises(ConfigError) as expected:
            load_file(path)
        resp = svc.post("/api/v1/sources", data=path.read_text(), headers={**H, "Content-Type": "application/yaml"})
        assert resp.status_code == 422, name
        body = resp.json()
        assert body["errors"][0]["field"] == expected.value.field
        assert expected.value.message.split(": ", 1)[-1] in body["detail"]
        if name == "literal_bearer_secret":
            assert "abc123" not in resp.text
    bad_json = svc.post("/api/v1/sources", data="{nope", headers={**H, "Content-Type": "application/json"})
    assert bad_json.status_code == 422 and "invalid JSON" in bad_json.json()["detail"]
    assert svc.post("/api/v1/sources", data=b"x", headers={**H, "Content-Type": "image/png"}
                    ).status_code == 415


def test_source_actions_disable_enable_run_and_check(svc, monkeypatch):
    off = svc.post("/api/v1/sources/issues/disable", headers=H)
    assert off.status_code == 200 and off.json() == {"config_id": "issues", "enabled": False}
    assert get(svc, "/api/v1/sources/issues")["summary"]["enabled"] is False
    refused = svc.post("/api/v1/sources/issues/run", headers=H)
    assert refused.status_code == 409 and "disabled" in refused.json()["detail"]
    assert svc.post("/api/v1/sources/issues/enable", headers=H).json()["enabled"] is True

    run = svc.post("/api/v1/sources/issues/run", headers=H)
    assert run.status_code == 202, run.text
    assert run.json()["action"] == "pending" and "no scheduler" in run.json()["runner"]
    assert get(svc, "/api/v1/sources/issues")["control_row"]["LoadStatus"] == "PENDING"

    before = len(walk(svc, "/api/v1/stats/history/alerts", 500)[0])
    check = svc.post("/api/v1/sources/alerts/check", headers=H)
    assert check.status_code == 200, check.text
    assert check.json()["check"]["Ok"] is True and check.json()["check"]["CheckKind"] == "probe"
    assert len(walk(svc, "/api/v1/stats/history/alerts", 500)[0]) == before + 1


def test_a_source_shows_secret_references_never_values(svc, api, monkeypatch):
    monkeypatch.setenv("RL_DETAIL_TOKEN", SECRET)
    cfg = {"config_id": "secretive", "api_name": "Demo", "endpoint": api.base_url + "/api/none/issues",
           "load_start": "2024-01-01T00:00:00Z", "data_path": "data",
           "auth": {"method": "bearer", "secret": "env:RL_DETAIL_TOKEN"},
           "headers": {"X-Api-Key": "literal-header-credential", "Accept": "application/json"},
           "target": {"catalog": "raw", "schema": "tests", "table": "secretive"}}
    refused = svc.post("/api/v1/sources", json=cfg, headers=H)  # a literal credential header
    assert refused.status_code == 422, refused.text
    assert "headers" in refused.text and "auth" in refused.text
    assert "literal-header-credential" not in refused.text
    assert svc.get("/api/v1/sources/secretive", headers=H).status_code == 404  # nothing stored
    cfg["headers"] = {"Accept": "application/json"}
    assert svc.post("/api/v1/sources", json=cfg, headers=H).status_code == 201
    svc.post("/api/v1/sources/secretive/check", headers=H)  # resolves the secret in this process
    text = svc.get("/api/v1/sources/secretive", headers=H).text
    body = svc.get("/api/v1/sources/secretive", headers=H).json()
    assert body["config"]["auth"]["secret"] == "env:RL_DETAIL_TOKEN"
    assert SECRET not in text and "literal-header-credential" not in text
    assert body["config"]["headers"]["Accept"] == "application/json"


def test_openapi_and_docs_list_every_endpoint(svc):
    spec = svc.get("/openapi.json").json()
    paths = set(spec["paths"])
    for path in ("/health", "/api/v1/sources", "/api/v1/sources/{config_id}",
                 "/api/v1/sources/{config_id}/loads", "/api/v1/loads",
                 "/api/v1/stats/uptime/{config_id}", "/api/v1/stats/response-times/{config_id}",
                 "/api/v1/stats/history/{config_id}", "/api/v1/stats/summary", "/api/v1/incidents",
                 "/api/v1/stale", "/api/v1/sources/{config_id}/disable",
                 "/api/v1/sources/{config_id}/enable", "/api/v1/sources/{config_id}/check",
                 "/api/v1/sources/{config_id}/run", "/api/v1/sources/{config_id}/retry"):
        assert path in paths, path
    assert "application/yaml" in spec["paths"]["/api/v1/sources"]["post"]["requestBody"]["content"]
    docs = svc.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn" not in docs.text and svc.get("/docs-static/swagger-ui-bundle.js").status_code == 200


class RecordingScheduler:
    """Records what the service asks of a scheduler."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    def state(self):
        return {"attached": True, "state": "running"}

    def request_run(self, config_id):
        self.runs.append(config_id)

    def request_check(self, config_id):
        raise AssertionError("not probed here")


def test_run_answers_409_when_nothing_was_planned_and_retry_plans_a_failed_full_load(spark, built,
                                                                                    monkeypatch):
    from framework.service.api import create_app

    warehouse, _ = built
    monkeypatch.setenv("RL_SVC_KEY", KEY)
    monkeypatch.setenv("RL_HOOK_SECRET", "hook-secret-for-the-run-test")
    scheduler = RecordingScheduler()
    app = create_app(warehouse, keys=ApiKeys.from_references("env:RL_SVC_KEY"), scheduler=scheduler,
                     spark_factory=lambda: spark)
    with ServiceThread(app) as running:
        before = get(running, "/api/v1/sources/broken")["control_row"]
        assert before["LoadStatus"] == "FAILED" and before["LoadType"] == "FULL_LOAD"
        refused = running.post("/api/v1/sources/broken/run", headers=H)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "retry" in refused.json()["detail"] and scheduler.runs == []
        assert get(running, "/api/v1/sources/broken")["control_row"]["LoadStatus"] == "FAILED"

        retried = running.post("/api/v1/sources/broken/retry", headers=H)
        assert retried.status_code == 202, retried.text
        assert retried.json()["status"] == "PENDING" and scheduler.runs == ["broken"]
        after = get(running, "/api/v1/sources/broken")["control_row"]
        assert after["LoadStatus"] == "PENDING"
        assert (after["LoadStartTime"], after["LoadEndTime"], after["LoadId"]) == \
            (before["LoadStartTime"], before["LoadEndTime"], before["LoadId"])
        again = running.post("/api/v1/sources/broken/retry", headers=H)
        assert again.status_code == 409 and "FAILED" in again.json()["detail"]
        assert running.post("/api/v1/sources/nope/retry", headers=H).status_code == 404
        assert running.post("/api/v1/sources/broken/retry").status_code == 401

        hook = {"config_id": "hooked", "api_name": "Hooks", "source_system": "hooks",
                "webhook": {"signature": "github", "secret": "env:RL_HOOK_SECRET", "event_id_path": "id"},
                "primary_key": ["id"], "target": {"catalog": "raw", "schema": "hooks", "table": "hooked"}}
        assert running.post("/api/v1/sources", json=hook, headers=H).status_code == 201
        pushed = running.post("/api/v1/sources/hooked/run", headers=H)
        assert pushed.status_code == 409 and "webhook" in pushed.json()["detail"]
        assert scheduler.runs == ["broken"]


def test_enable_answers_409_while_another_source_writes_its_target(svc, api):
    # A disabled source clashes with no one, so another source may take its target over
    # (its config_id renamed); enabling the old one again answers 409 naming the other, as
    # `restlake enable` does (one store method), and leaves it disabled.
    assert svc.post("/api/v1/sources/alerts/disable", headers=H).status_code == 200
    cfg = {"config_id": "alerts_renamed", "api_name": "Demo", "source_system": "demo",
           "endpoint": api.base_url + "/api/offset/issues", "load_start": "2024-01-01T00:00:00Z",
           "data_path": "data", "target": {"catalog": "raw", "schema": "tests",
                                           "table": "cache_monitoring_alerts"}}
    created = svc.post("/api/v1/sources", headers=H, json=cfg)
    assert created.status_code == 201, created.text
    refused = svc.post("/api/v1/sources/alerts/enable", headers=H)
    assert refused.status_code == 409, refused.text
    assert "also written by config alerts_renamed" in refused.json()["detail"]
    assert get(svc, "/api/v1/sources/alerts")["summary"]["enabled"] is False
    # once the other is disabled, the old one is enabled again
    assert svc.post("/api/v1/sources/alerts_renamed/disable", headers=H).status_code == 200
    assert svc.post("/api/v1/sources/alerts/enable", headers=H).json()["enabled"] is True


def test_post_sources_refuses_a_second_writer_of_a_target_as_generate_does(svc, api):
    # POST /api/v1/sources upserted through the store alone: a source writing the target of
    # an enabled one as the same source_system was created (each full load then deletes the
    # other's rows), where `restlake generate` refuses it naming the other.
    cfg = {"config_id": "issues_twin", "api_name": "Demo", "source_system": "demo",
           "endpoint": api.base_url + "/api/offset/issues", "load_start": "2024-01-01T00:00:00Z",
           "data_path": "data", "target": {"catalog": "raw", "schema": "tests", "table": "t_issues"}}
    refused = svc.post("/api/v1/sources", headers=H, json=cfg)
    assert refused.status_code == 422, refused.text
    assert "also written by config issues" in refused.json()["detail"]
    assert svc.get("/api/v1/sources/issues_twin", headers=H).status_code == 404


def test_post_sources_answers_422_for_a_change_generate_refuses(svc, api):
    # A change generate refuses (here a new source_system for a source whose target holds
    # rows) came back as 200 with action "invalid" in the body: a client checking the
    # status saw success, and the row was left as it was.
    from tests.integration.helpers import source

    cfg = source(api.base_url, "cursor", "issues", schedule={"frequency": "daily"},
                 auth={"method": "none"})
    body = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["source_system"] = "renamed"
    refused = svc.post("/api/v1/sources", headers=H, json=body)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert "source_system" in problem["detail"] and problem["errors"][0]["field"] == "source_system"
    assert get(svc, "/api/v1/sources/issues")["control_row"]["SourceSystem"] == "demo"
