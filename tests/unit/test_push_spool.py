"""The spool: durable appends (group commit), torn tails cut at open, flush bookkeeping."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from framework.push.spool import HEADER, STATE_FILE, Spool, SpoolFull, encode_record


def meta(n: int) -> dict:
    return {"id": f"evt_{n}", "at": 1_700_000_000_000_000 + n, "h": {}}


def body(n: int) -> bytes:
    return json.dumps({"id": f"evt_{n}", "pad": "x" * 100}).encode()


def fill(spool: Spool, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        spool.append_durable(meta(i), body(i), timeout=10)


def ids(spool: Spool, start: int, end: int) -> list[str]:
    return [e.meta["id"] for e in spool.read(start, end)]


def test_appends_read_back_in_order_after_reopening(tmp_path):
    spool = Spool(tmp_path / "s")
    fill(spool, 5)
    spool.close()
    again = Spool(tmp_path / "s")
    assert again.pending == 5
    intent = again.begin_flush(100)
    events = list(again.read(intent.start, intent.end))
    assert [e.meta["id"] for e in events] == [f"evt_{i}" for i in range(5)]
    assert [e.body for e in events] == [body(i) for i in range(5)]
    again.close()


def test_a_torn_tail_is_cut_and_kept_aside_never_read(tmp_path):
    folder = tmp_path / "s"
    spool = Spool(folder)
    fill(spool, 3)
    spool.close()
    segment = next(folder.glob("*.spool"))
    size = segment.stat().st_size
    record = encode_record(meta(3), body(3))
    with segment.open("ab") as f:  # a crash in the middle of the 4th write
        f.write(record[: len(record) // 2])
    again = Spool(folder)
    assert again.pending == 3 and again.torn_bytes == len(record) // 2
    assert segment.stat().st_size == size
    assert (folder / (segment.name + ".torn")).read_bytes() == record[: len(record) // 2]
    fill(again, 1, first=4)  # new events follow the cut, readable
    assert ids(again, 0, 10 ** 9) == ["evt_0", "evt_1", "evt_2", "evt_4"]
    again.close()


def test_a_flipped_byte_is_detected_by_the_checksum(tmp_path):
    folder = tmp_path / "s"
    spool = Spool(folder)
    fill(spool, 2)
    spool.close()
    segment = next(folder.glob("*.spool"))
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # inside the last body: same length, wrong content
    segment.write_bytes(bytes(data))
    again = Spool(folder)
    assert ids(again, 0, 10 ** 9) == ["evt_0"] and again.pending == 1
    again.close()


def test_concurrent_appends_share_fsyncs(tmp_path):
    calls = []
    gate = threading.Event()

    def slow_fsync(fd: int) -> None:
        calls.append(fd)
        gate.wait(0.02)  # a disk that takes a while: requests pile up behind one fsync
        os.fsync(fd)

    spool = Spool(tmp_path / "s", fsync=slow_fsync)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: spool.append_durable(meta(i), body(i), timeout=30), range(200)))
    assert spool.pending == 200
    assert spool.fsyncs == len(calls) and spool.fsyncs < 100  # grouped, not one per event
    spool.close()


def test_appends_waiting_for_one_fsync_share_its_outcome(tmp_path):
    """Appends made while an fsync runs wait for the next one, share its future, and all
    fail together when it fails: no one is told "stored" without an fsync after its write."""
    entered, release, outcomes = threading.Event(), threading.Event(), iter([None, OSError("EIO")])

    def fsync(fd: int) -> None:
        entered.set()
        release.wait(10)
        error = next(outcomes, None)
        if error is not None:
            raise error

    spool = Spool(tmp_path / "s", fsync=fsync)
    first = spool.durable(spool.append(meta(0), body(0)))
    assert entered.wait(10)  # the first fsync runs (blocked) ...
    later = [spool.durable(spool.append(meta(i), body(i))) for i in (1, 2, 3)]
    assert not first.done() and all(f is later[0] for f in later) and later[0] is not first
    release.set()  # ... the first succeeds, the second (of the three later appends) fails
    assert first.result(10) >= 0
    with pytest.raises(OSError, match="EIO"):
        later[0].result(10)
    assert spool.fsyncs == 2 and spool.unsynced_bytes > 0
    spool.close()


def test_appends_are_written_by_the_syncer_and_a_failed_write_acknowledges_nothing(
        tmp_path, monkeypatch):
    import errno

    from framework.push import spool as spool_module

    spool = Spool(tmp_path / "s")
    segment = next((tmp_path / "s").glob("*.spool"))
    ends = [spool.append(meta(i), body(i)) for i in range(3)]
    assert segment.stat().st_size == 0  # queued: the caller's thread did not touch the file
    spool.durable(ends[-1]).result(10)  # one write and one fsync for the three
    assert segment.stat().st_size == ends[-1] and spool.fsyncs == 1
    assert ids(spool, 0, ends[-1]) == ["evt_0", "evt_1", "evt_2"]

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", full)
    with pytest.raises(OSError, match="No space"):
        spool.durable(spool.append(meta(3), body(3))).result(10)
    with pytest.raises(OSError, match="cannot be written"):
        spool.append(meta(4), body(4))  # positions and file disagree: no more events
    monkeypatch.undo()
    spool.close()
    again = Spool(tmp_path / "s")
    assert again.pending == 3  # only what was written; the unacknowledged event is not there
    again.close()


def test_the_queue_bound_refuses_without_writing(tmp_path):
    spool = Spool(tmp_path / "s")
    fill(spool, 3)
    with pytest.raises(SpoolFull, match="3 events are waiting"):
        spool.append(meta(9), body(9), limit=3)
    assert spool.pending == 3 and ids(spool, 0, 10 ** 9) == ["evt_0", "evt_1", "evt_2"]
    spool.close()


def test_a_begun_flush_keeps_its_range_across_a_restart_until_committed(tmp_path):
    folder = tmp_path / "s"
    spool = Spool(folder)
    fill(spool, 5)
    first = spool.begin_flush(3)
    assert (first.seq, first.events) == (1, 3)
    fill(spool, 2, first=5)
    spool.close()  # crash before commit: the intent is on disk
    again = Spool(folder)
    assert again.begin_flush(100) == first  # the same range and seq, not the 7 now pending
    again.commit_flush(first)
    assert again.pending == 4 and again.flushed == first.end
    nxt = again.begin_flush(100)
    assert (nxt.seq, nxt.events) == (2, 4) and ids(again, nxt.start, nxt.end) == [
        f"evt_{i}" for i in range(3, 7)]
    again.close()
    state = json.loads((folder / STATE_FILE).read_text())
    assert state["flushed"] == first.end and state["intent"]["seq"] == 2


def test_segments_rotate_and_are_deleted_only_once_flushed(tmp_path):
    folder = tmp_path / "s"
    spool = Spool(folder, segment_bytes=HEADER.size + 300)
    fill(spool, 6)
    segments = sorted(folder.glob("*.spool"))
    assert len(segments) >= 3
    intent = spool.begin_flush(2)
    assert len(sorted(folder.glob("*.spool"))) == len(segments)  # begun, not committed
    spool.commit_flush(intent)
    left = sorted(folder.glob("*.spool"))
    assert len(left) < len(segments)
    assert ids(spool, spool.flushed, 10 ** 9) == [f"evt_{i}" for i in range(2, 6)]
    spool.close()
    assert Spool(folder).pending == 4


def test_a_spool_folder_in_use_is_refused_naming_the_folder_and_its_holder(tmp_path):
    """Two spools on one folder each wrote at their own positions: acknowledged events were
    cut as torn records. The second is refused until the first is closed."""
    from framework.push.spool import SpoolInUse

    folder = tmp_path / "s"
    first = Spool(folder)
    fill(first, 2)
    with pytest.raises(SpoolInUse, match=f"{folder}.*in use by process {os.getpid()}"):
        Spool(folder)
    first.close()
    again = Spool(folder)
    assert again.pending == 2 and again.torn_bytes == 0
    again.close()


def test_a_spool_held_by_a_killed_process_is_free_again(tmp_path):
    """The lock is the operating system's: a holder killed with SIGKILL releases it."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from framework.push.spool import SpoolInUse

    folder = tmp_path / "s"
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from framework.push.spool import Spool; "
         f"s = Spool({str(folder)!r}); s.append_durable({{'id': 'e', 'at': 1, 'h': {{}}}}, b'1'); "
         "print('ready', flush=True); time.sleep(600)"],
        cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"ready\n"
        with pytest.raises(SpoolInUse, match=f"process {holder.pid}"):
            Spool(folder)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    spool = Spool(folder)
    assert spool.pending == 1
    spool.close()

