"""The runtime: claim -> windows -> fetch (threads) -> stage -> write Delta -> audit.

Per load (one claimed control row):

1. rebuild the config from the control row (validated; errors name the column);
2. split ``[LoadStartTime, LoadEndTime)`` into windows and skip those the window log
   marks SUCCESS for this LoadId (a rerun after a crash resumes);
3. fetch windows through the load's fetch stack (:class:`~framework.load.fetch.WindowFetcher`):
   concurrently on ``limits.concurrency`` threads (one rate budget per host), or in
   Spark tasks with ``run --distributed`` (:mod:`framework.load.distributed`), each
   window streaming its rows to staging files;
4. INCREMENTAL: commit the windows in window order, in batches that depend on the
   window indices only (:mod:`framework.load.batching`), one MERGE (or idempotent
   append) per batch, and append their window-log rows after each commit; FULL_LOAD:
   one overwrite once every window is staged;
5. quality checks (:mod:`framework.load.quality`): before each target commit on the rows
   about to be written (a failing ``fail`` check refuses the commit), after the commits
   on the target and the load's schema drift;
6. finish the control row (SUCCESS or FAILED) and append exactly one audit row,
   whatever happened (``try``/``finally``).

The claim is kept by a :class:`~framework.load.lease.LeaseKeeper` (heartbeat), and every
target commit, window-log append and control update first passes its fence: a runner
whose row another runner took over writes nothing more and audits ``LEASE_LOST``.
:meth:`RunContext.request_stop` drains: no new claims, no new windows, in-flight
windows reach a commit (or page checkpoint), and the row goes back to PENDING
(``INTERRUPTED`` in the audit).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from control import mapping, states
from control.states import LoadType, RunResult
from control.store import INVALID_ROW, NO_SUCH_ROW, Claim, ControlStore
from framework.load.archive import staged_page_files, write_pages
from framework.load.batching import batch_version, plan_batches, segment_version
from framework.load.audit import LoadProgress, audit_record, current_user
from framework.config import SourceConfig
from framework.load.crashpoints import crashpoint
from framework.logs import log_context
from framework.errors import (LeaseLostError, LoadError, LoadInterrupted, QualityError, RestlakeError,
                              trace_summary)
from framework.load.fetch import StagedSegment, WindowFetcher, WindowResult, load_limiter
from framework.load.lease import LeaseKeeper
from framework.load.quality import LoadQuality
from framework.secrets import redact
from framework.load.staging import RunStaging
from framework.load.warmup import WriteWarmup, enabled as warmup_enabled
from framework.lake.tables import TableRef, Warehouse
from framework.http.telemetry import Telemetry
from framework.timeutil import utcnow
from framework.windows import Window, split
from framework.load.writers import TargetWriter, WriteResult

log = logging.getLogger(__name__)

ERROR_LIMIT = 2000
BOOKKEEPING_THREADS = 64  # loads of one run whose bookkeeping waits at once (others queue)


def new_run_id() -> str:
    """The run id: the Databricks job run id when there is one, else a sortable unique id."""
    from framework.config import check_run_id

    for var in ("RESTLAKE_RUN_ID", "DATABRICKS_JOB_RUN_ID"):
        if os.environ.get(var):
            return check_run_id(os.environ[var], field=var)
    return f"run-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def sanitize_error(exc: BaseException) -> str:
    """One readable, redacted line (Spark/Java traces are cut to their first lines)."""
    text = redact(str(exc) if isinstance(exc, RestlakeError) else trace_summary(exc))
    return text if len(text) <= ERROR_LIMIT else text[:ERROR_LIMIT] + "..."


@dataclass
class RunContext:
    """What every load of one ``restlake run`` (or of one service) shares.

    Attributes:
        lease: how long a claim holds; ``None`` (the default) takes each row's
            ``limits.lease_s``.
        stop: set by :meth:`request_stop`; loads drain when it is set.
        notify: tell on-call about failed loads and quality incidents as loads finish
            (when ``RESTLAKE_NOTIFICATIONS`` names a file); off for drills, whose failures
            are staged.
    """

    spark: Any
    warehouse: Warehouse
    store: ControlStore
    staging_root: Path
    run_id: str = field(default_factory=new_run_id)
    runner: str = field(default_factory=runner_id)
    lease: Optional[dt.timedelta] = None
    loaded_by: str = field(default_factory=current_user)
    on_event: Optional[Callable[[str, dict[str, Any]], None]] = None
    distributed: bool = False  # fetch windows on the Spark executors (framework.load.distributed)
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    stop_reason: Optional[str] = None
    #: starts Spark where its start waits for a load that needs it (``restlake run``:
    #: see :meth:`spark_needed`); ``None`` where the session is there or starts on its own
    on_spark_needed: Optional[Callable[[], None]] = field(default=None, repr=False)
    notify: bool = True

    def emit(self, event: str, **data: Any) -> None:
        """Log a step of a load (INFO) and pass it to ``on_event`` (progress output). A
        failing ``on_event`` is logged and ignored: output cannot abort a load, skip its
        audit row or its notification."""
        extra = {"event": event, **{k: data[k] for k in ("config_id", "window")
                                    if data.get(k) is not None}}
        log.info("%s: %s", event.replace("_", " "),
                 " ".join(f"{k}={v}" for k, v in data.items() if k not in ("config_id", "window")),
                 extra=extra)
        if self.on_event is None:
            return
        try:
            self.on_event(event, data)
        except Exception as exc:  # noqa: BLE001
            log.warning("progress output for %s failed: %s", event, sanitize_error(exc))

    def request_stop(self, reason: str = "stop requested") -> None:
        """Drain this run: claim no more rows and start no more windows.

        Windows in flight finish and are committed (a window loaded in page batches
        stops after its next checkpoint; a FULL_LOAD, which commits only whole, stops at
        its next page and commits nothing); each stopped load's row goes back to
        PENDING with its range and LoadId, and its audit row says ``INTERRUPTED``.
        Safe to call from a signal handler or another thread, more than once.
        """
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()
            self.emit("stopping", reason=reason)

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    def spark_needed(self) -> None:
        """A load of this run will write with Spark: a full load once claimed (it always
        overwrites), an incremental one at the first record it fetches. ``restlake run``
        starts the JVM then instead of at once, so a run whose incremental windows find
        nothing starts none (a quiet source on a short cadence). Any other use of the
        session still starts it, in the thread that needs it. Idempotent."""
        if self.on_spark_needed is not None:
            self.on_spark_needed()

#: the outcome of a ConfigId the control table has no row for
UNKNOWN = "UNKNOWN"
#: the outcome of a row whose state columns hold no state (edited by hand): not loaded
INVALID = "INVALID"


@dataclass
class LoadOutcome:
    """The result of one load, as the audit row tells it.

    Attributes:
        audit_error: why the audit row could not be appended (the load then counts as
            failed whatever its status: its bookkeeping is incomplete).
    """

    config_id: str
    status: str  # SUCCESS | FAILED | PARTIAL | FAILED_QUALITY | LEASE_LOST | INTERRUPTED | SKIPPED | UNKNOWN | INVALID
    rows_written: int = 0
    source_rows: int = 0
    error: Optional[str] = None
    audit: dict[str, Any] = field(default_factory=dict)
    audit_error: Optional[str] = None

    @property
    def failed(self) -> bool:
        """A run asked for this row and it was not loaded as asked: a row another runner
        holds (``SKIPPED``) is no failure, an id with no row (``UNKNOWN``, a typo) is."""
        return self.audit_error is not None or self.status in (
            RunResult.FAILED.value, RunResult.PARTIAL.value, RunResult.FAILED_QUALITY.value,
            RunResult.LEASE_LOST.value, UNKNOWN, INVALID)

    @property
    def interrupted(self) -> bool:
        return self.status == RunResult.INTERRUPTED.value

    def __repr__(self) -> str:
        return f"LoadOutcome({self.config_id} {self.status} rows={self.rows_written})"


def run(ctx: RunContext, config_ids: Optional[list[str]] = None, parallel: int = 1) -> list[LoadOutcome]:
    """Claim and load the given rows (or every claimable row); one outcome per row, in order.

    The rows are claimed together, in one control-table commit
    (:meth:`~control.store.ControlStore.claim_many`); each claim's lease is kept by its
    heartbeat from then on, also while the load waits for its turn. A stop requested
    before a claimed load started releases its row (``PENDING`` again) unloaded.

    With more than one row, a load's bookkeeping (its last window-log rows, health log,
    control finish and audit row) leaves the load's worker once its target commits are
    done: the worker goes on with the next row while the bookkeeping of every load waiting
    for it lands in shared commits (one control MERGE, one audit append for all of them:
    :class:`~framework.lake.groupcommit.GroupCommit`). The lease is renewed until the
    finish's commit starts, the finish is fenced as before (``LEASE_LOST`` when it did not match),
    and ``run`` returns only once every load's bookkeeping landed.

    Args:
        parallel: how many loads run at once in this process, on the one Spark session
            (they share one rate budget per host; this process's control-table commits
            go one at a time).
    """
    ids = list(dict.fromkeys(config_ids if config_ids is not None else ctx.store.claimable_ids()))
    if not ids:
        return []
    if ctx.stopping:
        return [_skipped(ctx, cid, f"not claimed: {ctx.stop_reason}") for cid in ids]
    claims, why = ctx.store.claim_many(ids, ctx.runner, ctx.run_id, ctx.lease)
    if ctx.distributed or any(c.state.load_type != LoadType.INCREMENTAL for c in claims):
        ctx.spark_needed()
    by_id = {c.config_id: c for c in claims}
    keepers: dict[str, LeaseKeeper] = {}
    # One thread per load waiting for its bookkeeping: they share the commits (a load
    # never waits here for another load's work, only for the commits it is part of).
    books = (ThreadPoolExecutor(max_workers=min(len(claims), BOOKKEEPING_THREADS),
                                thread_name_prefix="restlake-bookkeeping")
             if len(claims) > 1 else None)
    try:
        for claim in claims:
            keepers[claim.config_id] = LeaseKeeper(ctx.store, claim).__enter__()

        def one(cid: str) -> Future:
            claim = by_id.get(cid)
            if claim is None and why.get(cid) == NO_SUCH_ROW:
                return _done(LoadOutcome(cid, UNKNOWN, error=f"no control row with ConfigId {cid}"))
            if claim is None and why.get(cid, "").startswith(INVALID_ROW):
                return _done(LoadOutcome(cid, INVALID, error=why[cid]))
            if claim is None:
                return _done(_skipped(ctx, cid, f"not claimed: {why.get(cid, 'not claimable')}"))
            keeper = keepers[cid]
            if books is None or ctx.stopping:
                try:
                    if ctx.stopping:
                        return _done(_release_unstarted(ctx, claim, keeper))
                    return _done(run_load(ctx, keeper.claim, keeper))  # renewed while it waited
                finally:
                    keeper.stop()
            # the keeper is stopped by the bookkeeping, when its finish's commit starts
            return run_load(ctx, keeper.claim, keeper, defer=books.submit)

        if parallel <= 1 or len(ids) <= 1:
            futures = [one(cid) for cid in ids]
        else:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="restlake-load") as pool:
                futures = list(pool.map(one, ids))
        return [f.result() for f in futures]
    finally:
        if books is not None:
            books.shutdown(wait=True)  # every queued finish and audit lands before run returns
        for keeper in keepers.values():  # stopped once each; a second stop is a no-op
            keeper.stop()


def _done(outcome: LoadOutcome) -> Future:
    """An outcome already known, as a future (like those of deferred bookkeeping)."""
    future: Future = Future()
    future.set_result(outcome)
    return future


def _skipped(ctx: RunContext, cid: str, reason: str) -> LoadOutcome:
    ctx.emit("skipped", config_id=cid, reason=reason)
    return LoadOutcome(cid, "SKIPPED", error=reason)


def _release_unstarted(ctx: RunContext, claim: Claim, keeper: LeaseKeeper) -> LoadOutcome:
    """A claimed load that a stop reached before it started: its row goes back to PENDING."""
    try:
        keeper.check("release")
        released = ctx.store.release(keeper.claim, on_commit=keeper.stop)
    except Exception as exc:  # noqa: BLE001 - the lease then expires and the row is claimable
        log.warning("%s: could not release the unstarted load: %s", claim.config_id,
                    sanitize_error(exc))
        released = False
    state = "released (PENDING)" if released else "left to its lease"
    return _skipped(ctx, claim.config_id, f"not started: {ctx.stop_reason}; the row is {state}")


def run_load(ctx: RunContext, claim: Claim, lease: Optional[LeaseKeeper] = None,
             defer: Optional[Callable[[Callable[[], LoadOutcome]], Future]] = None) -> Any:
    """Load one claimed row to completion or failure; always finishes the row and audits.

    Args:
        lease: the claim's keeper, already started (default: one started here).
        defer: hands the load's bookkeeping (a function returning the outcome) to
            whoever runs it, and returns its future; ``run_load`` then returns that future
            as soon as the load's target commits are done. Needs ``lease``, which the
            bookkeeping stops when the control finish's commit starts.
    """
    with log_context(config_id=claim.config_id, run_id=claim.run_id):
        if lease is not None:
            return _run_load(ctx, claim, lease, defer)
        if defer is not None:
            raise ValueError("a deferred bookkeeping needs the claim's running LeaseKeeper")
        with LeaseKeeper(ctx.store, claim) as keeper:
            return _run_load(ctx, claim, keeper, None)


def _run_load(ctx: RunContext, claim: Claim, lease: LeaseKeeper,
              defer: Optional[Callable[[Callable[[], LoadOutcome]], Future]]) -> Any:
    started_at, t0 = utcnow(), time.monotonic()
    row, state = claim.row, claim.state
    cid = claim.config_id
    telemetry = Telemetry()
    progress = LoadProgress()
    progress.add_time("claim", claim.claim_seconds)
    cfg: Optional[SourceConfig] = None
    error: Optional[str] = None
    stopped: Optional[BaseException] = None  # LeaseLostError or LoadInterrupted
    staging = RunStaging(ctx.staging_root, cid, claim.run_id)
    writer: Optional[TargetWriter] = None
    load: Optional[_Load] = None
    ctx.emit("load_started", config_id=cid, load_type=state.load_type.value,
             start=state.load_start, end=state.load_end)
    crashpoint("after_claim")

    def failed(exc: BaseException, what: str = "load") -> None:
        nonlocal error, stopped
        text = sanitize_error(exc)
        if error is not None:  # the load's first error is its error
            log.warning("%s: %s also failed: %s", cid, what, text)
            return
        error = text
        progress.quality_failed = isinstance(exc, QualityError)
        if isinstance(exc, (LeaseLostError, LoadInterrupted)):
            stopped = exc
            log.warning("%s: %s stopped: %s", cid, what, error)
        else:
            log.error("%s: %s failed: %s", cid, what, error)

    def settle() -> LoadOutcome:
        with log_context(config_id=cid, run_id=claim.run_id):
            if load is not None:  # what the load held back for its bookkeeping
                try:
                    load.flush_held()
                except Exception as exc:  # noqa: BLE001 - recorded like any failure of the load
                    failed(exc, "window log append")
            try:  # the heartbeat goes on until the finish's commit starts (_settle_row)
                outcome = _finish(ctx, claim, lease, cfg, state, error, stopped, progress,
                                  telemetry, started_at, t0, writer)
            finally:
                lease.stop()
            staging.cleanup()
            return outcome

    try:
        cfg = mapping.row_to_config(row)
        if cfg.is_push:
            raise LoadError(f"{cid} is a push source (webhook:): its events are loaded by "
                            "'restlake receive' or 'restlake serve', not by 'run'")
        if state.load_start is None or state.load_end is None:
            raise LoadError("control row has no LoadStartTime/LoadEndTime; run 'restlake generate'")
        windows = split(state.load_start, state.load_end, cfg.window)
        ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
        writer = TargetWriter(ctx.spark, ctx.warehouse, cfg, ref, claim.run_id, cid,
                              load_id=state.load_id)
        load = _Load(ctx, claim, cfg, writer, staging, telemetry, progress, lease,
                     hold=defer is not None)
        load.execute(windows)
        load.quality.after_load()
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded, then re-raised if fatal
        failed(exc)
        if not isinstance(exc, Exception):
            lease.stop()
            _finish(ctx, claim, lease, cfg, state, error, stopped, progress, telemetry,
                    started_at, t0, writer)
            raise
    if defer is not None:
        return defer(settle)
    return settle()


class _Load:
    """One load's fetch/commit loop (kept apart from the bookkeeping in run_load)."""

    def __init__(self, ctx: RunContext, claim: Claim, cfg: SourceConfig, writer: TargetWriter,
                 staging: RunStaging, telemetry: Telemetry, progress: LoadProgress,
                 lease: LeaseKeeper, hold: bool = False) -> None:
        self.ctx, self.claim, self.cfg, self.writer = ctx, claim, cfg, writer
        self.staging, self.telemetry, self.progress = staging, telemetry, progress
        self._read: set[int] = set()  # the futures whose outcome was counted
        self._turn = threading.Condition()  # windows committed whole (page batches wait)
        self._whole: set[int] = set()
        self._closing = False
        self.lease = lease
        self.state = claim.state
        self.per_commit = cfg.limits.windows_per_commit  # windows per target commit
        self.quality = LoadQuality(ctx.spark, ctx.store, cfg, claim.run_id, claim.state, writer,
                                   ctx.emit, notify=ctx.notify)
        # With ``hold`` the window-log rows of the latest target commit wait (appended before
        # the next target commit, else by the bookkeeping), and so does the health log.
        self.hold = hold
        self.held_log: list[dict[str, Any]] = []
        self.health: Any = None
        self.warmup: Optional[WriteWarmup] = None

    def flush_held(self) -> None:
        """Append what the load held back: its latest window-log rows, its health log."""
        self._flush_window_log()
        self._flush_health()

    def _flush_health(self) -> None:
        health, self.health = self.health, None
        if health is not None:
            from framework.ops.health_store import flush_load_health

            flush_load_health(self.ctx.spark, self.ctx.warehouse, health,
                              self.ctx.store.control_ref.catalog)

    def _log_windows(self, rows: list[dict[str, Any]]) -> None:
        """The window-log rows of a target commit: appended now, or held (``hold``)."""
        self.held_log.extend(rows)
        if not self.hold:
            self._flush_window_log()

    def _flush_window_log(self) -> None:
        rows, self.held_log = self.held_log, []
        if rows:
            self.lease.check("window log append")
            self.ctx.store.append_window_log(rows)
            crashpoint("after_window_log")

    def execute(self, windows: list[Window]) -> None:
        cfg, progress = self.cfg, self.progress
        incremental = self.state.load_type == LoadType.INCREMENTAL
        progress.windows_total = len(windows)
        # The first attempt of a load (Attempt 1) finds nothing of its LoadId in the window
        # log: only claims of this LoadId write there, and this is its first claim.
        resumable = incremental and self.state.attempt > 1
        done = (self.ctx.store.committed_windows(cfg.config_id, self.state.load_id or "")
                if resumable else set())
        todo = [(i, w) for i, w in enumerate(windows) if (w.start, w.end) not in done]
        progress.windows_skipped = len(windows) - len(todo)
        if not todo:
            return
        columns = self.writer.current_columns()
        from framework.ops.health import HealthRecorder

        health = HealthRecorder(cfg.config_id, cfg.system, self.claim.run_id)  # bounded buffer
        batched = bool(incremental and cfg.limits.pages_per_commit)
        # Which windows share a commit depends on their indices only (framework.load.batching);
        # quality checks that gate the commit see the whole load, so it commits once.
        self.per_commit = (1 if batched else len(windows) if self.quality.holds_commits
                           else cfg.limits.windows_per_commit)
        checkpoints = (self.ctx.store.window_checkpoints(cfg.config_id, self.state.load_id or "")
                       if batched and resumable else {})
        resume = {i: checkpoints[(w.start, w.end)] for i, w in todo if (w.start, w.end) in checkpoints}
        pool: Optional[ThreadPoolExecutor] = None
        fetcher: Optional[WindowFetcher] = None
        futures: list[tuple[int, Window, Future]] = []
        # The first commit waits for more windows than the first one staged: a window
        # staged meanwhile may warm the JVM's Delta write (framework.load.warmup).
        first_commit = len(todo) if not incremental else min(self.per_commit, len(todo))
        if (first_commit > 1 and not self.ctx.distributed and self.ctx.warehouse.is_local
                and warmup_enabled()):
            self.warmup = WriteWarmup(self.writer, columns, self.staging.folder)

        def on_page(records: int) -> None:
            crashpoint("page_fetched")
            if records:
                self.ctx.spark_needed()
            if not incremental:  # a FULL_LOAD commits only whole: an unfinished one stops now
                self._stop_point("full load stopped before its overwrite")
        try:
            if self.ctx.distributed:
                from framework.load.distributed import fetch_windows_distributed

                futures = fetch_windows_distributed(
                    self.ctx.spark, cfg, todo, self.claim.run_id, self.staging, columns,
                    load_id=self.state.load_id, batched=batched, resume=resume, health=health)
            else:
                fetcher = WindowFetcher(cfg, self.claim.run_id, self.staging, columns,
                                        load_limiter(cfg), load_id=self.state.load_id,
                                        health=health,
                                        on_page=on_page)

                # The fetch thread commits a window's page batches; the driver commits its
                # last pages once the window is fetched. A window's first batch waits for
                # the window before it to be committed: one MERGE into the target at a
                # time, in window order.
                before = {index: todo[n - 1][0] for n, (index, _) in enumerate(todo) if n}

                def on_segment(piece: StagedSegment) -> None:
                    self._await_committed(before.get(piece.index))
                    self._commit_segment(piece, columns)
                    self._stop_point(f"window {piece.window.key} stopped after page batch "
                                     f"{piece.checkpoint['segment']} (committed, with its "
                                     "checkpoint)")

                def fetch(index: int, window: Window) -> WindowResult:
                    self._stop_point(f"window {window.key} was not started")
                    options: dict[str, Any] = {}
                    if batched:
                        options = {"resume": resume.get(index), "on_segment": on_segment}
                    with log_context(config_id=cfg.config_id, run_id=self.claim.run_id,
                                     window=window.key):
                        result = fetcher(index, window, **options)
                    crashpoint("window_staged")
                    if self.warmup is not None and result.stage.rows:  # a window with rows to write
                        self.warmup.offer(result.stage)
                    return result

                # Page batches commit from inside the window, so windows go one at a time, in order.
                pool = ThreadPoolExecutor(max_workers=1 if batched else cfg.limits.concurrency,
                                          thread_name_prefix=f"restlake-{cfg.config_id}")
                futures = [(i, w, pool.submit(fetch, i, w)) for i, w in todo]
            if incremental:
                self._commit_in_order(futures, columns)
            else:
                results = [self._result(i, w, f) for i, w, f in futures]
                self._end_warmup()
                self._judge(results, columns)
                self._flush_window_log()
                self.lease.check("target commit")
                crashpoint("before_target_commit")
                with self.progress.timed("write"):
                    write = self.writer.overwrite([r.stage for r in results], columns)
                self._committed(results, write)
        finally:
            with self._turn:  # a batch waiting for a window that will not commit gives up
                self._closing = True
                self._turn.notify_all()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            self._count_unread(futures)
            if fetcher is not None:
                fetcher.close()
            self._end_warmup()
            # one health-log append per load, whichever executor fetched (never raises)
            self.health = health
            if not self.hold:
                self._flush_health()

    def _stop_point(self, what: str) -> None:
        """Raise :class:`LoadInterrupted` when a stop was requested."""
        if self.ctx.stopping:
            raise LoadInterrupted(f"{self.ctx.stop_reason}: {what}")

    def _result(self, index: int, window: Window, future: Future) -> Any:
        """The window's result (or a page batch staged by a Spark task); logs a failure."""
        self._read.add(id(future))
        try:
            with self.progress.timed("fetch"):
                result = future.result()
        except BaseException as exc:
            self._count_requests(exc)
            self._log_failed_window(window, exc)
            raise
        if isinstance(result, StagedSegment):
            return result
        self.progress.add_time("stage", result.stage_seconds)
        self._count_requests(result)
        self.ctx.emit("window_fetched", config_id=self.cfg.config_id, window=window.key,
                      records=result.records, pages=result.pages)
        return result

    def _await_committed(self, index: Optional[int]) -> None:
        """Wait until window ``index`` (the one before a page batch's) is committed whole;
        raises :class:`LoadInterrupted` when the load ends first."""
        if index is None:
            return
        with self._turn:
            self._turn.wait_for(lambda: index in self._whole or self._closing)
            if index not in self._whole:
                raise LoadInterrupted(f"window {index} before this page batch was not committed")

    def _count_requests(self, outcome: Any) -> None:
        """Add the requests of a window's result or failure to the load's telemetry."""
        telemetry = getattr(outcome, "telemetry", None)
        if telemetry is not None:
            self.telemetry.merge(telemetry)

    def _count_unread(self, futures: list[tuple[int, Window, Future]]) -> None:
        """The requests of windows that ended but were not read (the load failed or
        stopped before them) count in the audit row too."""
        for _, _, future in futures:
            if id(future) in self._read or not future.done() or future.cancelled():
                continue
            self._read.add(id(future))
            failure = future.exception()
            self._count_requests(failure if failure is not None else future.result())

    def _commit_in_order(self, futures: list[tuple[int, Window, Future]], columns: Any) -> None:
        pieces: dict[int, list[tuple[int, Window, Future]]] = {}
        for piece in futures:  # a Spark task's page batches come before its window's result
            pieces.setdefault(piece[0], []).append(piece)
        for batch in plan_batches(pieces, self.per_commit):
            results: list[WindowResult] = []
            try:
                for index in batch:
                    for piece in pieces[index]:
                        got = self._result(*piece)
                        if isinstance(got, StagedSegment):  # per_commit is 1 with page batches
                            self._commit_segment(got, columns)
                            self._stop_point(f"window {got.window.key} stopped after page batch "
                                             f"{got.checkpoint['segment']}")
                        else:
                            results.append(got)
            except LoadInterrupted:
                # A drain commits what is fetched. A keyless batch commits only whole: its
                # txnVersion names the whole batch, so a part of it would hide the rest.
                if results and self.cfg.primary_key and not self.quality.holds_commits:
                    self._commit_windows(results, batch_version(batch, self.per_commit), columns)
                raise
            self._commit_windows(results, batch_version(batch, self.per_commit), columns)

    def _commit_windows(self, results: list[WindowResult], version: int, columns: Any) -> None:
        if not results:
            return
        self._end_warmup()
        self._judge(results, columns)
        self._flush_window_log()  # the previous commit's rows land before the next commit
        self.lease.check("target commit")
        crashpoint("before_target_commit")
        with self.progress.timed("write"):
            write = self.writer.merge([r.stage for r in results], columns, batch_version=version)
        self._committed(results, write)

    def _judge(self, results: list[WindowResult], columns: Any) -> None:
        """The before-commit quality checks of a commit's windows. A refused commit's
        records were read all the same: they count in the audit row's ``SourceRowCount``
        (none is written)."""
        try:
            self.quality.before_commit([r.stage for r in results], results, columns)
        except QualityError:
            self.progress.source_rows += sum(r.records for r in results)
            raise

    def _end_warmup(self) -> None:
        """The windows of a commit are fetched (its quality checks and target write are
        next) or the load ends: no warm-up from now on, a running one is cancelled."""
        if self.warmup is not None:
            self.warmup.finish()

    def _committed(self, results: list[WindowResult], write: WriteResult) -> None:
        crashpoint("after_target_commit")
        progress = self.progress
        with progress.timed("write"):
            rejected = self.writer.quarantine([r.stage for r in results])
            if self.cfg.archive:  # raw pages land with the rows they produced
                write_pages(self.ctx.spark, self.ctx.warehouse, self.writer.ref,
                            staged_page_files([r.stage.folder for r in results]))
        now = utcnow()
        rows = []
        for r in results:
            progress.windows_loaded += 1
            progress.source_rows += r.records
            progress.rescued += r.rescued_rows
            progress.schema_changes |= r.new_fields
            if r.expected is not None:
                progress.expected = (progress.expected or 0) + r.expected
            tel = r.telemetry.as_dict() if r.telemetry else {}
            rows.append({
                "ConfigId": self.cfg.config_id, "LoadId": self.state.load_id or "",
                "RunId": self.claim.run_id, "WindowStart": r.window.start, "WindowEnd": r.window.end,
                "Status": "SUCCESS", "Rows": r.records, "Pages": r.pages,
                "Requests": tel.get("requests"), "Retries": tel.get("retries"),
                "TargetVersion": write.version,
                "Checkpoint": json.dumps(r.checkpoint) if r.checkpoint else None,
                "ErrorMessage": None, "LoggedAt": now,
            })
            r.stage.discard()
        progress.rows_written += write.rows_written
        progress.rejected += rejected
        progress.rescued += write.rows_rescued
        progress.schema_changes |= set(write.schema_changes)
        progress.version = write.version
        self._log_windows(rows)
        with self._turn:
            self._whole.update(r.index for r in results)
            self._turn.notify_all()
        self.ctx.emit("committed", config_id=self.cfg.config_id, windows=len(results),
                      rows=write.rows_written, version=write.version)

    def _commit_segment(self, piece: StagedSegment, columns: Any) -> None:
        """Commit one page batch of a long window and record where to resume after it."""
        index, window, stage, checkpoint = piece.index, piece.window, piece.stage, piece.checkpoint
        self.quality.before_commit([stage], (), columns)
        self._flush_window_log()
        self.lease.check("target commit")
        crashpoint("before_target_commit")
        with self.progress.timed("write"):
            write = self.writer.merge([stage], columns,
                                      batch_version=segment_version(index, checkpoint["segment"]))
        crashpoint("after_target_commit")
        with self.progress.timed("write"):
            rejected = self.writer.quarantine([stage])
        self.progress.rows_written += write.rows_written
        self.progress.rejected += rejected
        self.progress.rescued += write.rows_rescued
        self.progress.schema_changes |= set(write.schema_changes)
        self.progress.version = write.version
        self._log_windows([{
            "ConfigId": self.cfg.config_id, "LoadId": self.state.load_id or "",
            "RunId": self.claim.run_id, "WindowStart": window.start, "WindowEnd": window.end,
            "Status": "CHECKPOINT", "Rows": stage.rows, "TargetVersion": write.version,
            "Checkpoint": json.dumps(checkpoint, default=str), "LoggedAt": utcnow(),
        }])
        stage.discard()
        self.ctx.emit("segment_committed", config_id=self.cfg.config_id, window=window.key,
                      segment=checkpoint["segment"], rows=write.rows_written, version=write.version)

    def _log_failed_window(self, window: Window, exc: BaseException) -> None:
        if isinstance(exc, (LeaseLostError, LoadInterrupted)):
            return  # not a failure of the window: nothing to record for it
        try:
            self.lease.check("window log append")
            self.ctx.store.append_window_log([{
                "ConfigId": self.cfg.config_id, "LoadId": self.state.load_id or "",
                "RunId": self.claim.run_id, "WindowStart": window.start, "WindowEnd": window.end,
                "Status": "FAILED", "ErrorMessage": sanitize_error(exc), "LoggedAt": utcnow(),
            }])
        except Exception as log_exc:  # noqa: BLE001 - the load's own error matters more
            log.warning("did not append the failed window to the window log: %s",
                        sanitize_error(log_exc))



