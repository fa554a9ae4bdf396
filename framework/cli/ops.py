"""Operations commands of ``restlake``: report, health, notify, drill, quality (and
``status --stale``).

:func:`add_commands` adds the subcommands and returns their handlers.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any, Callable

from rich.table import Table

from framework.cli.options import DAYS, LIMIT, STATUS, TIMEOUT_S, number
from framework.cli.console import (cell, console, error, open_queries, open_store, require_init, safe,
                                  start_spark, table)

EXAMPLES = {
    "report": "restlake report --out ./ops\n  restlake report --out ./ops --days 1",
    "health": "restlake health\n  restlake health --config-id demo_problems --expect 200",
    "notify": "restlake notify --config conf/notifications.yaml\n"
              "  restlake notify --config conf/notifications.yaml --dry-run",
    "drill": "restlake drill all\n  restlake drill auth timeout\n  restlake drill quality",
    "quality": "restlake quality\n  restlake quality --config-id gh_issues --limit 50\n"
               "  restlake quality --failed --days 7",
}


def add_commands(sub: Any, add: Callable[[str, str], argparse.ArgumentParser]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    p = add("report", "write the daily ops report: OUT/output/monitoring_daily.{xlsx,html} and "
                      "OUT/logs/monitoring_run_YYYYMMDD.log")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder")
    p.add_argument("--days", type=DAYS, default=7, help="audit history to show (default 7)")
    p.add_argument("--top", type=number(int, minimum=0), default=15, help="critical alerts to list (default 15)")
    p = add("health", "probe each enabled source once, log the results, show uptime")
    p.add_argument("--config-id", nargs="+", metavar="ID", help="only these sources")
    p.add_argument("--expect", nargs="+", type=STATUS, metavar="STATUS",
                   help="statuses that mean up (default: each source's health.expected_status, "
                        "else any 2xx)")
    p.add_argument("--timeout", type=TIMEOUT_S, metavar="S",
                   help="override each source's health.timeout_s / limits.timeout_s")
    p = add("notify", "send notifications for failed loads, stale sources and outages "
                      "(once per incident)")
    p.add_argument("--config", required=True, metavar="FILE",
                   help="YAML file with a top-level notifications: block")
    p.add_argument("--days", type=DAYS, default=1, help="failed loads of the last N days (default 1)")
    p.add_argument("--dry-run", action="store_true", help="print the messages, send nothing")
    p = add("drill", "break/fix drills on the bundled demo API: auth, timeout, reject, quality "
                     "(or all)")
    p.add_argument("names", nargs="+", choices=["all", "auth", "timeout", "reject", "quality"],
                   metavar="DRILL", help="auth | timeout | reject | quality | all")
    p = add("quality", "the latest quality state per source (checks, SLA) and recent check "
                       "results; exit 1 when a source's latest load failed a check or missed "
                       "an SLA of severity fail")
    p.add_argument("--config-id", nargs="+", metavar="ID", help="only these sources")
    p.add_argument("--limit", type=LIMIT, default=30, help="result rows to show (default 30)")
    p.add_argument("--days", type=DAYS, default=7, help="results of the last N days (default 7)")
    p.add_argument("--failed", action="store_true", help="only checks that did not pass")
    return {"report": cmd_report, "health": cmd_health, "notify": cmd_notify, "drill": cmd_drill,
            "quality": cmd_quality}


def _open(args: argparse.Namespace, *, lazy: bool = False) -> tuple[Any, Any, Any]:
    from framework.errors import ConfigError

    spark, warehouse, store = open_store(args, lazy=lazy)
    if not store.is_initialized():
        raise ConfigError("the control table does not exist; run 'restlake init' first")
    return spark, warehouse, store


# ------------------------------------------------------------------- stale
def print_stale(queries: Any, rows: list[dict[str, Any]]) -> int:
    """``restlake status --stale``: which of the control ``rows`` are past their cadence;
    exit 1 when there are any."""
    judged = queries.freshness(rows)
    items = [f for f in judged if f.stale]
    if not items:
        off = len(rows) - len(judged)
        console.print(f"[green]every source is fresh[/green] ({len(judged)} checked"
                      + (f"; {off} disabled, not checked" if off else "") + ")")
        return 0
    console.print(table("stale sources (newest collected_at_utc older than the cadence "
                        "allows)", ("ConfigId", "Target", "Frequency", "NewestCollectedAt",
                                    "AgeMinutes", "AllowedMinutes", "Reason"),
                        [f.as_row() for f in items]))
    return 1


# ------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    from framework.ops.monitoring import write_daily_report

    queries = open_queries(args)
    with console.status("reading the warehouse"):
        report, paths = write_daily_report(queries, args.out, days=args.days, top=args.top)
    summary = Table(title="daily ops report")
    summary.add_column("section")
    summary.add_column("rows", justify="right")
    for s in report.sections:
        summary.add_row(cell(s.title), str(len(s.rows)))
    console.print(summary)
    for path in paths:
        console.print(f"wrote {safe(path)}", soft_wrap=True)
    return 0


# ------------------------------------------------------------------- health
def cmd_health(args: argparse.Namespace) -> int:
    """Probe the sources once, append the results to the health log, show uptime.

    On a local warehouse no JVM starts (delta-rs appends, the uptime is the service's
    JVM-free metric), unless the health log does not exist yet and Spark must create it;
    on Unity Catalog the uptime views are (re)created for SQL users.
    """
    from control.mapping import row_to_config
    from framework.errors import ConfigError
    from framework.ops.health import probe_many
    from framework.ops.health_store import append_checks, health_ref, register_views
    from framework.load.runtime import new_run_id

    _, warehouse, store = _open(args, lazy=True)
    catalog = store.control_ref.catalog
    configs = []
    for row in store.rows(args.config_id):
        if row.get("Enabled") is False:
            continue
        try:
            cfg = row_to_config(row)
        except ConfigError as exc:
            error(str(exc))
            continue
        if cfg.is_push:  # nothing to probe: its events come to the receiver
            continue
        if not cfg.health_check.enabled and not args.config_id:
            continue  # health: {enabled: false}; probed only when named
        configs.append(cfg)
    results = probe_many(configs, now=dt.datetime.now(dt.timezone.utc), run_id=new_run_id(),
                         expected=args.expect, timeout_s=args.timeout)
    local = warehouse.is_local
    spark = None if local and warehouse.exists(None, health_ref(catalog)) else start_spark()
    append_checks(spark, warehouse, results, catalog)
    console.print(table("health probes", ("ConfigId", "Ok", "StatusCode", "ElapsedMs",
                                                   "ErrorKind", "ErrorMessage"), results))
    if not local:
        register_views(spark, warehouse, catalog)
    uptime = sorted(open_queries(args).health_metric("api_uptime"), key=lambda r: r["ConfigId"])
    console.print(table("uptime (view api_uptime)", (
        "ConfigId", "uptime_pct_24h", "uptime_pct_7d", "uptime_pct_30d", "checks_24h",
        "last_checked_at", "last_ok"), uptime))
    return 1 if any(not r["Ok"] for r in results) else 0


# ------------------------------------------------------------------- notify
def cmd_notify(args: argparse.Namespace) -> int:
    from framework.errors import ConfigError
    from framework.ops.notify import (FORGET_AFTER, NotificationState, Notifier, build_message,
                                      collect_events, load_notifications, state_path)

    config = load_notifications(args.config)
    if config is None:
        raise ConfigError("no notifications: block", file=args.config)
    queries = require_init(open_queries(args))
    warehouse = queries.reader.warehouse
    now = dt.datetime.now(dt.timezone.utc)
    events = collect_events(queries, config, now, days=args.days)
    state = NotificationState(state_path(warehouse))
    if args.dry_run:
        for e in events:
            seen = "already notified" if e.key in state else "new"
            console.print(f"[bold]{safe(e.key)}[/bold] ({seen})\n{safe(build_message(e)[1])}",
                              soft_wrap=True)
        return 0
    # (a key the run's --days still reaches is among its events: never forgotten while told)
    forget_after = max(FORGET_AFTER, dt.timedelta(days=args.days + 1))
    deliveries = Notifier(config, state).notify(events, now, forget_after=forget_after)
    sent = Table(title="notifications")
    for col in ("incident", "sent via", "skipped / errors"):
        sent.add_column(col, overflow="fold")
    for d in deliveries:
        sent.add_row(cell(d.event.key), cell(", ".join(d.channels)),
                     cell(d.skipped or "; ".join(d.errors)))
    console.print(sent)
    return 1 if any(d.errors and not d.channels for d in deliveries) else 0


# -------------------------------------------------------------------- drill
def cmd_drill(args: argparse.Namespace) -> int:
    from framework.ops.drills import DRILLS, run_drills
    from framework.lake.spark import get_spark
    from framework.lake.tables import Warehouse

    names = list(DRILLS) if "all" in args.names else list(dict.fromkeys(args.names))
    warehouse = Warehouse.from_env(args.warehouse)
    with console.status("starting Spark + Delta"):
        spark = get_spark()
    log_dir = (warehouse.root / "_ops" / "drills") if warehouse.root else Path("drill_logs")
    results = run_drills(spark, warehouse, names, log_dir)
    for r in results:
        verdict = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
        checks = Table(title=f"drill {r.name}: {'PASS' if r.passed else 'FAIL'}")
        checks.add_column("check")
        checks.add_column("ok")
        checks.add_column("evidence", overflow="fold")
        for what, ok, evidence in r.checks:
            checks.add_row(cell(what), "yes" if ok else "NO", cell(evidence))
        console.print(checks)
        console.print(f"{verdict} {r.name}: run log {safe(r.log_file)}", soft_wrap=True)
    return 0 if all(r.passed for r in results) else 1


# ------------------------------------------------------------------ quality
QUALITY_COLUMNS = ("CheckedAt", "ConfigId", "LoadId", "Phase", "CheckName", "Field",
                   "ObservedValue", "Threshold", "Severity", "Passed", "Message", "Detail")


def cmd_quality(args: argparse.Namespace) -> int:
    queries = require_init(open_queries(args))
    now = dt.datetime.now(dt.timezone.utc)
    ids = args.config_id
    states = queries.quality_states(ids, now)
    console.print(table("latest quality state per source", (
        "ConfigId", "State", "CheckedAt", "Failed", "Warned", "SlaMet", "Sla"),
        [s.as_row() for s in states.values()]))
    rows = queries.quality_results(ids, since=now - dt.timedelta(days=args.days))
    if args.failed:
        rows = [r for r in rows if not r["Passed"]]
    # cells are plain text: a check's Detail holds values the API sent
    console.print(table(f"quality results {queries.quality_ref.name} (newest first)",
                        QUALITY_COLUMNS, rows[:args.limit]))
    if not states:
        console.print("no quality results yet: add a quality: block to a source's config")
    return 1 if any(s.level == "bad" for s in states.values()) else 0
