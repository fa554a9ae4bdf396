"""small_loads: many small sources, ``run --all``, vs the seed loop + one deltalake write each.

    python bench/small_loads.py [--sources 30] [--records 100] [--latency-ms 20] [--parallel 2]

Every source is one window of ``--records`` records (one page) from the demo API (no
reply cache) into its own target table. restlake runs what ``restlake generate --config``
and ``restlake run --all`` run (``control.generate.generate``, then
``framework.load.runtime.run`` over every claimable row), control plane included. The
baseline is the seed's loop (``requests`` pages into a list) + one ``deltalake``
(delta-rs) write per source. Spark's start and a one-source warm-up are excluded and
printed separately. Printed: wall seconds, the ratio, Spark jobs per load (from the
Spark status tracker), and the sum over the loads of each phase of the audit rows. Then a
quiet round: every source's next (INCREMENTAL) range, in which the API has no new record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import time

from _common import DemoServer, START, config, figure, info, seed_loop, temp_dir, timed, windows_of

PHASES = ("ClaimSeconds", "FetchSeconds", "StageSeconds", "WriteSeconds", "BookkeepingSeconds")


def spark_jobs(spark) -> int:
    """How many Spark jobs this session has started so far (job ids are sequential)."""
    tracker = spark.sparkContext.statusTracker()
    ids = list(tracker.getJobIdsForGroup(None)) + list(tracker.getActiveJobsIds())
    return max(ids) + 1 if ids else 0


def source_configs(base_url: str, n: int, prefix: str):
    # delta_column: after its FULL load a source is INCREMENTAL (the quiet round below)
    return [config(base_url, f"{prefix}{i:03d}", days=60, window="none", page_size=100,
                   concurrency=1, delta_column=True) for i in range(n)]


def run_restlake(spark, store, warehouse, root, configs, parallel: int):
    from control.generate import generate
    from framework.load import runtime

    generate(store, configs=configs)
    ctx = runtime.RunContext(spark, warehouse, store, root / "staging")
    outcomes = runtime.run(ctx, None, parallel=parallel)
    bad = [o for o in outcomes if o.status != "SUCCESS"]
    assert not bad, bad
    return outcomes


def run_seed(base_url, configs, root) -> int:
    import pyarrow as pa
    from deltalake import write_deltalake

    rows = 0
    for cfg in configs:
        records = seed_loop(base_url, windows_of(cfg), 100)
        table = pa.Table.from_pylist([{**r, "user": r["user"]["login"], "score": float(r["score"])}
                                      for r in records])
        write_deltalake(str(root / "seed" / cfg.config_id), table, mode="overwrite")
        rows += len(records)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=30)
    ap.add_argument("--records", type=int, default=100, help="records per source")
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--parallel", type=int, default=2, help="run --all --parallel N")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args()

    root = temp_dir("restlake-bench-small-")
    end = (START + dt.timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    import os

    load = os.getloadavg()[0]
    with DemoServer(records_per_resource=args.records, latency_ms=args.latency_ms,
                    max_page_size=100, end=end) as api:
        from control.generate import generate
        from control.store import ControlStore
        from framework.lake.spark import get_spark
        from framework.lake.tables import Warehouse

        spark_s, spark = timed(get_spark, "restlake-bench", master=args.master)
        info("spark start (excluded)", f"{spark_s:.1f}s")
        warehouse = Warehouse(root / "restlake")
        store = ControlStore(spark, warehouse)
        init_s, _ = timed(store.init)
        info("restlake init (excluded)", f"{init_s:.1f}s")
        warm_s, _ = timed(run_restlake, spark, store, warehouse, root,
                          source_configs(api.base_url, 1, "warm_"), 1)
        info("warm-up: one load (excluded)", f"{warm_s:.1f}s")

        configs = source_configs(api.base_url, args.sources, "src_")
        jobs0 = spark_jobs(spark)
        gen_s, _ = timed(generate, store, configs=configs)
        gen_jobs = spark_jobs(spark) - jobs0
        info(f"generate of {len(configs)} new configs", f"{gen_s:.1f}s, {gen_jobs} Spark jobs")
        figure(f"generate_{len(configs)}_configs_s", gen_s, "<= 5 s", unit="s")
        gen2_s, _ = timed(generate, store, configs=configs)
        info(f"generate of the same {len(configs)} configs again (rows exist)", f"{gen2_s:.1f}s")

        from framework.load import runtime

        ctx = runtime.RunContext(spark, warehouse, store, root / "staging")
        tables = {"control": store.control_ref, "audit": store.audit_ref,
                  "window log": store.window_ref}
        versions0 = {k: warehouse.version(spark, ref) for k, ref in tables.items()}
        jobs0 = spark_jobs(spark)
        t0 = time.perf_counter()
        outcomes = runtime.run(ctx, None, parallel=args.parallel)
        rl_s = time.perf_counter() - t0
        jobs = spark_jobs(spark) - jobs0
        info("commits during run --all", ", ".join(
            f"{k} {warehouse.version(spark, ref) - versions0[k]}" for k, ref in tables.items()))
        bad = [o for o in outcomes if o.status != "SUCCESS"]
        assert not bad, bad
        rl_rows = sum(o.rows_written for o in outcomes)
        info("restlake run --all", f"{len(outcomes)} loads, {rl_rows:,} rows in {rl_s:.1f}s "
             f"(--parallel {args.parallel})")
        durations = [o.audit.get("RunDuration") or 0.0 for o in outcomes]
        info("median load (RunDuration)", f"{statistics.median(durations):.2f}s")
        info("Spark jobs", f"{jobs} ({jobs / len(outcomes):.1f} per load)")
        split = {p: sum((o.audit.get(p) or 0.0) for o in outcomes) for p in PHASES}
        info("phases, summed over the loads", ", ".join(f"{p[:-7].lower()} {v:.1f}s"
                                                        for p, v in split.items()))

        # The steady state of a 15-minute cadence: the next range of every source, in which
        # the API has no new record (its data ends 60 days after START).
        generate(store, configs=configs)
        jobs0 = spark_jobs(spark)
        quiet_s, quiet = timed(runtime.run, ctx, None, parallel=args.parallel)
        assert [o.status for o in quiet] == ["SUCCESS"] * len(configs), quiet
        assert sum(o.rows_written for o in quiet) == 0
        info("quiet round: run --all again, no new record",
             f"{len(quiet)} INCREMENTAL loads in {quiet_s:.1f}s, {spark_jobs(spark) - jobs0} "
             "Spark jobs")

        seed_s, seed_rows = timed(run_seed, api.base_url, configs, root)
        info("seed loop + deltalake write per source", f"{seed_rows:,} rows in {seed_s:.1f}s")
        assert rl_rows == seed_rows, (rl_rows, seed_rows)
        figure("small_loads_s", rl_s, "<= 30 s", unit="s")
        figure("small_loads_per_load_s", rl_s / len(outcomes), "<= 1 s", unit="s")
        figure("small_loads_vs_seed", rl_s / seed_s, "(restlake / baseline; lower is better)")
        info("load average (start, end)", f"{load:.1f}, {os.getloadavg()[0]:.1f}")
        spark.stop()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
