"""Source health: probes, request outcomes and incident spans (no Spark here).

Two kinds of checks land in the health log (``metadata.api_health_log``):

* ``probe`` — ``restlake health`` and the scheduler send one cheap read-only request per
  enabled source (its own auth, timeout and first window's params, page size 1 where
  the pagination style has one) and compare the status with the expected one (the
  config's ``health:`` block: ``expected_status``, ``timeout_s``);
* ``ingest`` — every attempt of a real load, seen through
  :class:`framework.http.client.HttpClient`'s ``on_attempt`` observer and buffered by
  :class:`HealthRecorder` (bounded; the runtime appends one batch per load).

A check is *up* when the source answered as expected: for probes, the expected status;
for ingestion attempts, any HTTP answer below 500 (a 4xx is the request's fault, not
the source's). An **incident** is a span of consecutive failed checks of one source,
from its first failure to the first success after it (``None`` while ongoing).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from framework.secrets import redact
from framework.timeutil import to_utc

log = logging.getLogger(__name__)

PROBE = "probe"
INGEST = "ingest"
DEFAULT_MAX_ROWS = 2000
ERROR_LIMIT = 500


def is_up(kind: str, status: Optional[int], expected: Optional[Iterable[int]] = None) -> bool:
    """The up/down rule of one check (see the module docstring)."""
    if status is None:
        return False
    if kind == PROBE:
        return status in set(expected) if expected else 200 <= status < 300
    return status < 500


def new_check_id() -> str:
    """A unique id for one health row: the checks of one instant and one run (the manual
    checks of a process share their RunId) still sort in one order, and pages never tie."""
    return uuid.uuid4().hex


class HealthRecorder:
    """Buffers request outcomes of one load or one probe run, thread-safe and bounded.

    Failed attempts are always kept (up to ``max_rows``); successes beyond the bound are
    only counted, so a load of a million pages costs at most ``max_rows`` health rows.

    Args:
        config_id: the source.
        source_system: its ``SourceSystem``.
        run_id: the run the attempts belong to.
        kind: :data:`INGEST` or :data:`PROBE`.
        expected: statuses a probe expects (default: any 2xx).
        max_rows: the bound.
        clock: the current UTC time.
    """

    def __init__(self, config_id: str, source_system: Optional[str], run_id: Optional[str],
                 kind: str = INGEST, expected: Optional[Iterable[int]] = None,
                 max_rows: int = DEFAULT_MAX_ROWS,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.config_id, self.source_system, self.run_id = config_id, source_system, run_id
        self.kind = kind
        self.expected = tuple(expected) if expected else None
        self.max_rows = max_rows
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self.dropped = 0

    def observe(self, method: str, url: str, status: Optional[int], elapsed_s: float,
                error_kind: Optional[str], error: Optional[str] = None) -> None:
        """The ``on_attempt`` observer of :class:`framework.http.client.HttpClient`."""
        ok = is_up(self.kind, status, self.expected)
        if self.kind == PROBE and not ok and error_kind is None:
            error_kind = "unexpected_status"
        self._keep({
            "ConfigId": self.config_id, "SourceSystem": self.source_system, "CheckKind": self.kind,
            "CheckedAt": self._clock(), "Method": method, "Url": redact(url), "StatusCode": status,
            "Ok": ok, "ElapsedMs": round(max(elapsed_s, 0.0) * 1000, 3), "ErrorKind": error_kind,
            "ErrorMessage": redact(error)[:ERROR_LIMIT] if error else None, "RunId": self.run_id,
            "CheckId": new_check_id(),
        })

    def _keep(self, row: dict[str, Any]) -> None:
        ok = row["Ok"]
        with self._lock:
            if len(self._rows) < self.max_rows:
                self._rows.append(row)
            elif not ok:
                # make room for a failure: drop the oldest success
                for i, kept in enumerate(self._rows):
                    if kept["Ok"]:
                        del self._rows[i]
                        self._rows.append(row)
                        break
                else:
                    self.dropped += 1
                    return
                self.dropped += 1
            else:
                self.dropped += 1

    def note_error(self, error: str) -> None:
        """Attach a sanitized error text to the last failed row (probes)."""
        with self._lock:
            for row in reversed(self._rows):
                if not row["Ok"]:
                    row["ErrorMessage"] = redact(error)[:ERROR_LIMIT]
                    return

    def rows(self) -> list[dict[str, Any]]:
        """A snapshot of the buffered rows."""
        with self._lock:
            return [dict(r) for r in self._rows]

    def drain(self) -> dict[str, Any]:
        """Hand over the buffered rows and the dropped count, JSON-ready, and start empty.

        A Spark task cannot append to the health log; it sends this to the driver,
        whose recorder takes it in with :meth:`absorb`.
        """
        with self._lock:
            rows, dropped = self._rows, self.dropped
            self._rows, self.dropped = [], 0
        for row in rows:
            row["CheckedAt"] = to_utc(row["CheckedAt"]).isoformat()
        return {"rows": rows, "dropped": dropped}

    def absorb(self, drained: dict[str, Any]) -> None:
        """Take in what another recorder drained (its rows count against this bound)."""
        with self._lock:
            self.dropped += int(drained.get("dropped") or 0)
        for row in drained.get("rows") or ():
            self._keep(dict(row, CheckedAt=to_utc(row["CheckedAt"])))

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def __repr__(self) -> str:
        return (f"HealthRecorder({self.config_id} {self.kind}: {len(self)} rows, "
                f"{self.dropped} dropped)")


# ----------------------------------------------------------------- incidents
@dataclass(frozen=True)
class Incident:
    """A span of consecutive failed checks of one source."""

    config_id: str
    started_at: dt.datetime
    ended_at: Optional[dt.datetime]  # the first successful check after it; None: ongoing
    failed_checks: int
    last_error: Optional[str]

    @property
    def ongoing(self) -> bool:
        return self.ended_at is None

    def duration(self, now: dt.datetime) -> dt.timedelta:
        return (self.ended_at or to_utc(now)) - self.started_at

    def __repr__(self) -> str:
        end = "ongoing" if self.ended_at is None else self.ended_at.isoformat()
        return f"Incident({self.config_id} {self.started_at.isoformat()} .. {end}, {self.failed_checks} failed)"


def incident_spans(checks: Iterable[dict[str, Any]]) -> list[Incident]:
    """Spans of consecutive failures per source, in time order.

    Args:
        checks: rows with ``ConfigId``, ``CheckedAt``, ``Ok`` and optionally ``ErrorMessage``
            / ``ErrorKind`` (any order).
    """
    by_source: dict[str, list[dict[str, Any]]] = {}
    for c in checks:
        by_source.setdefault(c["ConfigId"], []).append(c)
    out: list[Incident] = []
    for cid, rows in sorted(by_source.items()):
        rows.sort(key=lambda r: to_utc(r["CheckedAt"]))
        start: Optional[dt.datetime] = None
        failed, last_error = 0, None
        for r in rows:
            at = to_utc(r["CheckedAt"])
            if not r["Ok"]:
                if start is None:
                    start, failed = at, 0
                failed += 1
                last_error = r.get("ErrorMessage") or r.get("ErrorKind") or last_error
            elif start is not None:
                out.append(Incident(cid, start, at, failed, last_error))
                start, failed, last_error = None, 0, None
        if start is not None:
            out.append(Incident(cid, start, None, failed, last_error))
    return out


# -------------------------------------------------------------------- probes
def probe_request(cfg: Any, now: dt.datetime) -> Any:
    """The cheap request of a probe: the source's request for the last hour, page size 1."""
    from framework.load.fetch import build_request
    from framework.windows import Window

    request = build_request(cfg, Window(to_utc(now) - dt.timedelta(hours=1), to_utc(now)))
    paging = cfg.pagination
    size_param = getattr(paging, "limit_param", None) or getattr(paging, "size_param", None)
    if size_param:
        request.params[size_param] = 1
    return request


