"""pages: one window of many offset pages, concurrency 8 vs 1 (concurrent pages in a window).

    python bench/pages.py [--pages 200] [--page-size 25] [--latency-ms 20] [--concurrency 8]

One window (``window: none``) of an ``offset`` source whose first page reports the
total, read through restlake's fetch stack (``WindowFetcher``) twice from the demo API
(own process, ``latency_ms`` per request, reply cache warmed first): with
``limits.concurrency: 1`` the pages are walked one at a time (the next page already on
the wire while the current one is staged), with ``--concurrency`` the remaining pages are
requested concurrently and staged in page order. The staged rows of both runs are
compared (every column but ``collected_at_utc``, the time each page arrived), then the
ratio of the two fetch times is printed: the median of ``--rounds`` alternating rounds of
each (a shared machine's load comes and goes; alternating exposes both to the same).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
from pathlib import Path

from _common import DemoServer, figure, info, temp_dir, timed

from framework.config import parse_source
from framework.load.fetch import WindowFetcher
from framework.load.staging import RunStaging
from framework.windows import Window
import datetime as dt

UTC = dt.timezone.utc
START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 31, tzinfo=UTC)


def _cfg(base_url: str, page_size: int, concurrency: int):
    return parse_source({
        "config_id": f"bench_pages_{concurrency}", "api_name": "Demo", "source_system": "demo",
        "endpoint": base_url + "/api/offset/issues",
        "pagination": {"style": "offset", "page_size": page_size, "total_path": "total"},
        "data_path": "data", "primary_key": ["id"], "load_start": START.isoformat(),
        "load_end": END.isoformat(), "window": "none",
        "target": {"catalog": "bench", "schema": "demo", "table": "pages"},
        "limits": {"timeout_s": 60, "concurrency": concurrency},
    })


def _fetch(cfg, root: Path):
    with WindowFetcher(cfg, "bench", RunStaging(root, cfg.config_id, "bench"), None, None) as fetch:
        return fetch(0, Window(START, END))


def _rows(result) -> list[dict]:
    rows = []
    for path in result.stage.files:
        with open(path, "rb") as fh:
            for line in fh:
                row = json.loads(line)
                row.pop("collected_at_utc", None)
                rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--page-size", type=int, default=25)
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    tmp = temp_dir("restlake-bench-pages-")
    records = args.pages * args.page_size
    with DemoServer(records_per_resource=records, latency_ms=args.latency_ms, start=START,
                    end=END, max_page_size=args.page_size, cache_replies=True) as api:
        one, many = _cfg(api.base_url, args.page_size, 1), _cfg(api.base_url, args.page_size,
                                                                args.concurrency)
        _fetch(many, tmp / "warm")  # fills the server's reply cache
        ones, manys = [], []
        for n in range(args.rounds):
            one_s, one_result = timed(_fetch, one, tmp / f"one{n}")
            many_s, many_result = timed(_fetch, many, tmp / f"many{n}")
            ones.append(one_s)
            manys.append(many_s)
        one_s, many_s = statistics.median(ones), statistics.median(manys)
    one_rows, many_rows = _rows(one_result), _rows(many_result)
    shutil.rmtree(tmp, ignore_errors=True)
    assert one_result.pages == many_result.pages == args.pages, (one_result.pages, many_result.pages)
    assert len(one_rows) == records and one_rows == many_rows, "the staged rows differ"

    info("records, pages, page size", f"{records}, {args.pages}, {args.page_size}")
    info("concurrency 1", f"{one_s:.2f}s median ({args.pages / one_s:.0f} pages/s; rounds: "
                          + ", ".join(f"{t:.2f}" for t in ones) + ")")
    info(f"concurrency {args.concurrency}", f"{many_s:.2f}s median ({args.pages / many_s:.0f} "
                                            "pages/s; rounds: "
                                            + ", ".join(f"{t:.2f}" for t in manys) + ")")
    info("latency bound at concurrency 1", f"{args.pages * args.latency_ms / 1000:.2f}s")
    info("staged rows equal", f"yes ({len(one_rows)} rows, in the same order)")
    info("load average at the end", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    figure(f"pages_concurrency{args.concurrency}_vs_1", one_s / many_s, ">= 6x")


if __name__ == "__main__":
    main()
