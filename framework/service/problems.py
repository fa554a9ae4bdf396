"""Errors as ``application/problem+json`` (RFC 9457): ``type``, ``title``, ``status``,
``detail`` and, for invalid input, ``errors`` naming each field.

Every ``detail`` passes through :func:`framework.secrets.redact`; text that came from an
API or a table is data and is returned as JSON strings, never as markup.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, Optional

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from framework.errors import ConfigError, RestlakeError, config_errors
from framework.secrets import redact

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One invalid field of a 422 answer."""

    field: str = Field(description="the field (a query parameter, or a config field)")
    in_: Optional[str] = Field(None, alias="in", description="query, path, header or body")
    message: str
    source: Optional[str] = Field(None, description="the config_id of the config (POST /sources)")


class ProblemDocument(BaseModel):
    """An error answer, sent as application/problem+json (RFC 9457)."""

    model_config = ConfigDict(title="Problem")

    type: str = "about:blank"
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what is wrong and what to do")
    instance: str = Field(description="the request path")
    errors: Optional[list[FieldError]] = Field(None, description="422: each invalid field")


#: How the OpenAPI document names :class:`ProblemDocument`.
SCHEMA_NAME = "Problem"


def document(spec: dict[str, Any], keyed: Any) -> dict[str, Any]:
    """Describe the error answers in an OpenAPI document ``spec`` (changed in place): the
    ``Problem`` schema, ``401`` on every operation that ``keyed(path)`` says needs a key, and
    ``422`` as problem+json (not FastAPI's HTTPValidationError) on every operation that
    takes input."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    model = ProblemDocument.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schemas.update(model.pop("$defs", {}))
    schemas[SCHEMA_NAME] = model
    content = {MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{SCHEMA_NAME}"}}}
    for path, methods in spec.get("paths", {}).items():
        for op in methods.values():
            responses = op.setdefault("responses", {})
            if keyed(path):
                responses["401"] = {"description": "no API key, or a wrong one", "content": content}
            if op.get("parameters") or op.get("requestBody") or "422" in responses:
                said = responses.get("422", {}).get("description")
                if not said or said == "Validation Error":  # FastAPI's own
                    said = "invalid input: errors[] names each field"
                responses["422"] = {"description": said, "content": content}
    if "schemas/HTTPValidationError" not in json.dumps(spec.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return spec


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
    """The field-naming list of a config validation error: one item per invalid field."""
    out = []
    for each in config_errors(exc):
        item: dict[str, Any] = {"field": each.field, "message": each.message}
        if each.source:
            item["source"] = each.source
        out.append(item)
    return out


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, request.url.path, errors=exc.errors,
                                headers=exc.headers)

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        detail = "; ".join(each.message for each in config_errors(exc))
        return problem_response(422, detail, request.url.path, errors=config_error_fields(exc))

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
