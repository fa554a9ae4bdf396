"""Monitoring sources (Dynatrace API v2 + a health API) into the shared cache tables, with
key rotation, the completeness check, and the raw archive with replay."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from deltalake import DeltaTable as RsDeltaTable

from framework.load.archive import RAW_SUFFIX, replay
from framework.config import parse_source
from framework.demoapi.dynatrace import MonitoringApi
from framework.lake.tables import TableRef
from tests.integration.helpers import run_loads

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
END = dt.datetime(2024, 1, 8, tzinfo=UTC)
DT_TOKEN = "dt0c01.test-token-4242"
FAST = {"timeout_s": 5, "max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
        "concurrency": 2}


@pytest.fixture(scope="module")
def api():
    with MonitoringApi(end=END, hosts=5, problems=30, dt_token=DT_TOKEN,
                       health_keys=("health-key-1", "health-key-2")) as server:
        yield server


@pytest.fixture(autouse=True)
def _env(api, monkeypatch):
    monkeypatch.setenv("DT_ENV_URL", api.base_url)
    monkeypatch.setenv("HEALTH_API_URL", api.base_url)
    monkeypatch.setenv("DT_API_TOKEN", DT_TOKEN)
    monkeypatch.setenv("HEALTH_API_KEY_1", "health-key-1")
    monkeypatch.setenv("HEALTH_API_KEY_2", "health-key-2")
    api.faults.clear()
    api.unthrottle()
    api.total_skew = 0
    yield
    api.faults.clear()
    api.unthrottle()
    api.total_skew = 0


def shipped(cid: str) -> dict:
    """The source ``cid`` of conf/monitoring/, as shipped."""
    for path in sorted((ROOT / "conf/monitoring").glob("*.yaml")):
        for raw in yaml.safe_load(path.read_text())["sources"]:
            if raw["config_id"] == cid:
                return raw
    raise KeyError(cid)


def conf(cid: str, /, **overrides):
    """A config of conf/monitoring/, as shipped, with test limits and overrides."""
    raw = {**shipped(cid), "load_end": END.isoformat(), **overrides}
    raw["limits"] = {**raw.get("limits", {}), **FAST}
    return parse_source(raw)


@pytest.fixture
def dt_conf(api, tmp_path):
    """conf() for a Dynatrace source that Spark tasks can load too: the variables a test
    sets reach the driver only, so the endpoint is written out (no ``${DT_ENV_URL}``) and
    the token is a ``file:`` reference."""
    path = tmp_path / "dt_token"
    path.write_text(DT_TOKEN + "\n")
    auth = {"method": "api_token", "secret": f"file:{path}", "header": "Authorization",
            "prefix": "Api-Token"}

    def make(cid: str, /, **overrides):
        endpoint = shipped(cid)["endpoint"].replace("${DT_ENV_URL}", api.base_url)
        return conf(cid, endpoint=endpoint, auth=auth, **overrides)

    return make


def table(spark, warehouse, name):
    return warehouse.read(spark, TableRef("main", "monitoring", name))


def test_monitoring_sources_load_into_shared_cache_tables(spark, warehouse, store, api):
    metrics_cfg = conf("dt_host_metrics", load_start="2024-01-06T00:00:00Z")
    configs = [conf(c) for c in ("dt_problems", "dt_hosts", "dt_instances", "health_instances",
                                 "health_alerts")] + [metrics_cfg]
    outcomes = run_loads(spark, warehouse, store, configs)
    assert {o.config_id: o.status for o in outcomes} == {c.config_id: "SUCCESS" for c in configs}, \
        [o.error for o in outcomes]

    alerts = table(spark, warehouse, "cache_monitoring_alerts")
    open_problems = api.problems_in(None, END, "OPEN")
    by_source = {r["source_system"]: r["count"] for r in alerts.groupBy("source_system").count().collect()}
    assert by_source == {"dynatrace": len(open_problems), "db_health": len(api.health_alerts(None, END))}
    assert {r["problemId"] for r in alerts.where("source_system = 'dynatrace'").collect()} == \
        {p["problemId"] for p in open_problems}
    audit = {r["ConfigId"]: r for r in store.audit_rows(limit=50)}
    assert audit["dt_problems"]["ExpectedRowCount"] == len(open_problems)  # totalCount
    for cache in ("cache_monitoring_alerts", "cache_monitoring_nodes", "cache_perf_instances",
                  "cache_perf_metrics"):
        df = table(spark, warehouse, cache)
        assert {"source_system", "collected_at_utc", "entity_key", "payload_hash"} <= set(df.columns)
        assert df.where("entity_key IS NULL OR payload_hash IS NULL").count() == 0
    nodes = table(spark, warehouse, "cache_monitoring_nodes")
    assert sorted(r["entityId"] for r in nodes.collect()) == sorted(h["entityId"] for h in api.hosts)
    assert nodes.where("properties_state = 'OFFLINE'").count() == 1
    instances = table(spark, warehouse, "cache_perf_instances")
    assert {r["source_system"]: r["count"] for r in instances.groupBy("source_system").count().collect()} \
        == {"dynatrace": 5, "db_health": 5}

    # metrics: one row per metric x host x hour, typed, nulls kept
    metrics = table(spark, warehouse, "cache_perf_metrics")
    fields = {f.name: f.dataType.typeName() for f in metrics.schema.fields}
    assert fields["timestamp"] == "timestamp" and fields["value"] == "double"
    start = dt.datetime(2024, 1, 6, tzinfo=UTC)
    expected = []
    for metric in ("builtin:host.cpu.usage", "builtin:host.mem.usage"):
        for series in api.series(metric, start, END, "1h"):
            key = f"dt.entity.host={series['dimensions'][0]}"
            for ms, value in zip(series["timestamps"], series["values"]):
                expected.append((metric, key, dt.datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None), value))
    assert len(expected) == 2 * 5 * 48 and any(v is None for *_, v in expected)
    assert_df_equality(metrics.select("metric_id", "dimension_key", "timestamp", "value"),
                       spark.createDataFrame(expected, "metric_id string, dimension_key string, "
                                                       "timestamp timestamp, value double"),
                       ignore_row_order=True, ignore_nullable=True)
    rs = RsDeltaTable(warehouse.path(TableRef("main", "monitoring", "cache_perf_metrics")))
    assert rs.to_pyarrow_table(columns=["metric_id"]).num_rows == len(expected)

    # next snapshot: problems closed at the source leave the cache, the other source's rows stay;
    # the health API's instances now carry a field outside the contract
    closed = open_problems[0]
    closed["status"] = "CLOSED"
    api.faults.add("schema_drift", times=None, path="/health-api/v1/instances")
    try:
        again = run_loads(spark, warehouse, store, [conf("dt_problems"), conf("health_instances")],
                          now=dt.datetime(2024, 1, 9, tzinfo=UTC))
    finally:
        closed["status"] = "OPEN"
    assert [o.status for o in again] == ["SUCCESS", "SUCCESS"], [o.error for o in again]
    alerts = table(spark, warehouse, "cache_monitoring_alerts")
    assert alerts.where("source_system = 'dynatrace'").count() == len(open_problems) - 1
    assert alerts.where(alerts.problemId == closed["problemId"]).count() == 0
    assert alerts.where("source_system = 'db_health'").count() == len(api.health_alerts(None, END))

    from framework.cli.worksheet import observe
    from framework.ops.worksheet import build, to_markdown

    from framework.lake.reader import TableReader
    from framework.ops.queries import Queries

    rows = {r.config_id: r for r in build(configs, observe(Queries(TableReader(warehouse)), configs))}
    assert rows["health_instances"].unmapped == ("priority",)
    assert "cpu_pct" in rows["health_instances"].fields and "problemId" not in rows["health_instances"].fields
    assert "metric_id" in rows["dt_host_metrics"].fields and not rows["dt_host_metrics"].unmapped
    assert "`priority`" in to_markdown(list(rows.values()))


def test_second_api_key_is_used_when_the_first_is_rate_limited(spark, warehouse, store, api):
    from framework.http.ratelimit import limiter_for, reset_limiters

    api.throttle_key("health-key-1", retry_after=60)
    api.clear_log()
    reset_limiters()
    [outcome] = run_loads(spark, warehouse, store, [conf("health_instances")])
    assert outcome.status == "SUCCESS", outcome.error
    # key 1 answers 429 to every request: one 429 means the next request went with key 2
    statuses = json.loads(outcome.audit["HttpStatusCounts"])
    assert statuses["429"] == 1 and statuses["200"] >= 1
    # ...at once: the host was never paused to wait out key 1's Retry-After
    assert limiter_for(api.base_url).pauses == 0
    assert table(spark, warehouse, "cache_perf_instances").count() == len(api.health_instances())


def test_completeness_strict_fails_the_window_when_the_reported_total_differs(spark, warehouse, store,
                                                                            api, executor, dt_conf):
    api.total_skew = 3
    [outcome] = run_loads(spark, warehouse, store, [dt_conf("dt_problems")], executor=executor)
    assert outcome.status == "FAILED"
    n = len(api.problems_in(None, END, "OPEN"))
    assert f"loaded {n} records but the API reported a total of {n + 3} (difference -3)" in outcome.error
    audit = store.audit_rows("dt_problems")[0]
    assert audit["LoadStatus"] == "FAILED" and "completeness: strict" in audit["ErrorMessage"]
    assert not warehouse.exists(spark, TableRef("main", "monitoring", "cache_monitoring_alerts"))
    # record (the default) loads it and keeps the API's total next to the loaded count
    [loaded] = run_loads(spark, warehouse, store, [dt_conf("dt_problems", config_id="dt_problems_rec",
                                                           completeness="record")],
                         executor=executor)
    assert loaded.status == "SUCCESS"
    assert (loaded.audit["SourceRowCount"], loaded.audit["ExpectedRowCount"]) == (n, n + 3)


def test_archived_raw_pages_replay_without_calling_the_api(spark, warehouse, store, api, executor,
                                                           dt_conf):
    cfg = dt_conf("dt_host_metrics", load_start="2024-01-06T00:00:00Z",
               params={"metricSelector": "builtin:host.cpu.usage", "resolution": "1h",
                       "from": "{window_start}", "to": "{window_end}", "pageSize": 2})
    [outcome] = run_loads(spark, warehouse, store, [cfg], executor=executor)
    assert outcome.status == "SUCCESS", outcome.error
    ref = TableRef("main", "monitoring", "cache_perf_metrics")
    raw = warehouse.read(spark, ref.suffixed(RAW_SUFFIX))
    pages = raw.orderBy("window_index", "page_no").collect()
    assert len(pages) == outcome.audit["Pages"] == 2 * 3  # 2 daily windows x 3 pages of 2 series
    assert {p["run_id"] for p in pages} == {outcome.audit["RunId"]}
    assert all(p["status"] == 200 and len(p["body_sha256"]) == 64 and DT_TOKEN not in p["url"]
               for p in pages)
    assert "nextPageKey=" in pages[1]["url"] and json.loads(pages[0]["body"])["totalCount"] == 5
    assert json.loads(pages[0]["headers"])["content-type"] == "application/json"

    before = warehouse.read(spark, ref).select("metric_id", "dimension_key", "timestamp", "value")
    expected = before.collect()
    warehouse.delta(spark, ref).delete("value IS NULL OR dimension_key LIKE '%0%'")
    assert warehouse.read(spark, ref).count() < len(expected)
    api.clear_log()
    result = replay(spark, store, cfg.config_id, outcome.audit["RunId"], warehouse.root / "_staging")
    assert api.request_log == []  # no API call
    assert result.pages == 6 and result.records == len(expected)
    after = warehouse.read(spark, ref)
    assert_df_equality(after.select("metric_id", "dimension_key", "timestamp", "value"),
                       spark.createDataFrame(expected, before.schema),
                       ignore_row_order=True, ignore_nullable=True)
    replayed, run = store.audit_rows(cfg.config_id)[:2]
    assert replayed["LoadType"] == "REPLAY" and replayed["Requests"] == 0
    assert replayed["TargetRowCount"] == result.rows_written > 0
    # one audit row builder: the replay's row says which load it rewrote, and fills the
    # columns a run fills; its ErrorMessage is empty because nothing failed
    assert run["RunId"] == outcome.audit["RunId"] and replayed["RunId"] == result.run_id
    assert replayed["LoadId"] and (replayed["LoadId"], replayed["Attempt"]) == (run["LoadId"], 1)
    assert replayed["LoadStatus"] == "SUCCESS" and replayed["ErrorMessage"] is None
    assert (replayed["LoadStartTime"], replayed["LoadEndTime"]) == (run["LoadStartTime"],
                                                                    run["LoadEndTime"])
    assert replayed["Pages"] == run["Pages"] and replayed["SourceRowCount"] == run["SourceRowCount"]
    assert replayed["ExpectedRowCount"] == run["ExpectedRowCount"]
    filled = lambda row: sorted(k for k, v in row.items() if v is not None)  # noqa: E731
    assert filled(replayed) == filled(run)
