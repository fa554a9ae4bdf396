"""Latency of the service's read path on a large warehouse.

Builds (with Spark, once) a warehouse of ``--sources`` control rows, ``--health-rows``
health-log rows (default 1 M) and ``--audit-rows`` audit rows (default 100 k), starts
``restlake serve --public-read`` on it as a child process (which starts no JVM), and times
``GET /api/v1/stats/summary`` and ``GET /api/v1/sources``:

* ``first``  — the first request after the service started (reads the tables);
* ``warm``   — p50 / p95 / max of repeated requests on an unchanged warehouse
  (answers served from the cache keyed by the tables' Delta versions and a 10 s time slot);
* ``after append`` — the first request after each of ``--appends`` new commits to the
  health log (a probe round of one row per source): the service reads only the new file
  and recomputes the metrics over every row with DuckDB.

Usage: python bench/service.py [--health-rows 1000000] [--audit-rows 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = ("/api/v1/stats/summary", "/api/v1/sources?limit=500")


def build(root: Path, sources: int, health_rows: int, audit_rows: int) -> None:
    """The warehouse: control rows through the control store, logs by Spark range jobs."""
    from pyspark.sql import functions as F

    from control.schemas import AUDIT_SCHEMA
    from control.store import ControlStore
    from framework.config import parse_source
    from framework.lake.spark import get_spark
    from framework.lake.tables import Warehouse
    from framework.ops.health_store import HEALTH_SCHEMA, ensure_table, health_ref

    spark = get_spark("restlake-bench-service")
    warehouse = Warehouse(root)
    store = ControlStore(spark, warehouse)
    store.init()
    ensure_table(spark, warehouse)
    configs = [parse_source({
        "config_id": f"src_{i:03d}", "api_name": "Bench", "endpoint": "http://127.0.0.1:9/api",
        "load_start": "2024-01-01T00:00:00Z", "schedule": {"frequency": "hourly"},
        "target": {"catalog": "raw", "schema": "bench", "table": f"t_{i:03d}"}}) for i in range(sources)]
    store.generate(configs)
    now = F.current_timestamp()
    # checks spread over the last 30 days, ~2 % failed, in runs so that incidents exist
    health = (spark.range(health_rows)
              .select(F.format_string("src_%03d", (F.col("id") % sources).cast("int")).alias("ConfigId"),
                      F.lit("bench").alias("SourceSystem"),
                      F.when(F.col("id") % 3 == 0, "probe").otherwise("ingest").alias("CheckKind"),
                      (now - F.make_dt_interval(F.lit(0), F.lit(0), F.lit(0),
                                                ((F.col("id") * 2.592) % 2592000).cast("decimal(18,6)")))
                      .alias("CheckedAt"),
                      F.lit("GET").alias("Method"), F.lit("http://127.0.0.1:9/api").alias("Url"),
                      F.when((F.col("id") / sources).cast("long") % 50 == 7, 503).otherwise(200)
                      .cast("int").alias("StatusCode"),
                      ((F.col("id") / sources).cast("long") % 50 != 7).alias("Ok"),
                      (F.rand(7) * 200 + 5).alias("ElapsedMs"),
                      F.when((F.col("id") / sources).cast("long") % 50 == 7, "http_status").alias("ErrorKind"),
                      F.when((F.col("id") / sources).cast("long") % 50 == 7, "HTTP 503").alias("ErrorMessage"),
                      F.format_string("run-%08d", F.col("id")).alias("RunId"),
                      F.format_string("check-%010d", F.col("id")).alias("CheckId")))
    health.select(*[F.col(f.name).cast(f.dataType) for f in HEALTH_SCHEMA.fields]).write \
        .format("delta").mode("append").save(warehouse.path(health_ref()))
    cols = []
    for f in AUDIT_SCHEMA.fields:
        value = {
            "ConfigId": F.format_string("src_%03d", (F.col("id") % sources).cast("int")),
            "RunId": F.format_string("run-%08d", F.col("id")),
            "LoadType": F.lit("INCREMENTAL"),
            "LoadStatus": F.when(F.col("id") % 40 == 0, "FAILED").otherwise("SUCCESS"),
            "ErrorMessage": F.when(F.col("id") % 40 == 0, "GET /api: HTTP 503 after 5 attempts"),
            "LoggedAt": now - F.make_dt_interval(F.lit(0), F.lit(0), F.lit(0),
                                                 ((F.col("id") * 25.92) % 2592000).cast("decimal(18,6)")),
            "SourceRowCount": F.col("id") % 1000, "TargetRowCount": F.col("id") % 1000,
            "TargetTotalRowCount": F.col("id"), "RunDuration": F.rand(3) * 10,
        }.get(f.name, F.lit(None))
        cols.append(value.cast(f.dataType).alias(f.name))
    spark.range(audit_rows).select(*cols).write.format("delta").mode("append") \
        .save(warehouse.path(store.audit_ref))
    spark.stop()


def append_probe_round(root: Path, sources: int) -> None:
    """One health-log commit of one probe per source, written with delta-rs (no JVM)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from framework.ops.health import new_check_id
    from framework.ops.health_store import HEALTH_SCHEMA

    now = dt.datetime.now(dt.timezone.utc)
    ts = pa.timestamp("us", tz="UTC")
    types = {"CheckedAt": ts, "StatusCode": pa.int32(), "Ok": pa.bool_(), "ElapsedMs": pa.float64()}
    cols = [f.name for f in HEALTH_SCHEMA.fields]
    rows = [{"ConfigId": f"src_{i:03d}", "SourceSystem": "bench", "CheckKind": "probe", "CheckedAt": now,
             "StatusCode": 200, "Ok": True, "ElapsedMs": 12.5, "RunId": f"probe-{now:%H%M%S%f}",
             "Method": "GET", "Url": "http://127.0.0.1:9/api", "CheckId": new_check_id()}
            for i in range(sources)]
    schema = pa.schema([(c, types.get(c, pa.string())) for c in cols])
    table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows], schema=schema)
    write_deltalake(str(root / "main" / "metadata" / "api_health_log"), table, mode="append")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=50)
    p.add_argument("--health-rows", type=int, default=1_000_000)
    p.add_argument("--audit-rows", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=200, help="warm requests per endpoint")
    p.add_argument("--appends", type=int, default=10)
    p.add_argument("--keep", metavar="DIR", help="build the warehouse here once and reuse it")
    args = p.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="restlake-bench-svc-"))
    if not (root / "main" / "metadata" / "api_health_log").exists():
        t0 = time.perf_counter()
        build(root, args.sources, args.health_rows, args.audit_rows)
        print(f"built {root}: {args.sources} sources, {args.health_rows:,} health rows, "
              f"{args.audit_rows:,} audit rows in {time.perf_counter() - t0:.0f}s")

    from tests.unit._service import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "framework.cli", "--warehouse", str(root), "serve",
                             "--port", str(port), "--public-read"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    http = requests.Session()
    try:
        for _ in range(600):
            try:
                http.get(url + "/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)

        def timed(path: str) -> float:
            t = time.perf_counter()
            resp = http.get(url + path, timeout=120)
            resp.raise_for_status()
            return (time.perf_counter() - t) * 1000

        print(f"{'endpoint':34} {'first':>9} {'warm p50':>9} {'warm p95':>9} {'warm max':>9} "
              f"{'append p50':>11} {'append p95':>11} {'cpu/req':>8}")
        firsts = {path: timed(path) for path in ENDPOINTS}
        warm, cpu = {}, {}
        for path in ENDPOINTS:
            before = cpu_s(proc.pid)
            warm[path] = [timed(path) for _ in range(args.requests)]
            # the service's own CPU per warm request: what the machine's load does not change
            cpu[path] = (cpu_s(proc.pid) - before) / args.requests * 1000
        after: dict[str, list[float]] = {path: [] for path in ENDPOINTS}
        for _ in range(args.appends):
            append_probe_round(root, args.sources)
            for path in ENDPOINTS:
                after[path].append(timed(path))
        for path in ENDPOINTS:
            w, a = warm[path], after[path]
            print(f"{path:34} {firsts[path]:8.1f}ms {statistics.median(w):8.1f}ms {pct(w, 0.95):8.1f}ms "
                  f"{max(w):8.1f}ms {statistics.median(a):10.1f}ms {pct(a, 0.95):10.1f}ms "
                  f"{cpu[path]:6.2f}ms")
        load = os.getloadavg()[0]
        print(f"target: p95 < 50 ms; load average {load:.1f} on {os.cpu_count()} cores during the run")
    finally:
        proc.terminate()
        proc.wait(30)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
