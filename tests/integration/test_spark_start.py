"""``restlake run`` as a process: Spark starts in the background once a load has something
to write, while its windows are fetched; a run whose windows find nothing starts no JVM;
and a Spark that cannot start drains the run instead of failing its loads.

No test times anything: the order is observed through a ``java`` that waits for a staged
window before it starts the JVM, and a ``java`` that records its start and fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from framework.demoapi import DemoApi
from tests.integration.helpers import ROOT, expected_rows, java_env, no_jvm_env, requested, source

pytestmark = pytest.mark.spark

SINCE, UNTIL = "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=11, records_per_resource=80, end=UNTIL) as demo:
        yield demo


def planned_warehouse(spark, initialized_warehouse, tmp_path: Path, api, config_id: str,
                      **extra):
    """A copy of the initialized warehouse with one PENDING row for ``config_id`` (``extra``:
    further fields of its config)."""
    from control.store import ControlStore
    from framework.lake.tables import Warehouse

    root = tmp_path / "wh"
    shutil.copytree(initialized_warehouse, root)
    warehouse = Warehouse(root)
    store = ControlStore(spark, warehouse)
    cfg = source(api.base_url, "cursor", config_id, start=SINCE, end=UNTIL, **extra)
    store.generate([cfg])
    return warehouse, store, cfg


def run_process(env: dict[str, str], warehouse, config_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "framework.cli", "--warehouse", str(warehouse.root),
                           "run", "--config-id", config_id], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


def java_after_staging(tmp_path: Path, warehouse, then: str) -> tuple[dict[str, str], Path]:
    """An environment whose ``java`` waits until a window of the run is staged, records
    that, then runs ``then`` (``exec <java> "$@"``, or ``exit 1``). When the run waits for
    Spark before fetching, nothing is ever staged: it gives up after its deadline (a bound
    against a hung test, not a measurement) and records ``nothing-staged``."""
    record = tmp_path / "java-calls"
    env = java_env(tmp_path,
                   "#!/bin/sh\n"
                   "i=0\n"
                   "while [ $i -lt 1800 ]; do\n"
                   f"  if ls {warehouse.root}/_staging/*/*/w*/_DONE >/dev/null 2>&1; then\n"
                   f"    echo staged >> {record}; {then}\n"
                   "  fi\n"
                   "  sleep 0.1; i=$((i+1))\n"
                   "done\n"
                   f"echo nothing-staged >> {record}\n"
                   f"{then}\n", RESTLAKE_SPARK_MASTER="local[1]")
    return env, record


def target_rows(spark, warehouse, cfg) -> list[tuple]:
    from framework.lake.tables import TableRef

    ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
    rows = warehouse.read(spark, ref).select("id", "title", "updated_at").collect()
    return sorted((r["id"], r["title"], r["updated_at"]) for r in rows)


def test_the_windows_are_fetched_and_staged_while_spark_starts(spark, initialized_warehouse,
                                                               api, tmp_path):
    warehouse, store, cfg = planned_warehouse(spark, initialized_warehouse, tmp_path, api, "overlap")
    real_java = shutil.which("java")
    assert real_java, "the tests need Java"
    env, record = java_after_staging(tmp_path, warehouse, f'exec {real_java} "$@"')
    done = run_process(env, warehouse, "overlap")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    calls = record.read_text().split()
    assert calls and set(calls) == {"staged"}, calls  # the JVM started after a window was staged
    assert store.get("overlap")["LoadStatus"] == "SUCCESS"
    assert target_rows(spark, warehouse, cfg) == expected_rows(api, SINCE, UNTIL)


def test_a_spark_that_fails_to_start_under_a_fetched_load_drains_it_and_loses_nothing(
        spark, initialized_warehouse, api, tmp_path):
    from tests.integration.helpers import run_loads

    warehouse, store, cfg = planned_warehouse(spark, initialized_warehouse, tmp_path, api, "nojvm")
    before = store.get("nojvm")
    env, record = java_after_staging(tmp_path, warehouse, "exit 1")
    done = run_process(env, warehouse, "nojvm")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert record.read_text().split() == ["staged"]  # the load had fetched its window
    assert "Spark did not start" in done.stderr
    row = store.get("nojvm")
    # back to PENDING with its range and LoadId: the next run takes it up, no retry needed
    assert row["LoadStatus"] == "PENDING"
    assert (row["LoadStartTime"], row["LoadEndTime"], row["LoadId"]) == (
        before["LoadStartTime"], before["LoadEndTime"], before["LoadId"])
    [audit] = [a for a in store.audit_rows() if a["ConfigId"] == "nojvm"]
    assert audit["LoadStatus"] == "INTERRUPTED" and "Spark did not start" in audit["ErrorMessage"]
    assert not (warehouse.root / "raw").exists() or not any((warehouse.root / "raw").rglob("*.parquet"))
    # once Spark can start, the same row loads exactly the source
    [outcome] = run_loads(spark, warehouse, store, [cfg], generate=False)
    assert outcome.status == "SUCCESS", outcome.error
    assert target_rows(spark, warehouse, cfg) == expected_rows(api, SINCE, UNTIL)


def test_a_spark_that_fails_before_any_load_started_releases_the_rows_unloaded(
        spark, initialized_warehouse, api, tmp_path):
    warehouse, store, _ = planned_warehouse(spark, initialized_warehouse, tmp_path, api, "early")
    env, marker = no_jvm_env(tmp_path)  # its java fails at once
    api.clear_log()
    done = run_process(env, warehouse, "early")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert marker.exists() and "Spark did not start" in done.stderr
    row = store.get("early")
    assert row["LoadStatus"] == "PENDING"
    # a load that had not begun when the start failed fetched nothing; one that had is
    # drained as above: either way the row is PENDING and the target untouched
    started = any(a["ConfigId"] == "early" for a in store.audit_rows())
    assert started == requested(api, SINCE)


def test_a_run_whose_incremental_windows_find_nothing_starts_no_jvm(spark, initialized_warehouse,
                                                                   api, tmp_path):
    # Spark starts once a load has something to write: a quiet source's run (a short
    # cadence's steady state) claims, fetches, logs and finishes with delta-rs alone.
    import datetime as dt

    from deltalake import DeltaTable as RsDeltaTable

    from tests.integration.helpers import UTC, run_loads, target_ref

    warehouse, store, cfg = planned_warehouse(spark, initialized_warehouse, tmp_path, api, "quiet",
                                              delta_column=True,
                                              quality={"max_row_drop_pct": {"value": 50}})
    [first] = run_loads(spark, warehouse, store, [cfg], generate=False)
    assert first.status == "SUCCESS" and first.source_rows > 0, first.error
    path = warehouse.path(target_ref(cfg))
    version = RsDeltaTable(path).version()
    store.generate([cfg], now=dt.datetime(2024, 1, 5, tzinfo=UTC))  # the API ends at UNTIL
    env, marker = no_jvm_env(tmp_path)
    api.clear_log()

    done = run_process(env, warehouse, "quiet")

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not marker.exists(), marker.read_text()
    assert requested(api, "2024-01-03T00:00:00Z")  # it did fetch its windows
    [audit] = store.audit_rows("quiet", 1)
    assert (audit["LoadType"], audit["LoadStatus"], audit["SourceRowCount"]) == (
        "INCREMENTAL", "SUCCESS", 0)
    assert store.get("quiet")["LoadStatus"] == "SUCCESS"
    assert RsDeltaTable(path).version() == version


def test_a_session_asked_for_from_another_thread_is_this_processs_unchanged(spark):
    # SparkStarting starts the session in a thread of its own: where the process already
    # has one (a notebook, the service), it must get that one with its settings untouched
    # (building again from there re-applied the local defaults over them).
    import threading

    from framework.lake.spark import SparkStarting, get_spark

    key = "spark.sql.shuffle.partitions"
    before = spark.conf.get(key)
    spark.conf.set(key, "3")
    try:
        got: list = []
        thread = threading.Thread(target=lambda: got.append(SparkStarting(get_spark).begin().session()))
        thread.start()
        thread.join(timeout=120)
        assert got == [spark] and got[0] is spark
        assert spark.conf.get(key) == "3"
    finally:
        spark.conf.set(key, before)


def test_a_load_learns_an_existing_targets_columns_before_spark_has_started(spark, tmp_path):
    # run fetches while Spark starts; a load reads its target's columns before the fetch,
    # so on a local warehouse that read must not need Spark (it waited for the JVM).
    import datetime as dt
    from decimal import Decimal

    from framework.lake.spark import SparkStarting
    from framework.lake.tables import TableRef, Warehouse
    from framework.load.writers import TargetWriter, column_type
    from framework.schema import data_columns

    warehouse = Warehouse(tmp_path / "wh")
    cfg = source("http://127.0.0.1:9", "cursor", "typed", start=SINCE, end=UNTIL)
    ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
    df = spark.createDataFrame(
        [(True, 1, 2, 3, 1.5, 2.5, Decimal("1.25"), dt.date(2024, 1, 1),
          dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2024, 1, 1), "s",
          ["a"], (1,), {"k": "v"}, "h")],
        "flag boolean, small short, mid int, big long, f float, d double, amount decimal(10,2), "
        "day date, at timestamp, local timestamp_ntz, name string, tags array<string>, "
        "obj struct<a:int>, attrs map<string,string>, payload_hash string")
    df.write.format("delta").save(warehouse.path(ref))

    def no_spark():
        raise AssertionError("the columns were read through Spark")

    writer = TargetWriter(SparkStarting(no_spark), warehouse, cfg, ref, "run-1", "typed")
    expected = data_columns((f.name, column_type(f.dataType)) for f in df.schema.fields)
    assert writer.current_columns() == expected
    assert list(expected) == ["flag", "small", "mid", "big", "f", "d", "amount", "day", "at",
                              "local", "name", "tags", "obj", "attrs"]  # payload_hash is the contract's


def test_a_load_into_an_existing_target_fetches_before_spark_is_up(spark, initialized_warehouse,
                                                                  api, tmp_path):
    # In process: the session "starts" only when the test opens the gate, after it saw the
    # load's requests reach the API. The target exists (a first load made it), so the load
    # reads its columns before fetching: with Spark, it waited for the start instead.
    import threading

    from framework.lake.spark import SparkStarting
    from framework.load import runtime
    from tests.integration.helpers import run_loads, wait_for

    warehouse, store, first = planned_warehouse(spark, initialized_warehouse, tmp_path, api, "first")
    [made] = run_loads(spark, warehouse, store, [first], generate=False)
    assert made.status == "SUCCESS", made.error
    second = source(api.base_url, "cursor", "second", start=SINCE, end=UNTIL,
                    table=first.target.table, source_system="demo2")
    store.generate([second])
    gate = threading.Event()
    starting = SparkStarting(lambda: (gate.wait(timeout=300), spark)[1]).begin()
    ctx = runtime.RunContext(starting, warehouse, store, warehouse.root / "_staging")
    api.clear_log()
    outcomes: list = []
    worker = threading.Thread(target=lambda: outcomes.extend(runtime.run(ctx, ["second"])))
    worker.start()
    try:
        wait_for(lambda: requested(api, SINCE), "the second load's first request", timeout_s=120)
        assert not starting.ready
    finally:
        gate.set()
        worker.join(timeout=300)
    [outcome] = outcomes
    assert outcome.status == "SUCCESS", outcome.error


READ_AND_EXIT = """
import sys
from framework.lake.rows import read_rows
from framework.lake.tables import TableRef, Warehouse
rows = read_rows(None, Warehouse(sys.argv[1]), TableRef("main", "metadata", "api_control_table"),
                 equal={"ConfigId": ["planned"]})
