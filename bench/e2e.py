"""e2e: a whole load (fetch, stage, Delta write, bookkeeping) vs the seed loop and dlt.

    python bench/e2e.py [--records 1000000] [--days 60] [--page-size 1000] [--latency-ms 20] [--no-dlt]

restlake runs as a user runs it: ``restlake run --config-id ...`` in a process of its own
(Python start, Spark start, claim, fetch, stage, Delta write, control, window-log and audit
commits), on a local warehouse whose control tables were made and whose row was
generated beforehand. Its wall time is the process's, from start to exit: Spark's start is
in it (``run`` starts Spark in the background once the full load is claimed, while it
fetches). The seed loop fetches every page sequentially into one list, then makes one
``createDataFrame`` + Delta write on a Spark session already started and warmed up (its
start is not counted). dlt (if ``dlt[deltalake]`` is importable) runs its ``rest_api``
source with the same cursor paginator into a Delta table on the filesystem destination.
The demo API encodes every reply (no reply cache).

``e2e_vs_seed_loop`` is restlake's process wall time over the seed loop's (target
<= 0.6x). restlake's client CPU per record is the ``run`` process's own CPU time
(``getrusage``: its Python threads, not the API's process, not Spark's JVM), start to
exit, divided by its records. Next to it, measured in the same run just before: the CPU per
record of ``--concurrency`` bare ``requests`` threads reading the same windows from the same
server (``requests`` + ``response.json()``, nothing kept), so that a figure can be read
against the machine's speed at that moment (on a shared 2-vCPU machine it moves by up to
2x within minutes).
"""

from __future__ import annotations

import argparse
import os
import shutil

from _common import (DemoServer, REPO, START, bare_threads, config, cpu_seconds, figure, info,
                     seed_loop, temp_dir, timed, windows_of)

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


CHILD = """
import json, resource, sys
from framework.cli.app import main
code = main(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_SELF)
with open(sys.argv[1], "w") as out:
    json.dump({"exit": code, "cpu_s": usage.ru_utime + usage.ru_stime}, out)
sys.exit(code)
"""


def run_restlake(cfg, root, warehouse, store, master: str, generate: bool = True
                 ) -> tuple[int, float, dict]:
    """``restlake run`` of ``cfg`` in its own process (its row generated first unless
    ``generate`` is false); (rows, process CPU s, audit row)."""
    import json
    import subprocess
    import sys

    if generate:
        store.generate([cfg])
    report = root / f"{cfg.config_id}.cpu.json"
    env = dict(os.environ, RESTLAKE_SPARK_MASTER=master,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", CHILD, str(report), "--warehouse",
                           str(warehouse.root), "run", "--config-id", cfg.config_id],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cpu_s = json.loads(report.read_text())["cpu_s"]
    [audit] = store.audit_rows(cfg.config_id, limit=1)
    assert audit["LoadStatus"] == "SUCCESS", audit
    return int(audit["TargetRowCount"]), cpu_s, audit


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
    ap.add_argument("--restlake-only", action="store_true",
                    help="only restlake's run (no seed loop, no dlt, no ratio): for side-by-side "
                         "runs of one setting, e.g. RESTLAKE_WARMUP=off")
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
        # The seed loop runs on this process's session: warm its JVM up (Delta code paths,
        # JIT) on a one-day load first. restlake's run starts a cold JVM of its own.
        if not args.restlake_only:
            warm_s, _ = timed(run_seed, spark, api.base_url, windows_of(cfg)[:1], args.page_size,
                              root / "warm")
            info("seed warm-up (excluded)", f"{warm_s:.1f}s")
        cpu0 = cpu_seconds()
        bare_s, bare_records = timed(bare_threads, api.base_url, windows_of(cfg), args.page_size,
                                     args.concurrency)
        bare_us = (cpu_seconds() - cpu0) / bare_records * 1e6
        info("bare threads (same windows and server, this moment)",
             f"{bare_records:,} records in {bare_s:.1f}s, {bare_us:.1f} us CPU/record")
        rl_s, (rl_rows, rl_cpu, audit) = timed(run_restlake, cfg, root, warehouse, store, args.master)
        info("restlake run (own process, Spark's start included)",
             f"{rl_rows:,} rows in {rl_s:.1f}s ({rl_rows / rl_s:,.0f} rows/s)")
        info("restlake phases (audit row)", ", ".join(
            f"{name} {audit.get(col) or 0:.1f}s" for name, col in (
                ("claim", "ClaimSeconds"), ("fetch", "FetchSeconds"), ("stage", "StageSeconds"),
                ("write", "WriteSeconds"), ("bookkeeping", "BookkeepingSeconds"))))
        if args.restlake_only:
            info("client CPU per record", f"{rl_cpu / rl_rows * 1e6:.1f} us "
                                          f"(bare threads: {bare_us:.1f} us)")
            spark.stop()
            shutil.rmtree(root, ignore_errors=True)
            return
        seed_s, seed_rows = timed(run_seed, spark, api.base_url, windows_of(cfg), args.page_size, root)
        info("seed loop (Spark already started)", f"{seed_rows:,} rows in {seed_s:.1f}s")
        info("load average at the end", " ".join(f"{x:.1f}" for x in os.getloadavg()))
        assert rl_rows == seed_rows == args.records, (rl_rows, seed_rows)
        figure("e2e_vs_seed_loop", rl_s / seed_s, "<= 0.6x",
               note="(restlake run process wall, Spark's start included / seed loop)")
        figure("client_cpu_per_record", rl_cpu / rl_rows * 1e6, "<= 10 us", unit="us",
               note=f"(the run process's own CPU, start to exit; bare threads: {bare_us:.1f} us)")
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
