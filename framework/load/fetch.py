"""Fetching windows: request -> pages -> records -> staged rows (no Spark).

:class:`WindowFetcher` is the fetch stack of one load, built in this one place for
every executor (the threaded runtime, a Spark task of ``run --distributed``, the
benchmarks): pooled session, auth, retry policy, rate budget, and per window the HTTP
client (observed by the health recorder), paginator, parser, row shaper, raw-page
recorder (``archive: true``), completeness check and page batches
(``limits.pages_per_commit``). What it cannot do itself (Delta commits, health-log
appends) it hands to its caller: a committed page batch through ``on_segment``, the
request outcomes through the :class:`~framework.ops.health.HealthRecorder` it fills.

At most two pages are in memory at a time: while the rows of one page are shaped and
staged, the request for the next is already on the wire (one request in flight per
window, so ``limits.concurrency`` still bounds the requests a load has in flight).
Two features add requests, each in its own module: concurrent pages of an
``offset``/``page`` window whose total is known (:mod:`framework.load.pages`: up to
``limits.concurrency`` pages ahead, bounded load-wide by one gate, staged in page order)
and detail fan-out (:mod:`framework.load.detail`: ``detail.concurrency`` per window).
Records stream to the window's staging files. A window either completes (every page
read and staged) or raises, and then nothing of it reaches the target.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from framework import jsonpath
from framework.config import SourceConfig
from framework.errors import CompletenessError, RestlakeError, WindowError
from framework.http.auth import build_auth
from framework.http.client import HttpClient, source_session
from framework.http.models import PageRequest, PageResponse
from framework.http.pagination import build_paginator
from framework.http.ratelimit import RateLimiter, limiter_for
from framework.http.retry import RetryPolicy
from framework.http.telemetry import Telemetry
from framework.load.archive import PageRecorder
from framework.load.detail import DetailFetcher, detail_fetcher
from framework.load.gcpolicy import pace_for_pages
from framework.load.pages import PageWalker, RequestGate
from framework.load.staging import RunStaging, WindowStage
from framework.schema import ColumnType, RowShaper
from framework.secrets import expand_env
from framework.timeutil import utcnow
from framework.windows import Window, render
from parsers import get_parser

log = logging.getLogger(__name__)

SEQ_STRIDE = 10 ** 9  # arrival order across windows: window index * stride + row number


@dataclass
class WindowResult:
    """What fetching one window produced."""

    index: int
    window: Window
    stage: WindowStage
    records: int = 0
    pages: int = 0
    expected: Optional[int] = None  # the total the API reported, when it reports one
    new_fields: set[str] = field(default_factory=set)
    new_keys: dict[str, list[str]] = field(default_factory=dict)  # column -> payload keys
    rescued_rows: int = 0
    retyped: dict[str, str] = field(default_factory=dict)  # column -> type of misfit values
    telemetry: Any = None
    checkpoint: Optional[dict[str, Any]] = None
    resumed_from: Optional[int] = None  # the page-batch segment a rerun resumed after
    earlier_records: Optional[int] = None  # records of the window read before that checkpoint
    stage_seconds: float = 0.0  # parsing pages and staging their rows (the audit's StageSeconds)

    @property
    def window_records(self) -> int:
        """Records of the whole window, counting those read before a resumed checkpoint."""
        return (self.earlier_records or 0) + self.records

    def __repr__(self) -> str:
        return (f"WindowResult(w{self.index} {self.window.key} records={self.records} "
                f"pages={self.pages})")


@dataclass
class StagedSegment:
    """A page batch of window ``index`` that is staged and waits for its commit.

    The threaded runtime commits a page batch as soon as it is staged; a Spark task
    cannot commit, so it stages its batches and the driver commits them, in order,
    before the rest of their window.
    """

    index: int
    window: Window
    stage: WindowStage
    checkpoint: dict[str, Any]

    def __repr__(self) -> str:
        return f"StagedSegment(w{self.index} s{self.checkpoint.get('segment')} rows={self.stage.rows})"


def total_path_of(cfg: SourceConfig) -> Optional[str]:
    """Where the API reports the window's total, if the config says so."""
    explicit = cfg.parser_options.get("total_path") if isinstance(cfg.parser_options, dict) else None
    if explicit:
        return explicit
    return getattr(cfg.pagination, "total_path", None)


def check_completeness(cfg: SourceConfig, result: WindowResult) -> None:
    """Compare the window's record count with the total the API reported.

    Raises:
        CompletenessError: they differ and the config says ``completeness: strict``.
    """
    records = result.window_records
    if result.expected is None or result.expected == records or cfg.completeness == "off":
        return
    message = (f"window {result.window.key}: loaded {records} records but the API "
               f"reported a total of {result.expected} (difference {records - result.expected:+d})")
    if cfg.completeness == "strict":
        raise CompletenessError(message + "; completeness: strict fails the window")
    log.warning("%s: %s", cfg.config_id, message)


