"""Every shipped example config validates (with its ${ENV} placeholders set)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framework.cli.app import main
from framework.config import load_files

CONF = Path(__file__).resolve().parents[2] / "conf"
FILES = sorted(p for p in CONF.rglob("*.y*ml") if "resources" not in p.parts)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for path in FILES:
        for name in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", path.read_text()):
            monkeypatch.setenv(name, "https://example.test" if name.endswith("URL") else "acme/app")


def test_there_are_examples_for_the_documented_api_shapes():
    styles = {cfg.pagination.style for cfg in load_files([p for p in FILES if _is_source(p)])}
    assert {"link_header", "next_key", "has_more", "offset", "body_token"} <= styles
    methods = {cfg.auth.method for cfg in load_files([p for p in FILES if _is_source(p)])}
    assert {"bearer", "api_token", "oauth2_client_credentials", "api_key"} <= methods


def _is_source(path: Path) -> bool:
    return "config_id" in path.read_text()


@pytest.mark.parametrize("path", [p for p in FILES if _is_source(p)], ids=lambda p: p.name)
def test_example_validates(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_all_examples_together_have_unique_config_ids():
    configs = load_files([p for p in FILES if _is_source(p)])
    ids = [c.config_id for c in configs]
    assert len(ids) == len(set(ids))
