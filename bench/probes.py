"""probes: one scheduler probe round over many slow sources, concurrent vs one at a time.

    python bench/probes.py [--sources 60] [--latency-ms 1000] [--workers 32]

Every source answers after ``latency_ms`` (the demo API in its own process). The round is
the scheduler's (:func:`framework.ops.health.probe_many`, a bounded thread pool); the
baseline is the same probes one after the other (``workers=1``), measured in the same run.
The target: a round of 60 sources of 1 s latency each in under 3 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math

from _common import DemoServer, figure, info, timed

from framework.config import parse_source
from framework.ops.health import probe_many


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=60)
    ap.add_argument("--latency-ms", type=float, default=1000)
    ap.add_argument("--workers", type=int, default=64, help="the scheduler's probe_workers")
    args = ap.parse_args()

    now = dt.datetime.now(dt.timezone.utc)
    with DemoServer(records_per_resource=100, latency_ms=args.latency_ms) as api:
        configs = [parse_source({
            "config_id": f"probe_{i:03d}", "api_name": "Demo", "source_system": "demo",
            "endpoint": api.base_url + "/api/cursor/issues",
            "params": {"since": "{window_start}", "until": "{window_end}", "limit": 50},
            "pagination": {"style": "cursor"}, "data_path": "data",
            "load_start": "2024-01-01T00:00:00Z",
            "target": {"catalog": "bench", "schema": "probes", "table": f"t{i}"},
            "health": {"interval": "PT1M", "timeout_s": 30}}) for i in range(args.sources)]
        probe_many(configs[:2], now=now, workers=2)  # warm-up: imports, first connections
        round_s, rows = timed(probe_many, configs, now=now, workers=args.workers)
        seq_s, seq_rows = timed(probe_many, configs, now=now, workers=1)
    assert all(r["Ok"] for r in rows + seq_rows), [r["ErrorMessage"] for r in rows if not r["Ok"]]
    bound = math.ceil(args.sources / args.workers) * args.latency_ms / 1000
    info("sources", args.sources)
    info("latency per probe", f"{args.latency_ms:g} ms")
    info("workers", args.workers)
    info("latency bound of a round", f"{bound:g} s (ceil(sources / workers) x latency)")
    figure("probe_round_s", round_s, "< 3 s", unit="s")
    info("sequential round", f"{seq_s:.1f} s")
    figure("probe_round_vs_sequential", seq_s / round_s, f"~{args.sources / math.ceil(args.sources / args.workers):.0f}x (the bound)")


if __name__ == "__main__":
    main()
