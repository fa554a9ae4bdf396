"""shaping: restlake's per-record work on one page, next to parsing that page.

    python bench/shaping.py [--records 1000] [--rounds 200]

A page of demo records (``framework.demoapi``'s dataset, the e2e bench's records) is
shaped as a first load shapes it (no target yet: the verbatim path) and as an incremental
load into the target that first load made (nested ``labels``/``user`` are string columns:
the direct path with patched values), with ``stage_records``'s work: shaping, the schema
tracker, the key hashes. The baseline, in the same run, is ``orjson.loads`` of the page's
body (what any client pays). Printed: µs per record (process CPU) and the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import orjson

from _common import figure, info

UTC = dt.timezone.utc


def per_record(fn, rounds: int, records: int) -> float:
    fn()
    t0 = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - t0) / rounds / records * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()

    from framework.demoapi.data import Dataset
    from framework.schema import RowShaper, SchemaTracker

    data = Dataset(size=max(args.records, 1000))
    page = [data.get(i) for i in data.ids()[:args.records]]
    body = orjson.dumps({"data": page, "next_cursor": "x"})
    at = dt.datetime(2024, 1, 1, tzinfo=UTC)

    def shape(shaper):
        def run():
            shaped = shaper.shape_page(page, run_id="r", window_start=at, window_end=at,
                                       collected_at=at, seq=0)
            SchemaTracker().observe_all(shaped.observed)
        return run

    first = RowShaper("demo", ("id",))
    tracker = SchemaTracker()
    tracker.observe_all(first.shape_page(page, run_id="r", window_start=at, window_end=at,
                                         collected_at=at, seq=0).observed)
    existing = RowShaper("demo", ("id",), columns=tracker.resolved())
    parse_us = per_record(lambda: orjson.loads(body), args.rounds, len(page))
    first_us = per_record(shape(first), args.rounds, len(page))
    existing_us = per_record(shape(existing), args.rounds, len(page))
    info("page", f"{len(page)} records, {len(body) / len(page):.0f} bytes per record")
    info("orjson.loads of the page (baseline)", f"{parse_us:.2f} us/record")
    info("first load (no target)", f"{first_us:.2f} us/record")
    info("into the target the first load made", f"{existing_us:.2f} us/record")
    figure("shaping_first_load_vs_parse", first_us / parse_us, "(lower is better)")
    figure("shaping_existing_target_vs_parse", existing_us / parse_us, "(lower is better)")


if __name__ == "__main__":
    main()
