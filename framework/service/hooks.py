"""``POST /hooks/{config_id}``: the webhook receiver's route (:mod:`framework.push.receiver`).

Installed by :func:`framework.service.api.create_app` (``restlake serve``) and by
:func:`receiver_app` (``restlake receive``: the receiver alone). Senders prove who they
are with the source's signature, not with an API key. Errors are problem+json: 404
unknown source, 413 body too large, 401 bad or missing signature, 400 not JSON or no
event id, 503 with ``Retry-After`` when the flusher is behind. 202 means the raw event
is on disk.

The route is the receiver's hot path, so it is served by a plain ASGI handler placed in
front of the application's middleware (:class:`HookRoute`): no FastAPI parameter
resolution, body-limit, telemetry or exception middleware per event
(``bench/webhooks.py`` measures it). The application's OpenAPI document still describes
it (:data:`OPERATION`), like any other route.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from http import HTTPStatus
from typing import Any, Awaitable, Callable, MutableMapping, Optional

import orjson
from fastapi import FastAPI, Request

from framework.push.receiver import Receiver, ReceiveError
from framework.secrets import redact
from framework.service import problems
from framework.service.access import HEADER, ApiKeys

log = logging.getLogger(__name__)

PATH = "/hooks/{config_id}"
PREFIX = "/hooks/"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _problem_schema() -> dict[str, Any]:
    return {"content": {problems.MEDIA_TYPE: {"schema": {"type": "object", "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"}}}}}}


#: The OpenAPI operation of ``POST /hooks/{config_id}`` (served outside FastAPI's routing).
OPERATION: dict[str, Any] = {
    "tags": ["webhooks"],
    "summary": "receive one webhook event of a push source (202: stored durably)",
    "description": (
        "The raw body is checked against the source's signature (`webhook.signature`: "
        "GitHub `X-Hub-Signature-256`, Stripe `Stripe-Signature` with its timestamp "
        "tolerance, or HMAC-SHA256 in `webhook.header`), appended to the source's spool "
        "and answered once it is fsync'd: a 202 is never lost. No API key: the signature "
        "is the sender's credential."),
    "operationId": "receive_event",
    "parameters": [{"name": "config_id", "in": "path", "required": True,
                    "schema": {"type": "string"},
                    "description": "the push source (a config with `webhook:`)"}],
    "requestBody": {"required": True, "description": "the event, JSON, as the sender signed it",
                    "content": {"application/json": {"schema": {"type": "object"}}}},
    "responses": {
        "202": {"description": "stored: the raw event is on disk (fsync'd) and will be flushed",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "status": {"type": "string", "enum": ["stored"]},
                    "config_id": {"type": "string"}, "event_id": {"type": "string"}}}}}},
        "400": {"description": "the body is not JSON, or has no id at `webhook.event_id_path`",
                **_problem_schema()},
        "401": {"description": "missing or wrong signature (or, Stripe, a timestamp outside "
                               "the tolerance): nothing stored", **_problem_schema()},
        "404": {"description": "no enabled push source has this id", **_problem_schema()},
        "413": {"description": "the body is larger than `webhook.max_body_bytes`",
                **_problem_schema()},
        "503": {"description": "`webhook.queue_events` events wait for the flusher, or the "
                               "receiver is stopping: nothing stored, send again later",
                "headers": {"Retry-After": {"description": "seconds to wait before resending",
                                            "schema": {"type": "integer"}}},
                **_problem_schema()},
    },
}


class HookRoute:
    """ASGI: ``POST /hooks/<config_id>`` answered here; every other request goes to ``app``.

    Args:
        app: the application (its middleware stack) serving everything else.
        receiver: the receiver the events go to.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], receiver: Receiver) -> None:
        self.app = app
        self.receiver = receiver
        # One asyncio future per spool fsync (group commit): the requests waiting for the
        # same fsync share it, so the syncer thread wakes the event loop once per fsync.
        self._waiting: dict[Future, asyncio.Future] = {}

    def __repr__(self) -> str:
        return f"HookRoute({self.receiver!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        config_id = path[len(PREFIX):] if path.startswith(PREFIX) else ""
        if not config_id or "/" in config_id:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _answer(send, 405, _problem(405, f"{scope['method']} is not allowed on {path}",
                                              path), problems.MEDIA_TYPE, {"Allow": "POST"})
            return
        try:
            status, body = 202, await self._receive(config_id, scope, receive)
            media, headers = "application/json", None
        except ReceiveError as exc:
            status, body = exc.status, _problem(exc.status, exc.detail, path)
            media, headers = problems.MEDIA_TYPE, exc.headers
        except Exception as exc:  # noqa: BLE001 - answered as problem+json, logged redacted
            text = redact(f"{type(exc).__name__}: {exc}")[:2000]
            log.error("POST %s failed: %s", path, text)
            status, body, media, headers = 500, _problem(500, text, path), problems.MEDIA_TYPE, None
        await _answer(send, status, body, media, headers)

    async def _receive(self, config_id: str, scope: Scope, receive: Receive) -> bytes:
        source = self.receiver.source(config_id)
        headers = RequestHeaders((k.decode("latin-1"), v.decode("latin-1"))
                                 for k, v in scope["headers"])
        body = await _body(headers, receive, source.cfg.webhook.max_body_bytes)
        event_id, durable = self.receiver.accept(source, body, headers)
        if not durable.done():
            await asyncio.shield(self._awaitable(durable))
        durable.result()  # raises when the fsync failed: nothing is acknowledged
        return orjson.dumps({"status": "stored", "config_id": config_id, "event_id": event_id})

    def _awaitable(self, durable: Future) -> asyncio.Future:
        waiting = self._waiting.get(durable)
        if waiting is None:
            waiting = self._waiting[durable] = asyncio.wrap_future(durable)
            waiting.add_done_callback(lambda _: self._waiting.pop(durable, None))
        return waiting