def build_request(cfg: SourceConfig, window: Window) -> PageRequest:
    """The first request of ``window``: placeholders substituted everywhere, ``${ENV}``
    expanded (now, not at validation: the control row keeps the template), and the
    source's origin policy attached (where its credentials may go)."""
    return PageRequest(
        method=cfg.method,
        url=expand_env(render(cfg.endpoint, window)),
        params=render(dict(cfg.params), window),
        headers=render(dict(cfg.headers), window),
        json=render(cfg.body, window) if cfg.body is not None else None,
        origins=cfg.origin_policy(),
    )


def stage_records(records: Any, shaper: RowShaper, stage: WindowStage, *, run_id: str,
                  window_start: dt.datetime, window_end: dt.datetime,
                  collected_at: dt.datetime, seq: int) -> int:
    """Shape parsed records into ``stage``; a rejected record goes to its quarantine file.

    Returns:
        the sequence number of the last record (arrival order: ``seq + 1`` is the first's).
    """
    page = shaper.shape_page(records, run_id=run_id, window_start=window_start,
                             window_end=window_end, collected_at=collected_at, seq=seq)
    for reason, record in page.rejects:
        stage.reject(str(reason), record, window_start=window_start.isoformat(),
                     window_end=window_end.isoformat(), collected_at_utc=collected_at.isoformat())
    stage.write_lines(page.lines, page.observed, page.keys)
    return seq + len(page.lines) + len(page.rejects)


def complete_details(details: DetailFetcher, records: list[Any], stage: WindowStage,
                     window: Window, collected_at: dt.datetime) -> list[Any]:
    """``records`` completed by their detail requests; those that cannot be go to the
    stage's quarantine file (reason naming the id)."""
    completed, quarantined = details.complete(records)
    for item in quarantined:
        stage.reject(item.reason, item.record, window_start=window.start.isoformat(),
                     window_end=window.end.isoformat(), collected_at_utc=collected_at.isoformat())
    return completed


