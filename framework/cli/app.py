"""The ``restlake`` command line (a public contract: names are kept, only extended)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from framework.errors import ConfigError, RestlakeError
from framework.secrets import install_log_redaction, redact

# Piped output (job logs, files) is not cut to 80 columns: tables stay readable there.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False)

EXAMPLES = {
    "init": "restlake --warehouse ./wh init",
    "validate": "restlake validate conf/*.yaml",
    "generate": "restlake generate --config conf/github_issues.yaml\n"
                "  restlake generate --config-id gh_issues\n  restlake generate --due",
    "run": "restlake run --config-id gh_issues\n  restlake run --all\n  restlake run --all --distributed",
    "status": "restlake status\n  restlake status --config-id gh_issues\n  restlake status --stale",
    "audit": "restlake audit --config-id gh_issues --limit 5",
    "retry": "restlake retry --config-id gh_issues",
    "demo": "restlake demo\n  restlake --warehouse /tmp/wh demo --keep-running",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restlake",
        description="Load REST APIs into Delta Lake tables, driven by a control table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              restlake demo                          # the whole flow on a bundled demo API
              restlake validate conf/*.yaml
              restlake --warehouse ./wh init
              restlake --warehouse ./wh generate --config conf/github_issues.yaml
              restlake --warehouse ./wh run --all
              restlake --warehouse ./wh status
            """))
    parser.add_argument("--warehouse", metavar="DIR",
                        help="local warehouse folder (env RESTLAKE_WAREHOUSE, default ./warehouse; "
                             "on Databricks: Unity Catalog tables)")
    parser.add_argument("--control-catalog", default=os.environ.get("RESTLAKE_CONTROL_CATALOG", "main"),
                        metavar="NAME", help="catalog of the metadata schema (default main)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example:\n  " + EXAMPLES[name])

    add("init", "create the control, audit and window-log tables (idempotent)")
    p = add("validate", "check config files (no Spark); exit 1 on the first bad file")
    p.add_argument("files", nargs="+", metavar="FILE")
    p = add("generate", "upsert control rows from configs and mark due loads PENDING")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", nargs="+", metavar="FILE", help="config files")
    g.add_argument("--config-id", nargs="+", metavar="ID", help="plan these existing rows now")
    g.add_argument("--due", action="store_true", help="plan every row whose schedule fired")
    p.add_argument("--conf-dir", metavar="DIR", help="with --due: also upsert the configs in DIR")
    p = add("run", "claim PENDING rows and load them (exit 1 when a load failed)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config-id", nargs="+", metavar="ID")
    g.add_argument("--all", action="store_true", help="every PENDING row")
    p.add_argument("--distributed", action="store_true",
                   help="fetch windows on the Spark executors, one task per window (staging "
                        "must be storage the executors share, e.g. RESTLAKE_STAGING=/Volumes/...)")
    p.add_argument("--lease-minutes", type=float, default=60,
                   help="how long a claim holds before another runner may take over (default 60; "
                        "renewed while the load makes progress)")
    p.add_argument("--parallel", type=int, default=2, metavar="N",
                   help="loads run at once (default 2); windows of one load use limits.concurrency")
    p = add("status", "show the control rows")
    p.add_argument("--config-id", nargs="+", metavar="ID")
    p.add_argument("--stale", action="store_true",
                   help="only sources whose newest data is older than their cadence allows "
                        "(exit 1 when any)")
    p = add("audit", "show recent audit rows")
    p.add_argument("--config-id", metavar="ID")
    p.add_argument("--limit", type=int, default=20)
    p = add("retry", "set FAILED rows back to PENDING with the same range")
    p.add_argument("--config-id", nargs="+", metavar="ID", required=True)
    p = add("demo", "start the bundled demo API and run init -> generate -> run end to end")
    p.add_argument("--keep-running", action="store_true",
                   help="keep the demo API up after the run (Ctrl-C to stop)")
    for module in _extensions():
        COMMANDS.update(module.add_commands(sub, add))
    return parser


