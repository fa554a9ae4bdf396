"""merge: restlake's MERGE of a changed window vs a bare DeltaTable.merge of the same batch,
and the data files an unchanged rerun commits.

    python bench/merge.py [--records 200000] [--days 20] [--changed 0.1] [--rounds 5]

A target of ``--records`` rows is loaded once (daily windows). Then ``--changed`` of one
window's records are edited at the source and that window is staged again. The same
staged batch is merged into two identical copies of the target: by restlake's writer
(dedupe, skip unchanged ``payload_hash``, MERGE) and by a bare
``DeltaTable.merge(...).whenMatchedUpdateAll().whenNotMatchedInsertAll()``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics

from _common import START, config, figure, info, restlake_fetch, temp_dir, timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--changed", type=float, default=0.1, help="share of the window's records edited")
    ap.add_argument("--rounds", type=int, default=5, help="measured merges of each kind (median)")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args()

    from deltalake import DeltaTable as RsDeltaTable

    from framework.lake.spark import get_spark
    from framework.lake.tables import TableRef, Warehouse
    from framework.load.writers import TargetWriter

    root = temp_dir("restlake-bench-merge-")
    end = START + dt.timedelta(days=args.days)
    spark_s, spark = timed(get_spark, "restlake-bench", master=args.master)
    info("spark start (excluded)", f"{spark_s:.1f}s")
    # the demo API runs in-process here: the bench edits its records
    from framework.demoapi import DemoApi

    with DemoApi(records_per_resource=args.records, end=end, max_page_size=500) as api:
        cfg = config(api.base_url, "bench_merge", days=args.days, page_size=500)
        one_day = config(api.base_url, "bench_merge", days=1, page_size=500)
        ref = TableRef("bench", "demo", "bench_merge")
        wh_rl, wh_bare = Warehouse(root / "a"), Warehouse(root / "b")
        _, full = restlake_fetch(cfg, root / "stage_full", discard=False)
        TargetWriter(spark, wh_rl, cfg, ref, "full", cfg.config_id).overwrite(
            [r.stage for r in full], None)
        for copy in (wh_bare, Warehouse(root / "warm_a"), Warehouse(root / "warm_b")):
            shutil.copytree(wh_rl.path(ref), copy.path(ref))
        info("target rows", f"{args.records:,} in {len(full)} windows")

        day = api.dataset.records_in(START, START + dt.timedelta(days=1))
        edited = [r["id"] for r in day[: int(len(day) * args.changed)]]
        api.dataset.touch(edited, at=START + dt.timedelta(hours=23))
        writer = TargetWriter(spark, wh_rl, one_day, ref, "incr", one_day.config_id)
        columns = writer.current_columns()
        from framework.load.fetch import WindowFetcher
        from framework.http.ratelimit import limiter_for
        from framework.load.staging import RunStaging
        from framework.windows import Window

        window = Window(START, START + dt.timedelta(days=1))
        with WindowFetcher(one_day, "incr", RunStaging(root / "stage_incr", "m", "incr"), columns,
                           limiter_for(api.base_url)) as fetch:
            staged = fetch(0, window)
        info("changed window", f"{staged.records:,} records, {len(edited):,} edited")

        def bare_merge(wh_bare=wh_bare):
            from delta.tables import DeltaTable
            from pyspark.sql import functions as F

            df = spark.read.schema(writer._struct(columns, with_seq=True)).json(
                [str(p) for p in staged.stage.files]).drop("_seq")
            return (DeltaTable.forPath(spark, wh_bare.path(ref)).alias("t")
                    .merge(df.alias("s"), F.col("t.id") == F.col("s.id"))
                    .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())

        # Warm up both paths on throwaway copies (JIT, Delta log caches), then measure
        # --rounds times on fresh copies of the target, alternating which goes first.
        TargetWriter(spark, Warehouse(root / "warm_a"), one_day, ref, "w", one_day.config_id).merge(
            [staged.stage], columns, batch_version=1)
        bare_merge(Warehouse(root / "warm_b"))
        rl_times, bare_times = [], []
        for i in range(args.rounds):
            wh_a, wh_b = Warehouse(root / f"round{i}_a"), Warehouse(root / f"round{i}_b")
            for copy in (wh_a, wh_b):
                shutil.copytree(wh_bare.path(ref), copy.path(ref))
            w = TargetWriter(spark, wh_a, one_day, ref, "incr", one_day.config_id)
            runs = [(rl_times, lambda: w.merge([staged.stage], columns, batch_version=1)),
                    (bare_times, lambda: bare_merge(wh_b))]
            for times, fn in (runs if i % 2 == 0 else runs[::-1]):
                times.append(timed(fn)[0])
        rl_write = writer.merge([staged.stage], columns, batch_version=1)  # the rerun's target
        rl_s, bare_s = statistics.median(rl_times), statistics.median(bare_times)
        info("restlake merge", f"median {rl_s:.2f}s of {', '.join(f'{t:.2f}' for t in rl_times)} "
                               f"({rl_write.rows_written:,} rows written)")
        info("bare DeltaTable.merge", f"median {bare_s:.2f}s of "
                                      f"{', '.join(f'{t:.2f}' for t in bare_times)}")
        figure("merge_vs_bare_merge", rl_s / bare_s, "<= 1.25x")

        before = RsDeltaTable(wh_rl.path(ref))
        files_before, version_before = set(before.file_uris()), before.version()
        with WindowFetcher(one_day, "rerun", RunStaging(root / "stage_rerun", "m", "rerun"), columns,
                           limiter_for(api.base_url)) as fetch:
            again = fetch(0, window)
        rerun_s, _ = timed(writer.merge, [again.stage], columns, batch_version=2)
        after = RsDeltaTable(wh_rl.path(ref))
        new_files = set(after.file_uris()) - files_before
        info("unchanged rerun", f"{rerun_s:.2f}s, table version {version_before} -> {after.version()}")
        figure("unchanged_rerun_files", len(new_files), "0", unit="files")
    spark.stop()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
