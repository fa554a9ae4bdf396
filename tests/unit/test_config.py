"""framework.config: the YAML contract, its defaults and its validation errors."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from framework.config import (SourceConfig, check_identifier, load_file, load_files, load_text,
                              parse_source, quote_identifier, shared_targets)
from framework.errors import ConfigError

UTC = dt.timezone.utc

MINIMAL = {
    "config_id": "things",
    "api_name": "Things API",
    "endpoint": "https://api.example.com/things",
    "load_start": "2024-01-01T00:00:00Z",
    "target": {"catalog": "main", "schema": "raw", "table": "things"},
}


def src(**changes: object) -> SourceConfig:
    raw = {**MINIMAL, **changes}
    return parse_source({k: v for k, v in raw.items() if v is not ...})


def error(**changes: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        src(**changes)
    return info.value


def yaml_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(textwrap.dedent(text), file="conf/x.yaml")
    return info.value


# ------------------------------------------------------------------ defaults
def test_defaults_of_a_minimal_source() -> None:
    cfg = src()

    assert cfg.method == "GET" and not cfg.allow_post
    assert cfg.auth.method == "none"
    assert cfg.pagination.style == "none"
    assert cfg.data_path == "$" and cfg.parser == "records"
    assert cfg.window == "none" and cfg.lookback == "PT0S"
    assert cfg.schema_mode == "rescue"
    assert cfg.schedule.time == "00:00" and cfg.schedule.frequency == "daily"
    assert cfg.limits.timeout_s == 30.0 and cfg.limits.max_retries == 5
    assert cfg.enabled and cfg.load_end is None and cfg.primary_key == []
    assert cfg.target.name == "main.raw.things"


def test_health_block_defaults_and_values() -> None:
    default = src().health_check
    assert src().health is None
    assert (default.interval, default.every, default.expected_status, default.timeout_s,
            default.enabled) == ("PT5M", dt.timedelta(minutes=5), None, None, True)
    cfg = src(health={"interval": "pt30s", "expected_status": [204, 200, 204], "timeout_s": 10,
                      "enabled": False})
    assert cfg.health_check.interval == "PT30S" and cfg.health_check.every == dt.timedelta(seconds=30)
    assert cfg.health_check.expected_status == [200, 204]
    assert cfg.health_check.timeout_s == 10 and not cfg.health_check.enabled


@pytest.mark.parametrize("health,field,message", [
    ({"interval": "P1M"}, "health.interval", "'P1M' is not a fixed-length duration"),
    ({"interval": "PT5S"}, "health.interval", "'PT5S' is shorter than PT10S"),
    ({"interval": "soon"}, "health.interval", "'soon' is not an ISO-8601 duration"),
    ({"expected_status": [200, 700]}, "health.expected_status", "700 is not an HTTP status"),
    ({"expected_status": []}, "health.expected_status", "at least 1 item"),
    ({"timeout_s": 0}, "health.timeout_s", "greater than 0"),
    ({"intervall": "PT1M"}, "health.intervall", "unknown key (did you mean 'interval'?)"),
    ({"enabled": "perhaps"}, "health.enabled", "valid boolean"),
])
def test_health_block_errors_name_the_field(health: dict, field: str, message: str) -> None:
    exc = error(health=health)
    assert exc.field == field and message in str(exc)


def test_offset_pagination_defaults() -> None:
    cfg = src(pagination={"style": "offset"})

    assert (cfg.pagination.offset_param, cfg.pagination.limit_param,
            cfg.pagination.page_size) == ("offset", "limit", 100)


def test_source_system_defaults_to_a_cleaned_api_name() -> None:
    assert src(api_name="My API!").system == "my_api"
    assert src(source_system="gh").system == "gh"


def test_config_is_frozen() -> None:
    cfg = src()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.config_id = "other"  # type: ignore[misc]


def test_repr_names_id_and_target() -> None:
    assert repr(src()) == "SourceConfig(things -> main.raw.things)"


# ------------------------------------------------------------------ timestamps
def test_quoted_and_unquoted_timestamps_both_mean_utc() -> None:
    body = """\
        config_id: a
        api_name: A
        endpoint: https://api.example.com/a
        load_start: {start}
        load_end: "2024-03-01T00:00:00Z"
        target: {{catalog: c, schema: s, table: t}}
    """
    unquoted = load_text(textwrap.dedent(body.format(start="2024-01-01T00:00:00Z")))[0]
    quoted = load_text(textwrap.dedent(body.format(start='"2024-01-01T00:00:00Z"')))[0]
    date_only = load_text(textwrap.dedent(body.format(start="2024-01-01")))[0]

    expected = dt.datetime(2024, 1, 1, tzinfo=UTC)
    for cfg in (unquoted, quoted, date_only):
        assert cfg.load_start == expected
        assert cfg.load_start.utcoffset() == dt.timedelta(0)
    assert quoted.load_end == dt.datetime(2024, 3, 1, tzinfo=UTC)


def test_offset_timestamp_is_converted_and_naive_is_utc() -> None:
    assert src(load_start="2024-01-01T02:00:00+02:00").load_start == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert src(load_start="2024-01-01 05:00:00").load_start == dt.datetime(2024, 1, 1, 5, tzinfo=UTC)


def test_load_end_must_be_after_load_start() -> None:
    exc = error(load_end="2024-01-01T00:00:00Z")
    assert exc.field == "load_end" and "is not after load_start" in str(exc)


def test_partial_timestamp_is_rejected() -> None:
    exc = error(load_start="10:30")
    assert exc.field == "load_start" and "not a complete timestamp" in str(exc)


# ------------------------------------------------------------------ normalizing
def test_schedule_time_written_unquoted_is_read_as_hh_mm() -> None:
    text = """\
        config_id: a
        api_name: A
        endpoint: https://api.example.com/a
        load_start: 2024-01-01
        target: {catalog: c, schema: s, table: t}
        schedule: {time: 02:30, frequency: Hourly}
    """
    cfg = load_text(textwrap.dedent(text))[0]
    assert cfg.schedule.time == "02:30"
    assert cfg.schedule.frequency == "hourly"


def test_schedule_frequency_accepts_an_iso_duration() -> None:
    assert src(schedule={"frequency": "pt15m"}).schedule.frequency == "PT15M"


def test_method_is_upper_cased_and_post_needs_allow_post() -> None:
    assert src(method="get").method == "GET"
    cfg = src(method="post", allow_post=True, body={"q": "{window_start}"})
    assert cfg.method == "POST" and cfg.body == {"q": "{window_start}"}


def test_comma_separated_key_lists() -> None:
    cfg = src(primary_key="account_id, id", required_fields="id")
    assert cfg.primary_key == ["account_id", "id"]
    assert cfg.required_fields == ["id"]


def test_bad_field_name_in_primary_key() -> None:
    # a name with a space is a field name ("bad name" was refused; see test_field_name_syntax)
    assert src(primary_key=["id", "spaced name"]).primary_key == ["id", "spaced name"]
    exc = error(primary_key=["id", "bad\tname"])
    assert exc.field == "primary_key" and "'bad\\tname' is not a valid field name" in str(exc)


def test_env_is_kept_as_a_template_in_endpoint_and_token_url_and_expanded_at_request_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from framework.load.fetch import build_request
    from framework.windows import Window

    monkeypatch.setenv("RL_TEST_HOST", "api.internal.example.com")
    cfg = src(endpoint="https://${RL_TEST_HOST}/v1/things/{window_start_date}",
              auth={"method": "oauth2_client_credentials", "token_url": "https://${RL_TEST_HOST}/token",
                    "client_id": "me", "client_secret": "env:RL_TEST_SECRET"})
    # The config (and so the control row) holds the template, never the value ...
    assert cfg.endpoint == "https://${RL_TEST_HOST}/v1/things/{window_start_date}"
    assert cfg.auth.token_url == "https://${RL_TEST_HOST}/token"
    # ... and the request gets the value, read when it is built.
    monkeypatch.setenv("RL_TEST_HOST", "api2.internal.example.com")
    start = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    request = build_request(cfg, Window(start, start + dt.timedelta(days=1)))
    assert request.url == "https://api2.internal.example.com/v1/things/2024-01-02"


def test_unset_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RL_TEST_MISSING", raising=False)
    exc = error(endpoint="https://${RL_TEST_MISSING}/x")
    assert exc.field == "endpoint" and "RL_TEST_MISSING is not set" in str(exc)


def test_an_empty_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment that passes the variable but leaves it empty (a bundle variable not
    given) is told which variable, not that '/api/v2/problems' is no URL."""
    monkeypatch.setenv("RL_TEST_EMPTY", "")
    exc = error(endpoint="${RL_TEST_EMPTY}/api/v2/problems")
    assert exc.field == "endpoint"
    assert "environment variable RL_TEST_EMPTY is not set or empty" in str(exc)