def _finish(ctx: RunContext, claim: Claim, lease: LeaseKeeper, cfg: Optional[SourceConfig],
            state: states.ControlState, error: Optional[str], stopped: Optional[BaseException],
            progress: LoadProgress, telemetry: Telemetry, started_at: dt.datetime, t0: float,
            writer: Optional[TargetWriter]) -> LoadOutcome:
    """Settle the control row and append the audit row; neither failure hides the other."""
    cid = claim.config_id
    status, error = _settle_row(ctx, claim, lease, cfg, state, error, stopped, progress)
    total = None
    if writer is not None:
        try:
            total = writer.total_rows()
        except Exception:  # noqa: BLE001 - a count failure must not hide the run's result
            total = None
    duration_s = time.monotonic() - t0
    progress.settle_phases(duration_s)
    audit = audit_record(
        claim.row, load_type=state.load_type.value, status=status, error=error,
        run_id=claim.run_id, load_id=state.load_id, attempt=state.attempt,
        load_start=state.load_start, load_end=state.load_end, started_at=started_at,
        duration_s=duration_s, loaded_by=ctx.loaded_by, progress=progress,
        telemetry=telemetry.as_dict(), total_rows=total)
    crashpoint("before_audit")
    audit_error = None
    try:
        ctx.store.append_audit(audit)  # Delta commit conflicts are retried inside
    except Exception as exc:  # noqa: BLE001 - reported: the command exits non-zero
        audit_error = sanitize_error(exc)
        log.error("%s: could not append the audit row of run %s (load %s): %s", cid,
                  claim.run_id, state.load_id, audit_error)
    ctx.emit("load_finished", config_id=cid, status=status, rows=progress.rows_written,
             source_rows=progress.source_rows, error=error)
    from framework.ops.notify import notify_load_finished

    if ctx.notify:
        notify_load_finished(ctx.warehouse, audit)  # no-op unless RESTLAKE_NOTIFICATIONS is set
    return LoadOutcome(cid, status, progress.rows_written, progress.source_rows, error, audit,
                       audit_error)