# Command modules that add subcommands: each has
# ``add_commands(sub, add) -> dict[name, handler]`` where ``add(name, help)`` returns the
# subparser (its example comes from the module's ``EXAMPLES`` merged into ours).
EXTENSION_MODULES = (
    "framework.cli.ops",
    "framework.cli.worksheet",
)


def _extensions() -> list[Any]:
    import importlib

    found = []
    for name in EXTENSION_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        EXAMPLES.update(getattr(module, "EXAMPLES", {}))
        found.append(module)
    return found


# ------------------------------------------------------------------ helpers
def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_log_redaction()


def _spark_and_store(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from control.store import ControlStore
    from framework.lake.spark import get_spark
    from framework.lake.tables import Warehouse

    warehouse = Warehouse.from_env(args.warehouse)
    with console.status("starting Spark + Delta (first start downloads the Delta jars)"):
        spark = get_spark()
    return spark, warehouse, ControlStore(spark, warehouse, args.control_catalog)


def _error(text: str) -> None:
    """One error line on stderr: never wrapped, and its text never read as rich markup."""
    err_console.print(f"[red]error[/red] {escape(text)}", soft_wrap=True)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def _table(title: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[_fmt(row.get(c)) for c in columns])
    return table


# ----------------------------------------------------------------- commands
def cmd_validate(args: argparse.Namespace) -> int:
    from framework.config import load_file

    failed = 0
    for path in args.files:
        try:
            configs = load_file(path)
        except ConfigError as exc:
            _error(str(exc))
            failed += 1
            continue
        ids = ", ".join(c.config_id for c in configs)
        console.print(f"[green]ok[/green] {escape(f'{path}: {ids}')}", soft_wrap=True)
    return 1 if failed else 0


def cmd_init(args: argparse.Namespace) -> int:
    spark, warehouse, store = _spark_and_store(args)
    created = store.init()
    for name in (store.control_ref, store.audit_ref, store.window_ref):
        state = "created" if name.name in created else "exists"
        where = warehouse.path(name) if warehouse.is_local else name.name
        console.print(f"{state:8} {name.name}  [dim]{where}[/dim]")
    from framework.ops.health_store import register_views

    console.print(f"views    {', '.join(register_views(spark, warehouse, args.control_catalog))}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from framework.config import load_files

    configs = []
    if args.config:
        configs = load_files(args.config)
    spark, warehouse, store = _spark_and_store(args)
    store.init()
    if args.config_id:
        from control.mapping import row_to_config

        rows = store.rows(args.config_id)
        missing = sorted(set(args.config_id) - {r["ConfigId"] for r in rows})
        if missing:
            raise ConfigError(f"no control row with ConfigId {', '.join(missing)}; "
                              "generate it from its config file first (--config FILE)")
        configs = [row_to_config(r) for r in rows]
    due = bool(args.due)
    if due:
        from control.mapping import row_to_config

        if args.conf_dir:
            from framework.config import load_files as lf

            store.generate(lf(sorted(Path(args.conf_dir).glob("*.y*ml"))), due_only=True)
        configs = []
        for row in store.rows():
            try:
                configs.append(row_to_config(row))
            except ConfigError as exc:
                _error(str(exc))
    results = store.generate(configs, due_only=due)
    table = Table(title="generate")
    for col in ("ConfigId", "action", "detail"):
        table.add_column(col)
    for r in results:
        table.add_row(r.config_id, r.action, r.detail)
    console.print(table)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from framework.load import runtime

    spark, warehouse, store = _spark_and_store(args)
    if not store.is_initialized():
        raise ConfigError("the control table does not exist; run 'restlake init' and "
                          "'restlake generate' first")
    ctx = runtime.RunContext(spark, warehouse, store, runtime.staging_root(warehouse),
                             lease=dt.timedelta(minutes=args.lease_minutes),
                             on_event=_progress_printer())
    ctx.distributed = args.distributed
    ids = args.config_id if args.config_id else None
    if ids is None and not store.claimable_ids():
        console.print("nothing to run: no PENDING rows (run 'restlake generate')")
        return 0
    outcomes = runtime.run(ctx, ids, parallel=max(1, args.parallel))
    _print_outcomes(outcomes)
    return 1 if any(o.failed for o in outcomes) else 0


def _progress_printer() -> Callable[[str, dict[str, Any]], None]:
    def on_event(event: str, data: dict[str, Any]) -> None:
        cid = data.get("config_id")
        if event == "load_started":
            console.print(f"[bold]{cid}[/bold] {data['load_type']} {_fmt(data['start'])} .. "
                          f"{_fmt(data['end'])}")
        elif event == "window_fetched":
            console.print(f"  {cid}: fetched {data['window']}: {data['records']} records, "
                          f"{data['pages']} pages", style="dim")
        elif event == "committed":
            console.print(f"  {cid}: committed {data['windows']} window(s): {data['rows']} rows written "
                          f"(table version {data['version']})")
        elif event == "segment_committed":
            console.print(f"  {cid}: committed page batch {data['segment']} of {data['window']}: "
                          f"{data['rows']} rows written (table version {data['version']})")
        elif event == "skipped":
            console.print(f"[yellow]{cid}[/yellow] skipped: {data['reason']}")
        elif event == "load_finished":
            colour = "green" if data["status"] == "SUCCESS" else "red"
            console.print(f"[{colour}]{cid} {data['status']}[/{colour}] "
                          f"{data['source_rows']} records read, {data['rows']} rows written"
                          + (f": {data['error']}" if data.get("error") else ""))
    return on_event


def _print_outcomes(outcomes: list[Any]) -> None:
    table = Table(title="run")
    for col in ("ConfigId", "status", "records", "rows written", "error"):
        table.add_column(col, overflow="fold")
    for o in outcomes:
        table.add_row(o.config_id, o.status, str(o.source_rows), str(o.rows_written), o.error or "")
    console.print(table)


STATUS_COLUMNS = ("ConfigId", "LoadType", "LoadStatus", "LoadStartTime", "LoadEndTime",
                  "LastLoadTime", "Attempt", "LastJobRunId", "ErrorMessage")


def cmd_status(args: argparse.Namespace) -> int:
    spark, warehouse, store = _spark_and_store(args)
    if not store.is_initialized():
        raise ConfigError("the control table does not exist; run 'restlake init' first")
    if getattr(args, "stale", False):
        from framework.cli.ops import print_stale

        return print_stale(spark, warehouse, store, args.config_id)
    rows = store.rows(args.config_id)
    console.print(_table(f"control table {store.control_ref.name}", STATUS_COLUMNS, rows))
    return 0


AUDIT_COLUMNS = ("LoggedAt", "ConfigId", "LoadType", "LoadStatus", "SourceRowCount",
                 "TargetRowCount", "TargetTotalRowCount", "WindowsLoaded", "Requests", "Retries",
                 "RunDuration", "ErrorMessage")


def cmd_audit(args: argparse.Namespace) -> int:
    spark, warehouse, store = _spark_and_store(args)
    if not store.is_initialized():
        raise ConfigError("the audit table does not exist; run 'restlake init' first")
    rows = store.audit_rows(args.config_id, args.limit)
    console.print(_table(f"audit table {store.audit_ref.name}", AUDIT_COLUMNS, rows))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from control.states import InvalidTransition

    spark, warehouse, store = _spark_and_store(args)
    code = 0
    for cid in args.config_id:
        try:
            state = store.retry(cid)
            console.print(f"{cid}: PENDING again ({state.load_type.value} "
                          f"{_fmt(state.load_start)} .. {_fmt(state.load_end)})")
        except InvalidTransition as exc:
            _error(f"{cid}: {exc}")
            code = 1
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    from framework.cli.demo import run_demo

    return run_demo(args, console)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": cmd_init, "validate": cmd_validate, "generate": cmd_generate, "run": cmd_run,
    "status": cmd_status, "audit": cmd_audit, "retry": cmd_retry, "demo": cmd_demo,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``restlake`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _setup_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except RestlakeError as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say it plainly, redacted, no secrets
        if args.verbose:
            import traceback

            err_console.print(escape(redact(traceback.format_exc())))
        _error(f"{type(exc).__name__}: {redact(str(exc))[:2000]}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
