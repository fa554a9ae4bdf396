"""WriteWarmup without Spark: once per process, never after the target write began, a
running one cancelled and awaited (tests/integration/test_warmup.py runs it on Spark)."""

from __future__ import annotations

import threading
import types

import pytest

from framework.load import warmup


class FakeContext:
    def __init__(self) -> None:
        self.groups: list[str] = []
        self.cancelled = threading.Event()

    def setJobGroup(self, group: str, description: str, interrupt: bool) -> None:  # noqa: N802
        self.groups.append(group)

    def cancelJobGroup(self, group: str) -> None:  # noqa: N802
        if group in self.groups:
            self.cancelled.set()


class FakeWriter:
    config_id = "demo"

    def __init__(self, block: bool = False, fail: bool = False, skip: bool = False) -> None:
        self.sparkContext = FakeContext()
        self.spark = self
        self.block, self.fail, self.skip = block, fail, skip
        self.calls: list[tuple] = []
        self.running = threading.Event()

    def warm_up(self, stage, staged_with, path) -> bool:
        if self.skip:  # rows that would need re-shaping: nothing written
            self.calls.append((stage, staged_with, path))
            self.running.set()
            return False
        path.mkdir(parents=True)
        (path / "part.parquet").write_bytes(b"x")
        self.calls.append((stage, staged_with, path))
        self.running.set()
        if self.block and not self.sparkContext.cancelled.wait(30):
            raise AssertionError("never cancelled")
        if self.fail or self.block:
            raise RuntimeError("job cancelled")
        return True


@pytest.fixture(autouse=True)
def cold(monkeypatch):
    monkeypatch.setattr(warmup, "_warm", threading.Event())


def test_one_warm_up_per_load_and_it_marks_the_process_warm(tmp_path) -> None:
    writer = FakeWriter()
    w = warmup.WriteWarmup(writer, {"id": "long"}, tmp_path)

    assert w.offer("stage-0") is True
    assert w.offer("stage-1") is False
    assert writer.running.wait(30)
    w.finish()
    assert [c[:2] for c in writer.calls] == [("stage-0", {"id": "long"})]
    assert writer.calls[0][2] == tmp_path / warmup.FOLDER
    assert not (tmp_path / warmup.FOLDER).exists()  # the throwaway table is removed
    assert warmup.is_warm()
    assert warmup.WriteWarmup(FakeWriter(), None, tmp_path).offer("s") is False  # warm now


def test_no_warm_up_once_the_target_write_began(tmp_path) -> None:
    writer = FakeWriter()
    w = warmup.WriteWarmup(writer, None, tmp_path)
    w.finish()
    assert w.offer("stage-0") is False and writer.calls == [] and not warmup.is_warm()


def test_a_running_warm_up_is_cancelled_and_awaited(tmp_path) -> None:
    writer = FakeWriter(block=True)
    w = warmup.WriteWarmup(writer, None, tmp_path)
    assert w.offer("stage-0")
    assert writer.running.wait(30)

    w.finish()  # returns only once the warm-up ended: cancelled through its job group
    assert writer.sparkContext.cancelled.is_set()
    assert writer.sparkContext.groups == [w.group]
    assert not (tmp_path / warmup.FOLDER).exists()
    assert not warmup.is_warm()  # a cancelled warm-up warms nothing


def test_a_warm_up_that_wrote_nothing_leaves_the_process_cold(tmp_path) -> None:
    writer = FakeWriter(skip=True)
    w = warmup.WriteWarmup(writer, None, tmp_path)
    assert w.offer("stage-0") and writer.running.wait(30)
    w.finish()
    assert writer.calls and not warmup.is_warm()


def test_a_failed_warm_up_is_quiet_and_leaves_nothing(tmp_path, caplog) -> None:
    writer = FakeWriter(fail=True)
    w = warmup.WriteWarmup(writer, None, tmp_path)
    assert w.offer("stage-0")
    assert writer.running.wait(30)
    w.finish()
    assert not (tmp_path / warmup.FOLDER).exists() and not warmup.is_warm()
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


def test_one_warm_up_at_a_time_in_a_process(tmp_path) -> None:
    """Loads run in parallel each offer theirs: one runs; once it was cancelled another
    load may warm up with a later window."""
    first, second = FakeWriter(block=True), FakeWriter()
    a = warmup.WriteWarmup(first, None, tmp_path / "a")
    b = warmup.WriteWarmup(second, None, tmp_path / "b")
    assert a.offer("a-0") and first.running.wait(30)
    assert b.offer("b-0") is False and second.calls == []

    a.finish()  # cancelled: nothing warmed
    assert b.offer("b-1") is True and second.running.wait(30)
    b.finish()
    assert [c[0] for c in second.calls] == ["b-1"] and warmup.is_warm()


@pytest.mark.parametrize("value, on", [(None, True), ("", True), ("on", True), ("off", False),
                                       ("OFF", False), ("0", False), ("false", False)])
def test_restlake_warmup_off_turns_it_off(value, on) -> None:
    env = {} if value is None else {"RESTLAKE_WARMUP": value}
    assert warmup.enabled(env) is on


def test_a_finished_target_write_of_any_caller_warms_the_process_and_a_failed_one_does_not():
    """TargetWriter's overwrite and merge mark the process warm (a load, a webhook flush,
    a replay): no later load of the process warms it up."""
    from framework.load.writers import TargetWriter

    class Failing(TargetWriter):
        def _frame(self, *args, **kwargs):
            raise RuntimeError("the staged rows could not be read")

    class Staged:
        rows = 3

    class Warehouse:
        def __init__(self, exists):
            self._exists = exists

        def exists(self, spark, ref):
            return self._exists

        def version(self, spark, ref):
            return 7

    writer = Failing.__new__(Failing)
    writer.spark, writer.ref, writer.warehouse = None, None, Warehouse(True)
    with pytest.raises(RuntimeError):
        writer.merge([Staged()], None, batch_version=1)
    assert not warmup.is_warm()
    # windows that staged no row, into a target that exists: nothing is written, nor warmed
    assert writer.merge([], None, batch_version=1).version == 7 and not warmup.is_warm()

    written = types.SimpleNamespace()  # what the target write returns

    class Writing(TargetWriter):
        def _frame(self, *args, **kwargs):
            return "rows", {}, [], False, 0

        def _create(self, *args, **kwargs):
            return written

    writer = Writing.__new__(Writing)
    writer.spark, writer.ref, writer.warehouse = None, None, Warehouse(False)
    assert writer.merge([Staged()], None, batch_version=1) is written and warmup.is_warm()
