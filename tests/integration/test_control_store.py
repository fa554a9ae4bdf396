"""Control plane on real Delta tables: init, generate, claims, retry, append-only audit."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from deltalake import DeltaTable as RsDeltaTable

from control.schemas import AUDIT_COLUMNS, CONTROL_COLUMNS, QUALITY_SCHEMA
from control.states import LoadStatus, LoadType, fail
from tests.integration.helpers import UTC, source

SEED_CONTROL = ["ConfigId", "APIName", "APIEndpoint", "LoadType", "LoadStartTime", "LoadEndTime",
                "RequestPayload", "AuthMethod", "LastLoadTime", "TargetCatalog", "TargetSchema",
                "TargetTable", "PrimaryColumn", "DeltaColumn", "TriggerScheduleTime",
                "TriggerFrequency", "LoadStatus", "LastJobRunId", "LastUpdatedTime"]
SEED_AUDIT = ["ConfigId", "APIName", "APIEndpoint", "LoadType", "TargetCatalog", "TargetSchema",
              "TargetTable", "SourceRowCount", "TargetRowCount", "TargetTotalRowCount", "RunId",
              "LoadStatus", "ErrorMessage", "LoadStartTime", "LoadEndTime", "RunDuration",
              "LoggedAt", "LoadedBy"]

pytestmark = pytest.mark.spark


@pytest.fixture(params=["delta-rs", "spark"])
def small_writes(request, monkeypatch):
    """The tests of the control plane's guarantees run on both ways it writes: delta-rs
    (a local warehouse's default) and Spark (a metastore warehouse's way)."""
    from framework.lake.rows import ENGINE_ENV

    if request.param == "spark":
        monkeypatch.setenv(ENGINE_ENV, "spark")
    else:
        monkeypatch.delenv(ENGINE_ENV, raising=False)
    return request.param


def test_init_creates_tables_an_independent_reader_opens(spark, warehouse):
    from control.store import ControlStore

    store = ControlStore(spark, warehouse)
    created = store.init()
    assert created == ["main.metadata.api_control_table", "main.metadata.api_audit_table",
                       "main.metadata.api_window_log", "main.metadata.api_quality_results"]
    assert store.init() == []  # idempotent
    control = RsDeltaTable(warehouse.path(store.control_ref))
    names = [f.name for f in control.schema().fields]
    assert names[:len(SEED_CONTROL)] == SEED_CONTROL
    assert names == CONTROL_COLUMNS
    audit = RsDeltaTable(warehouse.path(store.audit_ref))
    audit_names = [f.name for f in audit.schema().fields]
    assert audit_names[:len(SEED_AUDIT)] == SEED_AUDIT and audit_names == AUDIT_COLUMNS
    assert audit.metadata().configuration.get("delta.appendOnly") == "true"
    window_log = RsDeltaTable(warehouse.path(store.window_ref))
    assert "WindowStart" in [f.name for f in window_log.schema().fields]
    quality = RsDeltaTable(warehouse.path(store.quality_ref))
    assert [f.name for f in quality.schema().fields] == [f.name for f in QUALITY_SCHEMA.fields]
    assert quality.metadata().configuration.get("delta.appendOnly") == "true"


def test_audit_table_refuses_update_and_delete(spark, store, warehouse):
    from pyspark.sql import functions as F

    store.append_audit({"ConfigId": "x", "LoadStatus": "SUCCESS", "LoggedAt": dt.datetime.now(UTC)})
    audit = warehouse.delta(spark, store.audit_ref)
    with pytest.raises(Exception, match="(?i)append"):
        audit.delete(F.col("ConfigId") == F.lit("x"))
    with pytest.raises(Exception, match="(?i)append"):
        audit.update(condition=F.col("ConfigId") == F.lit("x"), set={"LoadStatus": F.lit("FAILED")})
    assert warehouse.read(spark, store.audit_ref).count() == 1


def test_generate_marks_pending_once_and_second_generate_does_not_duplicate(small_writes, spark, store,
                                                                           warehouse):
    cfg = source("http://127.0.0.1:9", "offset", "gen_once", delta_column=True)
    first = store.generate([cfg])
    assert [r.action for r in first] == ["created"]
    row = store.get("gen_once")
    assert row["LoadStatus"] == "PENDING" and row["LoadType"] == "FULL_LOAD"
    assert row["LoadStartTime"] == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert row["LoadEndTime"] == dt.datetime(2024, 1, 4, tzinfo=UTC)
    assert row["PrimaryColumn"] == "id" and row["DeltaColumn"] is True
    second = store.generate([cfg])
    assert [r.action for r in second] == ["unchanged"]
    rows = warehouse.read(spark, store.control_ref).where("ConfigId = 'gen_once'").collect()
    assert len(rows) == 1
    assert rows[0]["LoadId"] == row["LoadId"]


def test_generate_updates_config_columns_without_touching_state(spark, store):
    cfg = source("http://127.0.0.1:9", "offset", "gen_update")
    store.generate([cfg])
    before = store.get("gen_update")
    changed = source("http://127.0.0.1:9", "cursor", "gen_update", owner="Data team")
    store.generate([changed])
    after = store.get("gen_update")
    assert after["Owner"] == "Data team"
    assert '"style":"cursor"' in after["PaginationConfig"]
    assert (after["LoadStatus"], after["LoadId"]) == (before["LoadStatus"], before["LoadId"])


def test_two_concurrent_claims_exactly_one_wins(spark, store):
    cfg = source("http://127.0.0.1:9", "offset", "claim_race")
    store.generate([cfg])
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def claim(name: str) -> None:
        barrier.wait()
        results[name] = store.claim("claim_race", name, f"run-{name}", dt.timedelta(minutes=5))

    threads = [threading.Thread(target=claim, args=(n,)) for n in ("r1", "r2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, c in results.items() if c is not None]
    assert len(winners) == 1
    row = store.get("claim_race")
    assert row["LoadStatus"] == "RUNNING" and row["ClaimedBy"] == winners[0]
    assert row["Attempt"] == 1


def test_two_stores_racing_for_the_same_rows_give_each_row_to_exactly_one(small_writes, spark, store):
    # Two stores share no lock: their MERGEs meet only in Delta's commit protocol.
    from control.store import ControlStore

    ids = [f"race_{i}" for i in range(4)]
    store.generate([source("http://127.0.0.1:9", "offset", i) for i in ids])
    other = ControlStore(spark, store.warehouse)
    results: dict[str, list] = {}
    barrier = threading.Barrier(2)

    def claim(name: str, st) -> None:
        barrier.wait()
        results[name] = st.claim_many(ids, name, f"run-{name}", dt.timedelta(minutes=5))[0]

    threads = [threading.Thread(target=claim, args=(n, st)) for n, st in (("a", store), ("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = {c.config_id: name for name, claims in results.items() for c in claims}
    assert sorted(won) == ids  # every row claimed ...
    assert sum(len(c) for c in results.values()) == len(ids)  # ... by exactly one runner
    for row in store.rows(ids):
        assert (row["LoadStatus"], row["ClaimedBy"], row["Attempt"]) == (
            "RUNNING", won[row["ConfigId"]], 1)


def test_expired_lease_is_claimable_and_old_holder_cannot_finish(spark, store):
    cfg = source("http://127.0.0.1:9", "offset", "lease")
    store.generate([cfg])
    past = dt.datetime.now(UTC) - dt.timedelta(hours=2)
    first = store.claim("lease", "crashed", "run-a", dt.timedelta(minutes=1), now=past)
    assert first is not None
    assert store.claim("lease", "other", "run-b", dt.timedelta(minutes=1),
                       now=past + dt.timedelta(seconds=10)) is None  # lease still valid then
    second = store.claim("lease", "rescuer", "run-c", dt.timedelta(minutes=5))
    assert second is not None and second.state.attempt == 2
    assert store.finish(first, fail(first.state, "crashed", "late")) is False
    assert store.get("lease")["ClaimedBy"] == "rescuer"


def test_an_old_claim_cannot_renew_or_release_and_the_new_holder_keeps_the_row(small_writes, spark,
                                                                             store):
    from framework.errors import LeaseLostError

    store.generate([source("http://127.0.0.1:9", "offset", "fenced")])
    past = dt.datetime.now(UTC) - dt.timedelta(hours=2)
    old = store.claim("fenced", "paused", "run-a", dt.timedelta(minutes=1), now=past)
    new = store.claim("fenced", "rescuer", "run-b", dt.timedelta(minutes=5))
    assert old is not None and new is not None
    with pytest.raises(LeaseLostError, match="RUNNING by rescuer .*attempt 2.*attempt 1\\) ended"):
        store.renew_lease(old)
    assert store.release(old) is False
    row = store.get("fenced")
    assert (row["ClaimedBy"], row["LastJobRunId"], row["Attempt"]) == ("rescuer", "run-b", 2)
    assert row["LeaseExpiresAt"] == new.state.lease_expires_at  # untouched by the old claim
    renewed = store.renew_lease(new, now=dt.datetime.now(UTC).replace(microsecond=0)
                                + dt.timedelta(minutes=1))
    assert store.get("fenced")["LeaseExpiresAt"] == renewed.state.lease_expires_at \
        > new.state.lease_expires_at


def test_release_puts_the_row_back_to_pending_for_the_next_claim(small_writes, spark, store):
    store.generate([source("http://127.0.0.1:9", "offset", "drained")])
    before = store.get("drained")
    claim = store.claim("drained", "service-a", "run-a", dt.timedelta(minutes=5))
    assert store.release(claim) is True
    row = store.get("drained")
    assert (row["LoadStatus"], row["ClaimedBy"], row["LeaseExpiresAt"]) == ("PENDING", None, None)
    assert (row["LoadStartTime"], row["LoadEndTime"], row["LoadId"]) == (
        before["LoadStartTime"], before["LoadEndTime"], before["LoadId"])
    assert store.release(claim) is False  # no longer held: nothing written
    again = store.claim("drained", "service-b", "run-b")
    assert again is not None and again.attempt == 2 and again.state.load_id == before["LoadId"]


def test_the_lease_comes_from_limits_lease_s_unless_given(spark, store):
    store.generate([source("http://127.0.0.1:9", "offset", "short", limits={"lease_s": 90}),
                    source("http://127.0.0.1:9", "offset", "default")])
    at = dt.datetime(2030, 1, 1, tzinfo=UTC)
    short = store.claim("short", "r", "run-1", now=at)
    default = store.claim("default", "r", "run-1", now=at)
    assert (short.lease, short.state.lease_expires_at) == (dt.timedelta(seconds=90),
                                                           at + dt.timedelta(seconds=90))
    assert default.lease == dt.timedelta(seconds=3600)
    assert store.release(short) and store.release(default)
    explicit = store.claim("short", "r", "run-2", dt.timedelta(minutes=7), now=at)
    assert explicit.state.lease_expires_at == at + dt.timedelta(minutes=7)


def test_retry_sets_failed_back_to_pending_with_same_range(spark, store):
    from control.states import InvalidTransition

    cfg = source("http://127.0.0.1:9", "offset", "retry_me")
    store.generate([cfg])
    claim = store.claim("retry_me", "r", "run-1", dt.timedelta(minutes=5))
    store.finish(claim, fail(claim.state, "r", "boom"))
    failed = store.get("retry_me")
    assert failed["LoadStatus"] == "FAILED" and failed["ErrorMessage"] == "boom"
    # a failed FULL load is not re-planned by generate
    assert [r.action for r in store.generate([cfg])] == ["unchanged"]
    state = store.retry("retry_me")
    assert state.load_status == LoadStatus.PENDING and state.load_type == LoadType.FULL_LOAD
    row = store.get("retry_me")
    assert (row["LoadStartTime"], row["LoadEndTime"], row["LoadId"]) == (
        failed["LoadStartTime"], failed["LoadEndTime"], failed["LoadId"])
    with pytest.raises(InvalidTransition):
        store.retry("retry_me")


def test_init_adds_the_columns_a_control_table_with_the_seeds_columns_lacks(
        spark, warehouse, small_writes, capsys):
    # "the seed's column names are kept, so existing SQL keeps working": a control table
    # made with only the seed's columns made init fail on its views, and generate on Attempt
    import pyarrow as pa
    from deltalake import write_deltalake

    from control.schemas import CONTROL_SCHEMA
    from control.store import ControlStore
    from framework.cli.app import main
    from framework.lake.rows import arrow_type

    store = ControlStore(spark, warehouse)
    seed = pa.schema([pa.field(f.name, arrow_type(f.dataType)) for f in CONTROL_SCHEMA.fields
                      if f.name in SEED_CONTROL])
    write_deltalake(warehouse.path(store.control_ref), pa.Table.from_pylist([], schema=seed))
    capsys.readouterr()

    assert main(["--warehouse", str(warehouse.root), "init"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "added main.metadata.api_control_table columns: SourceSystem, HttpMethod" in out
    names = [f.name for f in RsDeltaTable(warehouse.path(store.control_ref)).schema().fields]
    assert names == [f.name for f in CONTROL_SCHEMA.fields]
    assert [r.action for r in store.generate([source("http://127.0.0.1:9", "offset", "seeded")])
            ] == ["created"]
    assert main(["--warehouse", str(warehouse.root), "init"]) == 0  # nothing more to add
    assert "added" not in capsys.readouterr().out