def fetch_window(cfg: SourceConfig, client: HttpClient, shaper: RowShaper, window: Window,
                 index: int, stage: WindowStage, run_id: str,
                 now: Callable[[], dt.datetime] = utcnow,
                 on_page: Optional[Callable[[int], None]] = None,
                 on_response: Optional[Callable[[PageResponse, Window, int], None]] = None,
                 pages_per_commit: Optional[int] = None,
                 on_segment: Optional[Callable[[WindowStage, dict[str, Any]], WindowStage]] = None,
                 resume: Optional[dict[str, Any]] = None,
                 details: Optional[DetailFetcher] = None,
                 page_gate: Optional[RequestGate] = None) -> WindowResult:
    """Read every page of ``window`` and stage its rows.

    Page batches (``pages_per_commit`` with ``on_segment``): every ``pages_per_commit``
    pages, while more pages follow, the current stage is closed and handed to
    ``on_segment(stage, checkpoint)``, which commits it and returns the stage for the
    next pages. ``checkpoint`` holds the next request and the paginator's progress;
    passing it back as ``resume`` continues the window from there (after a crash).

    ``on_response(response, window, page_no)`` sees every raw page before it is parsed
    (the raw archive). With ``completeness: strict`` a window whose record count differs
    from the total the API reported fails.

    ``details`` (``detail:``) completes each page's records with their detail requests
    before they are staged; records it cannot complete go to the stage's quarantine.

    For ``offset``/``page`` pagination whose first response reports a total (and
    ``limits.concurrent_pages``), the remaining pages are requested concurrently
    (:class:`~framework.load.pages.PageWalker`, at most ``limits.concurrency`` ahead and
    within ``page_gate``, the load's bound) and read here in page order, as above.

    Raises:
        WindowError: the window cannot be loaded (its stage is removed).
        LoadError: the load cannot go on (e.g. schema drift with ``schema_mode: fail``).
    """
    result = WindowResult(index, window, stage, telemetry=client.telemetry)
    # total_path is read here, not by the parser
    options = {k: v for k, v in cfg.parser_options.items() if k != "total_path"}
    parser = get_parser(cfg.parser, options, data_path=cfg.data_path)
    paginator = build_paginator(cfg.pagination.model_dump(exclude_none=True))
    request = build_request(cfg, window)
    total_path = total_path_of(cfg)
    seq = index * SEQ_STRIDE
    segment, pages_in_segment = 0, 0
    # The next page's request goes out before this page's rows are shaped, so shaping
    # overlaps the API's latency instead of adding to it.
    prefetch = ThreadPoolExecutor(1, thread_name_prefix=f"restlake-page-{index}")
    # Requests sent ahead (the prefetched page, the walker's pages) stop retrying once the
    # window is over: a failed window leaves no request of its own running behind it.
    over = threading.Event()
    send_ahead = functools.partial(client.send, cancel=over)
    pending: Optional[Future[PageResponse]] = None
    walker: Optional[PageWalker] = None
    concurrency = cfg.limits.concurrency if cfg.limits.concurrent_pages else 1
    try:
        if resume:  # the saved request; masked values and the origin policy from the config
            request = request.resumed(resume["request"])
            paginator.resume(resume["paginator"])
            segment, seq = int(resume["segment"]), int(resume["seq"])
            result.resumed_from = segment
            # counts carried by the checkpoint (absent in checkpoints of older versions)
            result.earlier_records = resume.get("records")
            result.expected = resume.get("expected")
        else:
            paginator.init_request(request)
        while True:
            if walker is not None:
                response = walker.next(request)
            else:
                response = pending.result() if pending is not None else client.send(request)
            pending = None
            if on_response is not None:
                on_response(response, window, result.pages)
            collected_at = now()
            staging_t0 = time.perf_counter()
            records = parser.parse(response.data)
            if details is None:
                shaper.check_keys(records)
            if result.pages == 0 and total_path and result.resumed_from is None:
                total = jsonpath.find(response.data, total_path)
                if isinstance(total, int) and not isinstance(total, bool):
                    result.expected = total
            if walker is not None:
                walker.check(response, paginator)
            paginator.update_state(response, records)
            more = paginator.has_next_page
            if more:
                paginator.update_request(request)
                if walker is None:
                    walker = PageWalker.start(paginator, request, response, records,
                                              send_ahead, concurrency, page_gate, over)
                if walker is None:
                    pending = prefetch.submit(send_ahead, request.copy())
            elif walker is not None:
                walker.finish()
            listed = len(records)
            if details is not None:  # while the next page is on the wire
                detail_t0 = time.perf_counter()
                records = complete_details(details, records, stage, window, collected_at)
                staging_t0 += time.perf_counter() - detail_t0  # detail requests are fetching
                shaper.check_keys(records)
            seq = stage_records(records, shaper, stage, run_id=run_id,
                                window_start=window.start, window_end=window.end,
                                collected_at=collected_at, seq=seq)
            result.stage_seconds += time.perf_counter() - staging_t0
            result.records += listed
            result.pages += 1
            client.telemetry.count_page()
            if on_page is not None:
                on_page(listed)
            if not more:
                break
            pages_in_segment += 1
            if pages_per_commit and on_segment is not None and pages_in_segment >= pages_per_commit:
                segment += 1
                checkpoint = {"segment": segment, "seq": seq, "request": request.checkpoint(),
                              "paginator": paginator.checkpoint(),
                              "records": result.window_records, "expected": result.expected}
                stage.close()
                stage = on_segment(stage, checkpoint)
                result.stage = stage
                pages_in_segment = 0
        if result.resumed_from is None or result.earlier_records is not None:
            check_completeness(cfg, result)
    except RestlakeError:
        stage.abort()
        raise
    except Exception as exc:  # a bug or an unexpected library error: still fail the window
        stage.abort()
        raise WindowError(f"window {window.key}: {type(exc).__name__}: {exc}") from exc
    finally:
        # On failure a request may still be in flight: it stops retrying, and the window
        # ends only when it has ended (at most one request's timeout), so no request of a
        # failed window reaches the API after the load moved on.
        over.set()
        prefetch.shutdown(wait=True, cancel_futures=True)
        if walker is not None:
            walker.close()
        if details is not None:
            details.close()
            client.telemetry.merge_detail(details.client.telemetry)
    stage.close()
    return take_schema_evidence(result, shaper)


def take_schema_evidence(result: WindowResult, shaper: RowShaper) -> WindowResult:
    """Copy what shaping the window's records found into ``result``: new fields,
    retyped fields and rescued rows (the audit row's and the drift judgement's evidence)."""
    result.new_fields = set(shaper.new_fields)
    result.new_keys = {col: sorted(keys) for col, keys in shaper.new_keys.items()}
    result.rescued_rows = shaper.rescued_rows
    result.retyped = {k: v.value for k, v in shaper.retyped.items()}
    return result


def in_flight_per_window(cfg: SourceConfig) -> int:
    """Requests one window may have in flight at once: its page requests (one, or
    ``limits.concurrency`` with concurrent pages) plus, with ``detail:``,
    ``detail.concurrency`` detail requests (connections kept for each)."""
    pages = cfg.limits.concurrency if cfg.limits.concurrent_pages else 1
    return pages + (cfg.detail.concurrency if cfg.detail is not None else 0)


def load_limiter(cfg: SourceConfig) -> RateLimiter:
    """The rate budget a load draws from in this process: one bucket per host."""
    endpoint = expand_env(cfg.endpoint)  # the host may come from ${ENV}
    return limiter_for(urlsplit(endpoint).netloc or endpoint, cfg.limits.requests_per_second)