def _settle_row(ctx: RunContext, claim: Claim, lease: LeaseKeeper, cfg: Optional[SourceConfig],
                state: states.ControlState, error: Optional[str], stopped: Optional[BaseException],
                progress: LoadProgress) -> tuple[str, Optional[str]]:
    """Write the load's end into its control row, if the claim still holds it.

    SUCCESS and FAILED/PARTIAL finish the row; a drained load (``LoadInterrupted``)
    releases it to PENDING; a load whose claim was lost writes nothing.

    Returns:
        the audit status and error text.
    """
    if isinstance(stopped, LeaseLostError):
        return RunResult.LEASE_LOST.value, error
    if isinstance(stopped, LoadInterrupted):
        status = RunResult.INTERRUPTED.value
        error = (f"{error}; {progress.windows_loaded} of {progress.windows_total} windows "
                 "committed, the row is PENDING again (same range and LoadId)")
    elif error is None:
        status = RunResult.SUCCESS.value
    elif progress.quality_failed:
        status = RunResult.FAILED_QUALITY.value
    elif progress.windows_loaded > 0 or progress.rows_written > 0:
        status = RunResult.PARTIAL.value
    else:
        status = RunResult.FAILED.value
    try:
        lease.check("control update")
        crashpoint("before_control_finish")
        # the heartbeat goes on while the finish waits for its turn, and ends when the MERGE
        # holding it starts (which writes only while the row is still this claim's)
        if status == RunResult.INTERRUPTED.value:
            written = ctx.store.release(claim, on_commit=lease.stop)
        elif error is None:
            policy = mapping.policy_of(cfg) if cfg else states.LoadPolicy(state.load_start or utcnow())
            written = ctx.store.finish(claim, states.succeed(state, claim.runner, policy),
                                       on_commit=lease.stop)
        else:
            written = ctx.store.finish(claim, states.fail(state, claim.runner, error),
                                       on_commit=lease.stop)
        if not written:
            raise LeaseLostError(ctx.store.lost_reason(claim) + "; stopped before the control update")
        crashpoint("after_control_finish")
    except LeaseLostError as exc:
        lost = sanitize_error(exc)
        log.error("%s: %s", claim.config_id, lost)
        return RunResult.LEASE_LOST.value, f"{error}; {lost}" if error else lost
    except Exception as exc:  # noqa: BLE001
        finish_error = sanitize_error(exc)
        log.error("%s: could not update the control row: %s", claim.config_id, finish_error)
        error = f"{error}; control update failed: {finish_error}" if error else \
            f"control update failed: {finish_error}"
        status = RunResult.FAILED.value if progress.windows_loaded == 0 else RunResult.PARTIAL.value
    return status, error


def staging_root(warehouse: Warehouse) -> Path:
    """``RESTLAKE_STAGING``, else ``<warehouse>/_staging`` (local), else a temp folder."""
    explicit = os.environ.get("RESTLAKE_STAGING")
    if explicit:
        return Path(explicit)
    if warehouse.root is not None:
        return warehouse.root / "_staging"
    import tempfile

    return Path(tempfile.gettempdir()) / "restlake_staging"
