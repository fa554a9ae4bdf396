"""spark_settings: Spark jobs and seconds of one control finish, one audit append and one
small load, under each Spark SQL setting given.

    python bench/spark_settings.py [--setting "k=v[,k=v...]"]... [--records 100]

One Spark session; each setting is applied with ``spark.conf.set`` for its round and
unset after it (``base`` = the session as restlake builds it). A round finishes two
claimed control rows (``ControlStore.finish``: one MERGE each), appends one audit row and
runs one whole small load (``runtime.run`` of one row: claim, fetch, target write, window
log, health log, finish, audit). Jobs are counted from the Spark status tracker (job ids
are sequential). Checkpoints of the metadata tables (every 10 commits) add jobs to
whichever operation reaches them, so compare the rounds' smallest counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from _common import START, DemoServer, config, info, temp_dir


def spark_jobs(spark) -> int:
    tracker = spark.sparkContext.statusTracker()
    ids = list(tracker.getJobIdsForGroup(None)) + list(tracker.getActiveJobsIds())
    return max(ids) + 1 if ids else 0


def measured(spark, fn):
    j0, t0 = spark_jobs(spark), time.perf_counter()
    out = fn()
    return spark_jobs(spark) - j0, time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", action="append", default=None,
                    help="k=v[,k=v...] applied for one round (repeatable; 'base' = none)")
    ap.add_argument("--records", type=int, default=100)
    args = ap.parse_args()
    settings = args.setting or ["base", "spark.sql.adaptive.enabled=true",
                                "spark.databricks.delta.merge.materializeSource=none"]
    root = temp_dir("restlake-bench-settings-")
    end = (START + dt.timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with DemoServer(records_per_resource=args.records, latency_ms=20, max_page_size=100, end=end) as api:
        from control import states
        from control.generate import generate
        from control.store import ControlStore
        from framework.lake.spark import get_spark
        from framework.lake.tables import Warehouse
        from framework.load import runtime

        spark = get_spark("restlake-bench", master="local[2]")
        warehouse = Warehouse(root / "restlake")
        store = ControlStore(spark, warehouse)
        store.init()
        n = len(settings)
        cfgs = [config(api.base_url, f"s{i:03d}", days=60, window="none", page_size=100,
                       concurrency=1) for i in range(3 * n + 1)]
        generate(store, configs=cfgs)
        ctx = runtime.RunContext(spark, warehouse, store, root / "staging")
        runtime.run(ctx, [cfgs[0].config_id])  # warm-up
        claims, _ = store.claim_many([c.config_id for c in cfgs[1:2 * n + 1]], "bench", "run-bench")
        for k, setting in enumerate(settings):
            pairs = [] if setting == "base" else [kv.split("=", 1) for kv in setting.split(",")]
            for key, value in pairs:
                spark.conf.set(key, value)
            try:
                for claim in claims[2 * k: 2 * k + 2]:
                    jobs, secs, _ = measured(spark, lambda c=claim: store.finish(
                        c, states.fail(c.state, c.runner, "bench")))
                    info(f"[{setting}] control finish (one-row MERGE)", f"{jobs} jobs, {secs:.2f}s")
                record = {"ConfigId": "bench", "RunId": "bench", "LoadStatus": "SUCCESS",
                          "LoggedAt": dt.datetime.now(dt.timezone.utc)}
                jobs, secs, _ = measured(spark, lambda: store.append_audit(record))
                info(f"[{setting}] audit append", f"{jobs} jobs, {secs:.2f}s")
                cid = cfgs[2 * n + 1 + k].config_id
                jobs, secs, [out] = measured(spark, lambda: runtime.run(ctx, [cid]))
                a = out.audit
                info(f"[{setting}] one small load ({out.status})",
                     f"{jobs} jobs, {secs:.2f}s (write {a['WriteSeconds']:.2f}s, "
                     f"bookkeeping {a['BookkeepingSeconds']:.2f}s)")
            finally:
                for key, _ in pairs:
                    spark.conf.unset(key)
        spark.stop()


if __name__ == "__main__":
    main()
