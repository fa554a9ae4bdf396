"""memory: driver peak RSS of the fetch+stage path at a small and a large load.

    python bench/memory.py [--small 100000] [--large 2000000] [--latency-ms 0]

Each size runs in a fresh child process (the demo API in another one), so each peak is
that load's own: ``ru_maxrss`` of a process that fetched every window with
``limits.concurrency`` threads and streamed the rows to staging files. Spark is not in
this path (the writer reads the staged files on the executors).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import time

from _common import DemoServer, config, figure, info, restlake_fetch, temp_dir


def _measure(conn, base_url: str, days: int, concurrency: int, page_size: int) -> None:
    cfg = config(base_url, "bench_memory", days=days, window="PT6H", page_size=page_size,
                 concurrency=concurrency)
    tmp = temp_dir("restlake-bench-memory-")
    t0 = time.perf_counter()
    records, _ = restlake_fetch(cfg, tmp)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    conn.send((records, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, elapsed))


def peak_rss(base_url: str, days: int, concurrency: int, page_size: int) -> tuple[int, float, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_measure, args=(child, base_url, days, concurrency, page_size))
    proc.start()
    out = parent.recv()
    proc.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--large", type=int, default=2_000_000)
    ap.add_argument("--days", type=int, default=30, help="6-hour windows over this many days")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--page-size", type=int, default=500)
    args = ap.parse_args()

    peaks = {}
    for n in (args.small, args.large):
        with DemoServer(records_per_resource=n, latency_ms=args.latency_ms,
                        max_page_size=args.page_size, end=f"2024-01-{1 + args.days:02d}T00:00:00Z") as api:
            records, peak, elapsed = peak_rss(api.base_url, args.days, args.concurrency, args.page_size)
        assert records == n, (records, n)
        peaks[n] = peak
        info(f"{n:,} records", f"peak RSS {peak:.0f} MB, {elapsed:.0f}s ({n / elapsed:,.0f} records/s)")
    figure("memory_growth_mb", peaks[args.large] - peaks[args.small], "< 150 MB", unit="MB",
           note=f"({args.small:,} -> {args.large:,} records)")


if __name__ == "__main__":
    main()
