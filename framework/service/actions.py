"""The write side of the JSON API: ``POST /api/v1/sources`` and the source actions.

Writes go through the code the command line uses — :func:`framework.config.parse_document`
(the validation of ``restlake validate``), :class:`control.store.ControlStore` (``generate``,
``retry``, ``set_enabled``), :func:`framework.ops.health.probe` and
:func:`framework.ops.health_store.append_checks` — on the service's one Spark session,
started by the first write. The blocking work runs in the thread pool, never on the event loop.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from framework.errors import ConfigError
from framework.service.api import Service, service_of
from framework.service.paging import JsonAnswer, jsonable, respond
from framework.service.problems import Problem
from framework.service.routes import queries, source_row

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["actions"])

MAX_BODY_BYTES = 1 << 20
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
CONFIG_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object"},
                             "example": {"config_id": "gh_issues", "api_name": "GitHub",
                                         "endpoint": "https://api.example.com/issues",
                                         "load_start": "2024-01-01T00:00:00Z",
                                         "target": {"catalog": "raw", "schema": "gh", "table": "issues"}}},
        "application/yaml": {"schema": {"type": "string"}},
    },
}


def _store(svc: Service) -> Any:
    from control.store import ControlStore

    return ControlStore(svc.spark(), svc.warehouse, svc.control_catalog)


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are written once each (as the YAML loader requires): the
    JSON parser keeps the last value of a repeated key without a word."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"duplicate key {key!r} in one JSON object (each key is written "
                              "once)", file="<request body>")
        out[key] = value
    return out


def parse_body(raw: bytes, content_type: str) -> list[Any]:
    """The configs in a request body (JSON or YAML), validated like ``restlake validate``.

    Raises:
        ConfigError: the body is not JSON/YAML, or a config is invalid (names the field).
    """
    from framework.config import load_text, parse_document

    if len(raw) > MAX_BODY_BYTES:
        raise Problem(413, f"a config body may hold at most {MAX_BODY_BYTES} bytes")
    kind = content_type.split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("the body is not UTF-8 text", file="<request body>") from None
    if kind == "application/json" or kind.endswith("+json"):
        try:
            doc = json.loads(text, object_pairs_hook=_once_each)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                              file="<request body>") from None
        return parse_document(doc, file="<request body>")
    if kind in YAML_TYPES or not kind:
        return load_text(text, file="<request body>")
    raise Problem(415, f"send the config as application/json or application/yaml, not {kind}")


@router.post("/sources", summary="add or update sources from a config (JSON or YAML): the "
                                 "validation of 'restlake validate', then an upsert of the control row",
             openapi_extra={"requestBody": CONFIG_BODY}, status_code=200,
             responses={201: {"description": "a source was created"},
                        422: {"description": "invalid config (problem+json naming the field)"}})
async def post_sources(request: Request) -> JSONResponse:
    svc = service_of(request)
    configs = parse_body(await request.body(), request.headers.get("content-type", ""))

    def upsert() -> list[Any]:
        from control.generate import target_clashes
        from framework.errors import ConfigErrors

        store = _store(svc)
        store.init()
        clashes = target_clashes(configs, store.rows())  # as generate: nothing is upserted
        if clashes:
            raise ConfigErrors([ConfigError(why, source=cid, field="target")
                                for cid, why in clashes.items()])
        # due_only: a new source is planned now; an existing one keeps its schedule.
        return store.generate(configs, now=svc.clock(), due_only=True)

    results = await run_in_threadpool(upsert)
    refused = [r for r in results if r.action == "invalid"]
    if refused:  # a change generate refuses (the row is left as it is): no 2xx
        from framework.errors import ConfigErrors

        done = ", ".join(f"{r.config_id} ({r.action})" for r in results if r not in refused)
        errors = [r.error or ConfigError(r.detail, source=r.config_id) for r in refused]
        if done:
            log.info("POST /api/v1/sources: upserted %s; refused %s", done,
                     ", ".join(r.config_id for r in refused))
        raise ConfigErrors(errors)
    created = any(r.action == "created" for r in results)
    log.info("POST /api/v1/sources: %s", ", ".join(f"{r.config_id} {r.action}" for r in results))
    return JSONResponse(jsonable({"results": [{"config_id": r.config_id, "action": r.action,
                                               "detail": r.detail} for r in results]}),
                        status_code=201 if created else 200)


def _set_enabled(request: Request, config_id: str, enabled: bool) -> JsonAnswer:
    svc = service_of(request)
    source_row(queries(request), config_id)
    try:
        known = _store(svc).set_enabled(config_id, enabled, svc.clock())
    except ConfigError as exc:  # another enabled source writes its target now
        raise Problem(409, exc.message) from None
    if not known:
        raise Problem(404, f"no source with config_id {config_id!r}")
    log.info("%s %s", "enabled" if enabled else "disabled", config_id)
    return respond({"config_id": config_id, "enabled": enabled})


@router.post("/sources/{config_id}/disable", summary="disable a source: no more planning, "
                                                     "claims or probes (a running load finishes)")
def disable_source(request: Request, config_id: str) -> JsonAnswer:
    return _set_enabled(request, config_id, False)


@router.post("/sources/{config_id}/enable", summary="enable a source again",
             responses={409: {"description": "another enabled source writes its target table "
                                             "as the same source_system (named)"}})
def enable_source(request: Request, config_id: str) -> JsonAnswer:
    return _set_enabled(request, config_id, True)


@router.post("/sources/{config_id}/check", summary="probe the source now; the result lands in "
                                                   "the health log")
def check_source(request: Request, config_id: str) -> JsonAnswer:
    from control.mapping import row_to_config

    svc = service_of(request)
    row = source_row(queries(request), config_id)
    if svc.scheduler is not None:
        return respond({"config_id": config_id, "check": svc.scheduler.request_check(config_id)})
    from framework.load.runtime import new_run_id
    from framework.ops.health import probe
    from framework.ops.health_store import append_checks

    result = probe(row_to_config(row), now=svc.clock(), run_id=new_run_id())
    append_checks(svc.spark(), svc.warehouse, [result], svc.control_catalog)
    return respond({"config_id": config_id, "check": result})


def _runner(svc: Service, config_id: str) -> str:
    """Tell the scheduler (if any) that ``config_id`` has a load to run; who runs it."""
    if svc.scheduler is not None:
        svc.scheduler.request_run(config_id)
        return "the scheduler runs it"
    return "no scheduler is attached: 'restlake run --all' (or 'restlake serve --schedule') runs it"


@router.post("/sources/{config_id}/run", status_code=202,
             summary="plan a load now (PENDING with its range); the scheduler runs it",
             responses={409: {"description": "nothing was planned (disabled, a push source, a "
                                             "FAILED full load to retry, a load running)"}})
def run_source(request: Request, config_id: str) -> JsonAnswer:
    from control.mapping import row_to_config

    svc = service_of(request)
    row = source_row(queries(request), config_id)
    if row.get("Enabled") is False:
        raise Problem(409, f"source {config_id!r} is disabled; POST .../enable first")
    cfg = row_to_config(row)
    if cfg.is_push:
        raise Problem(409, f"source {config_id!r} is a push source (webhook:): its events are "
                           "loaded by the webhook receiver, there is nothing to run")
    [result] = _store(svc).generate([cfg], now=svc.clock())
    if result.action not in ("created", "pending"):
        raise Problem(409, f"nothing was planned for {config_id!r}: {result.detail or result.action}")
    return respond({"config_id": config_id, "action": result.action, "detail": result.detail,
                    "runner": _runner(svc, config_id)}, status_code=202)


@router.post("/sources/{config_id}/retry", status_code=202,
             summary="a FAILED load again: PENDING with the same range and LoadId (as 'restlake retry')",
             responses={409: {"description": "the source's row is not FAILED"}})
def retry_source(request: Request, config_id: str) -> JsonAnswer:
    from control.states import InvalidTransition

    svc = service_of(request)
    source_row(queries(request), config_id)
    try:
        state = _store(svc).retry(config_id, now=svc.clock())
    except InvalidTransition as exc:
        raise Problem(409, f"{config_id}: {exc}") from None
    log.info("retry %s: PENDING again", config_id)
    return respond({"config_id": config_id, "status": state.load_status.value,
                    "load_type": state.load_type.value, "load_start": state.load_start,
                    "load_end": state.load_end, "runner": _runner(svc, config_id)}, status_code=202)