def test_placeholders_are_accepted_where_documented() -> None:
    cfg = src(endpoint="https://api.example.com/day/{window_start_date}",
              params={"from": "{window_start_ms}", "to": "{window_end_ms}", "ids": [1, 2]},
              headers={"X-From": "{window_start}"})
    assert cfg.params["ids"] == [1, 2]


@pytest.mark.parametrize("field,value", [
    ("headers", {"X-Since": "{since}"}),
    ("params", {"q": ["ok", "{window_begin}"]}),
    ("endpoint", "https://api.example.com/{window_start:%Y}"),
])
def test_unknown_placeholder_names_the_field(field: str, value: object) -> None:
    exc = error(**{field: value})
    assert exc.field == field and "unknown placeholder" in str(exc)


def test_unknown_placeholder_in_body() -> None:
    exc = error(method="POST", allow_post=True, body={"filter": {"from": "{start}"}})
    assert exc.field == "body" and "{start}" in str(exc)


# ------------------------------------------------------------------ auth
def test_secret_references_are_accepted() -> None:
    for ref in ("env:TOKEN", "file:/run/secrets/token", "databricks:scope/key"):
        assert src(auth={"method": "bearer", "secret": ref}).auth.secret == ref
    rotated = src(auth={"method": "api_key", "secrets": ["env:K1", "env:K2"], "query": "api_key"})
    assert rotated.auth.secrets == ["env:K1", "env:K2"]