class RequestHeaders(dict):
    """A request's headers, looked up case-insensitively (ASGI gives the names lowercase;
    a repeated header keeps its last value)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())


async def _body(headers: RequestHeaders, receive: Receive, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ReceiveError(413, f"the body has {declared} bytes; at most {limit} are taken")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ReceiveError(400, "the sender disconnected before the body ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ReceiveError(413, f"the body has more than {limit} bytes; at most {limit} "
                                    "are taken")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _problem(status: int, detail: str, instance: str) -> bytes:
    return orjson.dumps({"type": "about:blank", "title": HTTPStatus(status).phrase,
                         "status": status, "detail": redact(detail), "instance": instance})


async def _answer(send: Send, status: int, body: bytes, media: str,
                  headers: Optional[dict[str, str]]) -> None:
    raw = [(b"content-type", media.encode("latin-1")),
           (b"content-length", str(len(body)).encode("latin-1"))]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def install(app: FastAPI, receiver: Receiver, keys: Optional[ApiKeys] = None) -> None:
    """Serve ``receiver``'s routes on ``app``.

    ``POST /hooks/{config_id}`` goes in front of ``app``'s middleware and is described in
    ``app``'s OpenAPI document (see also :func:`asgi`); ``POST
    /hooks/{config_id}/reload-secret`` is an ordinary route that needs one of ``keys``.
    """
    from framework.service.api import demand_key

    keys = keys if keys is not None else ApiKeys()
    app.state.receiver = receiver

    @app.post(PATH + "/reload-secret", tags=["webhooks"],
              summary="resolve a push source's webhook secrets again (rotation, no restart)",
              responses={401: {"description": "no valid API key"},
                         404: {"description": "no enabled push source has this id"},
                         500: {"description": "a secret reference does not resolve: the "
                                              "secrets in use are kept"}})
    def reload_secret(config_id: str, request: Request) -> dict[str, Any]:
        """Re-read the source and its `webhook.secret` / `webhook.previous_secret`: events
        signed with the new secret are accepted from now on; a secret no longer configured
        is refused (401). Answers how many secrets are accepted, never their values."""
        demand_key(request, keys)
        try:
            return {"status": "reloaded", **receiver.reload_secrets(config_id)}
        except ReceiveError as exc:
            raise problems.Problem(exc.status, exc.detail) from None

    build = app.build_middleware_stack
    # Starlette builds its middleware stack on the first request through this method: the
    # hook route goes in front of all of it (the app's other routes are unchanged).
    app.build_middleware_stack = lambda: HookRoute(build(), receiver)  # type: ignore[method-assign]
    document = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = document()
            schema.setdefault("paths", {})[PATH] = {"post": OPERATION}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def asgi(app: FastAPI) -> Any:
    """What the server runs: ``app``, with its hook route (if installed) answered before
    FastAPI's own per-request work (its telemetry check) as well."""
    receiver = getattr(app.state, "receiver", None)
    return app if receiver is None else HookRoute(app, receiver)


def receiver_app(receiver: Receiver, keys: Optional[ApiKeys] = None) -> FastAPI:
    """The receiver alone (``restlake receive``): the hooks route and ``GET /health``.

    Args:
        keys: the service's API keys (``RESTLAKE_API_KEYS``): ``/health`` names the push
            sources and their state only to a caller presenting one.
    """
    from framework import __version__

    keys = keys if keys is not None else ApiKeys()
    app = FastAPI(title="restlake receiver", version=__version__,
                  description="Webhooks of push sources: POST /hooks/{config_id}. "
                              f"GET /health names the sources only with an API key ({HEADER}).")
    problems.install(app)
    install(app, receiver, keys)

    @app.get("/health", summary="up or degraded; with an API key, events waiting and flush "
                                "failures per source")
    def health(request: Request) -> dict[str, Any]:
        state = receiver.state()
        failing = any(s["failing"] for s in state.values())
        answer: dict[str, Any] = {"status": "degraded" if failing else "ok"}
        if keys.accepts(request.headers.get(HEADER)):
            answer.update(version=__version__, sources=state)
        return answer

    return app
