"""The read side of the JSON API: ``GET /health`` and the ``GET /api/v1`` routes.

Every answer comes from :class:`framework.ops.queries.Queries` (no JVM). Lists are
paginated (``limit`` + ``cursor``, see :mod:`framework.service.paging`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal, Optional

from fastapi import APIRouter, Query, Request

from control.states import RunResult
from framework.ops import freshness as fr
from framework.ops.queries import FAILED_STATUSES, Queries, audit_key, check_key
from framework.secrets import is_reference, redact
from framework.service.access import HEADER
from framework.service.api import service_of
from framework.service.paging import (NULLABLE_TEXT, NULLABLE_TIME, CursorParam, JsonAnswer, LimitParam,
                                      decode_cursor, jsonable, page, respond)
from framework.service.problems import Problem
from framework.timeutil import parse_iso

health = APIRouter(tags=["service"])
api = APIRouter(prefix="/api/v1")

PERIODS = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}
JSON_COLUMNS = ("RequestPayload", "RequestBody", "RequestHeaders", "AuthConfig",
                "PaginationConfig", "ParserConfig", "Limits", "Options", "Checkpoint")
SINCE_HELP = ("ISO-8601 timestamp, e.g. 2024-01-01T00:00:00Z (no offset: UTC); "
              "send an offset's '+' as %2B")
#: The sort key of an audit row (:func:`framework.ops.queries.audit_key`): LoggedAt, RunId, ConfigId.
AUDIT_KEY = (NULLABLE_TIME, NULLABLE_TEXT, str)
CREDENTIAL_HEADER_WORDS = ("authorization", "key", "token", "secret", "cookie", "password")


def queries(request: Request) -> Queries:
    svc = service_of(request)
    return Queries(svc.reader, svc.control_catalog, clock=svc.clock, background=True)


def warm(svc: Any) -> None:
    """Read the tables and compute the answers the dashboard asks for, so that the first
    requests after a start do not wait for them (run in a thread at startup)."""
    import logging

    try:
        q = Queries(svc.reader, svc.control_catalog, clock=svc.clock, background=True)
        if q.is_initialized():
            source_items(q)
            q.health_metric("api_health_summary")
            q.load_counts(hours=24)
    except Exception as exc:  # noqa: BLE001 - a failed warm-up only means slower first answers
        logging.getLogger(__name__).warning("warm-up failed: %s", redact(f"{type(exc).__name__}: {exc}")[:500])


def source_row(q: Queries, config_id: str) -> dict[str, Any]:
    """The control row of ``config_id``; 404 when there is none."""
    row = q.control_row(config_id)
    if row is None:
        known = "the control table does not exist yet" if not q.is_initialized() else \
            "GET /api/v1/sources lists the sources"
        raise Problem(404, f"no source with config_id {config_id!r} ({known})")
    return row


@health.get("/health", summary="the service itself: warehouse readable, scheduler state, version")
def get_health(request: Request) -> JsonAnswer:
    from framework import __version__

    svc = service_of(request)
    readable, detail, control = True, None, None
    try:
        control = queries(request).control_version()
        if control is None:
            readable, detail = False, "the control table does not exist; run 'restlake init'"
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the health answer
        readable, detail = False, redact(f"{type(exc).__name__}: {exc}")[:500]
    scheduler = svc.scheduler.state() if svc.scheduler is not None else {"attached": False}
    if not (svc.public_read or svc.keys.accepts(request.headers.get(HEADER))):
        # no key: what a load balancer or an orchestrator needs, no source and no error text
        scheduler = public_scheduler_state(scheduler)
        if not readable and control is None and detail and "restlake init" not in detail:
            detail = f"the warehouse cannot be read (send {HEADER} to see why)"
    return respond({"status": "ok" if readable else "degraded", "version": __version__,
                     "warehouse": {"readable": readable, "control_table_version": control,
                                   "detail": detail},
                     "scheduler": scheduler, "checked_at": svc.clock()})


PUBLIC_SCHEDULER_FIELDS = ("attached", "state", "spark", "started_at", "sources", "probed_sources")
PUBLIC_JOB_FIELDS = ("next_run", "running", "runs", "last_started", "last_finished")


def public_scheduler_state(state: dict[str, Any]) -> dict[str, Any]:
    """The scheduler's state as ``GET /health`` shows it without a key: states, times and
    counts; a job's error as ``failed``, the sources of its last round as their number."""
    out = {k: state[k] for k in PUBLIC_SCHEDULER_FIELDS if k in state}
    if isinstance(state.get("jobs"), dict):
        out["jobs"] = {name: {**{k: job.get(k) for k in PUBLIC_JOB_FIELDS},
                              "failed": bool(job.get("last_error")),
                              "last_result": _counts(job.get("last_result") or {})}
                       for name, job in state["jobs"].items()}
    return out


