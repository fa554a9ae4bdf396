"""The command line end to end: demo, status, audit, run, retry, generate errors."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from deltalake import DeltaTable as RsDeltaTable

from framework.cli.app import main
from framework.load.audit import PHASE_COLUMNS
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark


def test_demo_then_the_operator_commands(spark, tmp_path, capsys, monkeypatch):
    wh = str(tmp_path / "wh")
    assert main(["--warehouse", wh, "demo"]) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "raw_data.demo.gh_issues" in out
    assert "audit rows: 6" in out
    # the demo's tables are plain Delta tables an independent reader opens
    audit = RsDeltaTable(f"{wh}/main/metadata/api_audit_table").to_pyarrow_table()
    assert audit.num_rows == 6 and set(audit.column("LoadStatus").to_pylist()) == {"SUCCESS"}
    gh = RsDeltaTable(f"{wh}/raw_data/demo/gh_issues").to_pyarrow_table()
    ids = gh.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 603
    # demo_issues_detail: every listed issue completed by its detail (body only there)
    detailed = RsDeltaTable(f"{wh}/raw_data/demo/gh_issues_detail").to_pyarrow_table().to_pylist()
    assert len(detailed) == 600 and all(r["body"].startswith("Issue #") for r in detailed)
    [row] = [r for r in audit.to_pylist() if r["ConfigId"] == "demo_issues_detail"]
    assert row["DetailRequests"] >= 600 and row["Requests"] - row["DetailRequests"] >= 12

    assert main(["--warehouse", wh, "status"]) == 0
    out = capsys.readouterr().out
    for cid in ("demo_issues_link", "demo_issues_cursor", "demo_problems"):
        assert cid in out
    assert "INCREMENTAL" in out and "SUCCESS" in out

    assert main(["--warehouse", wh, "audit", "--config-id", "demo_problems", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("demo_problems") == 2
    # --phases: each row's RunDuration split, in place of its counts
    assert main(["--warehouse", wh, "audit", "--config-id", "demo_problems", "--phases"]) == 0
    out = capsys.readouterr().out
    assert "BookkeepingSeconds" in out and "SourceRowCount" not in out
    phases = ("RunDuration", *PHASE_COLUMNS.values())
    shown = sorted([c.strip() for c in line.split("\u2502")[1:-1]][-6:]
                   for line in out.splitlines() if "demo_problems" in line)
    assert shown == sorted([str(r[c]) for c in phases] for r in audit.to_pylist()
                           if r["ConfigId"] == "demo_problems")

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


def test_health_status_stale_replay_and_report_through_main(spark, tmp_path, capsys):
    from control.store import ControlStore
    from framework.demoapi import DemoApi
    from framework.lake.tables import TableRef, Warehouse
    from tests.integration.helpers import run_loads, source

    wh = tmp_path / "wh"
    store = ControlStore(spark, Warehouse(wh))
    store.init()
    end = dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc)
    with DemoApi(seed=3, records_per_resource=40, end=end, max_page_size=10) as api:
        fresh = source(api.base_url, "offset", "fresh_src", window="none", archive=True,
                       end="2024-01-03T00:00:00Z", schedule={"frequency": "PT15M"})
        gone = source(api.base_url + "/gone", "offset", "gone_src", window="none",
                      schedule={"frequency": "PT15M"})
        [loaded] = run_loads(spark, store.warehouse, store, [fresh])
        store.generate([gone])  # planned, never loaded
        assert loaded.status == "SUCCESS", loaded.error

        assert main(["--warehouse", str(wh), "health"]) == 1  # one source answers 404
        out = capsys.readouterr().out
        assert "fresh_src" in out and "gone_src" in out and "api_uptime" in out
        probes = {r["ConfigId"]: r for r in store.warehouse.read(
            spark, TableRef("main", "metadata", "api_health_log")).where("CheckKind = 'probe'").collect()}
        assert probes["fresh_src"]["Ok"] and probes["gone_src"]["StatusCode"] == 404

        api.clear_log()
        assert main(["--warehouse", str(wh), "replay", "--config-id", "fresh_src",
                     "--run-id", loaded.audit["RunId"]]) == 0
        assert api.request_log == []  # replay reads the archive, not the API
    out = capsys.readouterr().out
    assert f"replayed run {loaded.audit['RunId']}" in out and "no API calls" in out
    replayed = store.audit_rows("fresh_src")[0]
    assert replayed["LoadType"] == "REPLAY" and replayed["LoadStatus"] == "SUCCESS"

    assert main(["--warehouse", str(wh), "status", "--stale"]) == 1
    out = capsys.readouterr().out
    assert "gone_src" in out and "fresh_src" not in out

    assert main(["--warehouse", str(wh), "report", "--out", str(tmp_path / "ops")]) == 0
    assert "daily ops report" in capsys.readouterr().out
    for name in ("monitoring_daily.html", "monitoring_daily.xlsx"):
        assert (tmp_path / "ops" / "output" / name).stat().st_size > 0
    assert len(list((tmp_path / "ops" / "logs").glob("monitoring_run_*.log"))) == 1

    assert main(["--warehouse", str(wh), "replay", "--config-id", "fresh_src", "--run-id", "nope"]) == 1
    assert "no archived pages for run nope" in capsys.readouterr().err
    failed = store.audit_rows("fresh_src")[0]
    assert failed["LoadType"] == "REPLAY" and failed["LoadStatus"] == "FAILED"
    assert "no archived pages" in failed["ErrorMessage"]


def planned(tmp_path, api, config_id: str):
    """A warehouse (``tmp_path/wh``, made by ``init``) with one source planned by
    ``generate``: one day of the demo API's offset endpoint into raw.cli.<config_id>."""
    import yaml

    conf = tmp_path / f"{config_id}.yaml"
    conf.write_text(yaml.safe_dump({
        "config_id": config_id, "api_name": "Demo", "endpoint": api.base_url + "/api/offset/issues",
        "pagination": {"style": "offset", "total_path": "total"}, "data_path": "data",
        "primary_key": ["id"], "load_start": "2024-01-01T00:00:00Z",
        "load_end": "2024-01-02T00:00:00Z",
        "target": {"catalog": "raw", "schema": "cli", "table": config_id}}))
    wh = tmp_path / "wh"
    assert main(["--warehouse", str(wh), "init"]) == 0
    assert main(["--warehouse", str(wh), "generate", "--config", str(conf)]) == 0
    return wh


