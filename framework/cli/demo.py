"""``restlake demo``: the whole flow on bundled demo APIs and the local warehouse.

Two demo APIs start on 127.0.0.1 (a GitHub-like one behind a bearer token and a
Dynatrace-like one behind an ``Api-Token``). Demo configs are written to a temporary
folder, then: ``init`` -> ``generate`` -> ``run`` (FULL_LOAD), a few records change at
the source, ``generate`` -> ``run`` again (INCREMENTAL MERGE), and a summary. One demo
source (``demo_issues_detail``) completes each listed issue with its detail request
(``detail:``), so the audit shows ``DetailRequests``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets as pysecrets
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml
from rich.console import Console
from rich.table import Table

from framework.cli.console import console as default_console
from framework.cli.console import print_outcomes, progress_printer

EXAMPLES = {"demo": "restlake demo\n  restlake --warehouse /tmp/wh demo --keep-running"}

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
END = dt.datetime(2024, 1, 8, tzinfo=dt.timezone.utc)


def demo_configs(github_url: str, dynatrace_url: str) -> list[dict[str, Any]]:
    """The demo sources (plain dicts, written to YAML like a user's files)."""
    common = {
        "load_start": "2024-01-01T00:00:00Z",
        "load_end": "2024-01-08T00:00:00Z",
        "params": {"since": "{window_start}", "until": "{window_end}"},
        "limits": {"timeout_s": 10, "max_retries": 3, "concurrency": 4},
        "owner": "Platform team",
    }
    return [
        {**common, "config_id": "demo_issues_link", "api_name": "DemoGitHub",
         "source_system": "demo_github",
         "endpoint": f"{github_url}/api/link_header/issues",
         "params": {**common["params"], "per_page": 50},
         "auth": {"method": "bearer", "secret": "env:RESTLAKE_DEMO_GITHUB_TOKEN"},
         "pagination": {"style": "link_header"}, "data_path": "$",
         "primary_key": ["id"], "delta_column": True, "cursor_field": "updated_at",
         "window": "daily", "target": {"catalog": "raw_data", "schema": "demo", "table": "gh_issues"},
         "schedule": {"time": "02:00", "frequency": "daily"}},
        {**common, "config_id": "demo_issues_cursor", "api_name": "DemoGitHub",
         "source_system": "demo_github",
         "endpoint": f"{github_url}/api/cursor/issues",
         "params": {**common["params"], "limit": 40},
         "auth": {"method": "bearer", "secret": "env:RESTLAKE_DEMO_GITHUB_TOKEN"},
         "pagination": {"style": "cursor", "cursor_param": "cursor", "cursor_path": "next_cursor"},
         "data_path": "data", "parser": "flatten", "primary_key": ["id"],
         "window": "P2D", "target": {"catalog": "raw_data", "schema": "demo", "table": "gh_issues_flat"},
         "schedule": {"time": "02:00", "frequency": "daily"}},
        {**common, "config_id": "demo_issues_detail", "api_name": "DemoGitHub",
         "source_system": "demo_github",
         "description": "Issues with body and reactions (detail fan-out)",
         "endpoint": f"{github_url}/api/offset/issues",
         "auth": {"method": "bearer", "secret": "env:RESTLAKE_DEMO_GITHUB_TOKEN"},
         "pagination": {"style": "offset", "offset_param": "offset", "limit_param": "limit",
                        "page_size": 50, "total_path": "total"},
         "data_path": "data", "primary_key": ["id"],
         # each listed issue is completed by GET /api/offset/issues/{id} (body, reactions)
         "detail": {"endpoint": f"{github_url}/api/offset/issues/{{id}}", "id_field": "id",
                    "concurrency": 8, "mode": "merge"},
         "window": "daily",
         "target": {"catalog": "raw_data", "schema": "demo", "table": "gh_issues_detail"},
         "schedule": {"time": "02:30", "frequency": "daily"}},
        {**common, "config_id": "demo_problems", "api_name": "DemoDynatrace",
         "source_system": "demo_dynatrace",
         "endpoint": f"{dynatrace_url}/api/next_key/issues",
         "params": {**common["params"], "pageSize": 60},
         "auth": {"method": "api_token", "secret": "env:RESTLAKE_DEMO_DT_TOKEN"},
         "pagination": {"style": "next_key", "exclusive": True}, "data_path": "items",
         "primary_key": ["id"], "delta_column": True, "cursor_field": "updated_at",
         "window": "none", "completeness": "record",
         "target": {"catalog": "raw_data", "schema": "demo", "table": "cache_monitoring_alerts"},
         "schedule": {"time": "00:15", "frequency": "PT15M"}},
    ]


def add_commands(sub: Any, add: Callable[[str, str], argparse.ArgumentParser]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    p = add("demo", "start the bundled demo API and run init -> generate -> run end to end")
    p.add_argument("--keep-running", action="store_true",
                   help="keep the demo API up after the run (Ctrl-C to stop)")
    return {"demo": cmd_demo}


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args, default_console)


def run_demo(args: argparse.Namespace, console: Console) -> int:
    from control.store import ControlStore
    from framework.load import runtime
    from framework.config import load_files
    from framework.demoapi import DemoApi
    from framework.lake.spark import get_spark
    from framework.lake.tables import TableRef, Warehouse

    t0 = time.monotonic()
    gh_token, dt_token = pysecrets.token_urlsafe(16), pysecrets.token_urlsafe(16)
    os.environ["RESTLAKE_DEMO_GITHUB_TOKEN"] = gh_token
    os.environ["RESTLAKE_DEMO_DT_TOKEN"] = dt_token
    github = DemoApi(seed=7, records_per_resource=600, start=START, end=END,
                     auth={"method": "bearer", "token": gh_token}).start()
    dynatrace = DemoApi(seed=11, records_per_resource=400, start=START, end=END,
                        auth={"method": "api_token", "token": dt_token}).start()
    try:
        conf_dir = Path(tempfile.mkdtemp(prefix="restlake-demo-conf-"))
        files = []
        for cfg in demo_configs(github.base_url, dynatrace.base_url):
            path = conf_dir / f"{cfg['config_id']}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            files.append(path)
        console.print(f"[bold]demo APIs[/bold] {github.base_url} (GitHub-like, bearer), "
                      f"{dynatrace.base_url} (Dynatrace-like, Api-Token)")
        console.print(f"[bold]configs[/bold]   {conf_dir}")
        configs = load_files(files)

        warehouse = Warehouse.from_env(args.warehouse)
        with console.status("starting Spark + Delta (first start downloads the Delta jars)"):
            t_spark = time.monotonic()
            spark = get_spark()
            spark_s = time.monotonic() - t_spark
        console.print(f"[bold]warehouse[/bold] {warehouse.root}  (Spark started in {spark_s:.0f}s)")
        store = ControlStore(spark, warehouse, args.control_catalog)
        store.init()

        console.rule("1. generate + run: first (FULL_LOAD) loads")
        for r in store.generate(configs):
            console.print(f"  {r.config_id}: {r.action} {r.detail}")
        ctx = runtime.RunContext(spark, warehouse, store, runtime.staging_root(warehouse),
                                 on_event=progress_printer())
        outcomes = runtime.run(ctx, [c.config_id for c in configs], parallel=3)

        console.rule("2. the source changes; generate + run: INCREMENTAL MERGE")
        later = END + dt.timedelta(hours=6)
        github.dataset.touch(github.dataset.ids()[:5], at=later)
        github.dataset.add(3, at=later)
        dynatrace.dataset.add(2, at=later)
        now = later + dt.timedelta(hours=1)
        incremental = [c for c in configs if c.delta_column]
        for r in store.generate(incremental, now=now):
            console.print(f"  {r.config_id}: {r.action} {r.detail}")
        ctx2 = runtime.RunContext(spark, warehouse, store, runtime.staging_root(warehouse),
                                  on_event=progress_printer())
        outcomes += runtime.run(ctx2, [c.config_id for c in incremental], parallel=2)
        print_outcomes(outcomes)

        console.rule("summary")
        table = Table(title="target tables")
        for col in ("table", "rows", "location"):
            table.add_column(col)
        for cfg in configs:
            ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
            rows = warehouse.read(spark, ref).count() if warehouse.exists(spark, ref) else 0
            table.add_row(ref.name, str(rows), warehouse.path(ref))
        console.print(table)
        audit = store.audit_rows(limit=20)
        console.print(f"audit rows: {len(audit)} in {store.audit_ref.name} "
                      f"({warehouse.path(store.audit_ref)})")
        console.print("\ntry it:\n"
                      f"  restlake --warehouse {warehouse.root} status\n"
                      f"  restlake --warehouse {warehouse.root} audit\n"
                      "  pyspark (with Delta), then:\n"
                      f"  spark.read.format('delta').load('{warehouse.path(store.audit_ref)}')"
                      ".createOrReplaceTempView('audit')\n"
                      "  spark.sql('SELECT ConfigId, LoadType, LoadStatus, SourceRowCount, "
                      "TargetRowCount, RunDuration FROM audit ORDER BY LoggedAt').show()")
        console.print(f"\ndone in {time.monotonic() - t0:.0f}s")
        if args.keep_running:
            console.print(f"demo APIs still serving at {github.base_url} and {dynatrace.base_url}; "
                          "Ctrl-C to stop")
            while True:
                time.sleep(3600)
        return 1 if any(o.failed for o in outcomes) else 0
    finally:
        github.stop()
        dynatrace.stop()
