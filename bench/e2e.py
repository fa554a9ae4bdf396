"""e2e: a whole load (fetch, stage, Delta write, bookkeeping) vs the seed loop and dlt.

    python bench/e2e.py [--records 1000000] [--days 60] [--page-size 1000] [--latency-ms 20] [--no-dlt]

restlake runs ``generate`` + ``run`` (control, window-log and audit commits included) on a
local warehouse. The seed loop fetches every page sequentially into one list, then makes
one ``createDataFrame`` + Delta write. dlt (if ``dlt[deltalake]`` is importable) runs its
``rest_api`` source with the same cursor paginator into a Delta table on the filesystem
destination. The demo API encodes every reply (no reply cache).

``e2e_vs_seed_loop`` is restlake's wall time with Spark's start included over the seed
loop's (target <= 0.6x); the same ratio without Spark's start is printed for reference.
The one-time ``init`` of the control tables and the warm-up loads are excluded. restlake's
client CPU per record is this process's CPU time (``getrusage``: not the API's process,
not Spark's JVM) during the load, divided by its records.
"""

from __future__ import annotations

import argparse
import os
import shutil

from _common import (DemoServer, START, config, cpu_seconds, figure, info, seed_loop, temp_dir,
                     timed, windows_of)

SEED_SCHEMA = ("id long, number long, title string, state string, labels array<string>, "
               "user struct<login:string,id:long>, created_at string, updated_at string, "
               "comments long, score double")


def init_restlake(spark, root):
    from control.store import ControlStore
    from framework.lake.tables import Warehouse

    warehouse = Warehouse(root / "restlake")
    store = ControlStore(spark, warehouse)
    store.init()
    return warehouse, store


def run_restlake(spark, cfg, root, warehouse, store) -> int:
    import time

    from framework.load import runtime

    t0 = time.perf_counter()
    marks: list[str] = []

    fetched = []

    def on_event(event, data):
        if event == "window_fetched":
            fetched.append(time.perf_counter() - t0)
        if event in ("load_started", "committed", "load_finished"):
            marks.append(f"{event} +{time.perf_counter() - t0:.1f}s")

    store.generate([cfg])
    ctx = runtime.RunContext(spark, warehouse, store, root / "staging", on_event=on_event)
    [outcome] = runtime.run(ctx, [cfg.config_id])
    if cfg.config_id != "warm_up":
        if fetched:
            marks.insert(1, f"last window fetched +{max(fetched):.1f}s")
        info("restlake phases", ", ".join(marks))
    assert outcome.status == "SUCCESS", outcome.error
    return outcome.rows_written


def run_seed(spark, base_url, windows, page_size, root) -> int:
    records = seed_loop(base_url, windows, page_size)
    rows = [(r["id"], r["number"], r["title"], r["state"], r["labels"],
             (r["user"]["login"], r["user"]["id"]), r["created_at"], r["updated_at"],
             r["comments"], float(r["score"])) for r in records]
    df = spark.createDataFrame(rows, SEED_SCHEMA)
    df.write.format("delta").mode("overwrite").save(str(root / "seed"))
    return len(rows)


def run_dlt(base_url, cfg, page_size, root) -> int:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source({
        "client": {"base_url": base_url + "/api/"},
        "resources": [{
            "name": "issues", "write_disposition": "replace", "table_format": "delta",
            "endpoint": {"path": "cursor/issues", "data_selector": "data",
                         "params": {"since": cfg.load_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "until": cfg.load_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "limit": page_size},
                         "paginator": {"type": "cursor", "cursor_path": "next_cursor",
                                       "cursor_param": "cursor"}},
        }],
    })
    pipeline = dlt.pipeline(pipeline_name="restlake_bench", pipelines_dir=str(root / "dlt_state"),
                            destination=dlt.destinations.filesystem(bucket_url=str(root / "dlt")),
                            dataset_name="demo", progress="log" if os.environ.get("DLT_PROGRESS") else None)
    pipeline.run(source)
    return int(pipeline.last_trace.last_normalize_info.row_counts.get("issues", -1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=60, help="daily windows")
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--no-dlt", action="store_true")
    args = ap.parse_args()

    root = temp_dir("restlake-bench-e2e-")
    import datetime as dt

    end = (START + dt.timedelta(days=args.days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with DemoServer(records_per_resource=args.records, latency_ms=args.latency_ms,
                    max_page_size=args.page_size, end=end) as api:
        from framework.lake.spark import get_spark

        spark_s, spark = timed(get_spark, "restlake-bench", master=args.master)
        info("spark start", f"{spark_s:.1f}s")
        cfg = config(api.base_url, "bench_e2e", days=args.days, page_size=args.page_size,
                     concurrency=args.concurrency)
        init_s, (warehouse, store) = timed(init_restlake, spark, root)
        info("restlake init: control/audit/window-log tables, once per warehouse (excluded)",
             f"{init_s:.1f}s")
        # Warm the JVM up (Delta code paths, JIT) on a one-day load of both kinds, so that
        # neither measured run pays for being first.
        warm_s, _ = timed(lambda: (
            run_restlake(spark, config(api.base_url, "warm_up", days=1, page_size=args.page_size),
                         root, warehouse, store),
            run_seed(spark, api.base_url, windows_of(cfg)[:1], args.page_size, root / "warm")))
        info("warm-up (excluded)", f"{warm_s:.1f}s")
        cpu0 = cpu_seconds()
        rl_s, rl_rows = timed(run_restlake, spark, cfg, root, warehouse, store)
        rl_cpu = cpu_seconds() - cpu0
        info("restlake", f"{rl_rows:,} rows in {rl_s:.1f}s ({rl_rows / rl_s:,.0f} rows/s), "
                         f"{rl_s + spark_s:.1f}s with Spark's start")
        seed_s, seed_rows = timed(run_seed, spark, api.base_url, windows_of(cfg), args.page_size, root)
        info("seed loop", f"{seed_rows:,} rows in {seed_s:.1f}s")
        info("load average at the end", " ".join(f"{x:.1f}" for x in os.getloadavg()))
        assert rl_rows == seed_rows == args.records, (rl_rows, seed_rows)
        figure("e2e_vs_seed_loop", (rl_s + spark_s) / seed_s, "<= 0.6x",
               note="(restlake wall with Spark's start / seed loop)")
        figure("e2e_vs_seed_loop_after_spark_start", rl_s / seed_s, "(reference)")
        figure("client_cpu_per_record", rl_cpu / rl_rows * 1e6, "<= 10 us", unit="us",
               note="(restlake's Python process during the load)")
        dlt_s = None
        if not args.no_dlt:
            try:
                import dlt  # noqa: F401
                import deltalake  # noqa: F401
            except ImportError:
                info("dlt", "not importable: skipped (pip install 'dlt[deltalake]')")
            else:
                dlt_s, dlt_rows = timed(run_dlt, api.base_url, cfg, args.page_size, root)
                info("dlt rest_api -> delta", f"{dlt_rows:,} rows in {dlt_s:.1f}s")
                figure("e2e_vs_dlt", dlt_s / rl_s, ">= 3x", note="(dlt / restlake)")
        spark.stop()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
