"""framework.load.fetch.build_request: the first request of a window, placeholders substituted."""

from __future__ import annotations

import datetime as dt

from framework.config import parse_source
from framework.load.fetch import build_request
from framework.windows import Window

UTC = dt.timezone.utc
WINDOW = Window(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), dt.datetime(2024, 1, 3, tzinfo=UTC))
BASE = {
    "config_id": "c",
    "api_name": "A",
    "load_start": "2024-01-01T00:00:00Z",
    "target": {"catalog": "c", "schema": "s", "table": "t"},
}


def test_placeholders_in_endpoint_params_and_headers() -> None:
    cfg = parse_source({**BASE,
                        "endpoint": "https://api.example.com/days/{window_start_date}/events",
                        "params": {"from": "{window_start_ms}", "to": "{window_end_s}",
                                   "limit": 100, "ids": ["a", "{window_end_date}"], "flag": True},
                        "headers": {"X-Since": "{window_start}", "Accept": "application/json"}})

    req = build_request(cfg, WINDOW)

    assert req.method == "GET"
    assert req.url == "https://api.example.com/days/2024-01-02/events"
    assert req.params == {"from": "1704164645000", "to": "1704240000", "limit": 100,
                          "ids": ["a", "2024-01-03"], "flag": True}
    assert req.headers == {"X-Since": "2024-01-02T03:04:05Z", "Accept": "application/json"}
    assert req.json is None


def test_post_body_is_rendered_deeply() -> None:
    cfg = parse_source({**BASE, "endpoint": "https://api.example.com/search", "method": "POST",
                        "allow_post": True,
                        "body": {"query": {"range": {"gte": "{window_start}", "lt": "{window_end}"}},
                                 "size": 500, "sort": [{"ts": "asc"}]}})

    req = build_request(cfg, WINDOW)

    assert req.method == "POST"
    assert req.json == {"query": {"range": {"gte": "2024-01-02T03:04:05Z",
                                            "lt": "2024-01-03T00:00:00Z"}},
                        "size": 500, "sort": [{"ts": "asc"}]}


def test_request_changes_do_not_reach_the_config() -> None:
    cfg = parse_source({**BASE, "endpoint": "https://api.example.com/search", "method": "POST",
                        "allow_post": True, "params": {"a": "1"}, "headers": {"H": "v"},
                        "body": {"filter": {"from": "{window_start}"}}})

    req = build_request(cfg, WINDOW)
    req.params["cursor"] = "x"
    req.headers["Authorization"] = "Bearer t"
    req.json["filter"]["page_token"] = "p"

    assert cfg.params == {"a": "1"} and cfg.headers == {"H": "v"}
    assert cfg.body == {"filter": {"from": "{window_start}"}}
    again = build_request(cfg, WINDOW)
    assert "cursor" not in again.params and "page_token" not in again.json["filter"]


def test_escaped_braces_stay_literal() -> None:
    cfg = parse_source({**BASE, "endpoint": "https://api.example.com/q",
                        "params": {"filter": "{{\"after\": \"{window_start_date}\"}}"}})
    assert build_request(cfg, WINDOW).params == {"filter": '{"after": "2024-01-02"}'}
