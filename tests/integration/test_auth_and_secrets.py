"""Every auth method through the real runtime, and no secret anywhere afterwards."""

from __future__ import annotations

import datetime as dt
import logging
import secrets as pysecrets
from pathlib import Path

import pytest

from framework.load import runtime
from framework.demoapi import DemoApi
from tests.integration.helpers import UTC, actual_rows, expected_rows, read_target, source, target_ref

pytestmark = pytest.mark.spark
SINCE, UNTIL = "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z"


def _secret(prefix: str) -> str:
    return f"{prefix}-{pysecrets.token_hex(12)}"


@pytest.fixture
def secrets_env(monkeypatch, tmp_path):
    values = {name: _secret(name.lower()) for name in
              ("BEARER", "APIKEY", "QUERYKEY", "BASICPASS", "DTTOKEN", "CLIENTSECRET", "WRONG")}
    for name, value in values.items():
        monkeypatch.setenv(f"RL_TEST_{name}", value)
    file_secret = tmp_path / "apikey.txt"
    file_secret.write_text(values["APIKEY"] + "\n")
    return values, file_secret


def test_every_auth_method_loads_and_no_secret_leaks(spark, warehouse, store, secrets_env, capfd, caplog):
    values, file_secret = secrets_env
    end = dt.datetime(2024, 1, 6, tzinfo=UTC)
    servers = {
        "bearer": DemoApi(seed=31, records_per_resource=120, end=end,
                          auth={"method": "bearer", "token": values["BEARER"]}),
        "api_key_header": DemoApi(seed=31, records_per_resource=120, end=end,
                                  auth={"method": "api_key", "header": "X-API-Key", "key": values["APIKEY"]}),
        "api_key_query": DemoApi(seed=31, records_per_resource=120, end=end,
                                 auth={"method": "api_key", "query": "api_key", "key": values["QUERYKEY"]}),
        "basic": DemoApi(seed=31, records_per_resource=120, end=end,
                         auth={"method": "basic", "username": "svc_user", "password": values["BASICPASS"]}),
        "api_token": DemoApi(seed=31, records_per_resource=120, end=end,
                             auth={"method": "api_token", "token": values["DTTOKEN"]}),
        "oauth2": DemoApi(seed=31, records_per_resource=120, end=end,
                          auth={"method": "oauth2", "client_id": "cid", "client_secret": values["CLIENTSECRET"],
                                "token_ttl_s": 3600}),
    }
    auths = {
        "bearer": {"method": "bearer", "secret": "env:RL_TEST_BEARER"},
        "api_key_header": {"method": "api_key", "secret": f"file:{file_secret}", "header": "X-API-Key"},
        "api_key_query": {"method": "api_key", "secret": "env:RL_TEST_QUERYKEY", "query": "api_key"},
        "basic": {"method": "basic", "username": "svc_user", "password": "env:RL_TEST_BASICPASS"},
        "api_token": {"method": "api_token", "secret": "env:RL_TEST_DTTOKEN"},
        "oauth2": {"method": "oauth2_client_credentials", "client_id": "cid",
                   "client_secret": "env:RL_TEST_CLIENTSECRET", "scopes": ["read"]},
    }
    styles = {"bearer": "link_header", "api_key_header": "cursor", "api_key_query": "offset",
              "basic": "page", "api_token": "next_key", "oauth2": "has_more"}
    caplog.set_level(logging.INFO)
    for api in servers.values():
        api.start()
    try:
        configs = []
        for name, api in servers.items():
            auth = dict(auths[name])
            if name == "oauth2":
                auth["token_url"] = api.token_url
            configs.append(source(api.base_url, styles[name], f"auth_{name}", auth=auth,
                                  required_fields=["id", "closed_at"]))
        # two failing loads: a wrong bearer token, and a wrong OAuth client secret
        bad_bearer = source(servers["bearer"].base_url, "link_header", "auth_bad_bearer",
                            auth={"method": "bearer", "secret": "env:RL_TEST_WRONG"})
        bad_oauth = source(servers["oauth2"].base_url, "has_more", "auth_bad_oauth",
                           auth={**auths["oauth2"], "client_secret": "env:RL_TEST_WRONG",
                                 "token_url": servers["oauth2"].token_url})
        store.generate(configs + [bad_bearer, bad_oauth])
        ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging")
        outcomes = {o.config_id: o for o in runtime.run(ctx, None, parallel=3)}
    finally:
        for api in servers.values():
            api.stop()

    closed = _closed_ids(servers["bearer"])
    expected = [r for r in expected_rows(servers["bearer"], SINCE, UNTIL) if r[0] in closed]
    assert expected
    for cfg in configs:
        outcome = outcomes[cfg.config_id]
        assert outcome.status == "SUCCESS", (cfg.config_id, outcome.error)
        assert actual_rows(read_target(spark, warehouse, cfg)) == expected
    assert outcomes["auth_bad_bearer"].status == "FAILED" and "401" in outcomes["auth_bad_bearer"].error
    assert outcomes["auth_bad_oauth"].status == "FAILED"
    assert "token" in outcomes["auth_bad_oauth"].error.lower()

    # --- no secret value anywhere --------------------------------------------------
    captured = capfd.readouterr()  # read once: a second read returns only what came after
    haystacks = [captured.out, captured.err, caplog.text]
    haystacks += [str(o.error) for o in outcomes.values()] + [repr(o.audit) for o in outcomes.values()]
    tables = [store.control_ref, store.audit_ref, store.window_ref]
    tables += [target_ref(c) for c in configs] + [target_ref(c).suffixed("_quarantine") for c in configs]
    for ref in tables:
        if warehouse.exists(spark, ref):
            haystacks += [str(row.asDict()) for row in warehouse.read(spark, ref).collect()]
    for path in Path(warehouse.root).rglob("*"):
        if path.is_file() and path.suffix in ("", ".json", ".jsonl", ".log", ".crc", ".txt"):
            haystacks.append(path.read_bytes().decode("utf-8", "replace"))
    text = "\n".join(haystacks)
    assert "auth_bad_bearer" in text and "SUCCESS" in text  # we did look at real content
    quarantined = warehouse.read(spark, target_ref(configs[0]).suffixed("_quarantine")).count()
    assert quarantined > 0
    for name, value in values.items():
        assert value not in text, f"secret {name} leaked"


def _closed_ids(api) -> set[int]:
    return {r["id"] for r in api.dataset.records_in(SINCE, UNTIL) if r.get("closed_at")}
