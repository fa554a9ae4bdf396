"""Validation refuses configs that would leak a credential or let a config exhaust the
runner: literal credentials in headers/params/URLs, CR/LF in headers, ceilings on limits,
oversized YAML and alias bombs, ``${ENV}`` values in the control row."""

from __future__ import annotations

import pytest

from control.mapping import config_to_row
from framework.config import MAX_CONFIG_BYTES, load_file, load_text, parse_source
from framework.errors import ConfigError

BASE = {"config_id": "s", "api_name": "S", "endpoint": "https://api.example.com/items",
        "load_start": "2024-01-01T00:00:00Z",
        "target": {"catalog": "raw", "schema": "t", "table": "s"}}


def error(**overrides) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_source({**BASE, **overrides})
    return caught.value


@pytest.mark.parametrize("name", ["Authorization", "X-API-Key", "x-auth-token", "Cookie",
                                  "X-Client-Secret", "Proxy-Authorization"])
def test_literal_credential_headers_are_refused_pointing_to_auth(name):
    exc = error(headers={name: "Bearer sk_live_abc123"})
    assert exc.field == f"headers.{name}" and "use auth" in str(exc)
    assert "sk_live_abc123" not in str(exc)


@pytest.mark.parametrize("name", ["api_key", "apikey", "access_token", "token", "key", "sig",
                                  "signature", "password", "client_secret", "authToken"])
def test_literal_credential_params_are_refused_pointing_to_auth(name):
    exc = error(params={name: "abc123secret"})
    assert exc.field == f"params.{name}" and "use auth" in str(exc)
    assert "abc123secret" not in str(exc)


@pytest.mark.parametrize("params", [{"nextPageKey": "x"}, {"page_token": "x"}, {"sort_key": "id"},
                                    {"per_page": 100}, {"keyword": "x"}, {"pageSize": 10}])
def test_paging_and_ordinary_names_are_not_credentials(params):
    assert parse_source({**BASE, "params": params}).params == params


@pytest.mark.parametrize("endpoint, what", [
    ("https://svc:hunter22@api.example.com/items", "user info"),
    ("https://api.example.com/items?api_key=abc123secret", "query parameter 'api_key'"),
    ("https://api.example.com/items?access_token=abc123secret&x=1", "query parameter 'access_token'"),
])
def test_credentials_written_into_the_endpoint_are_refused(endpoint, what):
    exc = error(endpoint=endpoint)
    assert exc.field == "endpoint" and what in str(exc)
    assert "hunter22" not in str(exc) and "abc123secret" not in str(exc)


def test_a_key_in_the_endpoint_from_env_is_accepted_and_stays_out_of_the_control_row(monkeypatch):
    monkeypatch.setenv("RL_TEST_URL_KEY", "k-9f8e7d6c5b4a")
    cfg = parse_source({**BASE, "endpoint": "https://api.example.com/items?api_key=${RL_TEST_URL_KEY}"})
    row = config_to_row(cfg)
    assert "k-9f8e7d6c5b4a" not in repr(row)
    assert row["APIEndpoint"] == "https://api.example.com/items?api_key=${RL_TEST_URL_KEY}"


@pytest.mark.parametrize("headers, field", [
    ({"X-Trace": "a\r\nX-Injected: 1"}, "headers.X-Trace"),
    ({"X-Trace": "a\nb"}, "headers.X-Trace"),
    ({"X-Trace": "a\x00b"}, "headers.X-Trace"),
    ({"X-Bad\r\nName": "v"}, "headers"),
    ({"Bad Name": "v"}, "headers"),
])
def test_cr_lf_and_control_characters_in_headers_are_refused(headers, field):
    exc = error(headers=headers)
    assert exc.field == field


def test_cr_lf_in_auth_header_names_and_prefixes_are_refused():
    assert error(auth={"method": "api_key", "secret": "env:K", "header": "X-Key\r\nX-A: b"}
                 ).field == "auth.header"
    assert error(auth={"method": "api_token", "secret": "env:K", "prefix": "Api-Token\r\nX: y"}
                 ).field == "auth.prefix"


def test_max_body_bytes_has_a_ceiling_of_one_gib():
    assert parse_source({**BASE, "limits": {"max_body_bytes": 1024 ** 3}}).limits.max_body_bytes == 1024 ** 3
    exc = error(limits={"max_body_bytes": 1024 ** 3 + 1})
    assert exc.field == "limits.max_body_bytes"


def test_backoff_base_above_backoff_max_is_refused():
    exc = error(limits={"backoff_base_s": 60, "backoff_max_s": 30})
    assert exc.field == "limits.backoff_base_s" and "backoff_max_s" in str(exc)


