"""An API that answers with hostile text (rich markup, ESC sequences, NUL) cannot abort a run,
skip an audit row or an alert, break ``status`` or the daily report; ``replay --run-id``
cannot reach outside the staging root."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from openpyxl import load_workbook

from framework.cli import main
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark

HOSTILE = ("[/] [link=https://evil.example]click[/link] \x1b[31mred\x1b[0m "
           "\x1b]8;;https://evil.example\x07link\x1b]8;;\x07 nul\x00 end")


def _source(cid: str, url: str) -> dict:
    return {"config_id": cid, "api_name": "Hostile", "endpoint": url, "primary_key": ["id"],
            "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-02T00:00:00Z",
            "target": {"catalog": "raw", "schema": "hostile", "table": cid},
            "limits": {"timeout_s": 5, "max_retries": 0}}


def test_hostile_error_text_cannot_abort_a_run_skip_its_alerts_or_break_the_report(
        spark, tmp_path, capsys, monkeypatch):
    wh = str(tmp_path / "wh")
    conf = tmp_path / "hostile.yaml"
    notify = tmp_path / "notify.yaml"
    with FakeApi() as api, FakeApi() as hook:
        api.route("/a", Reply(400, {"message": HOSTILE}))
        api.route("/b", Reply(400, {"message": HOSTILE}))
        hook.route("/hook", Reply(200, {"ok": True}))
        conf.write_text(yaml.safe_dump({"sources": [_source("hostile_a", api.url("/a")),
                                                    _source("hostile_b", api.url("/b"))]}))
        notify.write_text(yaml.safe_dump({"notifications": {
            "events": ["load_failed"], "webhook": {"url": hook.url("/hook"), "retries": 0}}}))
        monkeypatch.setenv("RESTLAKE_NOTIFICATIONS", str(notify))
        monkeypatch.setenv("RESTLAKE_NOTIFY_STATE", str(tmp_path / "notify_state.json"))
        assert main(["--warehouse", wh, "init"]) == 0
        assert main(["--warehouse", wh, "generate", "--config", str(conf)]) == 0
        capsys.readouterr()
        assert main(["--warehouse", wh, "run", "--all", "--parallel", "1"]) == 1
        run_out = capsys.readouterr()
        alerts = [r.json()["text"] for r in hook.requests_to("/hook")]

    # both loads ran, were audited and alerted; nothing was left in staging
    assert len(alerts) == 2 and all("[/]" in a and "\x1b" not in a for a in alerts)
    from control.store import ControlStore
    from framework.lake.tables import Warehouse

    audit = ControlStore(spark, Warehouse(wh)).audit_rows(None, 10)
    assert sorted((r["ConfigId"], r["LoadStatus"]) for r in audit) == [
        ("hostile_a", "FAILED"), ("hostile_b", "FAILED")]
    assert "\x1b" in audit[0]["ErrorMessage"]  # the table keeps the API's text as data
    assert [p for p in (Path(wh) / "_staging").rglob("*") if p.is_file()] == []
    # the terminal got the text, escaped: visible, never interpreted
    assert "[link=https://evil.example]click[/link]" in run_out.out and "\\x1b[31m" in run_out.out
    assert "\x1b" not in run_out.out and "\x00" not in run_out.out

    assert main(["--warehouse", wh, "status"]) == 0
    assert main(["--warehouse", wh, "audit"]) == 0
    shown = capsys.readouterr().out
    assert "[/]" in shown and "\x1b" not in shown

    assert main(["--warehouse", wh, "report", "--out", str(tmp_path / "ops")]) == 0
    book = load_workbook(tmp_path / "ops" / "output" / "monitoring_daily.xlsx")
    cells = [c for ws in book for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
    hostile = [c for c in cells if "[link=https://evil.example]" in c.value]
    assert hostile and all("\x1b" not in c.value and c.data_type == "s" for c in hostile)
    html = (tmp_path / "ops" / "output" / "monitoring_daily.html").read_text()
    assert "\x1b" not in html and "\\x1b[31m" in html


def test_replay_refuses_a_run_id_that_reaches_outside_the_staging_root(spark, warehouse, store):
    from framework.demoapi import DemoApi
    from framework.errors import ConfigError
    from framework.load import runtime
    from framework.load.archive import replay
    from tests.integration.helpers import run_loads, source

    with DemoApi(seed=5, records_per_resource=20, end=dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc)) as api:
        cfg = source(api.base_url, "cursor", "replay_guard", archive=True, window="none",
                     end="2024-01-02T00:00:00Z")
        [outcome] = run_loads(spark, warehouse, store, [cfg])
        assert outcome.status == "SUCCESS", outcome.error
    root = runtime.staging_root(warehouse)
    before = {p for p in Path(warehouse.root).rglob("*")}
    for bad in ("../../../../escaped", "x/../../../../escaped", "..", "run/../x", ""):
        with pytest.raises(ConfigError, match="--run-id"):
            replay(spark, store, "replay_guard", bad, root)
        assert main(["--warehouse", str(warehouse.root), "replay", "--config-id", "replay_guard",
                     "--run-id", bad]) == 1
    created = {p for p in Path(warehouse.root).rglob("*")} - before
    assert [p for p in created if "escaped" in str(p) or (p != root and root not in p.parents)] == []
