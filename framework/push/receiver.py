"""The webhook receiver: verify, spool (fsync'd), acknowledge; a flusher writes Delta.

Per request (``POST /hooks/<config_id>``, :mod:`framework.service.hooks`):

1. the push source is looked up in the control table (read without a JVM; refreshed
   every ``refresh_s`` and when an unknown id arrives) -> 404 when there is none;
2. a body above ``webhook.max_body_bytes`` -> 413; a missing or wrong signature -> 401;
   a body that is not JSON (or holds a lone surrogate escape, NaN or Infinity), or has
   no event id at ``webhook.event_id_path`` -> 400;
3. ``webhook.queue_events`` events already waiting for the flusher -> 503 with
   ``Retry-After`` (the sender retries; nothing was stored);
4. the raw event is appended to the source's spool and the answer (202) waits for
   the fsync that covers it (group commit): acknowledged means durable.

The flusher thread writes each source's spooled events every ``webhook.batch_events``
events or ``webhook.batch_seconds`` seconds (:func:`framework.push.flush.flush_events`),
then records the flushed position, then appends one audit row (``LoadType = PUSH``).
At start, whatever a crash left in the spools is flushed first. A failed flush keeps
its events spooled and is retried with backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Mapping, Optional


from framework.config import SourceConfig
from framework.errors import ConfigError
from framework.http.client import TooDeep, parse_json
from framework.load.crashpoints import crashpoint
from framework.push.flush import HEADERS_KEPT, FlushResult, body_problem, event_id, flush_events
from framework.push.signatures import SignatureError, Verifier
from framework.push.spool import Spool, SpoolFull, hold_folder
from framework.secrets import redact
from framework.timeutil import utcnow

log = logging.getLogger(__name__)

SPOOL_ENV = "RESTLAKE_SPOOL"
MAX_HEADER_CHARS = 256
MAX_BACKOFF_S = 60.0


class ReceiveError(Exception):
    """A request the receiver refuses: HTTP ``status`` and a ``detail`` (no secret)."""

    def __init__(self, status: int, detail: str, headers: Optional[dict[str, str]] = None) -> None:
        self.status, self.detail, self.headers = status, redact(detail), headers
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"ReceiveError({self.status}: {self.detail})"


def spool_root(warehouse: Any) -> Path:
    """``RESTLAKE_SPOOL``, else ``<warehouse>/_spool`` (local), else a temp folder."""
    explicit = os.environ.get(SPOOL_ENV)
    if explicit:
        return Path(explicit)
    if warehouse.root is not None:
        return warehouse.root / "_spool"
    import tempfile

    return Path(tempfile.gettempdir()) / "restlake_spool"


class PushSource:
    """One push source: its config, its spool and its flush bookkeeping."""

    def __init__(self, cfg: SourceConfig, spool: Spool) -> None:
        self.cfg = cfg
        self.spool = spool
        self._verifier: Optional[Verifier] = None
        self.first_pending: Optional[float] = None  # monotonic time the oldest pending arrived
        self.failures = 0
        self.next_try = 0.0
        self.flushing = threading.Lock()  # one flush of a source at a time
        self.last: Optional[FlushResult] = None

    def __repr__(self) -> str:
        return f"PushSource({self.cfg.config_id}, {self.spool!r})"

    def use(self, cfg: SourceConfig) -> None:
        if cfg != self.cfg:  # a changed config (e.g. a rotation's previous_secret): re-resolve
            self.cfg, self._verifier = cfg, None

    def verifier(self) -> Verifier:
        """The signature check (its secrets are resolved on first use, then kept until
        :meth:`reload_secrets` or a changed config)."""
        verifier = self._verifier
        if verifier is None:
            verifier = self._verifier = self._resolve()
        return verifier

    def reload_secrets(self) -> Verifier:
        """Resolve the secrets again (a rotation behind the same references); the old ones
        stay in use when the new ones cannot be read.

        Raises:
            ReceiveError: 500, a secret reference does not resolve (named, no value).
        """
        verifier = self._verifier = self._resolve()
        return verifier

    def _resolve(self) -> Verifier:
        from framework.secrets import resolve

        wh, cid = self.cfg.webhook, self.cfg.config_id
        try:
            secret = resolve(wh.secret, field=f"{cid}: webhook.secret")
            previous = (None if wh.previous_secret is None else
                        resolve(wh.previous_secret, field=f"{cid}: webhook.previous_secret"))
        except ConfigError as exc:
            raise ReceiveError(500, f"a webhook secret of {cid} cannot be read: "
                                    f"{exc.message}") from None
        until = wh.previous_secret_until.timestamp() if wh.previous_secret_until else None
        return Verifier(wh.signature, secret.encode("utf-8"), wh.signature_header,
                        wh.tolerance_s, previous=None if previous is None else
                        previous.encode("utf-8"), previous_until=until)


class Receiver:
    """Receives the events of every push source of one warehouse.

    Args:
        warehouse: where the control table and the targets live.
        control_catalog: catalog of the ``metadata`` schema.
        spool: the spool root (default :func:`spool_root`).
        spark_factory: the Spark session flushes write with (started on the first flush).
        clock: Unix seconds (Stripe's tolerance, receipt times); tests inject one.
        refresh_s: how often the push sources are re-read from the control table.
        tick_s: how often the flusher looks for due batches.
        configs: serve these push sources instead of reading the control table
            (benchmarks, tests; the audit table is still written).
    """

    def __init__(self, warehouse: Any, control_catalog: str = "main", *,
                 spool: Optional[Path] = None, spark_factory: Optional[Callable[[], Any]] = None,
                 clock: Callable[[], float] = time.time, refresh_s: float = 10.0,
                 tick_s: float = 0.2, configs: Optional[list[SourceConfig]] = None) -> None:
        self.warehouse = warehouse
        self.control_catalog = control_catalog
        self.root = Path(spool) if spool is not None else spool_root(warehouse)
        self._spark_factory = spark_factory
        self._clock = clock
        self._refresh_s = refresh_s
        self._tick_s = tick_s
        self._lock = threading.RLock()
        self._wake = threading.Condition()
        self._sources: dict[str, PushSource] = {}
        self._fixed = {c.config_id: c for c in configs} if configs is not None else None
        self._configs: dict[str, SourceConfig] = dict(self._fixed or {})
        self._loaded_at = -math.inf
        self._reader: Any = None
        self._flusher: Optional[threading.Thread] = None
        self._stopping = False
        self._drain = True
        self._spark: Any = None
        self._root_lock: Optional[int] = None

    def __repr__(self) -> str:
        return f"Receiver({self.warehouse!r}, spool {self.root}, {len(self._sources)} sources)"

    # ------------------------------------------------------------- lifecycle
    def start(self) -> "Receiver":
        """Read the push sources, recover the spools (a crash's events) and start flushing.

        Raises:
            SpoolInUse: another receiver uses the spool root (named, with its process).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._root_lock = hold_folder(self.root, "receiver.lock")
        try:
            self._start()
        except BaseException:
            self.stop(drain=False)
            raise
        return self

    def _start(self) -> None:
        self._refresh(force=True)
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if folder.name in self._configs:
                self._source_of(self._configs[folder.name])
            elif any(folder.glob("*.spool")):
                log.warning("spool %s belongs to no push source in the control table; its "
                            "events stay there until the source is back", folder)
        for src in self._sources.values():
            if src.spool.pending:
                src.first_pending = -math.inf  # recovered events: flush them now
                log.warning("%s: %d spooled events from before the restart will be flushed",
                            src.cfg.config_id, src.spool.pending)
        self._flusher = threading.Thread(target=self._flush_loop, name="restlake-flusher",
                                         daemon=True)
        self._flusher.start()

    def stop(self, drain: bool = True) -> None:
        """Stop: refuse new events, flush what is spooled (``drain``), close the spools."""
        with self._wake:
            self._stopping = True
            self._drain = drain
            self._wake.notify_all()
        if self._flusher is not None:
            self._flusher.join()
        with self._lock:
            for src in self._sources.values():
                src.spool.close()
        if self._root_lock is not None:
            os.close(self._root_lock)
            self._root_lock = None

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- sources
    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._loaded_at < self._refresh_s:
                return
            self._loaded_at = now
            self._configs = self._read_push_configs()
            for cid, src in self._sources.items():
                if cid in self._configs:
                    src.use(self._configs[cid])

    def _read_push_configs(self) -> dict[str, SourceConfig]:
        from control.mapping import row_to_config

        if self._fixed is not None:
            return dict(self._fixed)
        from framework.lake.reader import TableReader
        from framework.ops.queries import Queries

        if self._reader is None:
            self._reader = TableReader(self.warehouse, spark_factory=self.spark)
        out: dict[str, SourceConfig] = {}
        try:
            rows = Queries(self._reader, self.control_catalog).control_rows()
        except Exception as exc:  # noqa: BLE001 - keep serving the sources already known
            log.error("cannot read the control table: %s", redact(f"{type(exc).__name__}: {exc}"))
            return dict(self._configs)
        for row in rows:
            if '"webhook"' not in (row.get("Options") or "") or row.get("Enabled") is False:
                continue
            try:
                cfg = row_to_config(row)
            except ConfigError as exc:
                log.error("push source %s is not loaded: %s", row.get("ConfigId"), exc.message)
                continue
            out[cfg.config_id] = cfg
        return out

    def _source_of(self, cfg: SourceConfig) -> PushSource:
        with self._lock:
            src = self._sources.get(cfg.config_id)
            if src is None:
                src = PushSource(cfg, Spool(self.root / cfg.config_id))
                self._sources[cfg.config_id] = src
            return src

    def source(self, config_id: str) -> PushSource:
        """The push source of ``config_id``.

        Raises:
            ReceiveError: 404, no enabled push source has that id.
        """
        self._refresh()
        cfg = self._configs.get(config_id)
        if cfg is None:
            self._refresh(force=time.monotonic() - self._loaded_at >= 1.0)
            cfg = self._configs.get(config_id)
        if cfg is None:
            raise ReceiveError(404, f"no push source '{config_id}' (a config with webhook:, "
                                    "enabled, in the control table: run 'restlake generate')")
        return self._source_of(cfg)

    def reload_secrets(self, config_id: str) -> dict[str, Any]:
        """Re-read the push source of ``config_id`` and resolve its webhook secrets again
        (``POST /hooks/{config_id}/reload-secret``): a secret rotated behind the same
        reference, or a new ``previous_secret``, is used from the next event on.

        Returns:
            ``config_id`` and ``secrets``: how many are accepted now (1, or 2 while a
            previous secret's overlap lasts). Never a secret value.

        Raises:
            ReceiveError: 404 unknown source; 500 a secret does not resolve (the secrets
                in use are kept).
        """
        self._refresh(force=True)
        src = self.source(config_id)
        verifier = src.reload_secrets()
        log.info("%s: webhook secrets reloaded (%d accepted)", config_id,
                 len(verifier.secrets(self._clock())))
        return {"config_id": config_id, "secrets": len(verifier.secrets(self._clock()))}

    # ---------------------------------------------------------------- receive
    def accept(self, src: PushSource, body: bytes, headers: Mapping[str, str]) -> tuple[str, Future]:
        """Check one event and append it to the spool.

        Returns:
            the event id, and a future done when the event is on disk (answer 2xx then).

        Raises:
            ReceiveError: 413, 401, 400 or 503 (nothing was stored).
        """
        if self._stopping:
            raise ReceiveError(503, "the receiver is stopping; send again shortly",
                               {"Retry-After": "5"})
        wh = src.cfg.webhook
        if len(body) > wh.max_body_bytes:
            raise ReceiveError(413, f"the body has {len(body)} bytes; "
                                    f"{src.cfg.config_id} takes at most {wh.max_body_bytes}")
        try:
            src.verifier().verify(body, headers, self._clock())
        except SignatureError as exc:
            log.warning("%s: refused an event: %s", src.cfg.config_id, exc)
            raise ReceiveError(401, str(exc)) from None
        try:
            data = parse_json(body)  # as a pulled page's body: big integers kept exact
        except TooDeep as exc:
            raise ReceiveError(400, str(exc)) from None
        except ValueError:
            media = str(headers.get("content-type") or "").split(";")[0].strip().lower()
            if media and "json" not in media:  # e.g. GitHub's default, form-encoded
                raise ReceiveError(400, f"the body is not JSON (Content-Type {media[:100]}): set "
                                        "the sender's content type to application/json") from None
            raise ReceiveError(400, "the body is not JSON") from None
        problem = body_problem(body, data)
        if problem is not None:
            raise ReceiveError(400, f"the body cannot be stored: {problem}")
        eid = event_id(body, data, wh.event_id_path)
        if eid is None:
            raise ReceiveError(400, f"the event has no id at '{wh.event_id_path}' "
                                    "(webhook.event_id_path)")
        kept = {k: str(headers[k])[:MAX_HEADER_CHARS] for k in HEADERS_KEPT if k in headers}
        meta = {"id": eid, "at": int(self._clock() * 1_000_000), "h": kept}
        try:
            end = src.spool.append(meta, body, limit=wh.queue_events)
        except SpoolFull as exc:
            retry = str(max(1, math.ceil(wh.batch_seconds)))
            raise ReceiveError(503, f"{src.cfg.config_id}: {exc}; send again later",
                               {"Retry-After": retry}) from None
        if src.first_pending is None:
            src.first_pending = time.monotonic()
        if src.spool.pending >= wh.batch_events:
            with self._wake:
                self._wake.notify_all()
        return eid, src.spool.durable(end)

    def receive(self, config_id: str, body: bytes, headers: Mapping[str, str],
                timeout: Optional[float] = None) -> str:
        """Accept one event and wait until it is durable; returns its id (no HTTP: tests)."""
        eid, durable = self.accept(self.source(config_id), body, headers)
        durable.result(timeout)
        return eid

    # ------------------------------------------------------------------ flush
    def spark(self) -> Any:
        if self._spark is None:
            if self._spark_factory is None:
                from framework.lake.spark import get_spark

                self._spark_factory = get_spark
            self._spark = self._spark_factory()
        return self._spark

    def _due(self, src: PushSource, now: float, stopping: bool) -> bool:
        if now < src.next_try and not stopping:
            return False
        if src.spool.intent is not None:
            return True
        pending = src.spool.pending
        if not pending:
            return False
        wh = src.cfg.webhook
        return (stopping or pending >= wh.batch_events
                or (src.first_pending is not None and now - src.first_pending >= wh.batch_seconds))

    def _flush_loop(self) -> None:
        while True:
            with self._wake:
                if not self._stopping:
                    self._wake.wait(self._tick_s)
                stopping = self._stopping
            with self._lock:
                sources = list(self._sources.values())
            # One batch per source per round: a source's backlog never holds back another's.
            while sources and not (stopping and not self._drain):
                sources = [src for src in sources if self._flush_due(src, stopping)]
            if stopping:
                return

    def _flush_due(self, src: PushSource, stopping: bool) -> bool:
        """Flush one batch of ``src`` if one is due; whether it may have another."""
        if not self._due(src, time.monotonic(), stopping):
            return False
        result = self.flush_once(src)
        # nothing durable to flush yet; or, stopping, a failing batch stays for the next start
        return bool(result.run_id) and not (result.error is not None and stopping)

    def flush(self, config_id: Optional[str] = None) -> list[FlushResult]:
        """Flush everything spooled now (of one source, or all); tests and shutdown."""
        with self._lock:
            sources = [s for cid, s in self._sources.items() if config_id in (None, cid)]
        out = []
        for src in sources:
            while src.spool.intent is not None or src.spool.pending:
                result = self.flush_once(src)
                out.append(result)
                if result.error is not None:
                    break
        return out

    def flush_once(self, src: PushSource) -> FlushResult:
        """Flush one batch of ``src``; the audit row is appended whatever happened."""
        with src.flushing:
            return self._flush_once(src)

    def _flush_once(self, src: PushSource) -> FlushResult:
        from framework.load.runtime import sanitize_error, staging_root

        started, t0 = utcnow(), time.monotonic()
        intent = None
        try:  # recording the range can fail too (a full disk): a failure like the others
            intent = src.spool.begin_flush(src.cfg.webhook.batch_events)
            if intent is None:
                return FlushResult(src.cfg.config_id, "", src.spool.seq)
            from control.store import ControlStore

            spark = self.spark()
            result = flush_events(spark, self.warehouse, src.cfg,
                                  lambda: src.spool.read(intent.start, intent.end), intent.seq,
                                  src.spool.spool_id, staging_root(self.warehouse),
                                  ControlStore(spark, self.warehouse, self.control_catalog))
            crashpoint("push_before_checkpoint")
            src.spool.commit_flush(intent)
            src.failures, src.next_try = 0, 0.0
        except Exception as exc:  # noqa: BLE001 - recorded; the events stay spooled
            src.failures += 1
            src.next_try = time.monotonic() + min(MAX_BACKOFF_S, 2.0 ** src.failures)
            seq, events = (intent.seq, intent.events) if intent else (src.spool.seq + 1, 0)
            result = FlushResult(src.cfg.config_id, f"push-{src.spool.spool_id}-{seq:08d}",
                                 seq, events=events, error=sanitize_error(exc))
            log.error("%s: flush #%d of %d events failed (kept in the spool, retried in %.0f s): "
                      "%s", src.cfg.config_id, seq, events, src.next_try - time.monotonic(),
                      result.error)
        src.first_pending = time.monotonic() if src.spool.pending else None
        src.last = result
        crashpoint("push_before_audit")
        self._audit(src.cfg, result, started, time.monotonic() - t0)
        return result

    def _audit(self, cfg: SourceConfig, result: FlushResult, started: dt.datetime,
               seconds: float) -> None:
        from control.store import ControlStore
        from framework.load.runtime import sanitize_error

        try:
            store = ControlStore(self.spark(), self.warehouse, self.control_catalog)
            store.append_audit(push_audit_row(cfg, result, started, seconds))
        except Exception as exc:  # noqa: BLE001 - the flush's own outcome matters more
            log.error("%s: could not append the audit row of flush #%d: %s", cfg.config_id,
                      result.seq, sanitize_error(exc))

    def state(self) -> dict[str, Any]:
        """Per source: events waiting, the last flush (for ``/health``)."""
        with self._lock:
            sources = dict(self._sources)
        return {cid: {"pending": s.spool.pending, "flushes": s.spool.seq,
                      "failing": s.failures, "last_error": s.last.error if s.last else None}
                for cid, s in sorted(sources.items())}


def push_audit_row(cfg: SourceConfig, result: FlushResult, started: dt.datetime,
                   seconds: float) -> dict[str, Any]:
    """The audit row of one flush (``LoadType = PUSH``), built like every run's
    (:func:`framework.load.audit.audit_record`)."""
    from control.mapping import config_to_row
    from framework.load.audit import LoadProgress, audit_record, current_user

    from control.states import RunResult

    progress = LoadProgress(source_rows=result.records, rows_written=result.stored,
                            rejected=result.rejected, rescued=result.rescued,
                            schema_changes=set(result.schema_changes), version=result.version,
                            quality_failed=result.quality_error is not None)
    status = (RunResult.FAILED if result.error else
              RunResult.FAILED_QUALITY if result.quality_error else RunResult.SUCCESS)
    return audit_record(
        {**config_to_row(cfg), "APIEndpoint": f"/hooks/{cfg.config_id}"}, load_type="PUSH",
        status=status.value, error=result.error or result.quality_error,
        run_id=result.run_id, load_id=None, attempt=None, load_start=result.first_received,
        load_end=result.last_received, started_at=started, duration_s=seconds,
        loaded_by=current_user(), progress=progress,
        telemetry={"pages": result.events, "requests": 0}, total_rows=result.total_rows,
        extra={"EventsReceived": result.events, "DuplicateRows": result.duplicates})