def test_literal_secret_is_rejected_without_echoing_it() -> None:
    exc = error(auth={"method": "api_token", "secret": "dt0c01.ABCDEFG"})
    assert exc.field == "auth.secret"
    assert "literal secrets are not allowed" in str(exc)
    assert "dt0c01.ABCDEFG" not in str(exc)


def test_non_text_secret_is_rejected_without_echoing_it() -> None:
    exc = error(auth={"method": "basic", "username": "svc", "password": 31415926})
    assert exc.field == "auth.password"
    assert "31415926" not in str(exc)


def test_secrets_must_be_a_list() -> None:
    exc = error(auth={"method": "bearer", "secrets": "plain-token-value"})
    assert exc.field == "auth.secrets" and "plain-token-value" not in str(exc)


@pytest.mark.parametrize("auth", [
    {"method": "bearer"},
    {"method": "bearer", "secret": "env:A", "secrets": ["env:B"]},
])
def test_exactly_one_of_secret_or_secrets(auth: dict) -> None:
    exc = error(auth=auth)
    assert "exactly one of 'secret' or 'secrets'" in str(exc)


def test_api_key_header_or_query_not_both() -> None:
    exc = error(auth={"method": "api_key", "secret": "env:K", "header": "X-Key", "query": "key"})
    assert exc.field == "auth" and "not both" in str(exc)


def test_auth_without_method_lists_methods() -> None:
    exc = error(auth={"secret": "env:A"})
    assert exc.field == "auth.method" and "oauth2_client_credentials" in str(exc)


# ------------------------------------------------------------------ other checks
def test_pagination_paths_are_validated() -> None:
    exc = error(pagination={"style": "cursor", "cursor_path": "meta..next"})
    assert exc.field == "pagination.cursor_path" and "bad path segment" in str(exc)


def test_limits_out_of_range() -> None:
    exc = error(limits={"timeout_s": 0})
    assert exc.field == "limits.timeout_s"


def test_nested_param_value_names_the_param() -> None:
    exc = error(params={"filter": {"state": "open"}})
    assert exc.field == "params.filter"
    assert "constrained-str" not in str(exc)


def test_unknown_parser_lists_the_known_ones_and_suggests_one() -> None:
    exc = error(parser="flaten")
    assert exc.field == "parser"
    assert "records" in str(exc) and str(exc).endswith("(did you mean 'flatten'?)")


def test_schema_mode_lists_the_modes() -> None:
    assert "'merge' is not one of rescue, evolve or fail" in str(error(schema_mode="merge"))


def test_error_carries_file_source_and_field() -> None:
    exc = yaml_error("""\
        config_id: gh
        api_name: GitHub
        endpoint: https://api.example.com/x
        load_start: 2024-01-01
        target: {catalog: c, schema: s, table: t}
        pagination: {style: links}
    """)
    assert (exc.file, exc.source, exc.field) == ("conf/x.yaml", "gh", "pagination.style")
    assert str(exc).startswith("conf/x.yaml: source 'gh': pagination.style: 'links' is not one of")
    assert "\n" not in str(exc)


