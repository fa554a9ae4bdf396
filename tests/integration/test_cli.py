"""The command line end to end: demo, status, audit, run, retry, generate errors."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from deltalake import DeltaTable as RsDeltaTable

from framework.cli.app import main
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark


def test_demo_then_the_operator_commands(spark, tmp_path, capsys, monkeypatch):
    wh = str(tmp_path / "wh")
    assert main(["--warehouse", wh, "demo"]) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "raw_data.demo.gh_issues" in out
    assert "audit rows: 5" in out
    # the demo's tables are plain Delta tables an independent reader opens
    audit = RsDeltaTable(f"{wh}/main/metadata/api_audit_table").to_pyarrow_table()
    assert audit.num_rows == 5 and set(audit.column("LoadStatus").to_pylist()) == {"SUCCESS"}
    gh = RsDeltaTable(f"{wh}/raw_data/demo/gh_issues").to_pyarrow_table()
    ids = gh.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 603

    assert main(["--warehouse", wh, "status"]) == 0
    out = capsys.readouterr().out
    for cid in ("demo_issues_link", "demo_issues_cursor", "demo_problems"):
        assert cid in out
    assert "INCREMENTAL" in out and "SUCCESS" in out

    assert main(["--warehouse", wh, "audit", "--config-id", "demo_problems", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("demo_problems") == 2

    assert main(["--warehouse", wh, "run", "--all"]) == 0
    assert "nothing to run" in capsys.readouterr().out

    assert main(["--warehouse", wh, "retry", "--config-id", "demo_problems"]) == 1
    assert "only FAILED rows can be retried" in capsys.readouterr().err

    assert main(["--warehouse", wh, "generate", "--config-id", "nope"]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err

    # a failed load is notified once (a Slack-compatible webhook on loopback), not per rerun
    from control.store import ControlStore
    from framework.lake.tables import Warehouse

    with FakeApi() as hook:
        hook.route("/hook", Reply(200, {}))
        monkeypatch.setenv("RL_TEST_HOOK", hook.url("/hook"))
        conf = tmp_path / "notify.yaml"
        conf.write_text("notifications:\n  events: [load_failed]\n"
                        "  webhook: {url: env:RL_TEST_HOOK, retries: 1}\n")
        ControlStore(spark, Warehouse(wh)).append_audit({
            "ConfigId": "demo_problems", "LoadId": "L-failed", "RunId": "run-x", "LoadType": "INCREMENTAL",
            "LoadStatus": "FAILED", "ErrorMessage": "GET /api/problems: HTTP 503 after 5 attempts",
            "LoggedAt": dt.datetime.now(dt.timezone.utc)})
        assert main(["--warehouse", wh, "notify", "--config", str(conf)]) == 0
        received = [r.json() for r in hook.requests_to("/hook")]
        assert len(received) == 1 and "demo_problems" in json.dumps(received[0])
        assert "503" in json.dumps(received[0])
        assert main(["--warehouse", wh, "notify", "--config", str(conf)]) == 0
        assert len(hook.requests_to("/hook")) == 1


def test_commands_need_init_first(spark, tmp_path, capsys):
    wh = str(tmp_path / "empty")
    assert main(["--warehouse", wh, "status"]) == 1
    assert "restlake init" in capsys.readouterr().err
    assert main(["--warehouse", wh, "init"]) == 0
    assert "created" in capsys.readouterr().out
    assert main(["--warehouse", wh, "init"]) == 0
    assert "created" not in capsys.readouterr().out.replace("exists", "")
