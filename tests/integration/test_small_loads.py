"""Small loads: where the time goes, and no Spark job or commit a small window does not need."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from framework.demoapi import DemoApi
from framework.load.audit import PHASE_COLUMNS
from tests.integration.helpers import UTC, run_loads, source, target_ref

pytestmark = pytest.mark.spark

END = dt.datetime(2024, 1, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=11, records_per_resource=60, end=END, max_page_size=50) as server:
        yield server


def test_the_audit_row_says_where_the_load_time_went(spark, warehouse, store, api):
    cfg = source(api.base_url, "cursor", "phases", end="2024-01-03T00:00:00Z")
    [out] = run_loads(spark, warehouse, store, [cfg])
    assert out.status == "SUCCESS", out.error
    audit = out.audit
    for column in PHASE_COLUMNS.values():
        assert audit[column] is not None and audit[column] >= 0, column
    # the load fetched and committed something: both phases were measured
    assert audit["FetchSeconds"] > 0 and audit["WriteSeconds"] > 0 and audit["ClaimSeconds"] > 0
    # fetch, write and bookkeeping split the load's duration (rounding aside)
    parts = audit["FetchSeconds"] + audit["WriteSeconds"] + audit["BookkeepingSeconds"]
    assert parts == pytest.approx(audit["RunDuration"], abs=0.01)
    [stored] = store.audit_rows("phases", limit=1)
    assert {c: stored[c] for c in PHASE_COLUMNS.values()} == \
        {c: audit[c] for c in PHASE_COLUMNS.values()}


def test_an_audit_table_from_before_the_phase_columns_gains_them(spark, warehouse, api):
    from pyspark.sql.types import StructType

    from control.schemas import AUDIT_SCHEMA
    from control.store import ControlStore

    store = ControlStore(spark, warehouse)
    older = StructType([f for f in AUDIT_SCHEMA.fields if f.name not in PHASE_COLUMNS.values()])
    warehouse.create_if_not_exists(spark, store.audit_ref, older, {"delta.appendOnly": "true"})
    store.append_audit({"ConfigId": "old", "LoadType": "FULL_LOAD", "SourceRowCount": 1})
    store.init()  # the other tables; the audit table exists and keeps its rows
    cfg = source(api.base_url, "cursor", "evolved", end="2024-01-02T00:00:00Z")
    [out] = run_loads(spark, warehouse, store, [cfg])
    assert out.status == "SUCCESS", out.error
    rows = {r["ConfigId"]: r for r in store.audit_rows(limit=5)}
    assert rows["old"]["FetchSeconds"] is None
    assert rows["evolved"]["FetchSeconds"] == out.audit["FetchSeconds"] is not None


def spark_jobs(spark) -> int:
    """Spark jobs this session has started so far (job ids are sequential)."""
    tracker = spark.sparkContext.statusTracker()
    ids = list(tracker.getJobIdsForGroup(None)) + list(tracker.getActiveJobsIds())
    return max(ids) + 1 if ids else 0


def test_row_counts_after_a_commit_start_no_spark_job(spark, warehouse, store, api):
    from framework.load.writers import TargetWriter

    cfg = source(api.base_url, "cursor", "counted", end="2024-01-03T00:00:00Z")
    [out] = run_loads(spark, warehouse, store, [cfg])
    assert out.status == "SUCCESS", out.error
    writer = TargetWriter(spark, warehouse, cfg, target_ref(cfg), "r", cfg.config_id)
    before = spark_jobs(spark)
    total = writer.total_rows()
    written = writer._count_version_rows(0)  # the commit that created the table
    assert spark_jobs(spark) == before
    rows = warehouse.read(spark, target_ref(cfg)).count()
    assert total == rows == out.audit["TargetTotalRowCount"] == written > 0


@pytest.mark.parametrize("kind", ["keyed", "keyless", "checked", "baselined"])
def test_an_incremental_load_that_finds_no_new_record_writes_nothing_and_starts_no_spark_job(
        spark, warehouse, store, api, kind):
    from deltalake import DeltaTable as RsDeltaTable
    from pyspark.sql import functions as F

    keyed = kind != "keyless"
    cid = f"quiet_{kind}"
    extra = ({"delta_column": True} if keyed else {"primary_key": []})
    if kind == "checked":  # a null check counts nulls of the rows about to be committed: none
        extra["quality"] = {"not_null": ["title"], "accepted_values": {"state": ["open", "closed"]}}
    if kind == "baselined":  # these judge an empty batch too, against earlier loads (audit)
        extra["quality"] = {"max_row_drop_pct": {"value": 50},
                            "max_spike_pct": {"value": 50, "baseline": "loads", "loads": 3}}
    cfg = source(api.base_url, "cursor", cid, end="2024-01-05T00:00:00Z", **extra)
    [first] = run_loads(spark, warehouse, store, [cfg])
    assert first.status == "SUCCESS", first.error
    if not keyed:  # an append-only source is switched to INCREMENTAL in the control table
        warehouse.delta(spark, store.control_ref).update(
            condition=F.col("ConfigId") == F.lit(cid), set={"LoadType": F.lit("INCREMENTAL")})
    path = warehouse.path(target_ref(cfg))
    before = RsDeltaTable(path)
    version, rows = before.version(), before.to_pyarrow_table().sort_by("payload_hash")
    # the next range starts where the API's records end (2024-01-05): its windows are empty
    store.generate([cfg], now=dt.datetime(2024, 1, 8, tzinfo=UTC))
    jobs = spark_jobs(spark)
    [quiet] = run_loads(spark, warehouse, store, [cfg], generate=False)
    assert quiet.status == "SUCCESS", quiet.error
    assert quiet.audit["LoadType"] == "INCREMENTAL" and quiet.audit["WindowsLoaded"] == 3
    assert quiet.audit["SourceRowCount"] == quiet.audit["TargetRowCount"] == 0
    assert spark_jobs(spark) == jobs  # no MERGE (or append) of nothing
    after = RsDeltaTable(path)
    assert after.version() == version
    assert after.to_pyarrow_table().sort_by("payload_hash").equals(rows)
    logged = [r for r in RsDeltaTable(warehouse.path(store.window_ref)).to_pyarrow_table().to_pylist()
              if r["ConfigId"] == cid and r["WindowStart"] >= dt.datetime(2024, 1, 5, tzinfo=UTC)]
    assert len(logged) == 3 and {r["TargetVersion"] for r in logged} == {version}
    if kind == "baselined":  # a second quiet load: the first is its baseline
        store.generate([cfg], now=dt.datetime(2024, 1, 11, tzinfo=UTC))
        [again] = run_loads(spark, warehouse, store, [cfg], generate=False)
        assert again.status == "SUCCESS", again.error
        assert spark_jobs(spark) == jobs
        results = {r["CheckName"]: r for r in store.quality_results([cid])
                   if r["RunId"] == again.audit["RunId"]}
        assert json.loads(results["max_row_drop_pct"]["Detail"]) == {"previous_rows": 0, "rows": 0}
        # the loads of its kind: the first quiet one (the first load was a FULL_LOAD)
        assert first.audit["LoadType"] == "FULL_LOAD"
        assert json.loads(results["max_spike_pct"]["Detail"]) == {
            "baseline": "loads", "median": 0, "loads": 1}


def test_a_first_attempt_reads_no_window_log_and_a_retry_does(spark, warehouse, store, api,
                                                              monkeypatch):
    from control.store import ControlStore

    reads = []
    real = ControlStore.committed_windows

    def counted(self, config_id, load_id):
        reads.append(config_id)
        return real(self, config_id, load_id)

    monkeypatch.setattr(ControlStore, "committed_windows", counted)
    cfg = source(api.base_url, "cursor", "attempts", end="2024-01-03T00:00:00Z",
                 delta_column=True)
    [first] = run_loads(spark, warehouse, store, [cfg])
    assert first.status == "SUCCESS", first.error
    assert reads == []  # attempt 1 of a new LoadId: nothing of it can be logged yet
    # a stopped load's row goes back to PENDING with the same LoadId: the next claim
    # (attempt 2) must read which windows are committed
    store.generate([cfg], now=dt.datetime(2024, 1, 4, tzinfo=UTC))
    row = store.get("attempts")
    claim = store.claim("attempts", "someone", "run-x")
    assert store.release(claim)
    [second] = run_loads(spark, warehouse, store, [cfg], generate=False)
    assert second.status == "SUCCESS", second.error
    assert second.audit["Attempt"] == 2 and reads == ["attempts"], (row, reads)
    # attempt 1 of the next range (an INCREMENTAL load) reads none either
    store.generate([cfg], now=dt.datetime(2024, 1, 5, tzinfo=UTC))
    [third] = run_loads(spark, warehouse, store, [cfg], generate=False)
    assert third.status == "SUCCESS", third.error
    assert (third.audit["LoadType"], third.audit["Attempt"]) == ("INCREMENTAL", 1)
    assert reads == ["attempts"]


def test_parallel_loads_do_not_conflict_on_the_control_table(spark, warehouse, store, api,
                                                             caplog):
    import logging

    from framework.load import runtime

    configs = [source(api.base_url, "cursor", f"par{i}", end="2024-01-02T00:00:00Z")
               for i in range(3)]
    store.generate(configs)
    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging")
    with caplog.at_level(logging.INFO, logger="framework.lake.commits"):
        outs = runtime.run(ctx, [c.config_id for c in configs], parallel=3)
    assert [o.status for o in outs] == ["SUCCESS"] * 3, [o.error for o in outs]
    conflicts = [r.getMessage() for r in caplog.records if "commit conflict" in r.getMessage()]
    assert conflicts == []


def _control_version(warehouse, store):
    return warehouse.version(None, store.control_ref)


def test_generate_of_many_configs_is_one_control_commit(spark, warehouse, store, api):
    configs = [source(api.base_url, "cursor", f"gen{i}") for i in range(5)]
    before = _control_version(warehouse, store)
    results = store.generate(configs)
    assert [r.action for r in results] == ["created"] * 5
    assert _control_version(warehouse, store) == before + 1


def test_run_claims_its_rows_in_one_commit_and_a_second_runner_gets_none(spark, warehouse,
                                                                         store, api):
    from framework.load import runtime

    configs = [source(api.base_url, "cursor", f"batch{i}", end="2024-01-02T00:00:00Z")
               for i in range(3)]
    store.generate(configs)
    ids = [c.config_id for c in configs]
    before = _control_version(warehouse, store)
    claims, why = store.claim_many(ids, "runner-a", "run-a")
    assert [c.config_id for c in claims] == ids and why == {}
    assert _control_version(warehouse, store) == before + 1
    assert all(c.attempt == 1 and c.state.lease_expires_at is not None for c in claims)
    # another runner reads the rows RUNNING: it claims nothing and says why
    other, why = store.claim_many(ids + ["nope"], "runner-b", "run-b")
    assert other == [] and why["nope"] == "no such control row"
    assert all("held by runner-a" in why[cid] for cid in ids), why
    for claim in claims:
        assert store.release(claim)
    # a whole run: one claim commit, then the finishes (queued finishes share a MERGE)
    before = _control_version(warehouse, store)
    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging")
    outs = runtime.run(ctx, None, parallel=2)
    assert [o.status for o in outs] == ["SUCCESS"] * 3, [o.error for o in outs]
    assert before + 1 + 1 <= _control_version(warehouse, store) <= before + 1 + 3


def test_run_all_whose_rows_another_runner_took_first_says_so(spark, warehouse, store, api,
                                                               monkeypatch, capsys):
    # Two `run --all` at once: the one whose claim came second had seen the rows claimable
    # a moment before, then its run found none: it printed an empty table and exited 0,
    # saying nothing of the runner that holds them.
    from control.store import ControlStore
    from framework.cli.app import main

    store.generate([source(api.base_url, "cursor", f"race{i}", end="2024-01-02T00:00:00Z")
                    for i in range(2)])
    looks = ControlStore.claimable_ids

    def another_runner_claims_after_each_look(self, now=None):
        ids = looks(self, now)
        if ids:
            self.claim_many(ids, "runner-b", "run-b")
        return ids

    monkeypatch.setattr(ControlStore, "claimable_ids", another_runner_claims_after_each_look)
    assert main(["--warehouse", str(warehouse.root), "run", "--all"]) == 0
    out = capsys.readouterr().out
    assert out.count("SKIPPED") == 2 and "runner-b" in out, out
    # and a run that finds every row taken when it looks says who holds them
    assert main(["--warehouse", str(warehouse.root), "run", "--all"]) == 0
    out = capsys.readouterr().out
    assert "nothing to run: no PENDING rows; 2 RUNNING under a lease: race0 (run run-b" in out, out


def test_a_stop_before_a_claimed_load_started_releases_its_row(spark, warehouse, store, api):
    from framework.load import runtime

    configs = [source(api.base_url, "cursor", f"queued{i}", end="2024-01-02T00:00:00Z")
               for i in range(2)]
    store.generate(configs)

    def on_event(event, data):
        if event == "load_started":
            ctx.request_stop("test stop")

    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging",
                             on_event=on_event)
    first, second = runtime.run(ctx, [c.config_id for c in configs], parallel=1)
    assert first.status == "INTERRUPTED", first.error
    assert second.status == "SKIPPED" and "released" in second.error
    row = store.get("queued1")
    assert row["LoadStatus"] == "PENDING" and row["ClaimedBy"] is None


def test_run_frees_a_load_worker_before_its_bookkeeping_lands_and_batches_the_finishes(
        spark, warehouse, store, api):
    """Three loads on one worker: while the first load's control finish is held back, the
    next two load, queue their finishes (their leases still kept) and share one MERGE; the
    second row is taken over meanwhile, so its queued finish is fenced (LEASE_LOST)."""
    import threading
    import time

    from framework.load import runtime

    configs = [source(api.base_url, "cursor", f"queue{i}", end="2024-01-02T00:00:00Z")
               for i in range(3)]
    store.generate(configs)
    ids = [c.config_id for c in configs]
    group = store._finishes
    real = group._commit
    seen: dict[str, object] = {"batches": [], "leases": None, "queued": False}

    def held_back(items):
        if not seen["batches"]:  # the first finish waits until the two others are queued
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                with group._cond:
                    if len(group._queue) == 2:
                        seen["queued"] = True
                        break
                time.sleep(0.05)
            seen["leases"] = sum(t.name == "restlake-lease" for t in threading.enumerate())
            if seen["queued"]:  # another runner takes the second row over meanwhile
                later = dt.datetime.now(UTC) + dt.timedelta(days=1)
                assert store.claim(ids[1], "runner-b", "run-b", now=later) is not None
        seen["batches"].append(sorted(claim.config_id for claim, _ in items))
        return real(items)

    group._commit = held_back
    before = _control_version(warehouse, store)
    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging")
    outs = runtime.run(ctx, ids, parallel=1)
    assert seen["queued"], "the next loads did not run while the first finish was held back"
    # the queued loads' leases are still kept (a heartbeat ends when its finish's MERGE starts)
    assert seen["leases"] == 2
    assert seen["batches"] == [ids[:1], ids[1:]]
    assert [o.status for o in outs] == ["SUCCESS", "LEASE_LOST", "SUCCESS"], [o.error for o in outs]
    assert "runner-b" in outs[1].error
    # claim, first finish, takeover, one MERGE for the two queued finishes
    assert _control_version(warehouse, store) == before + 4
    row = store.get(ids[1])
    assert row["LoadStatus"] == "RUNNING" and row["ClaimedBy"] == "runner-b"
    # run returned once every audit row landed: exactly one per load, with its status
    audits = {r["ConfigId"]: r["LoadStatus"] for r in store.audit_rows(limit=50)
              if r["ConfigId"] in ids}
    assert audits == dict(zip(ids, ["SUCCESS", "LEASE_LOST", "SUCCESS"]))
    assert sorted(r["ConfigId"] for r in store.audit_rows(limit=50) if r["ConfigId"] in ids) == ids
    logged = {r["ConfigId"] for r in warehouse.read(spark, store.window_ref).collect()}
    assert set(ids) <= logged  # the held window-log rows landed too


class _Killed(BaseException):
    """The process dying: nothing after it runs (not an Exception: no handler records it)."""


def test_a_crash_while_loads_wait_for_their_bookkeeping_loses_no_data(spark, warehouse, store,
                                                                      api):
    """Two incremental loads of two daily windows each: the second commit's window-log rows
    are held for the bookkeeping, which dies before anything of it lands. The rows stay
    RUNNING; taken over, they load again: the first window (logged before the second
    commit) is skipped, the second is fetched and merged again, and the target ends equal
    to the source with no key twice."""
    import threading

    from framework.load import runtime
    from tests.integration.helpers import actual_rows, expected_rows

    configs = [source(api.base_url, "cursor", f"crash{i}", end="2024-01-02T00:00:00Z",
                      delta_column=True, limits={"windows_per_commit": 1}) for i in range(2)]
    ids = [c.config_id for c in configs]
    first = run_loads(spark, warehouse, store, configs)
    assert [o.status for o in first] == ["SUCCESS"] * 2, [o.error for o in first]
    store.generate(configs, now=dt.datetime(2024, 1, 4, tzinfo=UTC))  # +2 daily windows

    held = store._window_logs._commit

    def die_in_the_bookkeeping(items):
        if threading.current_thread().name.startswith("restlake-bookkeeping"):
            raise _Killed()
        return held(items)  # a load's own appends (before its next commit) land

    store._window_logs._commit = die_in_the_bookkeeping
    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging")
    with pytest.raises(_Killed):
        runtime.run(ctx, ids, parallel=1)
    store._window_logs._commit = held
    rows = {cid: store.get(cid) for cid in ids}
    assert all(r["LoadStatus"] == "RUNNING" for r in rows.values()), rows
    # the leases would expire; another runner takes the rows over and hands them back
    later = dt.datetime.now(UTC) + dt.timedelta(days=1)
    for cid in ids:
        assert store.release(store.claim(cid, "runner-b", "run-b", now=later))
    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging")
    again = runtime.run(ctx, ids, parallel=1)
    assert [o.status for o in again] == ["SUCCESS"] * 2, [o.error for o in again]
    assert [o.audit["WindowsSkipped"] for o in again] == [1, 1]  # the first window was logged
    for cfg in configs:
        df = warehouse.read(spark, target_ref(cfg))
        assert df.select("id").distinct().count() == df.count()
        assert actual_rows(df) == expected_rows(api, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z")