def test_sources_list_names_the_bad_source_by_id() -> None:
    exc = yaml_error("""\
        sources:
          - {config_id: one, api_name: A, endpoint: "https://a.example.com",
             load_start: 2024-01-01, target: {catalog: c, schema: s, table: t}}
          - {config_id: two, api_name: B, endpoint: "https://b.example.com",
             load_start: 2024-01-01, target: {catalog: c, schema: s, table: "t-2"}}
    """)
    assert exc.source == "two" and exc.field == "target.table"


def test_source_without_id_is_named_by_position() -> None:
    exc = yaml_error("""\
        sources:
          - {config_id: one, api_name: A, endpoint: "https://a.example.com",
             load_start: 2024-01-01, target: {catalog: c, schema: s, table: t}}
          - {api_name: B}
    """)
    assert exc.source == "#1" and exc.field == "config_id"


def test_empty_sources_list() -> None:
    assert "non-empty list" in str(yaml_error("sources: []\n"))


def test_invalid_yaml_names_the_line() -> None:
    exc = yaml_error("config_id: a\nparams: {a: 1\nendpoint: x\n")
    assert exc.file == "conf/x.yaml" and "line 3" in str(exc)


def test_parse_source_rejects_a_non_mapping() -> None:
    with pytest.raises(ConfigError, match="expected a mapping of config keys, got list"):
        parse_source(["a"])


# ------------------------------------------------------------------ files
def _write(path: Path, cid: str) -> Path:
    path.write_text(textwrap.dedent(f"""\
        config_id: {cid}
        api_name: A
        endpoint: https://api.example.com/a
        load_start: 2024-01-01
        target: {{catalog: c, schema: s, table: t}}
    """), encoding="utf-8")
    return path


def test_load_files_rejects_an_id_defined_twice(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.yaml", "same")
    second = _write(tmp_path / "b.yaml", "same")

    with pytest.raises(ConfigError) as info:
        load_files([first, second])

    assert info.value.file == str(second)
    assert f"also defined in {first}" in str(info.value)


def test_load_files_returns_every_source(tmp_path: Path) -> None:
    paths = [_write(tmp_path / "a.yaml", "a"), _write(tmp_path / "b.yaml", "b")]
    assert [c.config_id for c in load_files(paths)] == ["a", "b"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_file(tmp_path / "nope.yaml")


# ------------------------------------------------------------------ identifiers
@pytest.mark.parametrize("name", ["tbl", "_x", "Tbl_2024", "a" * 255])
def test_valid_identifiers(name: str) -> None:
    assert check_identifier(name) == name
    assert quote_identifier(name) == f"`{name}`"


@pytest.mark.parametrize("name", ["", "1tbl", "x; DROP TABLE y", "x`; DROP TABLE y", "a.b", "a-b",
                                  "a b", "a" * 256, None, 5])
def test_hostile_or_malformed_identifiers(name: object) -> None:
    with pytest.raises(ValueError, match="is not a valid identifier"):
        quote_identifier(name)  # type: ignore[arg-type]


def test_sources_sharing_a_target_and_a_source_system_clash() -> None:
    a = src(config_id="a")
    b = src(config_id="b", target={"catalog": "MAIN", "schema": "raw", "table": "Things"})
    other_system = src(config_id="c", source_system="legacy")
    older_a = src(config_id="a", target={"catalog": "main", "schema": "raw", "table": "old"})

    clashes = shared_targets([a], [b, other_system, older_a])

    assert list(clashes) == ["a"] and "also written by config b" in clashes["a"]
    assert "main.raw.things" in clashes["a"] and "source_system 'things_api'" in clashes["a"]
    assert shared_targets([a, other_system]) == {}
    assert shared_targets([a], [src(config_id="a")]) == {}  # its own older row


@pytest.mark.parametrize("query, pagination, owner", [
    ("offset=0&limit=50", {"style": "offset"}, "offset_param"),
    ("per_page=50", {"style": "page", "size_param": "per_page", "page_size": 50}, "size_param"),
    ("a=1&cursor=", {"style": "cursor"}, "cursor_param"),
    ("starting%5Fafter=x", {"style": "has_more"}, "cursor_param"),
    ("nextPageKey=k", {"style": "next_key"}, "key_param"),
])
def test_an_endpoint_query_holding_a_parameter_the_paginator_sets_is_refused(query, pagination,
                                                                             owner):
    # it was sent twice (?offset=0&...&offset=100): an API reads one of them, e.g. the
    # endpoint's offset=0 on every page, and the window fails as a loop, or a 400
    exc = error(endpoint=f"https://api.example.com/things?{query}", pagination=pagination)
    assert exc.field == "endpoint" and f"pagination.{owner}" in str(exc)
    src(endpoint="https://api.example.com/things?filter=open", pagination=pagination)
