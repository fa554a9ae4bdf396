"""Errors as ``application/problem+json`` (RFC 9457): ``type``, ``title``, ``status``,
``detail`` and, for invalid input, ``errors`` naming each field.

Every ``detail`` passes through :func:`framework.secrets.redact`; text that came from an
API or a table is data and is returned as JSON strings, never as markup.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from framework.errors import ConfigError, RestlakeError
from framework.secrets import redact

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An error answer: ``status`` and a ``detail`` a person can act on."""

    def __init__(self, status: int, detail: str, *, errors: Optional[list[dict[str, Any]]] = None,
                 headers: Optional[dict[str, str]] = None) -> None:
        self.status = status
        self.detail = redact(detail)
        self.errors = errors
        self.headers = headers
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"Problem({self.status}: {self.detail})"


def problem_response(status: int, detail: str, instance: str, *,
                     errors: Optional[list[dict[str, Any]]] = None,
                     headers: Optional[dict[str, str]] = None) -> JSONResponse:
    """The problem+json answer."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": redact(detail), "instance": instance}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def config_error_fields(exc: ConfigError) -> list[dict[str, Any]]:
    """The field-naming list of a config validation error."""
    item: dict[str, Any] = {"field": exc.field, "message": exc.message}
    if exc.source:
        item["source"] = exc.source
    return [item]


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, request.url.path, errors=exc.errors,
                                headers=exc.headers)

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        return problem_response(422, exc.message, request.url.path, errors=config_error_fields(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path",
                                                                                  "body", "header")),
                   "in": str(e.get("loc", ("?",))[0]), "message": e.get("msg", "invalid")}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['field'] or e['in']}: {e['message']}" for e in errors)
        return problem_response(422, detail or "invalid request", request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(exc.status_code, detail, request.url.path,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(RestlakeError)
    async def _restlake(request: Request, exc: RestlakeError) -> JSONResponse:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
        return problem_response(500, exc.message, request.url.path)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        text = redact(f"{type(exc).__name__}: {exc}")[:2000]
        log.error("%s %s failed: %s", request.method, request.url.path, text)
        return problem_response(500, text, request.url.path)