def probe(cfg: Any, *, now: dt.datetime, run_id: Optional[str] = None,
          expected: Optional[Iterable[int]] = None, timeout_s: Optional[float] = None,
          clock: Optional[Callable[[], dt.datetime]] = None) -> dict[str, Any]:
    """Probe one source once; returns its health row (never raises for a source failure).

    Args:
        cfg: the source's :class:`framework.config.SourceConfig`.
        now: the probe time (also used to render the request's window).
        expected: statuses that mean up (default: the config's ``health.expected_status``,
            else any 2xx).
        timeout_s: override the config's ``health.timeout_s`` (default: ``limits.timeout_s``).
    """
    from framework.http.auth import build_auth
    from framework.errors import RestlakeError
    from framework.http.client import HttpClient
    from framework.http.retry import RetryPolicy

    check = cfg.health_check
    expected = expected or check.expected_status
    timeout_s = timeout_s or check.timeout_s or cfg.limits.timeout_s
    recorder = HealthRecorder(cfg.config_id, cfg.system, run_id, PROBE, expected,
                              clock=clock or (lambda: to_utc(now)))
    try:
        request = probe_request(cfg, now)
        auth = build_auth(cfg.auth.model_dump(exclude_none=True), timeout_s=timeout_s)
        client = HttpClient(auth, RetryPolicy(max_retries=0), timeout_s,
                            max_body_bytes=cfg.limits.max_body_bytes, allow_post=cfg.allow_post,
                            pool_size=1, on_attempt=recorder.observe,
                            body_timeout_s=timeout_s)  # a probe ends within its timeout
    except RestlakeError as exc:  # a missing secret or a bad option: the source is not checkable
        recorder.observe(cfg.method, cfg.endpoint, None, 0.0, "config", str(exc))
        return recorder.rows()[-1]
    with client:
        try:
            client.send(request)
        except RestlakeError as exc:
            recorder.note_error(str(exc))
    rows = recorder.rows()
    if not rows:  # cannot happen with one attempt, but never return nothing
        recorder.observe(request.method, request.url, None, 0.0, "connection_error", "no attempt made")
        rows = recorder.rows()
    row = rows[-1]
    if not row["Ok"] and not row["ErrorMessage"]:
        row["ErrorMessage"] = f"status {row['StatusCode']}, expected " + (
            ", ".join(map(str, expected)) if expected else "2xx")
    return row


DEFAULT_PROBE_WORKERS = 64


def probe_many(configs: Iterable[Any], *, now: dt.datetime, run_id: Optional[str] = None,
               workers: int = DEFAULT_PROBE_WORKERS, expected: Optional[Iterable[int]] = None,
               timeout_s: Optional[float] = None,
               clock: Optional[Callable[[], dt.datetime]] = None) -> list[dict[str, Any]]:
    """Probe several sources at once (a bounded thread pool); their rows, in the given order.

    Each probe waits at most its timeout, so a round of N sources takes about
    ``ceil(N / workers)`` times the slowest answer, not the sum of them.

    Args:
        configs: the sources' configs.
        workers: probes in flight at most.
        now, run_id, expected, timeout_s, clock: as :func:`probe`.
    """
    from concurrent.futures import ThreadPoolExecutor

    configs = list(configs)
    if not configs:
        return []

    def one(cfg: Any) -> dict[str, Any]:
        return probe(cfg, now=now, run_id=run_id, expected=expected, timeout_s=timeout_s,
                     clock=clock)

    with ThreadPoolExecutor(max(1, min(workers, len(configs))),
                            thread_name_prefix="restlake-probe") as pool:
        return list(pool.map(one, configs))

