"""Commands that load data: ``run`` and ``replay``."""

from __future__ import annotations

import argparse
import datetime as dt
import threading
from typing import Any, Callable, Optional

from framework.cli.options import LEASE_MINUTES, number
from framework.cli.console import console, open_store, print_outcomes, progress_printer, error

EXAMPLES = {
    "run": "restlake run --config-id gh_issues\n  restlake run --all\n  restlake run --all --distributed",
    "replay": "restlake replay --config-id dt_host_metrics --run-id run-20240105T020000-1a2b3c",
}


def add_commands(sub: Any, add: Callable[[str, str], argparse.ArgumentParser]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    p = add("run", "claim PENDING rows and load them (exit 1 when a load failed)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config-id", nargs="+", metavar="ID")
    g.add_argument("--all", action="store_true", help="every PENDING row")
    add_run_options(p)
    p = add("replay", "re-parse the archived raw pages of a run and MERGE them into the target "
                      "(no API calls; needs archive: true)")
    p.add_argument("--config-id", required=True, metavar="ID")
    p.add_argument("--run-id", required=True, metavar="RUN",
                   help="the RunId of the archived run, as the audit shows it (letters, digits, "
                        "'_' and '-')")
    return {"run": cmd_run, "replay": cmd_replay}


def add_run_options(p: argparse.ArgumentParser) -> None:
    """How a run loads: ``restlake run`` and the ``restlake-run`` wheel task take the same."""
    p.add_argument("--distributed", action="store_true",
                   help="fetch windows on the Spark executors, one task per window (staging "
                        "must be storage the executors share, e.g. RESTLAKE_STAGING=/Volumes/...)")
    p.add_argument("--lease-minutes", type=LEASE_MINUTES, default=None,
                   help="how long a claim holds before another runner may take over (default: "
                        "each config's limits.lease_s, 3600 s unless set; renewed while the "
                        "load runs)")
    p.add_argument("--parallel", type=number(int, minimum=1), default=2, metavar="N",
                   help="loads run at once (default 2); windows of one load use limits.concurrency")


def nothing_to_run(rows: list[dict]) -> str:
    """Why ``run --all`` found no row to claim: none PENDING, and the RUNNING rows held
    under a lease (a runner at work, or one that died: its rows wait for the lease's end)."""
    held = sorted((r for r in rows if r.get("LoadStatus") == "RUNNING" and r.get("Enabled") is not False),
                  key=lambda r: (r.get("LeaseExpiresAt") is None, r.get("LeaseExpiresAt") or 0))
    if not held:
        return "nothing to run: no PENDING rows (run 'restlake generate')"
    shown = ", ".join(
        f"{r['ConfigId']} (run {r.get('LastJobRunId') or '?'}, lease until "
        f"{r['LeaseExpiresAt']:%Y-%m-%d %H:%M:%SZ})" if r.get("LeaseExpiresAt") else r["ConfigId"]
        for r in held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10 else "")
    return (f"nothing to run: no PENDING rows; {len(held)} RUNNING under a lease: {shown}. "
            "A runner that died leaves its rows to be taken over once their lease ends")


def nothing_claimed(store: Any, ids: Optional[list[str]], outcomes: list[Any]) -> Optional[str]:
    """What ``run --all`` (and the wheel task's) says when its run found no row to claim
    (:func:`nothing_to_run`), or None when it loaded or was given rows. Judged from the
    run itself: rows seen claimable before it may be another runner's by its claim."""
    return nothing_to_run(store.rows()) if ids is None and not outcomes else None


def cmd_run(args: argparse.Namespace) -> int:
    """Exit status: 0 when every load succeeded, 1 when one failed (or lost its lease, or
    its audit row could not be written), 128 + N when signal N stopped the run (143 for
    SIGTERM, 130 for SIGINT) after draining it."""
    from framework.load import runtime
    from framework.load.signals import drain_on_signals

    spark, warehouse, store = open_store(args, starting=True)
    store.require_control()
    lease = dt.timedelta(minutes=args.lease_minutes) if args.lease_minutes is not None else None
    ctx = runtime.RunContext(spark, warehouse, store, runtime.staging_root(warehouse),
                             lease=lease, on_event=progress_printer())
    ctx.distributed = args.distributed
    ids = args.config_id if args.config_id else None
    # Spark starts in the background once a load needs it (a full load once claimed, an
    # incremental one at its first fetched record: RunContext.spark_needed), while the
    # windows are fetched; a load waits for it at its first target write. A run whose
    # incremental windows find nothing starts no JVM. A failed start drains the run (rows
    # back to PENDING).
    said = threading.Event()

    def spark_needed() -> None:
        if not spark.ready and not said.is_set():
            said.set()
            console.print("[dim]Spark + Delta start in the background while the windows are "
                          "fetched (the first start downloads the Delta jars)[/dim]")
        spark.begin(on_failure=lambda exc: ctx.request_stop(
            f"Spark did not start: {type(exc).__name__}"))

    ctx.on_spark_needed = spark_needed
    with drain_on_signals(ctx) as drain:
        outcomes = runtime.run(ctx, ids, parallel=max(1, args.parallel))
    idle = nothing_claimed(store, ids, outcomes)
    if idle is not None:
        console.print(idle, markup=False, soft_wrap=True)
        return drain.exit_code or 0
    print_outcomes(outcomes)
    unknown = [o.config_id for o in outcomes if o.status == runtime.UNKNOWN]
    if unknown:
        error(f"no control row with ConfigId {', '.join(unknown)}; generate it from its config "
              "file first")
    if drain.exit_code is not None:
        return drain.exit_code
    if spark.failure is not None:
        error(f"Spark did not start: {runtime.sanitize_error(spark.failure)}; the loads it "
              "stopped are PENDING again (run 'restlake run' once Spark can start)")
        return 1
    return 1 if any(o.failed for o in outcomes) else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from framework.config import check_run_id
    from framework.load import runtime
    from framework.load.archive import replay

    check_run_id(args.run_id, field="--run-id")  # before Spark starts
    spark, warehouse, store = open_store(args)
    result = replay(spark, store, args.config_id, args.run_id, runtime.staging_root(warehouse))
    console.print(f"{result.config_id}: replayed run {result.source_run_id} as {result.run_id}: "
                  f"{result.pages} pages, {result.records} records, {result.rows_written} rows "
                  f"written (table version {result.version}); no API calls")
    return 0