def test_a_yaml_alias_bomb_is_refused():
    # A few hundred bytes whose body stands for 10**6 elements once its aliases are expanded.
    levels = ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)]
    text = ("config_id: bomb\napi_name: B\nendpoint: https://api.example.com/x\nmethod: POST\n"
            "allow_post: true\nload_start: 2024-01-01T00:00:00Z\n"
            "target: {catalog: raw, schema: t, table: b}\nbody:\n" + "\n".join(levels) + "\n")
    assert len(text) < 600
    with pytest.raises(ConfigError, match="expands to more than"):
        load_text(text, file="bomb.yaml")


def test_a_yaml_file_above_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\nconfig_id: big\n")
    with pytest.raises(ConfigError, match="at most"):
        load_file(path)
    with pytest.raises(ConfigError, match="at most"):
        load_text(path.read_text(), file="big.yaml")


def test_anchors_shared_by_many_sources_stay_accepted():
    first = ("  - &d {api_name: A, load_start: 2024-01-01T00:00:00Z, config_id: s0, "
             "endpoint: https://api.example.com/0, target: {catalog: raw, schema: t, table: x0}}\n")
    rest = "".join(f"  - {{<<: *d, config_id: s{i}, endpoint: https://api.example.com/{i}, "
                   f"target: {{catalog: raw, schema: t, table: x{i}}}}}\n" for i in range(1, 300))
    assert len(load_text("sources:\n" + first + rest, file="many.yaml")) == 300


def test_allowed_hosts_are_validated_and_carried_in_the_control_row():
    from control.mapping import row_to_config

    cfg = parse_source({**BASE, "allowed_hosts": ["https://api2.example.com",
                                                   "https://files.example.com:8443/"]})
    row = config_to_row(cfg)
    assert row_to_config(row).allowed_hosts == cfg.allowed_hosts
    assert "allowed_hosts" not in config_to_row(parse_source(BASE))["Options"]  # rows unchanged
    for bad in ("api2.example.com", "https://*.example.com", "https://api2.example.com/v1",
                "https://u:p@api2.example.com", "ftp://api2.example.com"):
        assert error(allowed_hosts=[bad]).field == "allowed_hosts[0]", bad


@pytest.mark.parametrize("key, value", [("params", {"q": "${RL_X}"}), ("headers", {"X-A": "${RL_X}"}),
                                        ("body", {"a": ["${RL_X}"]})])
def test_env_templates_outside_endpoint_and_token_url_are_refused_not_sent_as_text(key, value):
    extra = {"method": "POST", "allow_post": True} if key == "body" else {}
    assert error(**{key: value}, **extra).field == key


def test_a_key_written_twice_is_an_error_naming_its_path_and_lines():
    # YAML's loaders keep the last value of a repeated key: an edit that adds a second
    # `table:` below the first would silently load into another table.
    text = ("sources:\n"
            "  - {config_id: a, api_name: A, endpoint: https://api.example.com/a,\n"
            "     load_start: 2024-01-01T00:00:00Z, target: {catalog: raw, schema: t, table: a}}\n"
            "  - config_id: b\n    api_name: B\n    endpoint: https://api.example.com/b\n"
            "    load_start: 2024-01-01T00:00:00Z\n"
            "    target:\n      catalog: raw\n      schema: t\n      table: b\n      table: a\n")
    with pytest.raises(ConfigError) as caught:
        load_text(text, file="two.yaml")
    exc = caught.value
    assert (exc.file, exc.field) == ("two.yaml", "sources[1].target.table")
    assert str(exc) == ("two.yaml: sources[1].target.table: duplicate key 'table' at line 12, "
                        "column 7 (also at line 11: each key is written once)")


def test_merge_keys_may_override_what_they_merge():
    text = ("sources:\n"
            "  - &d {api_name: A, load_start: 2024-01-01T00:00:00Z, config_id: a,\n"
            "        endpoint: https://api.example.com/a, target: {catalog: raw, schema: t, table: a}}\n"
            "  - <<: *d\n    config_id: b\n    api_name: B\n"
            "    target: {catalog: raw, schema: t, table: b}\n")
    a, b = load_text(text, file="merged.yaml")
    assert (b.config_id, b.api_name, b.target.table, b.endpoint) == (
        "b", "B", "b", "https://api.example.com/a")


def test_a_json_config_body_with_a_key_written_twice_is_refused():
    from framework.service.actions import parse_body

    body = ('{"config_id": "j", "api_name": "J", "endpoint": "https://api.example.com/j",\n'
            ' "load_start": "2024-01-01T00:00:00Z",\n'
            ' "target": {"catalog": "raw", "schema": "t", "table": "j", "table": "k"}}')
    with pytest.raises(ConfigError) as caught:
        parse_body(body.encode(), "application/json")
    assert str(caught.value) == ("<request body>: duplicate key 'table' in one JSON object "
                                 "(each key is written once)")
