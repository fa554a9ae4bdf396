"""control.mapping: config <-> control row, and errors that name the control column."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from control.mapping import (config_to_row, policy_of, row_to_config, row_to_state,
                             state_to_columns)
from control.states import ControlState, LoadStatus, LoadType
from framework.config import load_file, parse_source
from framework.errors import ConfigError

UTC = dt.timezone.utc
GOOD = Path(__file__).resolve().parents[1] / "configs" / "good"


@pytest.fixture
def cfg():  # type: ignore[no-untyped-def]
    return load_file(GOOD / "github_issues.yaml")[0]


@pytest.fixture
def row(cfg) -> dict:  # type: ignore[no-untyped-def]
    return config_to_row(cfg)


def row_error(row: dict, **changes: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        row_to_config({**row, **changes})
    return info.value


# ------------------------------------------------------------------ config -> row
def test_config_to_row_columns(row: dict) -> None:
    assert row["ConfigId"] == "gh_issues" and row["APIName"] == "GitHub"
    assert row["APIEndpoint"] == "https://api.example.com/repos/acme/issues"
    assert row["HttpMethod"] == "GET" and row["AuthMethod"] == "bearer"
    assert json.loads(row["AuthConfig"]) == {"secret": "env:GH_TOKEN"}
    assert json.loads(row["PaginationConfig"]) == {"style": "link_header"}
    assert json.loads(row["RequestPayload"]) == {"per_page": 100, "since": "{window_start}",
                                                 "state": "all"}
    assert row["RequestBody"] is None
    assert row["PrimaryColumn"] == "id" and row["DeltaColumn"] is True
    assert (row["TargetCatalog"], row["TargetSchema"], row["TargetTable"]) == (
        "raw_data", "external_apis", "tbl_gh_issues")
    assert (row["TriggerScheduleTime"], row["TriggerFrequency"]) == ("02:00", "daily")
    assert row["HistoryStartTime"] == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert row["WindowStrategy"] == "daily" and row["Lookback"] == "PT1H"


def test_composite_primary_key_is_comma_separated() -> None:
    cfg = load_file(GOOD / "two_sources.yaml")[0]
    assert config_to_row(cfg)["PrimaryColumn"] == "account_id,invoice_id"


@pytest.mark.parametrize("path", sorted(GOOD.glob("*.yaml")), ids=lambda p: p.stem)
def test_round_trip(path: Path) -> None:
    for cfg in load_file(path):
        row = config_to_row(cfg)
        back = row_to_config(row)
        assert config_to_row(back) == row
        # source_system comes back explicit (the row stores the derived value)
        assert back == cfg.model_copy(update={"source_system": cfg.system})


def test_round_trip_of_the_full_example_is_exact(cfg) -> None:  # type: ignore[no-untyped-def]
    assert row_to_config(config_to_row(cfg)) == cfg


def test_config_hash_is_stable_and_follows_changes(cfg, row: dict) -> None:  # type: ignore[no-untyped-def]
    assert config_to_row(cfg)["ConfigHash"] == row["ConfigHash"]
    changed = cfg.model_copy(update={"window": "hourly"})
    assert config_to_row(changed)["ConfigHash"] != row["ConfigHash"]


def test_row_holds_references_not_secret_values(monkeypatch: pytest.MonkeyPatch, cfg) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GH_TOKEN", "ghp_realTokenValue123")
    assert "ghp_realTokenValue123" not in json.dumps(config_to_row(cfg), default=str)


# ------------------------------------------------------------------ row -> config
def test_health_block_travels_in_the_options_column() -> None:
    cfg = parse_source({"config_id": "h", "api_name": "H", "endpoint": "https://h.example.com/x",
                        "load_start": "2024-01-01T00:00:00Z",
                        "target": {"catalog": "c", "schema": "s", "table": "t"},
                        "health": {"interval": "PT1M", "expected_status": [200, 204]}})
    row = config_to_row(cfg)
    assert json.loads(row["Options"])["health"] == {"interval": "PT1M", "expected_status": [200, 204],
                                                    "enabled": True}
    assert row_to_config(row).health == cfg.health
    plain = config_to_row(cfg.model_copy(update={"health": None}))
    assert "health" not in json.loads(plain["Options"]) and row_to_config(plain).health is None


def test_seed_spellings_of_auth_methods(row: dict) -> None:
    cfg = row_to_config({**row, "AuthMethod": "apikey",
                         "AuthConfig": json.dumps({"secret": "env:K", "header": "X-Key"})})
    assert cfg.auth.method == "api_key" and cfg.auth.header == "X-Key"
    cfg = row_to_config({**row, "AuthMethod": "oauth", "AuthConfig": json.dumps(
        {"token_url": "https://id.example.com/t", "client_id": "c", "client_secret": "env:S"})})
    assert cfg.auth.method == "oauth2_client_credentials"


def test_hand_made_row_with_text_values(row: dict) -> None:
    cfg = row_to_config({**row, "DeltaColumn": "TRUE", "HistoryStartTime": None,
                         "LoadStartTime": "2024-02-01 00:00:00", "PrimaryColumn": "a, b"})
    assert cfg.delta_column is True
    assert cfg.load_start == dt.datetime(2024, 2, 1, tzinfo=UTC)
    assert cfg.primary_key == ["a", "b"]


def test_missing_auth_method_means_none(row: dict) -> None:
    cfg = row_to_config({**row, "AuthMethod": None, "AuthConfig": None})
    assert cfg.auth.method == "none"


@pytest.mark.parametrize("changes,column,message", [
    ({"PaginationConfig": "{bad json"}, "control row column PaginationConfig", "is not valid JSON"),
    ({"PaginationConfig": json.dumps({"style": "links"})},
     "control row column PaginationConfig (pagination.style)", "'links' is not one of none"),
    ({"AuthMethod": "magic"}, "control row column AuthMethod (auth.method)", "'magic' is not one of"),
    ({"AuthConfig": json.dumps({"secret": "plain"})}, "control row column AuthConfig (auth.secret)",
     "literal secrets are not allowed"),
    ({"AuthConfig": "[1]"}, "control row column AuthConfig", "expected a JSON object"),
    ({"RequestPayload": 5}, "control row column RequestPayload", "expected JSON text, got int"),
    ({"RequestPayload": json.dumps({"since": "{window_start"})}, "control row column RequestPayload",
     "bad placeholder syntax in '{window_start': expected '}'"),
    ({"TargetTable": "x; DROP TABLE y"}, "control row column TargetTable (target.table)",
     "'x; DROP TABLE y' is not a valid identifier"),
    ({"TargetSchema": None}, "control row column TargetSchema (target.schema)", "is required"),
    ({"TriggerScheduleTime": "25:00"}, "control row column TriggerScheduleTime (schedule.time)",
     "is not a HH:MM time"),
    ({"APIEndpoint": "ftp://x.example.com"}, "control row column APIEndpoint", "is not an http(s) URL"),
    ({"APIEndpoint": None}, "control row column APIEndpoint", "is required"),
    ({"HistoryStartTime": None}, "control row column HistoryStartTime", "is required"),
    ({"WindowStrategy": "fortnightly"}, "control row column WindowStrategy", "'fortnightly'"),
    ({"DeltaColumn": "maybe"}, "control row column DeltaColumn", "valid boolean"),
    ({"PrimaryColumn": None}, "control row column PrimaryColumn",
     "is required when delta_column is true"),
    ({"Options": json.dumps({"completeness": "maybe"})}, "control row column Options (completeness)",
     "'maybe' is not one of"),
    ({"Options": json.dumps({"colour": "red"})}, "colour", "unknown key"),
    ({"Options": json.dumps({"health": {"interval": "PT1S"}})},
     "control row column Options (health.interval)", "'PT1S' is shorter than PT10S"),
])
def test_row_errors_name_the_column(row: dict, changes: dict, column: str, message: str) -> None:
    exc = row_error(row, **changes)

    assert exc.source == "gh_issues"
    assert exc.field == column
    assert str(exc) == f"source 'gh_issues': {column}: {exc.message.split(column + ': ', 1)[1]}"
    assert message in str(exc)


def test_missing_config_id(row: dict) -> None:
    exc = row_error(row, ConfigId=None)
    assert str(exc) == "source '?': control row column ConfigId: is required"


def test_message_is_not_cut_when_the_id_holds_a_colon(row: dict) -> None:
    exc = row_error(row, ConfigId="a: b")
    assert str(exc) == ("source 'a: b': control row column ConfigId: 'a: b' may only hold "
                        "letters, digits, '_' and '-' (1-128 chars)")


# ------------------------------------------------------------------ state columns
def test_state_round_trip() -> None:
    s = ControlState(load_type=LoadType.INCREMENTAL, load_status=LoadStatus.RUNNING,
                     load_start=dt.datetime(2024, 1, 1, tzinfo=UTC),
                     load_end=dt.datetime(2024, 1, 2, tzinfo=UTC), load_id="L1", attempt=2,
                     claimed_by="host-1", lease_expires_at=dt.datetime(2024, 1, 2, 1, tzinfo=UTC),
                     run_id="r1", error=None, generated_at=dt.datetime(2024, 1, 2, tzinfo=UTC))
    assert row_to_state(state_to_columns(s)) == s


def test_row_to_state_reads_naive_spark_timestamps_as_utc() -> None:
    s = row_to_state({"LoadType": None, "LoadStatus": "FAILED", "Attempt": None,
                      "LastLoadTime": dt.datetime(2024, 1, 1, 5)})
    assert s.load_type == LoadType.FULL_LOAD and s.load_status == LoadStatus.FAILED
    assert s.attempt == 0
    assert s.last_load_time == dt.datetime(2024, 1, 1, 5, tzinfo=UTC)


def test_empty_status_is_a_new_row() -> None:
    assert row_to_state({"LoadStatus": ""}).load_status is None


def test_policy_of(cfg) -> None:  # type: ignore[no-untyped-def]
    policy = policy_of(cfg)
    assert policy.history_start == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert policy.history_end == dt.datetime(2024, 3, 1, tzinfo=UTC)
    assert policy.delta_column is True and policy.lookback == dt.timedelta(hours=1)
