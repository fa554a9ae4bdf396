"""fetch: restlake's fetch+stage records/s vs bare threads, the seed loop and the latency bound.

    python bench/fetch.py [--records 100000] [--days 8] [--latency-ms 20] [--concurrency 8]
                          [--page-size 100] [--cache-replies]

Every client reads the same cursor-paginated windows from the demo API (own process,
``latency_ms`` per request, encoding every reply as a real API does):

* bare threads: ``--concurrency`` threads of ``requests`` + ``response.json()`` that
  keep nothing (what any threaded Python client pays for HTTP and JSON alone);
* the seed's sequential loop;
* restlake's fetch stack as the runtime runs it (``WindowFetcher``, ``limits.concurrency``
  windows at once, rows shaped and staged to files).

The latency bound is ``concurrency x page size / latency``. restlake's client CPU per
record is the process CPU time (``getrusage``) of its run divided by its records.
``--cache-replies`` makes the API replay cached replies (its encoding then costs nothing:
the mode of the figures taken before 2026-12). The days should be a multiple of the
concurrency, so that no worker idles in a last round.
"""

from __future__ import annotations

import argparse
import os
import shutil

from _common import (DemoServer, bare_threads, config, cpu_seconds, figure, info, restlake_fetch,
                     seed_loop, temp_dir, timed, windows_of)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=8, help="daily windows")
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each")
    ap.add_argument("--cache-replies", action="store_true")
    ap.add_argument("--no-seed", action="store_true", help="skip the (slow) sequential loop")
    args = ap.parse_args()

    tmp = temp_dir("restlake-bench-fetch-")
    end = f"2024-01-{1 + args.days:02d}T00:00:00Z" if args.days < 31 else None
    with DemoServer(records_per_resource=args.records, latency_ms=args.latency_ms,
                    max_page_size=args.page_size, cache_replies=args.cache_replies,
                    **({"end": end} if end else {})) as api:
        cfg = config(api.base_url, "bench_fetch", days=args.days, page_size=args.page_size,
                     concurrency=args.concurrency)
        windows = windows_of(cfg)
        restlake_fetch(cfg, tmp)  # warm-up (and, with --cache-replies, fills the cache)
        bare_s = rl_s = float("inf")
        rl_cpu = bare_cpu = 0.0
        for _ in range(args.rounds):  # alternate, so that a noisy moment hits both
            cpu0 = cpu_seconds()
            s, bare_records = timed(bare_threads, api.base_url, windows, args.page_size,
                                    args.concurrency)
            if s < bare_s:
                bare_s, bare_cpu = s, cpu_seconds() - cpu0
            cpu0 = cpu_seconds()
            s, (rl_records, _) = timed(restlake_fetch, cfg, tmp)
            if s < rl_s:
                rl_s, rl_cpu = s, cpu_seconds() - cpu0
        seed_s, seed_records = (None, None) if args.no_seed else timed(
            seed_loop, api.base_url, windows, args.page_size)
    shutil.rmtree(tmp, ignore_errors=True)
    assert rl_records == bare_records == args.records, (rl_records, bare_records)

    rl_rate, bare_rate = rl_records / rl_s, bare_records / bare_s
    bound = args.concurrency * args.page_size / (args.latency_ms / 1000)
    info("records, windows, page size, server mode",
         f"{rl_records}, {len(windows)}, {args.page_size}, "
         f"{'cached replies' if args.cache_replies else 'encoding every reply'}")
    info("bare threads", f"{bare_rate:,.0f} records/s ({bare_s:.2f}s, {args.concurrency} threads, "
                         f"{bare_cpu / bare_records * 1e6:.1f} us CPU/record)")
    info("restlake", f"{rl_rate:,.0f} records/s ({rl_s:.2f}s, concurrency {args.concurrency})")
    if seed_s is not None:
        assert len(seed_records) == args.records
        info("seed loop", f"{len(seed_records) / seed_s:,.0f} records/s ({seed_s:.1f}s)")
    info("latency bound", f"{bound:,.0f} records/s")
    info("load average at the end", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    figure("fetch_vs_bare_threads", rl_rate / bare_rate, ">= 0.8x")
    figure("client_cpu_per_record", rl_cpu / rl_records * 1e6, "<= 10 us", unit="us",
           note=f"(bare threads: {bare_cpu / bare_records * 1e6:.1f} us)")
    if seed_s is not None:
        figure("fetch_vs_seed_loop", rl_rate / (len(seed_records) / seed_s), "(reference)")
    figure("fetch_vs_latency_bound", rl_rate / bound, "(reference)")


if __name__ == "__main__":
    main()
