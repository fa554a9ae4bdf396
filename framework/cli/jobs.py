"""Job steps for Databricks (wheel tasks, notebooks) and ``spark-submit``: generate, then run.

Each step is a function of the active ``spark`` (the notebooks call these) and has a
``*_main(argv)`` entry point for Python wheel tasks (console scripts
``restlake-generate`` and ``restlake-run``). Locally the same steps run with
``spark-submit``::

    spark-submit framework/jobs.py generate --conf-dir conf/monitoring --warehouse ./wh
    spark-submit framework/jobs.py run --all --warehouse ./wh

On Databricks the tables are Unity Catalog names (no ``--warehouse``), and
``RESTLAKE_STAGING`` must point at a location the executors can read (a UC Volume,
``/Volumes/<catalog>/<schema>/<volume>/staging``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import signal
import sys
from typing import Any, Iterable, Iterator, Optional, Sequence

from framework.cli.console import print_error
from framework.cli.load import add_run_options, nothing_claimed
from framework.config import config_files, load_files
from framework.errors import RestlakeError
from framework.logs import setup_from_args
from framework.untrusted import printable

log = logging.getLogger(__name__)


def open_store(spark: Any, warehouse: Optional[str] = None, control_catalog: Optional[str] = None,
               *, create: bool = True) -> Any:
    """The control store of ``warehouse`` (a folder; ``None``/empty: env, or UC on Databricks).

    Args:
        create: create the metadata tables that do not exist; else a missing control
            table is a :class:`~framework.errors.ConfigError` naming it.
    """
    import os

    from control.store import ControlStore
    from framework.lake.tables import Warehouse

    catalog = control_catalog or os.environ.get("RESTLAKE_CONTROL_CATALOG") or "main"
    store = ControlStore(spark, Warehouse.from_env(warehouse or None), catalog)
    if create:
        store.init()
    else:
        store.require_control()
    return store


def generate(spark: Any, *, config_paths: Sequence[str] = (), configs: Iterable[Any] = (),
             config_ids: Sequence[str] = (), due: bool = False, warehouse: Optional[str] = None,
             control_catalog: Optional[str] = None) -> list[Any]:
    """Upsert control rows from configs, then plan loads (:func:`control.generate.generate`).

    Args:
        config_paths: YAML files or folders; their configs are upserted.
        configs: configs already validated (:func:`framework.config.load_files`); upserted too.
        config_ids: plan these existing control rows.
        due: plan only rows whose schedule fired; without ids, every row of the control
            table (rows added by hand included).
        warehouse: local warehouse folder; ``None`` on Databricks.
        control_catalog: catalog of the ``metadata`` schema.

    Returns:
        one :class:`control.store.GenerateResult` per config or row; a row that does not
        validate has action ``invalid`` and its error.
    """
    from control.generate import generate as plan

    store = open_store(spark, warehouse, control_catalog)
    return plan(store, config_paths=config_paths, configs=configs, config_ids=config_ids, due=due)


def run(spark: Any, *, config_ids: Sequence[str] = (), warehouse: Optional[str] = None,
        control_catalog: Optional[str] = None, lease_minutes: Optional[float] = None,
        parallel: int = 2, distributed: bool = False, drain: Optional[Any] = None) -> list[Any]:
    """Claim and load PENDING rows (``config_ids``, or every claimable row).

    Args:
        lease_minutes: how long a claim holds; ``None`` takes each row's ``limits.lease_s``.
        parallel: loads run at once, as ``restlake run --parallel`` (default 2).
        distributed: fetch windows on the executors, as ``restlake run --distributed``.
        drain: a :class:`framework.load.signals.SignalDrain` to fill: SIGTERM/SIGINT then
            drain the run as ``restlake run`` does (the wheel task's process only; a
            notebook keeps its own interrupt handling).

    Raises:
        ConfigError: the control table does not exist.
    """
    from framework.load import runtime
    from framework.load.signals import drain_on_signals

    # Loads come from generated rows: a missing control table (a mistyped catalog) fails
    # the task, as ``restlake run`` does, instead of being created empty.
    store = open_store(spark, warehouse, control_catalog, create=False)
    ids, parallel = list(config_ids) or None, max(1, parallel)
    lease = dt.timedelta(minutes=lease_minutes) if lease_minutes is not None else None
    ctx = runtime.RunContext(spark, store.warehouse, store, runtime.staging_root(store.warehouse),
                             lease=lease)
    ctx.distributed = distributed
    if drain is None:
        outcomes = runtime.run(ctx, ids, parallel=parallel)
    else:
        with drain_on_signals(ctx) as seen:
            outcomes = runtime.run(ctx, ids, parallel=parallel)
        drain.signum = seen.signum
    idle = nothing_claimed(store, ids, outcomes)
    if idle is not None:  # why, as `restlake run --all` says it
        print(idle)
    return outcomes


def register_views(spark: Any, store: Any, prefix: str = "") -> dict[str, str]:
    """Temp views ``api_control``, ``api_audit``, ``api_window_log`` and ``api_quality``
    over the metadata tables.

    The operations SQL reads these views, so the same query runs on Unity Catalog and
    on a local warehouse folder. ``api_quality`` is empty while no quality result exists.
    """
    from control.schemas import QUALITY_SCHEMA

    views = {f"{prefix}api_control": store.control_ref, f"{prefix}api_audit": store.audit_ref,
             f"{prefix}api_window_log": store.window_ref, f"{prefix}api_quality": store.quality_ref}
    for name, ref in views.items():
        if ref == store.quality_ref and not store.warehouse.exists(spark, ref):
            spark.createDataFrame([], QUALITY_SCHEMA).createOrReplaceTempView(name)
            continue
        store.warehouse.read(spark, ref).createOrReplaceTempView(name)
    return {name: ref.name for name, ref in views.items()}


# ------------------------------------------------------------------ entry points
def _common(parser: argparse.ArgumentParser) -> None:
    from framework.logs import add_arguments

    parser.add_argument("--warehouse", help="local warehouse folder (omit on Databricks)")
    parser.add_argument("--control-catalog", help="catalog of the metadata schema (default main)")
    add_arguments(parser, level="INFO")


def _generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="restlake-generate",
                                description="Upsert control rows and mark due loads PENDING.")
    p.add_argument("--config", nargs="+", default=[], metavar="FILE", help="config files")
    p.add_argument("--conf-dir", nargs="+", default=[], metavar="DIR", help="folders of configs")
    p.add_argument("--config-id", nargs="+", default=[], metavar="ID",
                   help="plan these existing control rows")
    p.add_argument("--due", action="store_true",
                   help="plan every row whose schedule fired (hand-added rows included)")
    _common(p)
    return p


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="restlake-run", description="Load PENDING control rows.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config-id", nargs="+", default=[], metavar="ID")
    g.add_argument("--all", action="store_true", help="every claimable row (the default)")
    add_run_options(p)
    _common(p)
    return p


def _spark() -> Any:
    from framework.lake.spark import get_spark

    return get_spark("restlake-job")


@contextlib.contextmanager
def _fails_as_the_cli() -> Iterator[None]:
    """A :class:`RestlakeError` (an invalid config file, a missing control table) ends the
    task as it ends ``restlake``: its error lines on stderr (one per invalid field), no
    traceback, exit status 1."""
    try:
        yield
    except RestlakeError as exc:
        print_error(exc)
        raise SystemExit(1) from None


def generate_main(argv: Optional[Sequence[str]] = None) -> int:
    """Wheel entry point ``restlake-generate`` (argv from the task's parameters)."""
    from control.generate import INVALID

    args = _generate_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_from_args(args, "INFO")
    with _fails_as_the_cli():
        # the files are validated before Spark starts, as by ``restlake generate``
        configs = load_files(config_files([*args.config, *args.conf_dir]))
        results = generate(_spark(), configs=configs, config_ids=args.config_id, due=args.due,
                           warehouse=args.warehouse, control_catalog=args.control_catalog)
    for r in results:
        # details can quote a control row: control characters are escaped before the job log
        print(printable(f"{r.config_id}: {r.action} {r.detail}".rstrip(), newlines=False))
    if args.conf_dir:  # as `restlake generate` from a folder: the rows no file there defines
        from control.generate import rows_without_config

        rows = open_store(_spark(), args.warehouse, args.control_catalog, create=False).rows()
        for cid in rows_without_config(rows, configs):
            print(printable(f"note: {cid}: enabled in the control table but no config file in "
                            f"{', '.join(args.conf_dir)} defines it (added by hand, or its file "
                            "was removed): it is still planned and loaded until disabled",
                            newlines=False), file=sys.stderr)
    invalid = [r.config_id for r in results if r.action == INVALID]
    if invalid:  # the others are planned; the task fails so that someone looks
        print(f"invalid control rows: {', '.join(invalid)}", file=sys.stderr)
        raise SystemExit(1)
    return 0


def run_main(argv: Optional[Sequence[str]] = None) -> int:
    """Wheel entry point ``restlake-run``; exits 1 when a load failed (the task fails)."""
    args = _run_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_from_args(args, "INFO")
    from framework.load.signals import SignalDrain

    drain = SignalDrain()
    with _fails_as_the_cli():
        outcomes = run(_spark(), config_ids=args.config_id, warehouse=args.warehouse,
                       control_catalog=args.control_catalog, lease_minutes=args.lease_minutes,
                       parallel=args.parallel, distributed=args.distributed, drain=drain)
    for o in outcomes:
        # The error holds API text: control characters are escaped before the job log.
        print(f"{o.config_id}: {o.status} records={o.source_rows} rows={o.rows_written}"
              + (f" error={printable(o.error, newlines=False)}" if o.error else ""))
    for o in outcomes:
        if o.audit_error:
            print(f"{o.config_id}: the audit row of run {o.audit.get('RunId')} (load "
                  f"{o.audit.get('LoadId')}) could not be appended: "
                  f"{printable(o.audit_error, newlines=False)}", file=sys.stderr)
    if drain.exit_code is not None:
        print(f"stopped by {signal.Signals(drain.signum).name}: interrupted loads are PENDING "
              "again", file=sys.stderr)
        raise SystemExit(drain.exit_code)
    failed = [o.config_id for o in outcomes if o.failed]
    if failed:
        print(f"failed loads: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``spark-submit framework/jobs.py (generate|run) ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    steps = {"generate": generate_main, "run": run_main}
    if not argv or argv[0] not in steps:
        print("usage: jobs.py (generate|run) [options]   (see --help of each step)", file=sys.stderr)
        return 2
    return steps[argv[0]](argv[1:])


if __name__ == "__main__":  # spark-submit framework/jobs.py ...
    sys.exit(main())
