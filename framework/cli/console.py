"""Output shared by every command: the consoles, error lines, tables, progress.

Text that came from an API or a table (error messages, payload fields) is data: it
goes through :func:`safe` (markup escaped, control characters shown as ``\\xNN``) or
:func:`table` cells (plain ``Text``), never into rich markup as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from framework.untrusted import printable

# Piped output (job logs, files) is not cut to 80 columns: tables stay readable there.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False)


def safe(value: Any) -> str:
    """``value`` ready to sit inside rich markup: as :func:`fmt` shows it, control
    characters (ESC sequences, NUL) written as ``\\xNN``, markup (``[/]``, ``[link=...]``)
    escaped."""
    return escape(printable(fmt(value)))


def cell(value: Any) -> Text:
    """A table cell: plain text (never markup), control characters written as ``\\xNN``."""
    return Text(printable(fmt(value)))


def error(text: str) -> None:
    """One error line on stderr: never wrapped, and its text never read as rich markup."""
    err_console.print(f"[red]error[/red] {safe(text)}", soft_wrap=True)


def note(text: str) -> None:
    """One note line on stderr (something to act on that is no error): never wrapped, its
    text never read as rich markup."""
    err_console.print(f"[yellow]note[/yellow] {safe(text)}", soft_wrap=True)


def print_error(exc: BaseException) -> None:
    """``exc`` as error lines: one per problem of a config error (every invalid field of
    every source of a file), else one."""
    from framework.errors import ConfigError, config_errors

    for each in config_errors(exc) if isinstance(exc, ConfigError) else [exc]:
        error(str(each))


def fmt(value: Any) -> str:
    """A cell's text: UTC datetimes as ``YYYY-MM-DD HH:MM:SSZ``, None as empty."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def table(title: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Table:
    """A table of ``rows`` (dicts) showing ``columns``."""
    out = Table(title=title, show_lines=False)
    for col in columns:
        out.add_column(col, overflow="fold")
    for row in rows:
        out.add_row(*[cell(row.get(c)) for c in columns])
    return out


def open_store(args: argparse.Namespace, *, lazy: bool = False, starting: bool = False
               ) -> tuple[Any, Any, Any]:
    """Spark, the warehouse and the control store named by the global options.

    Args:
        lazy: Spark starts only when the store first needs it (``None`` is returned for
            it): on a local warehouse ``generate``, ``retry``, ``enable`` and ``disable``
            read and write the control table with delta-rs and start no JVM.
        starting: a :class:`~framework.lake.spark.SparkStarting` is returned for Spark,
            not started yet (``run`` begins it once it knows there is work; the store
            starts it when it needs it first, as on a metastore warehouse).
    """
    from control.store import ControlStore
    from framework.lake.tables import Warehouse

    warehouse = Warehouse.from_env(args.warehouse)
    if lazy:
        return None, warehouse, ControlStore(None, warehouse, args.control_catalog,
                                             spark_factory=start_spark)
    if starting:
        from framework.lake.spark import SparkStarting, get_spark

        spark = SparkStarting(get_spark)
        return spark, warehouse, ControlStore(None, warehouse, args.control_catalog,
                                              spark_factory=spark.session)
    spark = start_spark()
    return spark, warehouse, ControlStore(spark, warehouse, args.control_catalog)


def start_spark() -> Any:
    """The local (or Databricks') SparkSession, with a note while it starts."""
    from framework.lake.spark import get_spark

    with console.status("starting Spark + Delta (first start downloads the Delta jars)"):
        return get_spark()


def open_queries(args: argparse.Namespace) -> Any:
    """The JVM-free read questions over the warehouse named by the global options."""
    from framework.lake.reader import TableReader
    from framework.lake.tables import Warehouse
    from framework.ops.queries import Queries

    return Queries(TableReader(Warehouse.from_env(args.warehouse)), args.control_catalog)


def require_init(queries: Any) -> Any:
    """``queries``, or a clear error when the control table does not exist yet."""
    from framework.errors import ConfigError

    if not queries.is_initialized():
        raise ConfigError("the control table does not exist; run 'restlake init' first")
    return queries


def progress_printer() -> Callable[[str, dict[str, Any]], None]:
    """The ``on_event`` of a run that prints its progress (every value through :func:`safe`)."""
    def on_event(event: str, raw: dict[str, Any]) -> None:
        data = {k: safe(v) for k, v in raw.items()}
        cid = data.get("config_id")
        if event == "load_started":
            console.print(f"[bold]{cid}[/bold] {data['load_type']} {data['start']} .. "
                          f"{data['end']}")
        elif event == "window_fetched":
            console.print(f"  {cid}: fetched {data['window']}: {data['records']} records, "
                          f"{data['pages']} pages", style="dim")
        elif event == "committed":
            console.print(f"  {cid}: committed {data['windows']} window(s): {data['rows']} rows written "
                          f"(table version {data['version']})")
        elif event == "segment_committed":
            console.print(f"  {cid}: committed page batch {data['segment']} of {data['window']}: "
                          f"{data['rows']} rows written (table version {data['version']})")
        elif event == "quality_checked":
            colour = {"PASSED": "green", "WARNED": "yellow"}.get(data["verdict"], "red")
            console.print(f"  {cid}: quality [{colour}]{data['verdict']}[/{colour}]"
                          + "".join(f"\n    {safe(r)}" for r in raw["failed"]),
                          soft_wrap=True)
        elif event == "stopping":
            console.print(f"[yellow]stopping[/yellow] ({data['reason']}): no new loads or "
                          "windows; in-flight windows finish and their rows go back to PENDING "
                          "(signal again to exit now)")
        elif event == "skipped":
            console.print(f"[yellow]{cid}[/yellow] skipped: {data['reason']}")
        elif event == "load_finished":
            colour = {"SUCCESS": "green", "INTERRUPTED": "yellow"}.get(raw["status"], "red")
            console.print(f"[{colour}]{cid} {data['status']}[/{colour}] "
                          f"{data['source_rows']} records read, {data['rows']} rows written"
                          + (f": {data['error']}" if raw.get("error") else ""))
    return on_event


def print_outcomes(outcomes: list[Any]) -> None:
    """The summary table of a run."""
    out = Table(title="run")
    for col in ("ConfigId", "status", "records", "rows written", "error"):
        out.add_column(col, overflow="fold")
    for o in outcomes:
        out.add_row(*map(cell, (o.config_id, o.status, o.source_rows, o.rows_written, o.error)))
    console.print(out)
    for o in outcomes:
        if getattr(o, "audit_error", None):
            audit = o.audit or {}
            error(f"{o.config_id}: the audit row of run {audit.get('RunId')} (load "
                  f"{audit.get('LoadId')}, {o.status}) could not be appended: {o.audit_error}")
