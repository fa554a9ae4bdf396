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
import datetime as dt
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from framework.logs import setup_from_args
from framework.untrusted import printable

log = logging.getLogger(__name__)


def config_files(paths: Sequence[str]) -> list[Path]:
    """YAML files named in ``paths`` (a folder stands for its ``*.yaml``/``*.yml`` files)."""
    out: list[Path] = []
    for raw in paths:
        for part in (p.strip() for p in str(raw).split(",")):
            if not part:
                continue
            path = Path(part)
            if path.is_dir():
                out += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            else:
                out.append(path)
    return out


def open_store(spark: Any, warehouse: Optional[str] = None, control_catalog: Optional[str] = None
               ) -> Any:
    """The control store of ``warehouse`` (a folder; ``None``/empty: env, or UC on Databricks)."""
    import os

    from control.store import ControlStore
    from framework.lake.tables import Warehouse

    catalog = control_catalog or os.environ.get("RESTLAKE_CONTROL_CATALOG") or "main"
    store = ControlStore(spark, Warehouse.from_env(warehouse or None), catalog)
    store.init()
    return store


def generate(spark: Any, *, config_paths: Sequence[str] = (), config_ids: Sequence[str] = (),
             due: bool = False, warehouse: Optional[str] = None,
             control_catalog: Optional[str] = None) -> list[Any]:
    """Upsert control rows and mark due loads PENDING.

    Args:
        config_paths: YAML files or folders; their configs are upserted.
        config_ids: plan these existing control rows (when no files are given).
        due: plan only rows whose schedule fired (else every named config is planned).
        warehouse: local warehouse folder; ``None`` on Databricks.
        control_catalog: catalog of the ``metadata`` schema.

    Returns:
        one :class:`control.store.GenerateResult` per config.
    """
    from control.mapping import row_to_config
    from framework.config import load_files
    from framework.errors import ConfigError

    store = open_store(spark, warehouse, control_catalog)
    files = config_files(config_paths)
    if files:
        configs = load_files(files)
    else:
        rows = store.rows(list(config_ids) or None)
        missing = sorted(set(config_ids) - {r["ConfigId"] for r in rows})
        if missing:
            raise ConfigError(f"no control row with ConfigId {', '.join(missing)}")
        configs = [row_to_config(r) for r in rows]
        due = due or not config_ids
    return store.generate(configs, due_only=due)


def run(spark: Any, *, config_ids: Sequence[str] = (), warehouse: Optional[str] = None,
        control_catalog: Optional[str] = None, lease_minutes: Optional[float] = None,
        drain: Optional[Any] = None) -> list[Any]:
    """Claim and load PENDING rows (``config_ids``, or every claimable row).

    Args:
        lease_minutes: how long a claim holds; ``None`` takes each row's ``limits.lease_s``.
        drain: a :class:`framework.load.signals.SignalDrain` to fill: SIGTERM/SIGINT then
            drain the run as ``restlake run`` does (the wheel task's process only; a
            notebook keeps its own interrupt handling).
    """
    from framework.load import runtime
    from framework.load.signals import drain_on_signals

    store = open_store(spark, warehouse, control_catalog)
    lease = dt.timedelta(minutes=lease_minutes) if lease_minutes is not None else None
    ctx = runtime.RunContext(spark, store.warehouse, store, runtime.staging_root(store.warehouse),
                             lease=lease)
    if drain is None:
        return runtime.run(ctx, list(config_ids) or None)
    with drain_on_signals(ctx) as seen:
        outcomes = runtime.run(ctx, list(config_ids) or None)
    drain.signum = seen.signum
    return outcomes


def register_views(spark: Any, store: Any, prefix: str = "") -> dict[str, str]:
    """Temp views ``api_control``, ``api_audit``, ``api_window_log`` over the metadata tables.

    The operations SQL reads these views, so the same query runs on Unity Catalog and
    on a local warehouse folder.
    """
    views = {f"{prefix}api_control": store.control_ref, f"{prefix}api_audit": store.audit_ref,
             f"{prefix}api_window_log": store.window_ref}
    for name, ref in views.items():
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
    p.add_argument("--due", action="store_true", help="plan only rows whose schedule fired")
    _common(p)
    return p


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="restlake-run", description="Load PENDING control rows.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config-id", nargs="+", default=[], metavar="ID")
    g.add_argument("--all", action="store_true", help="every claimable row (the default)")
    p.add_argument("--lease-minutes", type=float, default=None,
                   help="how long a claim holds (default: each config's limits.lease_s)")
    _common(p)
    return p


def _spark() -> Any:
    from framework.lake.spark import get_spark

    return get_spark("restlake-job")


def generate_main(argv: Optional[Sequence[str]] = None) -> int:
    """Wheel entry point ``restlake-generate`` (argv from the task's parameters)."""
    args = _generate_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_from_args(args, "INFO")
    results = generate(_spark(), config_paths=[*args.config, *args.conf_dir],
                       config_ids=args.config_id, due=args.due, warehouse=args.warehouse,
                       control_catalog=args.control_catalog)
    for r in results:
        print(f"{r.config_id}: {r.action} {r.detail}".rstrip())
    return 0


def run_main(argv: Optional[Sequence[str]] = None) -> int:
    """Wheel entry point ``restlake-run``; exits 1 when a load failed (the task fails)."""
    args = _run_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_from_args(args, "INFO")
    from framework.load.signals import SignalDrain

    drain = SignalDrain()
    outcomes = run(_spark(), config_ids=args.config_id, warehouse=args.warehouse,
                   control_catalog=args.control_catalog, lease_minutes=args.lease_minutes,
                   drain=drain)
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
