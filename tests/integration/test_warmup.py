"""A load whose first commit waits for more windows warms the JVM's Delta write with the
first staged window while the others are fetched; the warm-up never touches the target,
never fails the load and never delays its write (framework.load.warmup)."""

from __future__ import annotations

import threading

import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable as RsDeltaTable

from framework.config import parse_source
from framework.load import runtime, warmup
from framework.load.writers import TargetWriter
from tests.integration.helpers import read_target, run_loads, target_ref
from tests.unit._httpd import FakeApi, Received, Reply

pytestmark = pytest.mark.spark

FIRST_DAY = "2024-01-01T00:00:00Z"
WAIT_S = 120  # a bound against a hung test, not a timing


@pytest.fixture
def cold(monkeypatch):
    """This process as if no Delta write had run in it yet (a fresh ``restlake run``)."""
    monkeypatch.setattr(warmup, "_warm", threading.Event())
    monkeypatch.delenv("RESTLAKE_WARMUP", raising=False)


def _config(url: str, config_id: str, end: str = "2024-01-04T00:00:00Z") -> object:
    return parse_source({
        "config_id": config_id, "api_name": "Warm", "source_system": "warm", "endpoint": url,
        "params": {"since": "{window_start}"}, "data_path": "data", "primary_key": ["id"],
        "load_start": FIRST_DAY, "load_end": end, "window": "daily",
        "target": {"catalog": "raw", "schema": "warm", "table": config_id},
        "limits": {"timeout_s": WAIT_S + 30, "max_retries": 0, "concurrency": 3}})


def _records(since: str) -> list[dict]:
    day = int(since[8:10])
    return [{"id": day * 100 + n, "day": since[:10], "nested": {"n": n}} for n in range(5)]


def _api(later_windows_wait_for: threading.Event | None):
    """The first window answers at once; the later ones wait for the event (if any)."""
    seen: dict[str, bool] = {}

    class Waiting(Reply):
        def payload(self) -> bytes:  # called outside the fake API's lock: replies wait apart
            seen[self.since] = later_windows_wait_for.wait(WAIT_S)
            return super().payload()

    def reply(got: Received) -> Reply:
        since = got.query["since"][0]
        if since != FIRST_DAY and later_windows_wait_for is not None:
            waiting = Waiting(200, {"data": _records(since)})
            waiting.since = since
            return waiting
        return Reply(200, {"data": _records(since)})
    return reply, seen


def _assert_target(spark, warehouse, cfg, days: list[str]) -> None:
    expected = [r for d in days for r in _records(d)]
    got = read_target(spark, warehouse, cfg).select("id", "day", "nested")
    want = spark.createDataFrame([(r["id"], r["day"], f'{{"n":{r["nested"]["n"]}}}')
                                  for r in expected], got.schema)
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    table = RsDeltaTable(warehouse.path(target_ref(cfg)))
    assert sorted(table.to_pyarrow_table(columns=["id"]).column("id").to_pylist()) == \
        sorted(r["id"] for r in expected)


def _no_leftovers(warehouse) -> None:
    """No throwaway table is left, in the staging folder or anywhere in the warehouse."""
    assert not list(warehouse.root.rglob(warmup.FOLDER))


DAYS = ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"]


def _load_holding_later_windows(spark, warehouse, store, config_id: str,
                                until: threading.Event) -> None:
    """A full load of three windows whose later two are answered once ``until`` is set;
    it succeeds, both waits ended with the event set, the target equals the source and no
    throwaway table is left."""
    with FakeApi() as api:
        handler, seen = _api(later_windows_wait_for=until)
        api.route("/items", handler)
        cfg = _config(api.url("/items"), config_id)
        [outcome] = run_loads(spark, warehouse, store, [cfg])

    assert outcome.status == "SUCCESS", outcome.error
    assert seen == {DAYS[1]: True, DAYS[2]: True}
    _assert_target(spark, warehouse, cfg, DAYS)
    _no_leftovers(warehouse)


def test_a_full_load_warms_the_write_with_its_first_window_while_the_others_are_fetched(
        spark, warehouse, store, cold, monkeypatch):
    class Watched(warmup.WriteWarmup):
        def _run(self, stage):
            super()._run(stage)
            if warmup.is_warm():
                written.set()

    written = threading.Event()
    monkeypatch.setattr(runtime, "WriteWarmup", Watched)
    # both later windows are answered only once the warm-up write has finished
    _load_holding_later_windows(spark, warehouse, store, "warm_full", until=written)


def test_a_failing_warm_up_changes_nothing(spark, warehouse, store, cold, monkeypatch):
    def broken(self, stage, staged_with, path):
        path.mkdir(parents=True, exist_ok=True)
        tried.set()
        raise RuntimeError("warm-up broke")

    tried = threading.Event()
    monkeypatch.setattr(TargetWriter, "warm_up", broken)
    _load_holding_later_windows(spark, warehouse, store, "warm_broken", until=tried)
    assert warmup.is_warm()  # the target write itself warmed the process


def test_a_warm_up_still_running_is_cancelled_when_the_target_write_starts(
        spark, warehouse, store, cold, monkeypatch):
    """A warm-up that would run for hours does not hold the load: the target write
    cancels its Spark jobs."""
    def endless(self, stage, staged_with, path):
        running.set()
        try:
            self.spark.range(0, 10 ** 15, numPartitions=2).selectExpr("max(hash(id))").collect()
        except Exception as exc:  # noqa: BLE001 - what the cancel raised in this thread
            ended.append(str(exc))
            raise

    running, ended = threading.Event(), []
    monkeypatch.setattr(TargetWriter, "warm_up", endless)
    _load_holding_later_windows(spark, warehouse, store, "warm_cancelled", until=running)
    assert len(ended) == 1 and "cancel" in ended[0].lower()


def test_no_warm_up_for_a_one_window_load_or_in_a_warm_process(spark, warehouse, store, cold,
                                                               monkeypatch):
    offered: list[tuple[str, bool]] = []

    class Recorded(warmup.WriteWarmup):
        def offer(self, stage):
            started = super().offer(stage)
            offered.append((self.writer.config_id, started))
            return started

    monkeypatch.setattr(runtime, "WriteWarmup", Recorded)
    with FakeApi() as api:
        handler, _ = _api(later_windows_wait_for=None)
        api.route("/items", handler)
        one = _config(api.url("/items"), "warm_one", end="2024-01-02T00:00:00Z")
        [outcome] = run_loads(spark, warehouse, store, [one])
        assert outcome.status == "SUCCESS", outcome.error
        assert offered == [] and warmup.is_warm()  # its own write warmed the process

        several = _config(api.url("/items"), "warm_after")
        [outcome] = run_loads(spark, warehouse, store, [several])
    assert outcome.status == "SUCCESS", outcome.error
    # offered (the load qualifies) but not started: the process is warm
    assert offered and all(c == ("warm_after", False) for c in offered)
    _assert_target(spark, warehouse, several, DAYS)
    _no_leftovers(warehouse)