class WindowFetcher:
    """The fetch stack of one load: fetches its windows into staging.

    One pooled session, auth and retry policy for the load; per window an HTTP client,
    a row shaper, the window's stage and, with ``archive: true``, its raw-page recorder.
    Thread-safe: call it from several threads.

    Args:
        cfg: the source.
        run_id: lineage of the staged rows.
        staging: the run's staging folder.
        columns: the target's data columns (``None`` when it does not exist yet).
        limiter: the rate budget to draw from (``None``: unlimited).
        load_id: the load the windows belong to (archived with the raw pages).
        pool_size: connections kept to the host (default ``limits.concurrency``).
        health: a :class:`~framework.ops.health.HealthRecorder` that sees every attempt.
        on_page: called after each page with its record count (crash points, progress).
    """

    def __init__(self, cfg: SourceConfig, run_id: str, staging: RunStaging,
                 columns: Optional[dict[str, ColumnType]], limiter: Optional[RateLimiter], *,
                 load_id: Optional[str] = None, pool_size: Optional[int] = None,
                 health: Any = None, on_page: Optional[Callable[[int], None]] = None) -> None:
        self.cfg, self.run_id, self.staging, self.columns = cfg, run_id, staging, columns
        self.limiter, self.load_id, self.health, self.on_page = limiter, load_id, health, on_page
        self.pool_size = pool_size or cfg.limits.concurrency
        pace_for_pages()
        self.session = source_session(self.pool_size * in_flight_per_window(cfg),
                                      head_timeout_s=cfg.limits.body_timeout_s)
        # concurrent pages of all windows together: at most limits.concurrency in flight
        self.page_gate = RequestGate(cfg.limits.concurrency)
        self.auth = build_auth(cfg.auth.model_dump(exclude_none=True), self.session,
                               timeout_s=cfg.limits.timeout_s)
        self.policy = RetryPolicy(max_retries=cfg.limits.max_retries,
                                  backoff_base_s=cfg.limits.backoff_base_s,
                                  backoff_max_s=cfg.limits.backoff_max_s,
                                  retry_after_max_s=cfg.limits.retry_after_max_s)

    def __call__(self, index: int, window: Window, *,
                 on_segment: Optional[Callable[[StagedSegment], None]] = None,
                 resume: Optional[dict[str, Any]] = None) -> WindowResult:
        """Fetch window ``index`` into its stage.

        Args:
            on_segment: with ``limits.pages_per_commit``, receives each page batch of
                the window once it is staged (to commit it, or to send it to the
                driver); the window's later pages go to a new stage.
            resume: the checkpoint of the last committed page batch (a rerun).

        Raises:
            WindowError: the window cannot be loaded (its current stage is removed).
            LoadError: the load cannot go on.
        """
        cfg = self.cfg
        client = self.client()
        shaper = RowShaper(cfg.system, tuple(cfg.primary_key), tuple(cfg.required_fields),
                           self.columns, cfg.schema_mode)
        stage = self.staging.window(index)
        recorder = (PageRecorder(stage.folder, cfg.config_id, self.run_id, self.load_id, index)
                    if cfg.archive else None)
        batches: dict[str, Any] = {}
        if on_segment is not None and cfg.limits.pages_per_commit:
            def next_stage(done: WindowStage, checkpoint: dict[str, Any]) -> WindowStage:
                on_segment(StagedSegment(index, window, done, checkpoint))
                return self.staging.segment(index, checkpoint["segment"])

            batches = {"pages_per_commit": cfg.limits.pages_per_commit,
                       "on_segment": next_stage, "resume": resume}
        details = detail_fetcher(cfg.detail, self.client, window, cfg.origin_policy(),
                                 render(dict(cfg.headers), window))
        try:
            return fetch_window(cfg, client, shaper, window, index, stage, self.run_id,
                                on_page=self.on_page, on_response=recorder, details=details,
                                page_gate=self.page_gate, **batches)
        except BaseException as exc:
            # the requests a failed window made count in its load's audit row too
            exc.telemetry = client.telemetry  # type: ignore[attr-defined]
            raise

    def client(self) -> HttpClient:
        """A new HTTP client (own telemetry) on the load's session, auth, retry policy,
        rate budget and health observer."""
        cfg = self.cfg
        return HttpClient(self.auth, self.policy, cfg.limits.timeout_s, self.limiter, Telemetry(),
                          self.session, cfg.limits.max_body_bytes, allow_post=cfg.allow_post,
                          pool_size=self.pool_size,
                          on_attempt=self.health.observe if self.health is not None else None,
                          body_timeout_s=cfg.limits.body_timeout_s)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "WindowFetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WindowFetcher({self.cfg.config_id} -> {self.staging.folder}, {self.limiter!r})"