def test_run_exits_non_zero_when_the_audit_row_cannot_be_written(spark, tmp_path, capsys):
    import shutil

    from framework.demoapi import DemoApi

    with DemoApi(seed=9, records_per_resource=30, end=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)) as api:
        wh = planned(tmp_path, api, "audited")
        # the audit table is replaced by one whose schema no audit row fits
        audit = wh / "main" / "metadata" / "api_audit_table"
        shutil.rmtree(audit)
        spark.createDataFrame([(1,)], "ConfigId int").write.format("delta").save(str(audit))
        capsys.readouterr()
        assert main(["--warehouse", str(wh), "run", "--config-id", "audited"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "audited: the audit row of run" in err and "could not be appended" in err
    load_id = RsDeltaTable(f"{wh}/main/metadata/api_control_table").to_pyarrow_table().to_pylist()[0]["LoadId"]
    assert f"(load {load_id}, SUCCESS)" in err  # the load itself succeeded; its record did not


def test_run_of_an_unknown_config_id_exits_1_naming_it(spark, tmp_path, capsys):
    from control.store import ControlStore
    from framework.demoapi import DemoApi
    from framework.lake.tables import Warehouse

    with DemoApi(seed=9, records_per_resource=30, end=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)) as api:
        wh = planned(tmp_path, api, "known")
        capsys.readouterr()
        # a typo in a scheduled job: the known row is still loaded, the run exits 1
        assert main(["--warehouse", str(wh), "run", "--config-id", "known", "nosuch"]) == 1
        captured = capsys.readouterr()
        assert "no control row with ConfigId nosuch" in " ".join(captured.err.split())
        rows = RsDeltaTable(f"{wh}/raw/cli/known").to_pyarrow_table().num_rows
        assert rows == len(api.dataset.records_in("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"))

        # a row another runner holds is skipped, and that is no failure
        store = ControlStore(spark, Warehouse(wh))
        assert main(["--warehouse", str(wh), "generate", "--config-id", "known"]) == 0
        assert store.claim("known", "other-runner", "run-other") is not None
        capsys.readouterr()
        assert main(["--warehouse", str(wh), "run", "--config-id", "known"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "SKIPPED" in out and "other-runner" in out
