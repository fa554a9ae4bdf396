"""The dynatrace_metrics parser and the Dynatrace-like monitoring API (no Spark)."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from framework.demoapi import NEXT_KEY_RULE
from framework.demoapi.dynatrace import MonitoringApi
from framework.errors import ResponseError
from parsers import get_parser
from parsers.dynatrace import dimension_key

UTC = dt.timezone.utc
PAGE = {
    "totalCount": 3, "nextPageKey": None, "resolution": "1h",
    "result": [
        {"metricId": "builtin:host.cpu.usage", "dataPointCountRatio": 0.1, "dimensionCountRatio": 0.1,
         "data": [{"dimensions": ["HOST-A"], "dimensionMap": {"dt.entity.host": "HOST-A"},
                   "timestamps": [1704067200000, 1704070800000], "values": [12.5, None]},
                  {"dimensions": ["HOST-B"], "dimensionMap": {"dt.entity.host": "HOST-B"},
                   "timestamps": [1704067200000], "values": [7]}]},
        {"metricId": "builtin:host.mem.usage", "data": [
            {"dimensions": [], "dimensionMap": {}, "timestamps": [], "values": []}]},
    ],
}


def test_one_row_per_metric_dimension_set_and_timestamp_with_typed_values():
    rows = get_parser("dynatrace_metrics", {}, data_path="result").parse(PAGE)
    assert [(r["metric_id"], r["dimension_key"], r["timestamp"], r["value"]) for r in rows] == [
        ("builtin:host.cpu.usage", "dt.entity.host=HOST-A", dt.datetime(2024, 1, 1, tzinfo=UTC), 12.5),
        ("builtin:host.cpu.usage", "dt.entity.host=HOST-A", dt.datetime(2024, 1, 1, 1, tzinfo=UTC), None),
        ("builtin:host.cpu.usage", "dt.entity.host=HOST-B", dt.datetime(2024, 1, 1, tzinfo=UTC), 7.0),
    ]
    assert isinstance(rows[2]["value"], float)
    assert rows[0]["dimensions"] == ["HOST-A"] and rows[0]["dimension_map"] == {"dt.entity.host": "HOST-A"}
    assert rows[0]["resolution"] == "1h"


def test_options_drop_nulls_and_dimension_columns_and_default_path():
    rows = get_parser("dynatrace_metrics", {"drop_nulls": True, "dimension_columns": True},
                      data_path="$").parse(PAGE)
    assert len(rows) == 2 and all(r["value"] is not None for r in rows)
    assert rows[0]["dim_dt_entity_host"] == "HOST-A"


def test_dimension_key_is_stable_and_never_empty():
    assert dimension_key({"b": 2, "a": 1}, ["x"]) == "a=1,b=2"
    assert dimension_key({}, ["HOST-1", "DISK-2"]) == "HOST-1,DISK-2"
    assert dimension_key(None, None) == "-"


@pytest.mark.parametrize("body, message", [
    ({"result": [{"metricId": "m", "data": [{"timestamps": [1, 2], "values": [1]}]}]}, "2 timestamps but 1 values"),
    ({"result": [{"data": []}]}, "no metricId"),
    ({"result": [{"metricId": "m", "data": [{"timestamps": ["x"], "values": [1]}]}]}, "epoch milliseconds"),
    ({"result": [{"metricId": "m", "data": [{"timestamps": [1], "values": ["high"]}]}]}, "not a number"),
    ({"error": {"code": 400, "message": "Metric selector invalid"}}, "Metric selector invalid"),
    ({"totalCount": 0}, "not found"),
])
def test_bad_pages_fail_the_window_with_a_clear_message(body, message):
    with pytest.raises(ResponseError, match=message):
        get_parser("dynatrace_metrics", {}, data_path="result").parse(body)


@pytest.fixture(scope="module")
def api():
    with MonitoringApi(end=dt.datetime(2024, 1, 3, tzinfo=UTC), hosts=4, problems=30,
                       health_keys=("k1", "k2")) as server:
        yield server


DT = {"Authorization": "Api-Token dt0c01.demo-token"}


def test_problems_follow_dynatrace_next_page_key_rules(api):
    url = api.base_url + "/api/v2/problems"
    params = {"from": "2024-01-01T00:00:00Z", "to": "2024-01-03T00:00:00Z", "pageSize": 7}
    first = requests.get(url, params=params, headers=DT, timeout=5).json()
    assert first["totalCount"] == 30 and len(first["problems"]) == 7
    bad = requests.get(url, params={**params, "nextPageKey": first["nextPageKey"]}, headers=DT, timeout=5)
    assert bad.status_code == 400 and NEXT_KEY_RULE in bad.text
    seen, key = list(first["problems"]), first["nextPageKey"]
    while key:
        page = requests.get(url, params={"nextPageKey": key}, headers=DT, timeout=5).json()
        seen += page["problems"]
        key = page["nextPageKey"]
    assert [p["problemId"] for p in seen] == [p["problemId"] for p in api.problems]
    assert requests.get(url, params=params, timeout=5).status_code == 401
    assert requests.get(url, params=params, headers={"Authorization": "Api-Token nope"},
                        timeout=5).status_code == 401


def test_metrics_query_pages_series_and_entities_need_a_type(api):
    body = requests.get(api.base_url + "/api/v2/metrics/query", headers=DT, timeout=5, params={
        "metricSelector": "builtin:host.cpu.usage,builtin:host.mem.usage", "resolution": "1h",
        "from": "2024-01-01T00:00:00Z", "to": "2024-01-01T06:00:00Z", "pageSize": 3}).json()
    assert body["totalCount"] == 8 and body["nextPageKey"]
    rows = get_parser("dynatrace_metrics", {}, data_path="result").parse(body)
    assert len(rows) == 3 * 6 and {r["metric_id"] for r in rows} == {"builtin:host.cpu.usage"}
    ents = requests.get(api.base_url + "/api/v2/entities", headers=DT, timeout=5,
                        params={"entitySelector": "type(\"HOST\")"}).json()
    assert ents["totalCount"] == 4 and ents["entities"][0]["entityId"].startswith("HOST-")
    assert requests.get(api.base_url + "/api/v2/entities", headers=DT, timeout=5).status_code == 400


def test_health_api_keys_throttling_and_total_skew(api):
    url = api.base_url + "/health-api/v1/instances"
    assert requests.get(url, headers={"X-API-Key": "k2"}, timeout=5).json()["total"] == 4
    api.throttle_key("k1", retry_after=9)
    try:
        limited = requests.get(url, headers={"X-API-Key": "k1"}, timeout=5)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "9"
        assert requests.get(url, headers={"X-API-Key": "k2"}, timeout=5).status_code == 200
        api.total_skew = 2
        assert requests.get(url, headers={"X-API-Key": "k2"}, timeout=5).json()["total"] == 6
    finally:
        api.unthrottle()
        api.total_skew = 0
    assert requests.get(url, headers={"X-API-Key": "nope"}, timeout=5).status_code == 401
