"""jvm_start: a one-shot command's JVM with the class archive vs without, side by side.

    python bench/jvm_start.py [--runs 3]

Each run is a fresh process doing what a one-shot ``restlake`` command's Spark part does
first: start a local session (``local[2]``) and write a 100-row Delta table. Runs alternate
between the class archive (``framework.lake.classes``; made first if missing) and
``RESTLAKE_CLASS_ARCHIVE=off``. Printed: the median start and start + first write of each,
and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from _common import REPO, figure, info, temp_dir

CHILD = """
import json, sys, time
t0 = time.monotonic()
from framework.lake.spark import get_spark
spark = get_spark("restlake-bench-jvm", master="local[2]")
t1 = time.monotonic()
rows = [(i, f"t{i}", i / 3) for i in range(100)]
spark.createDataFrame(rows, "id long, title string, score double").write.format("delta").save(sys.argv[1])
print(json.dumps({"start": t1 - t0, "total": time.monotonic() - t0}))
"""


def one(env: dict, target: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, target], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from framework.lake import classes

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("RESTLAKE_CLASS_ARCHIVE", None)
    if classes.usable_archive(env) is None:
        info("class archive", "making it (once per Java build and jar set)")
        classes.build(env)
    info("class archive", classes.usable_archive(env))
    root = temp_dir("restlake-bench-jvm-")
    results: dict[str, list[dict]] = {"with": [], "without": []}
    for i in range(args.runs):
        results["without"].append(one(dict(env, RESTLAKE_CLASS_ARCHIVE="off"), str(root / f"off{i}")))
        results["with"].append(one(env, str(root / f"on{i}")))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("start", "total")}
           for k, v in results.items()}
    for k in ("without", "with"):
        info(f"{k} the archive (median of {args.runs})",
             f"start {med[k]['start']:.1f}s, start + first 100-row write {med[k]['total']:.1f}s")
    figure("jvm_start_with_archive", med["with"]["start"] / med["without"]["start"], "< 1x",
           note="(Spark's start, with / without the class archive)")
    figure("first_write_with_archive", med["with"]["total"] / med["without"]["total"], "< 1x",
           note="(start + first Delta write, with / without)")


if __name__ == "__main__":
    main()
