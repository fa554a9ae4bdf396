"""The Databricks notebooks and the wheel entry points, run locally end to end."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from framework.cli import jobs
from framework.demoapi import DemoApi
from tests.integration.helpers import actual_rows, expected_rows
from tests.local_dbutils import LocalDbutils, run_notebook

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc


def test_notebooks_generate_run_and_report_on_a_local_warehouse(spark, tmp_path):
    wh = tmp_path / "wh"
    with DemoApi(seed=5, records_per_resource=120, end=dt.datetime(2024, 1, 6, tzinfo=UTC),
                 auth={"method": "bearer", "token": "nb-secret-token"}) as api:
        conf = tmp_path / "conf"
        conf.mkdir()
        (conf / "issues.yaml").write_text(yaml.safe_dump({
            "config_id": "nb_issues", "api_name": "Demo", "source_system": "demo",
            "endpoint": api.base_url + "/api/cursor/issues",
            "params": {"since": "{window_start}", "until": "{window_end}", "limit": 40},
            "auth": {"method": "bearer", "secret": "databricks:restlake/demo_token"},
            "pagination": {"style": "cursor"}, "data_path": "data", "primary_key": ["id"],
            "delta_column": True, "load_start": "2024-01-01T00:00:00Z",
            # window none: the incremental range planned later runs to today in one request
            "load_end": "2024-01-04T00:00:00Z", "window": "none",
            "target": {"catalog": "raw", "schema": "nb", "table": "issues"}}))
        dbutils = LocalDbutils(widgets={"config_path": str(conf), "warehouse": str(wh),
                                        "control_catalog": "ops"},
                               secrets={("restlake", "demo_token"): "nb-secret-token"})

        gen = run_notebook(ROOT / "notebooks/01_generate.py", spark, dbutils)
        assert [(r.config_id, r.action) for r in gen["results"]] == [("nb_issues", "created")]
        ran = run_notebook(ROOT / "notebooks/02_run.py", spark, dbutils)
        assert [o.status for o in ran["outcomes"]] == ["SUCCESS"], ran["outcomes"][0].error
        assert ("restlake", "demo_token") in dbutils.secrets.reads

        store = jobs.open_store(spark, str(wh), "ops")
        df = store.warehouse.read(spark, __import__("framework.lake.tables", fromlist=["TableRef"])
                                  .TableRef("raw", "nb", "issues"))
        assert actual_rows(df) == expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z")

        ops = run_notebook(ROOT / "notebooks/03_operations.py", spark, dbutils)
        assert ops["failures_today"].count() == 0
        assert ops["quality_failures"].count() == 0  # no checks configured, no drift
        [load] = ops["rows_per_load"].collect()
        assert load["ConfigId"] == "nb_issues" and load["SourceRowCount"] == df.count()
        assert ops["durations"].first()["runs"] == 1
        # the load just ran: not stale after 24 h, stale with a threshold of 0 h
        assert ops["stale_sources"].count() == 0
        zero = LocalDbutils(widgets={"warehouse": str(wh), "control_catalog": "ops",
                                     "stale_hours": "0"})
        stale = run_notebook(ROOT / "notebooks/03_operations.py", spark, zero)
        assert [r["ConfigId"] for r in stale["stale_sources"].collect()] == ["nb_issues"]

        # the wheel entry points: plan the next (incremental) range and run it
        from framework.secrets import set_dbutils_provider

        set_dbutils_provider(lambda: dbutils)
        try:
            assert jobs.generate_main(["--config-id", "nb_issues", "--warehouse", str(wh),
                                       "--control-catalog", "ops"]) == 0
            assert jobs.run_main(["--all", "--warehouse", str(wh), "--control-catalog", "ops"]) == 0
        finally:
            set_dbutils_provider(None)
        row = store.get("nb_issues")
        assert (row["LoadType"], row["LoadStatus"]) == ("INCREMENTAL", "SUCCESS")
        assert len(store.audit_rows("nb_issues")) == 2


def _control_table(wh: Path, catalog: str = "main") -> Path:
    return wh / catalog / "metadata" / "api_control_table"


def test_wheel_generate_reports_every_config_error_as_the_cli_does_and_upserts_nothing(
        spark, tmp_path, capsys):
    from deltalake import DeltaTable

    from framework.cli import main as cli

    wh = tmp_path / "wh"
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a_good.yaml").write_text(yaml.safe_dump({
        "config_id": "fine", "api_name": "Demo", "endpoint": "http://127.0.0.1:9/api/none/issues",
        "data_path": "data", "load_start": "2024-01-01T00:00:00Z",
        "target": {"catalog": "raw", "schema": "t", "table": "fine"}}))
    bad = conf / "b_bad.yaml"
    bad.write_text(yaml.safe_dump({
        "config_id": "two errors", "api_name": "Demo", "endpoint": "http://127.0.0.1:9/x",
        "window": "fortnightly", "target": {"catalog": "raw", "schema": "t", "table": "bad"}}))

    with pytest.raises(SystemExit) as stopped:
        jobs.generate_main(["--conf-dir", str(conf), "--warehouse", str(wh)])
    assert stopped.value.code == 1
    wheel = capsys.readouterr().err
    assert "Traceback" not in wheel
    wheel_errors = [line for line in wheel.splitlines() if line.startswith("error ")]
    assert [e.split(": ")[-2] for e in wheel_errors] == ["config_id", "window"], wheel
    assert all(e.startswith(f"error {bad}: source 'two errors': ") for e in wheel_errors)

    assert cli(["--warehouse", str(wh), "generate", "--due", "--conf-dir", str(conf)]) == 1
    cli_errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error ")]
    assert cli_errors == wheel_errors
    # the good file was not upserted either: an invalid file stops generate before any write
    assert not DeltaTable.is_deltatable(str(_control_table(wh)))


def test_wheel_run_and_run_notebook_fail_on_a_missing_control_table_instead_of_creating_it(
        spark, tmp_path, capsys):
    from deltalake import DeltaTable

    from framework.cli import main as cli

    wh = tmp_path / "wh"
    with pytest.raises(SystemExit) as stopped:  # e.g. a typo in --control-catalog
        jobs.run_main(["--all", "--warehouse", str(wh), "--control-catalog", "opz"])
    assert stopped.value.code == 1
    wheel = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error ")]
    assert wheel and "opz.metadata.api_control_table does not exist" in wheel[0], wheel

    assert cli(["--warehouse", str(wh), "--control-catalog", "opz", "run", "--all"]) == 1
    assert [line for line in capsys.readouterr().err.splitlines()
            if line.startswith("error ")] == wheel

    dbutils = LocalDbutils(widgets={"warehouse": str(wh), "control_catalog": "opz"})
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match="opz.metadata.api_control_table does not exist"):
        run_notebook(ROOT / "notebooks/02_run.py", spark, dbutils)
    ops = LocalDbutils(widgets={"warehouse": str(wh), "control_catalog": "opz",
                                "stale_hours": "24", "days": "7"})
    with pytest.raises(ConfigError, match="opz.metadata.api_control_table does not exist"):
        run_notebook(ROOT / "notebooks/03_operations.py", spark, ops)
    assert not DeltaTable.is_deltatable(str(_control_table(wh, "opz")))
    assert not (wh / "opz").exists()


def test_a_config_folder_without_configs_fails_generate_instead_of_upserting_nothing(
        spark, tmp_path, capsys):
    from deltalake import DeltaTable

    from framework.cli import main as cli

    wh = tmp_path / "wh"
    conf = tmp_path / "conf"
    (conf / "monitoring").mkdir(parents=True)  # the configs one level down: not read
    (conf / "monitoring" / "api.yaml").write_text("config_id: x\n")
    (conf / "README.txt").write_text("configs live in monitoring/\n")

    with pytest.raises(SystemExit) as stopped:
        jobs.generate_main(["--conf-dir", str(conf), "--due", "--warehouse", str(wh)])
    assert stopped.value.code == 1
    wheel = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error ")]
    assert wheel == [f"error {conf}: no config files (*.yaml, *.yml) in this folder"]

    assert cli(["--warehouse", str(wh), "generate", "--due", "--conf-dir", str(conf)]) == 1
    assert [line for line in capsys.readouterr().err.splitlines()
            if line.startswith("error ")] == wheel
    assert not DeltaTable.is_deltatable(str(_control_table(wh)))


def test_wheel_run_takes_the_run_options_of_the_cli(spark, tmp_path, capsys):
    from deltalake import DeltaTable

    wh = tmp_path / "wh"
    conf = tmp_path / "conf"
    conf.mkdir()
    with DemoApi(seed=11, records_per_resource=60, end=dt.datetime(2024, 1, 4, tzinfo=UTC)) as api:
        for name in ("opt_a", "opt_b"):
            (conf / f"{name}.yaml").write_text(yaml.safe_dump({
                "config_id": name, "api_name": "Demo", "source_system": name,
                "endpoint": api.base_url + "/api/cursor/issues",
                "params": {"since": "{window_start}", "until": "{window_end}", "limit": 25},
                "pagination": {"style": "cursor"}, "data_path": "data", "primary_key": ["id"],
                "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-03T00:00:00Z",
                "window": "daily", "target": {"catalog": "raw", "schema": "opt", "table": name}}))
        assert jobs.generate_main(["--conf-dir", str(conf), "--warehouse", str(wh)]) == 0
        assert jobs.run_main(["--all", "--parallel", "2", "--distributed",
                              "--warehouse", str(wh)]) == 0
        expected = sorted(r["id"] for r in api.dataset.records_in("2024-01-01T00:00:00Z",
                                                                   "2024-01-03T00:00:00Z"))
    for name in ("opt_a", "opt_b"):
        table = DeltaTable(str(wh / "raw" / "opt" / name)).to_pyarrow_table(columns=["id"])
        assert sorted(table.column("id").to_pylist()) == expected
    # nothing left to claim: the task says so, as `restlake run --all` does (it said nothing)
    capsys.readouterr()
    assert jobs.run_main(["--all", "--warehouse", str(wh)]) == 0
    assert "nothing to run: no PENDING rows" in capsys.readouterr().out