print(len(rows))
"""


def test_processes_that_read_a_table_with_delta_rs_exit_0(spark, initialized_warehouse, api,
                                                          tmp_path):
    # delta-rs's default filesystem for Arrow datasets is backed by Python: Arrow's I/O
    # threads finished their read-ahead by taking the GIL, and a process that exited
    # meanwhile aborted in the interpreter's shutdown ("terminate called without an active
    # exception", exit code 134), its work done. `restlake run` read the control table
    # so at its claim and aborted in one run of ten to two of three (a scheduler saw a
    # failed job). A process that reads the control table (a few sources) and exits at
    # once, twelve times: all exit 0; and two `run`s that claim nothing (an unknown
    # ConfigId): each exits 1 saying so, never aborted.
    from tests.integration.helpers import STYLE_SOURCES

    warehouse, store, _ = planned_warehouse(spark, initialized_warehouse, tmp_path, api,
                                            "planned")
    store.generate([source(api.base_url, style, f"other_{style}") for style in STYLE_SOURCES])
    env, marker = no_jvm_env(tmp_path)

    reads = [subprocess.run([sys.executable, "-c", READ_AND_EXIT, str(warehouse.root)],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
             for _ in range(12)]
    runs = [run_process(env, warehouse, "no-such-source") for _ in range(2)]

    assert [(done.returncode, done.stderr[-300:]) for done in reads
            if done.returncode != 0] == []
    assert [done.stdout.strip() for done in reads] == ["1"] * 12
    assert [(done.returncode, done.stderr.strip()) for done in runs] == [
        (1, "error no control row with ConfigId no-such-source; generate it from its config "
            "file first")] * 2
    assert not marker.exists()


def test_init_in_a_project_folder_leaves_nothing_in_it_nor_on_its_screen(tmp_path):
    # A local session's catalog made an empty `spark-warehouse` folder in the folder the
    # user ran restlake in (every `init`, and so `demo`); restlake's local tables are
    # paths in the warehouse folder, and that catalog holds nothing of theirs.
    from control.store import CONTROL_TABLE, METADATA_SCHEMA
    from framework.lake.tables import TableRef, Warehouse

    folder = tmp_path / "project"
    folder.mkdir()
    wh = tmp_path / "wh"
    env = dict(os.environ, PYTHONPATH=str(ROOT), RESTLAKE_SPARK_MASTER="local[1]")
    done = subprocess.run([sys.executable, "-m", "framework.cli", "--warehouse", str(wh), "init"],
                          capture_output=True, text=True, env=env, cwd=folder, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    control = Path(Warehouse(wh).path(TableRef("main", METADATA_SCHEMA, CONTROL_TABLE)))
    assert (control / "_delta_log").is_dir()
    assert sorted(p.name for p in folder.iterdir()) == []
    # nor the JVM's start notices on the user's screen (Spark's log4j profile, its default
    # level, Hadoop's native library): only the Java launcher's own line is left
    notices = [line for line in done.stderr.splitlines()
               if line.strip() and "Using incubator modules" not in line]
    assert notices == [], done.stderr[-2000:]
