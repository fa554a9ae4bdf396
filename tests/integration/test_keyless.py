"""Keyless incremental loads: idempotent appends whose identity is the load, not the table.

A config without ``primary_key`` appends its windows with Delta's ``txnAppId`` /
``txnVersion``: the app id is ``restlake:<ConfigId>:<LoadId>`` and the version a pure
function of the batch's window indices, so every new load lands, and a batch committed
again after a crash (before its window log row) is skipped by Delta.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable as RsDeltaTable

from framework.demoapi import DemoApi
from framework.load import runtime
from framework.load.staging import RunStaging
from framework.load.writers import TargetWriter
from framework.schema import RowShaper
from tests.integration.helpers import (actual_rows, end_lease_of_killed_run, expected_rows,
                                       read_target, run_loads, source, target_ref,
                                       wait_claimable)

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
D1, D3, D5, D7, D9 = (f"2024-01-0{d}T00:00:00Z" for d in (1, 3, 5, 7, 9))


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=31, records_per_resource=240, end=_at(D9), max_page_size=20) as server:
        yield server


def _keyless(api, config_id: str, **limits):
    return source(api.base_url, "cursor", config_id, primary_key=[], start=D1, end=D3,
                  limits={"concurrency": 2, **limits})


def _full_then_incremental(spark, warehouse, store, cfg) -> None:
    """The FULL load, then the row made INCREMENTAL by hand, as SQL users do for append-only
    sources (``delta_column`` needs a key; a keyless row is switched in the control table)."""
    from pyspark.sql import functions as F

    [full] = run_loads(spark, warehouse, store, [cfg])
    assert full.status == "SUCCESS", full.error
    warehouse.delta(spark, store.control_ref).update(
        condition=F.col("ConfigId") == F.lit(cfg.config_id), set={"LoadType": F.lit("INCREMENTAL")})


def test_consecutive_keyless_incremental_loads_all_land(spark, warehouse, store, api):
    cfg = _keyless(api, "kl_two")
    _full_then_incremental(spark, warehouse, store, cfg)  # FULL [D1, D3)
    for now in (_at(D5), _at(D7)):  # INCREMENTAL [D3, D5), then [D5, D7)
        [outcome] = run_loads(spark, warehouse, store, [cfg], now=now)
        assert outcome.status == "SUCCESS", outcome.error
    df = read_target(spark, warehouse, cfg)
    expected = expected_rows(api, D1, D7)
    assert actual_rows(df) == expected  # every record once: nothing skipped, nothing doubled
    rs = RsDeltaTable(str(warehouse.path(target_ref(cfg)))).to_pyarrow_table(columns=["id"])
    assert sorted(rs.column("id").to_pylist()) == sorted(r[0] for r in expected)


def _staged_batch(tmp_path: Path, cfg, n: int):
    staging = RunStaging(tmp_path / "stage", cfg.config_id, "run-1")
    stage = staging.window(0)
    shaper = RowShaper(cfg.system, (), (), None, cfg.schema_mode)
    start, end = _at(D1), _at(D3)
    for i in range(n):
        stage.write(shaper.shape({"id": i, "title": f"t{i}", "updated_at": D1}, run_id="run-1",
                                 window_start=start, window_end=end, collected_at=start, seq=i))
    stage.close()
    return stage


def test_keyless_batch_written_twice_lands_once_and_another_load_lands(spark, warehouse, api, tmp_path):
    cfg = _keyless(api, "kl_txn")
    ref = target_ref(cfg)
    stage = _staged_batch(tmp_path, cfg, 7)
    first = TargetWriter(spark, warehouse, cfg, ref, "run-1", cfg.config_id, load_id="L1")
    assert first.merge([stage], None, batch_version=5).rows_written == 7
    again = TargetWriter(spark, warehouse, cfg, ref, "run-2", cfg.config_id, load_id="L1")
    assert again.merge([stage], None, batch_version=5).rows_written == 0  # same load, same batch
    assert warehouse.read(spark, ref).count() == 7
    other = TargetWriter(spark, warehouse, cfg, ref, "run-3", cfg.config_id, load_id="L2")
    assert other.merge([stage], None, batch_version=5).rows_written == 7  # a new load lands
    assert warehouse.read(spark, ref).count() == 14


def _run_cli(warehouse: Path, config_id: str, crash_at: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RESTLAKE_SPARK_MASTER="local[1]", PYTHONPATH=str(ROOT),
               RESTLAKE_CRASH_AT=crash_at)
    cmd = [sys.executable, "-m", "framework.cli", "--warehouse", str(warehouse), "run",
           "--config-id", config_id, "--lease-minutes", "0.5", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.parametrize("distributed", [False, True], ids=["threads", "distributed"])
def test_keyless_sigkill_after_the_target_commit_then_rerun_adds_no_duplicate(
        spark, warehouse, store, api, distributed):
    cid = f"kl_crash_{'dist' if distributed else 'threads'}"
    cfg = _keyless(api, cid, windows_per_commit=2)
    _full_then_incremental(spark, warehouse, store, cfg)  # FULL [D1, D3)
    [outcome] = run_loads(spark, warehouse, store, [cfg], now=_at(D5))  # INCREMENTAL [D3, D5)
    assert outcome.status == "SUCCESS", outcome.error
    # INCREMENTAL [D5, D9): four daily windows, two per commit; killed after the first commit
    store.generate([cfg], now=_at(D9))
    extra = ("--distributed",) if distributed else ()
    killed = _run_cli(warehouse.root, cid, "after_target_commit:1", *extra)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert store.get(cid)["LoadStatus"] == "RUNNING"
    committed = read_target(spark, warehouse, cfg).count()
    assert committed > len(expected_rows(api, D1, D5))  # the first batch did land

    # the rerun (same LoadId, once the lease ran out) commits that batch again: Delta skips it
    end_lease_of_killed_run(store, cid)
    wait_claimable(store, cid)
    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging",
                             distributed=distributed)
    [rerun] = runtime.run(ctx, [cid])
    assert rerun.status == "SUCCESS", rerun.error
    df = read_target(spark, warehouse, cfg)
    assert actual_rows(df) == expected_rows(api, D1, D9)
