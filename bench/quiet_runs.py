"""quiet_runs: a source's `restlake run` processes when its windows find nothing, vs one that writes.

    python bench/quiet_runs.py [--quiet-runs 4] [--records 2000]

The steady state of a quiet source on a short cadence: every run claims its row, fetches
windows in which the API has no new record, and finishes. One source (the demo API,
cursor pagination, 20 ms, `max_row_drop_pct` and `max_spike_pct` checks, which judge an
empty batch too) gets a FULL load of ``--records`` records over two days, then
``--quiet-runs`` incremental runs of the next day each, each ``restlake run --config-id``
a process of its own as a user's job runs it. Printed per run: wall time, the run
process's CPU (``getrusage``), and the machine's busy CPU time over the run from
``/proc/stat`` (the Spark JVM that ``run`` may start is not the run process's waited child,
so ``getrusage`` misses it; read after a pause that lets a started JVM go). The baseline,
in the same run, is the FULL load that writes (its JVM starts, as it must).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time

from _common import START, DemoServer, config, figure, info, temp_dir

QUALITY = {"max_row_drop_pct": {"value": 50},
           "max_spike_pct": {"value": 50, "baseline": "loads", "loads": 3}}


def busy_cpu_s() -> float:
    """CPU time every core of this machine spent busy since boot (user, nice, system, irq...)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quiet-runs", type=int, default=4)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--settle-s", type=float, default=6.0,
                    help="pause after each run before the machine's CPU is read again")
    args = ap.parse_args()

    import e2e

    root = temp_dir("restlake-bench-quiet-")
    end = (START + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with DemoServer(records_per_resource=args.records, latency_ms=20, max_page_size=1000,
                    end=end) as api:
        from framework.lake.spark import get_spark

        spark = get_spark("restlake-bench", master="local[2]")
        warehouse, store = e2e.init_restlake(spark, root)
        spark.stop()  # this process's JVM would count in the machine's CPU
        time.sleep(args.settle_s)
        figures = []
        cfg = config(api.base_url, "quiet", days=2, page_size=1000, concurrency=2,
                     delta_column=True, quality=QUALITY)
        for day in range(2, 3 + args.quiet_runs):  # the FULL load, then one new day per run
            store.generate([cfg], now=START + dt.timedelta(days=day))
            busy0, t0 = busy_cpu_s(), time.perf_counter()
            rows, cpu_s, audit = e2e.run_restlake(cfg, root, warehouse, store, "local[2]",
                                                  generate=False)
            wall = time.perf_counter() - t0
            time.sleep(args.settle_s)
            machine = busy_cpu_s() - busy0
            figures.append((audit["LoadType"], rows, wall, cpu_s, machine))
            info(f"run {len(figures)}: {audit['LoadType']}, {rows} rows",
                 f"wall {wall:.1f} s, run process CPU {cpu_s:.1f} s, machine CPU {machine:.1f} s")
    full, quiet = figures[0], figures[1:]
    quiet_wall = sorted(f[2] for f in quiet)[len(quiet) // 2]
    quiet_machine = sorted(f[4] for f in quiet)[len(quiet) // 2]
    figure("quiet_run_wall_s", quiet_wall, "(median; lower is better)", unit="s")
    figure("quiet_run_machine_cpu_s", quiet_machine, "(median; a JVM's start adds ~1.5-2 s)",
           unit="s")
    figure("quiet_vs_full_machine_cpu", quiet_machine / full[4], "(lower is better)",
           note=f"(the FULL load that writes: {full[4]:.1f} s)")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
