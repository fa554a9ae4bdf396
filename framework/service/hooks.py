"""``POST /hooks/{config_id}``: the webhook receiver's route (:mod:`framework.push.receiver`).

Included by :func:`framework.service.api.create_app` (``restlake serve``) and by
:func:`receiver_app` (``restlake receive``: the receiver alone). Senders prove who they
are with the source's signature, not with an API key. Errors are problem+json: 404
unknown source, 413 body too large, 401 bad or missing signature, 400 not JSON or no
event id, 503 with ``Retry-After`` when the flusher is behind. 202 means the raw event
is on disk.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from framework.push.receiver import Receiver, ReceiveError
from framework.service import problems

PATH = "/hooks/{config_id}"


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ReceiveError(413, f"the body has {declared} bytes; at most {limit} are taken")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ReceiveError(413, f"the body has more than {limit} bytes; at most {limit} "
                                    "are taken")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_event(request: Request) -> JSONResponse:
    """Receive one webhook event of a push source (202: stored durably).

    A plain Starlette endpoint (no FastAPI parameter resolution): it is the hot path of
    the receiver, and this halves its CPU per request (``bench/webhooks.py``).
    """
    receiver: Receiver = request.app.state.receiver
    config_id = request.path_params["config_id"]
    try:
        source = receiver.source(config_id)
        body = await _body(request, source.cfg.webhook.max_body_bytes)
        event_id, durable = receiver.accept(source, body, request.headers)
    except ReceiveError as exc:
        raise problems.Problem(exc.status, exc.detail, headers=exc.headers) from None
    await asyncio.wrap_future(durable)  # the fsync that covers this event (group commit)
    return JSONResponse({"status": "stored", "config_id": config_id, "event_id": event_id},
                        status_code=202)


def install(app: FastAPI, receiver: Receiver) -> None:
    """Serve ``receiver``'s route on ``app``."""
    app.state.receiver = receiver
    app.router.add_route(PATH, receive_event, methods=["POST"], name="receive_event")


def receiver_app(receiver: Receiver) -> FastAPI:
    """The receiver alone (``restlake receive``): the hooks route and ``GET /health``."""
    from framework import __version__

    app = FastAPI(title="restlake receiver", version=__version__,
                  description="Webhooks of push sources: POST /hooks/{config_id}.")
    problems.install(app)
    install(app, receiver)

    @app.get("/health", summary="the receiver: events waiting per source, flush failures")
    def health() -> dict[str, Any]:
        state = receiver.state()
        failing = any(s["failing"] for s in state.values())
        return {"status": "degraded" if failing else "ok", "version": __version__,
                "sources": state}

    return app
