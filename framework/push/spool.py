"""The spool: an append-only, fsync'd log of the events one push source acknowledged.

An event is acknowledged (2xx) only once it is in the spool and the spool is on disk,
so a crash, a SIGKILL or a power cut after the answer loses nothing. The flusher
reads the spool in batches, writes them to Delta, and then records durably how far
it got (``state.json``); segments wholly before that point are deleted.

Layout of ``<spool root>/<config_id>/``:

* ``<base>.spool`` segments, ``base`` the global offset of their first byte (20 digits);
  a position is a global byte offset, so positions grow for ever across segments;
* ``lock``: held (``flock``) by the one process that uses the spool, and naming it; a
  second process is refused, as two writers at their own positions would tear each
  other's records. The operating system releases it when the holder exits or dies;
* ``state.json``: ``flushed`` (every event before it is in Delta), ``seq`` (the last
  committed flush) and ``intent`` (the flush in progress: its range is fixed before
  any Delta write, so a flush redone after a crash covers exactly the same events and
  its idempotent writes skip what already committed).

A record is ``RLEV`` + meta length + body length + CRC-32 (4 bytes each, big-endian),
then the meta (JSON: event id, receipt time, headers kept) and the raw body. The CRC
covers the lengths, the meta and the body, so a record torn by a crash mid-write is
detected when the spool is opened: it is moved to ``<segment>.torn`` and cut off,
never read as an event. Only an unacknowledged write can be torn (the answer waits
for the fsync), so cutting it loses nothing that was acknowledged.

Group commit: an append only encodes its record, takes its position and queues it in
memory; one syncer thread per spool writes everything queued with one ``write`` and
fsyncs it, so concurrent requests share one write and one fsync instead of queueing for
one each. The request's thread (the event loop) never waits on the file: a ``write``
can block while the file system commits its journal for an fsync. Appends waiting for
the same fsync share its :class:`~concurrent.futures.Future`, completed once by the
syncer (one hand-over between threads per fsync, not one per event).
"""

from __future__ import annotations

import collections
import datetime as dt
import fcntl
import itertools
import json
import logging
import os
import socket
import struct
import threading
import uuid
import zlib
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import orjson

from framework.errors import RestlakeError

log = logging.getLogger(__name__)

MAGIC = b"RLEV"
HEADER = struct.Struct(">4sIII")
SEGMENT_BYTES = 64 * 1024 * 1024
STATE_FILE = "state.json"
LOCK_FILE = "lock"
SUFFIX = ".spool"


class SpoolFull(Exception):
    """The flusher is behind by ``limit`` events: the sender should retry later."""


class SpoolInUse(RestlakeError):
    """Another process (or another spool object) already uses this spool folder."""


def hold_folder(folder: Path, lock_name: str = LOCK_FILE) -> int:
    """Take the exclusive lock of ``folder`` for this process; returns the lock's file
    descriptor (closing it releases the lock, and so does the process's exit or death).

    Raises:
        SpoolInUse: the lock is held; the message names the folder and the holder.
    """
    path = folder / lock_name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
        os.close(fd)
        raise SpoolInUse(f"the spool folder {folder} is in use by {holder} (one receiver "
                         "per spool: stop it, or give this one its own RESTLAKE_SPOOL)") from None
    except OSError as exc:  # a file system without locks: run, but say it is unguarded
        log.warning("%s cannot be locked (%s): nothing stops a second receiver on this spool",
                    folder, exc)
    since = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {since}\n"
              .encode(), 0)
    return fd


@dataclass(frozen=True)
class SpooledEvent:
    """One acknowledged event read back from the spool."""

    position: int
    end: int
    meta: dict[str, Any]
    body: bytes

    def __repr__(self) -> str:
        return f"SpooledEvent(@{self.position} id={self.meta.get('id')} {len(self.body)} B)"


@dataclass(frozen=True)
class FlushIntent:
    """The events of one flush: ``[start, end)``, its sequence number and event count."""

    seq: int
    start: int
    end: int
    events: int

    def as_json(self) -> dict[str, int]:
        return {"seq": self.seq, "start": self.start, "end": self.end, "events": self.events}


