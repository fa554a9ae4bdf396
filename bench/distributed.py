"""distributed: fetch on Spark executors, local[2] vs local[1], latency-bound windows.

    python bench/distributed.py [--windows 16] [--records 64000] [--latency-ms 20]

Each master runs in its own process (a Spark session's master is fixed at start):
start Spark (excluded), warm the Python workers up, then time
``framework.load.distributed.fetch_windows_distributed`` over the same windows of the demo
API. One task per window; a task pages through its window sequentially, so the
fetch is bound by latency and should scale with the task slots.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import DemoServer, config, figure, info, temp_dir, windows_of


def child(master: str, base_url: str, days: int, page_size: int) -> None:
    from framework.load.distributed import fetch_windows_distributed
    from framework.lake.spark import get_spark
    from framework.load.staging import RunStaging

    slots = int(master[len("local["):-1])
    t0 = time.perf_counter()
    spark = get_spark("restlake-bench-dist", master=master,
                      conf={"spark.default.parallelism": str(slots)})
    spark_s = time.perf_counter() - t0
    spark.range(slots, numPartitions=slots).mapInArrow(lambda it: it, "id long").collect()  # warm up
    cfg = config(base_url, "bench_dist", days=days, page_size=page_size)
    todo = list(enumerate(windows_of(cfg)))
    staging = RunStaging(temp_dir("restlake-bench-dist-"), cfg.config_id, "bench")
    t0 = time.perf_counter()
    outcomes = fetch_windows_distributed(spark, cfg, todo, "bench", staging, None)
    elapsed = time.perf_counter() - t0
    records = sum(f.result().records for _, _, f in outcomes)
    staging.cleanup()
    spark.stop()
    print("RESULT " + json.dumps({"seconds": elapsed, "records": records, "spark_s": spark_s,
                                  "slots": slots}), flush=True)


def measure(master: str, base_url: str, days: int, page_size: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", master, base_url, str(days),
                          str(page_size)], capture_output=True, text=True, check=True).stdout
    return json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=16, help="daily windows")
    ap.add_argument("--records", type=int, default=64_000)
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--page-size", type=int, default=50)
    args = ap.parse_args()

    end = f"2024-01-{1 + args.windows:02d}T00:00:00Z"
    with DemoServer(records_per_resource=args.records, latency_ms=args.latency_ms,
                    max_page_size=args.page_size, end=end) as api:
        one = measure("local[1]", api.base_url, args.windows, args.page_size)
        two = measure("local[2]", api.base_url, args.windows, args.page_size)
    assert one["records"] == two["records"] == args.records, (one, two)
    pages = args.records / args.page_size
    info("windows, records, pages", f"{args.windows}, {args.records:,}, {pages:,.0f}")
    info("spark start (excluded)", f"local[1] {one['spark_s']:.1f}s, local[2] {two['spark_s']:.1f}s")
    info("local[1]", f"{one['seconds']:.1f}s ({args.records / one['seconds']:,.0f} records/s)")
    info("local[2]", f"{two['seconds']:.1f}s ({args.records / two['seconds']:,.0f} records/s)")
    figure("distributed_local2_vs_local1", one["seconds"] / two["seconds"], ">= 1.7x")


if __name__ == "__main__":
    main()
