"""API keys of the service: secret references, constant-time compare, loopback rule."""

from __future__ import annotations

import argparse
import logging

import pytest

from framework.errors import ConfigError
from framework.lake.tables import Warehouse
from framework.service.access import ApiKeys, is_loopback
from tests.unit._service import ServiceThread

KEY_A, KEY_B = "k-alpha-0123456789", "k-beta-9876543210"


def test_keys_come_from_references_and_any_of_them_is_accepted(monkeypatch, tmp_path):
    monkeypatch.setenv("RL_KEY_A", KEY_A)
    key_file = tmp_path / "key"
    key_file.write_text(KEY_B + "\n")
    keys = ApiKeys.from_references(f"env:RL_KEY_A, file:{key_file}")
    assert len(keys) == 2
    assert keys.accepts(KEY_A) and keys.accepts(KEY_B)
    assert not keys.accepts(KEY_A[:-1]) and not keys.accepts("") and not keys.accepts(None)
    assert KEY_A not in repr(keys) and "env:RL_KEY_A" in repr(keys)


def test_a_key_value_instead_of_a_reference_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as err:
        ApiKeys.from_references(KEY_A)
    assert "RESTLAKE_API_KEYS" in str(err.value) and KEY_A not in str(err.value)


def test_loopback_hosts():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "example.com", "::"))


def _args(tmp_path, **kw):
    base = dict(warehouse=str(tmp_path / "wh"), control_catalog="main", host="127.0.0.1",
                port=0, public_read=False)
    base.update(kw)
    return argparse.Namespace(**base)


def test_serve_refuses_public_reads_off_loopback_and_a_service_without_keys(tmp_path, monkeypatch):
    from framework.cli.service import serve

    monkeypatch.delenv("RESTLAKE_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="loopback"):
        serve(_args(tmp_path, host="0.0.0.0", public_read=True))
    with pytest.raises(ConfigError, match="RESTLAKE_API_KEYS"):
        serve(_args(tmp_path))


def test_health_answers_without_a_key_and_reads_need_one(tmp_path, monkeypatch, caplog):
    from framework.service.api import create_app

    monkeypatch.setenv("RL_KEY_A", KEY_A)
    app = create_app(Warehouse(tmp_path / "wh"), keys=ApiKeys.from_references("env:RL_KEY_A"))
    caplog.set_level(logging.WARNING, logger="framework.service")
    with ServiceThread(app) as svc:
        health = svc.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded" and body["warehouse"]["readable"] is False
        assert "restlake init" in body["warehouse"]["detail"]
        assert body["scheduler"] == {"attached": False}
        wrong = svc.get("/api/v1/sources", headers={"X-API-Key": "not-" + KEY_A})
        assert wrong.status_code == 401
        assert wrong.headers["content-type"].startswith("application/problem+json")
        assert "X-API-Key" in wrong.json()["detail"]
    logged = caplog.text
    assert "refused GET /api/v1/sources" in logged and "wrong API key" in logged
    assert KEY_A not in logged and "not-" not in logged