def encode_record(meta: dict[str, Any], body: bytes) -> bytes:
    """One spool record (header, meta JSON, body)."""
    meta_bytes = orjson.dumps(meta)
    lengths = struct.pack(">II", len(meta_bytes), len(body))
    crc = zlib.crc32(body, zlib.crc32(meta_bytes, zlib.crc32(lengths)))
    return MAGIC + lengths + struct.pack(">I", crc) + meta_bytes + body


def _sync_file(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool of one push source (thread-safe).

    Args:
        folder: the source's spool folder (created when missing).
        segment_bytes: a segment is closed and a new one started past this size.
        fsync: flushes a file descriptor to disk (tests count calls).
    """

    def __init__(self, folder: str | os.PathLike[str], segment_bytes: int = SEGMENT_BYTES,
                 fsync: Callable[[int], None] = _sync_file) -> None:
        self.folder = Path(folder)
        self.segment_bytes = segment_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        self._synced = threading.Condition(threading.Lock())
        self._round: Future = Future()  # done by the next fsync to start
        self._round_wanted = False  # someone waits for self._round
        self._durable = 0
        self._syncer: Optional[threading.Thread] = None
        self._closed = False
        self._failed: Optional[OSError] = None  # a write failed: positions and file disagree
        # Under self._io: the open segment, its base, and how far the file is written.
        self._io = threading.Lock()
        self._fd: Optional[int] = None
        self._base = 0
        self._on_file = 0
        # Under self._lock: records appended and not yet written, and their end position.
        self._queued: list[bytes] = []
        self._written = 0
        # The in-memory queue in front of the flusher: (position, end) of each pending event.
        self._pending: collections.deque[tuple[int, int]] = collections.deque()
        self.flushed, self.seq, self.intent = 0, 0, None
        self.spool_id = ""  # random, per spool folder: keys the flushes' idempotent writes
        self.torn_bytes = 0  # bytes cut off when opening (torn tails)
        self.fsyncs = 0
        self._open()

    def __repr__(self) -> str:
        return (f"Spool({self.folder}, pending={len(self._pending)}, flushed={self.flushed}, "
                f"written={self._written})")

    # -------------------------------------------------------------- recovery
    def _segments(self) -> list[tuple[int, Path]]:
        out = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            stem = path.name[: -len(SUFFIX)]
            if stem.isdigit():
                out.append((int(stem), path))
        return sorted(out)

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fd: Optional[int] = hold_folder(self.folder)
        try:
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise

    def _recover(self) -> None:
        for stale in self.folder.glob(f"{STATE_FILE}.*.tmp"):  # a state write cut by a crash
            stale.unlink(missing_ok=True)
        state_path = self.folder / STATE_FILE
        if state_path.exists():
            state = json.loads(state_path.read_text(encoding="utf-8"))
            self.flushed, self.seq = int(state["flushed"]), int(state["seq"])
            self.spool_id = state["spool_id"]
            intent = state.get("intent")
            self.intent = FlushIntent(**intent) if intent else None
        if not self.spool_id:
            self.spool_id = uuid.uuid4().hex[:12]
            self._write_state()
        segments = self._segments()
        for n, (base, path) in enumerate(segments):
            is_last = n == len(segments) - 1
            end = base + self._scan(base, path, is_last)
            if end <= self.flushed and not is_last:
                path.unlink()  # wholly flushed: the crash came before it was deleted
        if segments:
            self._base, path = segments[-1]
            self._written = self._base + path.stat().st_size
        else:
            self._base = self._written = self.flushed
        self._durable = self._on_file = self._written
        self._fd = self._open_segment(self._base)

    def _scan(self, base: int, path: Path, is_last: bool) -> int:
        """Index the pending events of one segment, cutting off a torn tail; its valid size."""
        with path.open("rb") as f:
            data = f.read()
        offset = max(0, self.flushed - base)
        while offset < len(data):
            size = _record_size(data, offset)
            if size is None:
                torn = data[offset:]
                with open(str(path) + ".torn", "ab") as keep:
                    keep.write(torn)
                os.truncate(path, offset)
                self.torn_bytes += len(torn)
                level = logging.WARNING if is_last else logging.ERROR
                log.log(level, "%s: cut %d bytes of a %s record at offset %d (kept in %s.torn)",
                        path, len(torn), "torn" if is_last else "corrupt", offset, path.name)
                break
            self._pending.append((base + offset, base + offset + size))
            offset += size
        return min(offset, len(data))

    def _open_segment(self, base: int) -> int:
        path = self.folder / f"{base:020d}{SUFFIX}"
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if new:
            _sync_dir(self.folder)
        return fd

    # ----------------------------------------------------------------- append
    @property
    def pending(self) -> int:
        """Events acknowledged (or being acknowledged) and not yet flushed to Delta."""
        return len(self._pending)

    @property
    def unsynced_bytes(self) -> int:
        """Bytes appended and not yet fsync'd (events not yet acknowledged)."""
        with self._lock, self._synced:
            return self._written - self._durable

    def append(self, meta: dict[str, Any], body: bytes, limit: Optional[int] = None) -> int:
        """Queue one event for the next write (not yet durable: see :meth:`durable`);
        returns its end position.

        Raises:
            SpoolFull: ``limit`` events are already waiting for the flusher, or the spool
                is closed.
            OSError: an earlier write failed (the spool takes no more events).
        """
        record = encode_record(meta, body)
        with self._lock:
            if self._failed is not None:
                raise OSError(f"the spool {self.folder} cannot be written: {self._failed}")
            if self._closed:
                raise SpoolFull("the spool is closed (the receiver is stopping)")
            if limit is not None and len(self._pending) >= limit:
                raise SpoolFull(f"{len(self._pending)} events are waiting for the flusher")
            start = self._written
            self._written += len(record)
            self._queued.append(record)
            self._pending.append((start, self._written))
            return self._written

    def write_through(self, fsync: bool = True) -> int:
        """Write what is queued, in the caller's thread, and fsync it (``fsync``); returns
        the position the file is written to. The syncer does this for each group commit
        (the benchmark's baselines call it directly).

        Raises:
            OSError: the write or the fsync failed (a failed write also fails the spool).
        """
        with self._io:
            end = self._write_queued()
            if fsync:
                self._fsync(self._fd)
                with self._synced:
                    self._durable = max(self._durable, end)
            return end

    def _write_queued(self) -> int:
        # Under self._io: the only place the segments are written to and rotated.
        with self._lock:
            data = b"".join(self._queued)
            self._queued.clear()
        if not data:
            return self._on_file
        try:
            if self._on_file - self._base >= self.segment_bytes:
                self._rotate()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            with self._lock:
                self._failed = exc
            raise
        self._on_file += len(data)
        return self._on_file

    def _rotate(self) -> None:
        # Under self._io. The old segment is made durable before the new one takes writes,
        # so "durable up to the written end of the new segment" stays true.
        self._fsync(self._fd)
        os.close(self._fd)
        self._base = self._on_file
        self._fd = self._open_segment(self._base)
        with self._synced:
            self._durable = max(self._durable, self._base)

    def durable(self, end: int) -> Future:
        """A future done once every byte before ``end`` is on disk (group commit).

        Waiters of the same fsync share one future: call this after :meth:`append`
        returned ``end`` (the next fsync to start then covers it).
        """
        with self._synced:
            if self._durable >= end or self._failed is not None:
                fut: Future = Future()
                if self._durable >= end:
                    fut.set_result(self._durable)
                else:
                    fut.set_exception(OSError(f"the spool {self.folder} cannot be written: "
                                              f"{self._failed}"))
                return fut
            # The syncer swaps the round under this lock and only then reads how far the
            # spool was written: an append made before this call is covered by the round.
            self._round_wanted = True
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_loop, daemon=True,
                                                name=f"restlake-spool-{self.folder.name}")
                self._syncer.start()
            self._synced.notify()
            return self._round

    def append_durable(self, meta: dict[str, Any], body: bytes, limit: Optional[int] = None,
                       timeout: Optional[float] = None) -> int:
        """Append and wait until it is on disk; returns the event's end position."""
        end = self.append(meta, body, limit)
        self.durable(end).result(timeout)
        return end

    def _sync_loop(self) -> None:
        while True:
            with self._synced:
                while not self._round_wanted and not self._closed:
                    self._synced.wait()
                if not self._round_wanted:
                    return  # closed, and no one waits
                done, self._round, self._round_wanted = self._round, Future(), False
            error: Optional[BaseException] = None
            with self._io:
                try:  # everything appended before the round was swapped is queued by now
                    target = self._write_queued()
                    self._fsync(self._fd)
                except OSError as exc:  # the disk failed: no one is told "stored"
                    error = exc
            with self._synced:
                self.fsyncs += 1
                if error is None:
                    self._durable = max(self._durable, target)
                durable = self._durable
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(durable)

    # ------------------------------------------------------------------ flush
    def begin_flush(self, max_events: int) -> Optional[FlushIntent]:
        """Fix the range of the next flush and record it durably (``None``: nothing pending).

        A flush that was begun and not committed (a crash, a failed write) is returned
        again, with the same range and sequence number.
        """
        if self.intent is not None:
            return self.intent
        with self._lock:
            with self._synced:
                durable = self._durable
            # Only acknowledged (durable) events are flushed.
            taken = list(itertools.islice(
                itertools.takewhile(lambda pe: pe[1] <= durable, self._pending), max_events))
        if not taken:
            return None
        self.intent = FlushIntent(self.seq + 1, taken[0][0], taken[-1][1], len(taken))
        try:
            self._write_state()
        except OSError:  # not recorded: no Delta write may go ahead on this range
            self.intent = None
            raise
        return self.intent

    def read(self, start: int, end: int) -> Iterator[SpooledEvent]:
        """The events in ``[start, end)``, in order."""
        for base, path in self._segments():
            if end <= base:
                break
            with path.open("rb") as f:
                f.seek(max(0, start - base))
                pos = max(start, base)
                while pos < end:
                    head = f.read(HEADER.size)
                    if len(head) < HEADER.size:
                        break  # the next segment holds the rest
                    magic, meta_len, body_len, crc = HEADER.unpack(head)
                    payload = f.read(meta_len + body_len)
                    lengths = head[4:12]
                    if magic != MAGIC or len(payload) != meta_len + body_len or \
                            zlib.crc32(payload, zlib.crc32(lengths)) != crc:
                        raise OSError(f"{path}: bad record at offset {pos - base} (changed "
                                      "since it was opened?)")
                    size = HEADER.size + meta_len + body_len
                    yield SpooledEvent(pos, pos + size, orjson.loads(payload[:meta_len]),
                                       payload[meta_len:])
                    pos += size

    def commit_flush(self, intent: FlushIntent) -> None:
        """The flush's writes committed: move ``flushed`` past it and drop what it covered."""
        with self._lock:
            while self._pending and self._pending[0][1] <= intent.end:
                self._pending.popleft()
        self.flushed, self.seq, self.intent = intent.end, intent.seq, None
        self._write_state()
        for base, path in self._segments()[:-1]:
            nxt = [b for b, _ in self._segments() if b > base]
            if nxt and nxt[0] <= self.flushed:
                path.unlink(missing_ok=True)

    def _write_state(self) -> None:
        state = {"spool_id": self.spool_id, "flushed": self.flushed, "seq": self.seq,
                 "intent": self.intent.as_json() if self.intent else None}
        tmp = self.folder / f"{STATE_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with tmp.open("w", encoding="utf-8") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / STATE_FILE)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        _sync_dir(self.folder)

    def close(self) -> None:
        """Stop taking events; waits for the syncer to finish what it was asked."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self._synced:
            self._synced.notify_all()
        if self._syncer is not None:
            self._syncer.join()
        with self._io:
            if self._fd is not None:
                try:  # appended, never acknowledged: kept for the next start all the same
                    self._write_queued()
                    self._fsync(self._fd)
                except OSError as exc:
                    log.error("%s: could not write the last events at close: %s", self.folder, exc)
                os.close(self._fd)
                self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the folder to the next process
            self._lock_fd = None


def _record_size(data: bytes, offset: int) -> Optional[int]:
    """The size of the valid record at ``offset``, or None (torn or corrupt)."""
    if len(data) - offset < HEADER.size:
        return None
    magic, meta_len, body_len, crc = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + meta_len + body_len
    if magic != MAGIC or end > len(data):
        return None
    lengths = data[offset + 4: offset + 12]
    payload = memoryview(data)[offset + HEADER.size: end]
    if zlib.crc32(payload, zlib.crc32(lengths)) != crc:
        return None
    return end - offset