def _counts(result: dict[str, Any]) -> dict[str, int]:
    return {k: (len(v) if isinstance(v, (list, tuple, set, dict)) else v) for k, v in result.items()
            if isinstance(v, (list, tuple, set, dict)) or (isinstance(v, int) and not isinstance(v, bool))}


# ------------------------------------------------------------------- sources
def _freshness_json(f: Optional[fr.Freshness]) -> Optional[dict[str, Any]]:
    if f is None:
        return None
    row = f.as_row()
    return {"newest_collected_at": row["NewestCollectedAt"], "age_minutes": row["AgeMinutes"],
            "allowed_minutes": row["AllowedMinutes"], "stale": row["Stale"], "reason": row["Reason"]}


def _load_json(a: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if a is None:
        return None
    return {"run_id": a.get("RunId"), "status": a.get("LoadStatus"), "load_type": a.get("LoadType"),
            "logged_at": a.get("LoggedAt"), "source_rows": a.get("SourceRowCount"),
            "rows_written": a.get("TargetRowCount"), "target_rows": a.get("TargetTotalRowCount"),
            "duration_s": a.get("RunDuration"), "error": a.get("ErrorMessage")}


def _uptime_json(u: Optional[dict[str, Any]]) -> dict[str, Any]:
    u = u or {}
    return {"24h": u.get("uptime_pct_24h"), "7d": u.get("uptime_pct_7d"), "30d": u.get("uptime_pct_30d"),
            "checks_24h": u.get("checks_24h", 0), "last_checked_at": u.get("last_checked_at"),
            "last_ok": u.get("last_ok")}


def source_items(q: Queries) -> list[dict[str, Any]]:
    """Every source as the list shows it (also the dashboard's main table), as JSON values;
    one cached answer until a table it reads moves or the time slot changes."""
    from framework.ops.queries import target_ref

    rows = q.control_rows()
    # A change of the control rows or of the audit is shown at once (it is in the key); new
    # health checks, new target data and the passing time refresh it in the background.
    key = ("source_items", q.catalog, q.control_version(), q.reader.version(q.audit_ref))
    refs = [q.health_ref] + sorted({target_ref(r) for r in rows}, key=lambda ref: ref.name)
    return q.reader.cached(key, refs, lambda: jsonable(_source_items(q)), slot=q.slot(),
                           background=q.background)


def _claim_json(row: dict[str, Any], now: Any) -> Optional[dict[str, Any]]:
    """Who holds a RUNNING row and until when (a killed runner's row waits for its lease
    to end); None for a row no runner holds."""
    from control.mapping import row_to_state
    from control.states import claim_note, is_claimable

    if row.get("LoadStatus") != "RUNNING":
        return None
    state = row_to_state(row)
    return {"by": state.claimed_by, "lease_expires_at": state.lease_expires_at,
            "expired": is_claimable(state, now), "note": claim_note(state, now)}


def _source_items(q: Queries) -> list[dict[str, Any]]:
    rows = q.control_rows()
    now = q.clock()
    latest = q.latest_loads()
    succeeded = q.latest_loads("SUCCESS")
    fresh = {f.config_id: f for f in q.freshness(rows)}
    uptime = {u["ConfigId"]: u for u in q.health_metric("api_uptime")}
    spark = q.uptime_buckets(hours=24, bucket_s=3600)
    out = []
    for r in rows:
        cid = r["ConfigId"]
        last = latest.get(cid)
        out.append({
            "config_id": cid, "api_name": r.get("APIName"), "source_system": r.get("SourceSystem"),
            "owner": r.get("Owner"), "enabled": r.get("Enabled") is not False,
            "status": r.get("LoadStatus"), "load_type": r.get("LoadType"),
            "last_load_time": r.get("LastLoadTime"),
            "target": f"{r['TargetCatalog']}.{r['TargetSchema']}.{r['TargetTable']}",
            "schedule": {"time": r.get("TriggerScheduleTime"), "frequency": r.get("TriggerFrequency")},
            "error": r.get("ErrorMessage"),
            "claim": _claim_json(r, now),
            "last_load": _load_json(last),
            "rows": (succeeded.get(cid) or {}).get("TargetTotalRowCount"),
            "freshness": _freshness_json(fresh.get(cid)),
            "uptime": _uptime_json(uptime.get(cid)),
            "sparkline": [{"at": b["bucket_start"], "uptime_pct": b["uptime_pct"], "checks": b["checks"]}
                          for b in spark.get(cid, [])],
        })
    return out


@api.get("/sources", tags=["sources"],
         summary="every source: status, last load, rows, freshness, uptime 24h (by config_id)")
def list_sources(request: Request, limit: int = LimitParam, cursor: Optional[str] = CursorParam
                 ) -> JsonAnswer:
    items = source_items(queries(request))

    def fetch(after: Optional[list[Any]], n: int) -> list[dict[str, Any]]:
        return [i for i in items if after is None or i["config_id"] > after[0]][:n]

    return page(fetch, lambda i: (i["config_id"],), limit, cursor, (str,), encoded=True)


def masked_config(row: dict[str, Any]) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """The validated config of a control row with secret references only, or its error."""
    from control.mapping import row_to_config
    from framework.errors import ConfigError

    try:
        cfg = row_to_config(row)
    except ConfigError as exc:
        return None, exc.message
    dump = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    dump["headers"] = mask_headers(dump.get("headers") or {})
    return dump, None


def mask_headers(headers: Any) -> Any:
    """Header values named like credentials, unless they are secret references, as ``***``."""
    if not isinstance(headers, dict):
        return headers
    return {k: (v if is_reference(str(v)) or not any(w in k.lower() for w in CREDENTIAL_HEADER_WORDS)
                else "***") for k, v in headers.items()}


@api.get("/sources/{config_id}", tags=["sources"],
         summary="the control row and config of a source (secret references, never values)")
def get_source(request: Request, config_id: str) -> JsonAnswer:
    q = queries(request)
    row = source_row(q, config_id)
    control = dict(row)
    for col in JSON_COLUMNS:
        if isinstance(control.get(col), str):
            try:
                control[col] = json.loads(control[col])
            except ValueError:
                pass  # a hand-edited row: shown as stored; config_error says what is wrong
    control["RequestHeaders"] = mask_headers(control.get("RequestHeaders"))
    config, error = masked_config(row)
    [summary] = [i for i in source_items(q) if i["config_id"] == config_id] or [None]
    return respond({"config_id": config_id, "control_row": control, "config": config,
                     "config_error": error, "summary": summary})


# --------------------------------------------------------------------- loads
StatusParam = Query(None, description="only loads of this audit status")
FailedParam = Query(False, description="only failed loads (FAILED, PARTIAL, FAILED_QUALITY): "
                                       "those the summary's failed_loads_24h counts")


def load_statuses(status: Optional[RunResult], failed: bool) -> Optional[list[str]]:
    """The audit statuses a list of loads shows (None: every one)."""
    if not failed:
        return [status.value] if status is not None else None
    return [s for s in FAILED_STATUSES if status is None or s == status.value]


def _loads_page(q: Queries, limit: int, cursor: Optional[str], **filters: Any) -> JsonAnswer:
    if filters.get("statuses") == []:
        decode_cursor(cursor, AUDIT_KEY)
        return respond({"items": [], "limit": limit, "next_cursor": None})
    return page(lambda after, n: q.audit_rows(limit=n, after=after, **filters), audit_key,
                limit, cursor, AUDIT_KEY)


@api.get("/sources/{config_id}/loads", tags=["loads"], summary="audit rows of a source, newest first")
def source_loads(request: Request, config_id: str, status: Optional[RunResult] = StatusParam,
                 failed: bool = FailedParam, limit: int = LimitParam,
                 cursor: Optional[str] = CursorParam) -> JsonAnswer:
    q = queries(request)
    source_row(q, config_id)
    return _loads_page(q, limit, cursor, config_id=config_id, statuses=load_statuses(status, failed))


def parse_since(since: Optional[str]) -> Optional[dt.datetime]:
    if since is None:
        return None
    try:
        return parse_iso(since)
    except ValueError as exc:
        raise Problem(422, f"since: {exc} (e.g. 2024-01-01T00:00:00Z or 2024-01-01T02:00:00%2B02:00)",
                      errors=[{"field": "since", "in": "query", "message": str(exc)}]) from None


@api.get("/loads", tags=["loads"], summary="audit rows of every source, newest first")
def list_loads(request: Request, status: Optional[RunResult] = StatusParam,
               failed: bool = FailedParam,
               since: Optional[str] = Query(None, description=SINCE_HELP),
               limit: int = LimitParam, cursor: Optional[str] = CursorParam) -> JsonAnswer:
    return _loads_page(queries(request), limit, cursor, statuses=load_statuses(status, failed),
                       since=parse_since(since))


# --------------------------------------------------------------------- stats
@api.get("/stats/uptime/{config_id}", tags=["stats"],
         summary="uptime % of a source over 24h, 7d or 30d, with its series")
def source_uptime(request: Request, config_id: str,
                  period: Literal["24h", "7d", "30d"] = Query("24h")) -> JsonAnswer:
    q = queries(request)
    source_row(q, config_id)
    [u] = [u for u in q.health_metric("api_uptime") if u["ConfigId"] == config_id] or [{}]
    hours = int(PERIODS[period].total_seconds() // 3600)
    bucket = 3600 if period == "24h" else 86400 if period == "30d" else 6 * 3600
    series = q.uptime_buckets(hours=hours, bucket_s=bucket).get(config_id, [])
    return respond({"config_id": config_id, "period": period,
                     "uptime_pct": u.get(f"uptime_pct_{period}"), "checks": u.get(f"checks_{period}", 0),
                     "last_checked_at": u.get("last_checked_at"), "last_ok": u.get("last_ok"),
                     "bucket_s": bucket,
                     "series": [{"at": b["bucket_start"], "uptime_pct": b["uptime_pct"],
                                 "checks": b["checks"]} for b in series]})


@api.get("/stats/response-times/{config_id}", tags=["stats"],
         summary="response times of a source over the last 7 days: min, avg, max, p95 (ms)")
def source_response_times(request: Request, config_id: str) -> JsonAnswer:
    q = queries(request)
    source_row(q, config_id)
    [r] = [r for r in q.health_metric("api_response_times") if r["ConfigId"] == config_id] or [{}]
    return respond({"config_id": config_id, "period": "7d", "responses": r.get("responses_7d", 0),
                     "min_ms": r.get("min_ms"), "avg_ms": r.get("avg_ms"), "max_ms": r.get("max_ms"),
                     "p95_ms": r.get("p95_ms")})


@api.get("/stats/history/{config_id}", tags=["stats"],
         summary="the health checks of a source (probes and ingestion requests), newest first")
def source_history(request: Request, config_id: str,
                   since: Optional[str] = Query(None, description=SINCE_HELP),
                   limit: int = LimitParam, cursor: Optional[str] = CursorParam) -> JsonAnswer:
    q = queries(request)
    source_row(q, config_id)
    at = parse_since(since)
    return page(lambda after, n: q.checks(config_id, n, since=at, after=after),
                check_key, limit, cursor, (dt.datetime, str))


@api.get("/stats/summary", tags=["stats"],
         summary="the whole warehouse at a glance: sources up/down, uptime 24h, p95, incidents, loads")
def stats_summary(request: Request) -> JsonAnswer:
    q = queries(request)
    rows = q.control_rows()
    [health_row] = q.health_metric("api_health_summary") or [{}]
    stale = [f for f in q.freshness(rows) if f.stale]
    day = q.load_counts(hours=24)
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r.get("LoadStatus") or "NONE"] = by_status.get(r.get("LoadStatus") or "NONE", 0) + 1
    return respond({
        "sources": len(rows), "enabled": sum(1 for r in rows if r.get("Enabled") is not False),
        "by_status": by_status, "stale": len(stale),
        "loads_24h": day["loads"], "failed_loads_24h": day["failed"], "loads_since": day["since"],
        "health": {k: health_row.get(k) for k in (
            "sources", "sources_up", "sources_down", "uptime_pct_24h", "checks_24h", "avg_ms_24h",
            "p95_ms_24h", "open_incidents", "last_checked_at")},
        "generated_at": q.clock()})


# ----------------------------------------------------------------- incidents
@api.get("/incidents", tags=["stats"],
         summary="spans of consecutive failed checks, newest first (open=true: ongoing only)")
def list_incidents(request: Request, open: Optional[bool] = Query(None),  # noqa: A002 - API name
                   config_id: Optional[str] = Query(None), limit: int = LimitParam,
                   cursor: Optional[str] = CursorParam) -> JsonAnswer:
    q = queries(request)
    items = [i for i in q.health_metric("api_incidents")
             if (open is None or bool(i["ongoing"]) == open)
             and (config_id is None or i["ConfigId"] == config_id)]
    items.sort(key=lambda i: (i["started_at"], i["ConfigId"]), reverse=True)

    def fetch(after: Optional[list[Any]], n: int) -> list[dict[str, Any]]:
        return [i for i in items if after is None
                or (i["started_at"], i["ConfigId"]) < (after[0], after[1])][:n]

    def shape(i: dict[str, Any]) -> dict[str, Any]:
        return {"config_id": i["ConfigId"], "started_at": i["started_at"], "ended_at": i["ended_at"],
                "ongoing": bool(i["ongoing"]), "duration_s": i["duration_s"],
                "failed_checks": i["failed_checks"], "last_error": i["last_error"]}

    return page(fetch, lambda i: (i["started_at"], i["ConfigId"]), limit, cursor, (dt.datetime, str),
                shape)


@api.get("/stale", tags=["stats"],
         summary="sources whose newest data is older than their cadence allows")
def list_stale(request: Request, limit: int = LimitParam,
               cursor: Optional[str] = CursorParam) -> JsonAnswer:
    q = queries(request)
    items = sorted((f for f in q.freshness() if f.stale), key=lambda f: f.config_id)

    def fetch(after: Optional[list[Any]], n: int) -> list[Any]:
        return [f for f in items if after is None or f.config_id > after[0]][:n]

    return page(fetch, lambda f: (f.config_id,), limit, cursor, (str,),
                lambda f: {"config_id": f.config_id, "target": f.target, "frequency": f.frequency,
                           **(_freshness_json(f) or {})})
