"""The FastAPI application of ``restlake serve``.

:func:`create_app` wires the parts: the JVM-free read path (:class:`framework.lake.reader.
TableReader`), the API-key rule (:mod:`framework.service.access`), problem+json errors
(:mod:`framework.service.problems`), the routes of :mod:`framework.service.routes` and the
dashboard. A scheduler (``restlake serve --schedule``) is attached by passing it as
``scheduler``; it is optional and only needs the small :class:`Scheduler` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from typing import Any, AsyncIterator, Callable, Optional, Protocol, runtime_checkable

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import APIKeyHeader

from framework.lake.reader import TableReader
from framework.lake.tables import Warehouse
from framework.service import problems
from framework.service.access import HEADER, ApiKeys
from framework.timeutil import utcnow

#: how long a stop waits for the start's warm-up reads to end
WARM_UP_WAIT_S = 30.0

log = logging.getLogger(__name__)


@runtime_checkable
class Scheduler(Protocol):
    """What the service needs from a scheduler it is given.

    ``state()`` is shown by ``GET /health``; ``request_run(config_id)`` is told that a load
    was planned by ``POST /api/v1/sources/{id}/run`` (so it runs soon); ``request_check
    (config_id)`` probes the source now and returns its health row (``POST .../check``).
    """

    def state(self) -> dict[str, Any]: ...

    def request_run(self, config_id: str) -> None: ...

    def request_check(self, config_id: str) -> dict[str, Any]: ...


class Service:
    """What every route reads: the warehouse, its reader, keys, the clock and the writer
    session (started on the first write, then kept warm)."""

    def __init__(self, warehouse: Warehouse, control_catalog: str, keys: ApiKeys,
                 scheduler: Optional[Scheduler], public_read: bool,
                 clock: Callable[[], dt.datetime], spark_factory: Optional[Callable[[], Any]]) -> None:
        self.warehouse = warehouse
        self.control_catalog = control_catalog
        self.keys = keys
        self.scheduler = scheduler
        self.public_read = public_read
        self.clock = clock
        self._spark_factory = spark_factory
        self._spark_lock = threading.Lock()
        self.reader = TableReader(warehouse, spark_factory=self.spark)

    def spark(self) -> Any:
        """The Spark session writes use (one per process, started once)."""
        with self._spark_lock:
            if self._spark_factory is None:
                from framework.lake.spark import get_spark

                self._spark_factory = get_spark
            return self._spark_factory()

    def __repr__(self) -> str:
        return (f"Service({self.warehouse!r}, catalog {self.control_catalog}, {self.keys!r}, "
                f"public_read={self.public_read}, scheduler={type(self.scheduler).__name__})")


def service_of(request: Request) -> Service:
    return request.app.state.service


#: The key as the OpenAPI document declares it (the Authorize button of /docs); the check
#: itself is :func:`demand_key`.
API_KEY = APIKeyHeader(name=HEADER, scheme_name="ApiKey", auto_error=False,
                       description="one of the keys of RESTLAKE_API_KEYS")


def require_key(request: Request, _declared: Optional[str] = Security(API_KEY)) -> None:
    """Every POST needs a valid key; reads too unless the service allows public reads."""
    svc = service_of(request)
    if request.method in ("GET", "HEAD") and svc.public_read:
        return
    demand_key(request, svc.keys)


def demand_key(request: Request, keys: ApiKeys) -> None:
    """Refuse (401) a request that does not present one of ``keys`` in ``X-API-Key``.

    The refusal is logged with the method, path and client only, never the key.
    """
    presented = request.headers.get(HEADER)
    if keys.accepts(presented):
        return
    client = request.client.host if request.client else "?"
    reason = "no API key" if not presented else "a wrong API key"
    log.warning("refused %s %s from %s: %s", request.method, request.url.path, client, reason)
    detail = (f"send a valid API key in the {HEADER} header" if keys else
              "this service has no API keys (RESTLAKE_API_KEYS); only public reads are served")
    raise problems.Problem(401, detail, headers={"WWW-Authenticate": HEADER})


class HeadAsGet:
    """ASGI middleware: ``HEAD`` of a path that has a ``GET`` route is answered as that
    ``GET`` without its body (FastAPI routes declare GET only)."""

    def __init__(self, app: Any, routes: Callable[[], Any]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        from starlette.routing import Match

        as_get = dict(scope, method="GET")
        if not any(route.matches(as_get)[0] == Match.FULL for route in self.routes()):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                message = dict(message, body=b"")
            await send(message)

        await self.app(as_get, receive, headers_only)


def describe_errors(app: FastAPI) -> None:
    """The OpenAPI document of ``app`` describes its error answers as they are sent
    (problem+json; 401 on the routes that need a key)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = plain()
            keyed = {path for path, methods in spec.get("paths", {}).items()
                     if any(op.get("security") for op in methods.values())}
            app.openapi_schema = problems.document(spec, keyed.__contains__)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(warehouse: Warehouse, control_catalog: str = "main", keys: Optional[ApiKeys] = None,
               scheduler: Optional[Scheduler] = None, public_read: bool = False, *,
               clock: Callable[[], dt.datetime] = utcnow,
               spark_factory: Optional[Callable[[], Any]] = None,
               receiver: Optional[Any] = None) -> FastAPI:
    """The service's application.

    Args:
        warehouse: the warehouse it serves.
        control_catalog: catalog of the ``metadata`` schema.
        keys: accepted API keys (``ApiKeys.from_env()`` in ``restlake serve``).
        scheduler: the scheduler of ``serve --schedule``, if any.
        public_read: serve GET requests without a key (``serve`` allows it only on loopback).
        clock: the current UTC time (tests inject one).
        spark_factory: the Spark session for writes (default: started on the first write).
        receiver: the webhook receiver (:class:`framework.push.receiver.Receiver`) whose
            ``POST /hooks/{config_id}`` this app serves (signed by the sender, no API key).
    """
    from fastapi_offline import FastAPIOffline

    from framework import __version__
    from framework.service import actions, dashboard, routes

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warming = threading.Thread(target=routes.warm, args=(app.state.service,),
                                   name="restlake-warm", daemon=True)
        warming.start()
        yield
        # A process that exits while the warm-up reads a table can die in the reader's
        # native threads: a stop during the warm-up waits for it (a bounded while).
        await asyncio.to_thread(warming.join, WARM_UP_WAIT_S)

    # /docs with Swagger UI served by this service (no CDN), like the dashboard.
    app = FastAPIOffline(title="restlake", version=__version__, redoc_url=None,
                         static_url="/docs-static", lifespan=lifespan,
                         description="The monitoring service of restlake: sources, loads, uptime, "
                                     f"incidents. Send the API key as `{HEADER}`.")
    app.state.service = Service(warehouse, control_catalog, keys or ApiKeys(), scheduler,
                                public_read, clock, spark_factory)
    problems.install(app)
    describe_errors(app)
    app.add_middleware(HeadAsGet, routes=lambda: app.router.routes)
    app.include_router(routes.health)
    app.include_router(routes.api, dependencies=[Depends(require_key)])
    app.include_router(actions.router, dependencies=[Depends(require_key)])
    app.include_router(dashboard.router)
    if receiver is not None:
        from framework.service import hooks

        hooks.install(app, receiver, app.state.service.keys)
    return app
