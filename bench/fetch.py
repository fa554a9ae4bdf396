"""fetch: restlake's fetch+stage records/s vs the seed's sequential loop and the latency bound.

    python bench/fetch.py [--records 160000] [--days 16] [--latency-ms 20] [--concurrency 8]

Both clients read the same cursor-paginated windows from the demo API (own process,
``latency_ms`` per request). The latency bound is ``concurrency x page size / latency``:
what a client that spends no time of its own could reach.

The demo API answers from a reply cache filled by a warm-up pass before either client is
timed: a real API encodes its pages on its own machine, while here server and client
share two cores, and an encoding server would measure itself, not the client (a plain
``requests`` walk with 8 threads reaches only ~23k records/s against the encoding server).
The days should be a multiple of the concurrency, so that no worker idles in a last round.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from _common import (DemoServer, config, figure, info, restlake_fetch, seed_loop, temp_dir, timed,
                     windows_of)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=160_000)
    ap.add_argument("--days", type=int, default=16, help="daily windows")
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--page-size", type=int, default=100)
    args = ap.parse_args()

    tmp = temp_dir("restlake-bench-fetch-")
    end = f"2024-01-{1 + args.days:02d}T00:00:00Z" if args.days < 31 else None
    with DemoServer(records_per_resource=args.records, latency_ms=args.latency_ms,
                    max_page_size=args.page_size, cache_replies=True,
                    **({"end": end} if end else {})) as api:
        cfg = config(api.base_url, "bench_fetch", days=args.days, page_size=args.page_size,
                     concurrency=args.concurrency)
        windows = windows_of(cfg)
        restlake_fetch(cfg, tmp)  # warm-up: fills the server's reply cache
        seed_s, seed_records = timed(seed_loop, api.base_url, windows, args.page_size)
        cpu0 = time.process_time()
        rl_s, (rl_records, _) = timed(restlake_fetch, cfg, tmp)
        cpu_us = (time.process_time() - cpu0) / max(1, rl_records) * 1e6
    shutil.rmtree(tmp, ignore_errors=True)
    assert rl_records == len(seed_records) == args.records, (rl_records, len(seed_records))

    seed_rate, rl_rate = len(seed_records) / seed_s, rl_records / rl_s
    bound = args.concurrency * args.page_size / (args.latency_ms / 1000)
    info("records, windows, page size", f"{rl_records}, {len(windows)}, {args.page_size}")
    info("seed loop", f"{seed_rate:,.0f} records/s ({seed_s:.1f}s)")
    info("restlake", f"{rl_rate:,.0f} records/s ({rl_s:.1f}s, concurrency {args.concurrency})")
    info("latency bound", f"{bound:,.0f} records/s")
    info("restlake client CPU", f"{cpu_us:.0f} us/record (one core's ceiling: "
                                f"{1e6 / cpu_us:,.0f} records/s)")
    info("load average at the end", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    figure("fetch_vs_seed_loop", rl_rate / seed_rate, ">= 8x")
    figure("fetch_vs_latency_bound", rl_rate / bound, ">= 0.8x")


if __name__ == "__main__":
    main()
