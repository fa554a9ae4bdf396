"""The demo API server: lifecycle, request log, server-side auth and fault delivery.

The data endpoints themselves are in :mod:`framework.demoapi.endpoints`; faults in
:mod:`framework.demoapi.faults`. See :class:`DemoApi`.
"""

from __future__ import annotations

import base64
import secrets
import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from framework.demoapi.data import DEFAULT_START, Dataset
from framework.demoapi.endpoints import DETAIL_ROUTE, ROUTES, BadRequest, Call, Reply, detail, error
from framework.demoapi.faults import CANNED, Faults, send_dripping, send_partial

AUTH_METHODS = ("none", "bearer", "api_key", "basic", "api_token", "oauth2")
_AUTH_KEYS = {"bearer": ("token",), "api_key": ("key",), "basic": ("username", "password"),
              "api_token": ("token",), "oauth2": ("client_id", "client_secret"), "none": ()}


def same_secret(given: str, expected: str) -> bool:
    # Constant-time, and safe for non-ASCII header text (compare_digest rejects it as str).
    return secrets.compare_digest(str(given).encode("utf-8", "replace"),
                                  str(expected).encode("utf-8", "replace"))


def _validate_auth(auth: Mapping[str, Any] | None) -> dict[str, Any]:
    config = dict(auth or {"method": "none"})
    method = config.get("method", "none")
    if method not in AUTH_METHODS:
        raise ValueError(f"auth.method {method!r} is unknown; known methods: {', '.join(AUTH_METHODS)}")
    missing = [k for k in _AUTH_KEYS[method] if not config.get(k)]
    if missing:
        raise ValueError(f"auth method {method!r} needs {', '.join(missing)}")
    if method == "api_key" and not config.get("query"):
        config.setdefault("header", "X-API-Key")
    if method == "oauth2":
        config.setdefault("token_ttl_s", 3600)
    return config


class DemoApi:
    """A local REST API with every common pagination style, auth method and failure mode.

    Args:
        seed: dataset seed; the same seed serves the same records.
        records_per_resource: records generated for the ``issues`` resource.
        start: earliest ``updated_at`` of the generated records.
        end: ``updated_at`` is before this (default: ``start`` + 60 days).
        latency_ms: sleep per request (settable at runtime, for benchmarks).
        max_page_size: largest page served whatever the client asks.
        auth: ``None`` or a dict, one of ``{"method": "bearer", "token": T}``,
            ``{"method": "api_key", "header": "X-API-Key", "key": K}`` (or ``"query": "api_key"``),
            ``{"method": "basic", "username": U, "password": P}``,
            ``{"method": "api_token", "token": T}`` (``Authorization: Api-Token T``),
            ``{"method": "oauth2", "client_id": C, "client_secret": S, "token_ttl_s": 3600}``.
        port: port to bind on 127.0.0.1 (0 picks a free one).
        cache_replies: remember the bytes of every successful GET reply and send them
            again for the same request line and credentials, without re-encoding (for
            benchmarks: a real API spends its CPU on another machine, not on the client's
            cores). Faults and the request log still apply to every request.
        wait: how the server waits out ``latency_ms`` and ``timeout`` faults (seconds;
            default: a wait that :meth:`stop` cuts short). Tests inject a recorder.
        clock: the monotonic clock OAuth tokens expire on (injectable for tests).

    Example:
        >>> with DemoApi(records_per_resource=50) as api:
        ...     url = api.base_url + "/api/offset/issues?limit=10"
    """

    def __init__(self, seed: int = 7, records_per_resource: int = 500,
                 start: datetime = DEFAULT_START, end: datetime | None = None, latency_ms: float = 0,
                 max_page_size: int = 100, auth: Mapping[str, Any] | None = None,
                 port: int = 0, cache_replies: bool = False,
                 wait: Callable[[float], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_page_size < 1:
            raise ValueError(f"max_page_size must be >= 1, got {max_page_size}")
        self.dataset = Dataset(seed, records_per_resource, start, end)
        self.latency_ms = latency_ms
        self.max_page_size = max_page_size
        self.auth = _validate_auth(auth)
        self.token_ttl_s: float = self.auth.get("token_ttl_s", 3600)
        self.faults = Faults()
        self._port = port
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # access token -> monotonic expiry
        self._tokens_lock = threading.Lock()
        self._stopping = threading.Event()
        self._wait = wait or self._stopping.wait
        self._clock = clock
        self._connections: set[socket.socket] = set()  # open keep-alive sockets, closed by stop()
        self._connections_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._replies: dict[tuple[str, str, str], Reply] | None = {} if cache_replies else None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> "DemoApi":
        """Bind 127.0.0.1 and serve on a daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        self._stopping.clear()
        handler = type("DemoApiHandler", (_Handler,), {"api": self})
        server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        server.daemon_threads = True  # a stalled "timeout" answer never blocks stop()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"demoapi-{server.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (requests still sleeping are woken)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._connections_lock:
                open_sockets = list(self._connections)
            for sock in open_sockets:  # else a kept-alive client would still be answered
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if self._thread is not None:
                self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "DemoApi":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._server else "stopped"
        return (f"DemoApi({where}, records={len(self.dataset)}, auth={self.auth['method']}, "
                f"max_page_size={self.max_page_size}, latency_ms={self.latency_ms})")

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``.

        Raises:
            RuntimeError: the server is not started.
        """
        if self._server is None:
            raise RuntimeError("DemoApi is not started; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint."""
        return self.base_url + "/oauth/token"

    # -- request log --------------------------------------------------------------

    @property
    def request_log(self) -> list[dict[str, Any]]:
        """A snapshot of the requests served: ``t, method, path, query, status, auth, fault``."""
        with self._log_lock:
            return [dict(entry) for entry in self._log]

    def clear_log(self) -> None:
        """Forget the requests served so far."""
        with self._log_lock:
            self._log.clear()

    def _record(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self._log.append(entry)

    # -- auth ---------------------------------------------------------------------

    def revoke_tokens(self) -> None:
        """Invalidate every issued OAuth2 token."""
        with self._tokens_lock:
            self._tokens.clear()

    def has_credentials(self, headers: Mapping[str, str], query: Mapping[str, Any]) -> bool:
        """True when the request carries any credential the configured method could read."""
        if headers.get("Authorization"):
            return True
        if self.auth.get("header") and headers.get(self.auth["header"]):
            return True
        return bool(self.auth.get("query") and self.auth["query"] in query)

    def _check_auth(self, call: Call) -> Reply | None:
        conf, given = self.auth, call.headers.get("Authorization", "")
        method = conf["method"]
        if method == "none":
            return None
        if method == "oauth2":
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            with self._tokens_lock:
                expiry = self._tokens.get(token)
            if expiry is None or expiry <= self._clock():
                return Reply(401, {"error": "invalid_token"},
                             {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return None
        if method == "bearer":
            ok = same_secret(given, f"Bearer {conf['token']}")
        elif method == "api_token":
            ok = same_secret(given, f"Api-Token {conf['token']}")
        elif method == "basic":
            expected = base64.b64encode(f"{conf['username']}:{conf['password']}".encode()).decode()
            ok = same_secret(given, f"Basic {expected}")
        elif conf.get("query"):
            ok = same_secret(str(call.query.get(conf["query"], "")), conf["key"])
        else:
            ok = same_secret(call.headers.get(conf["header"], ""), conf["key"])
        if ok:
            return None
        return Reply(401, {"error": {"code": 401, "message": f"missing or invalid credentials "
                                                             f"({method})"}})

    def _token(self, call: Call) -> Reply:
        if self.auth["method"] != "oauth2":
            return error(404, "OAuth2 is not enabled on this server")
        form = {k: v[0] for k, v in parse_qs(call.body.decode("utf-8", "replace")).items()}
        basic = call.headers.get("Authorization", "")
        if basic[:6].lower() == "basic ":  # RFC 6749 lets clients send credentials this way
            try:
                cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
                form.setdefault("client_id", cid)
                form.setdefault("client_secret", secret)
            except ValueError:  # malformed base64 or not UTF-8: treat as no credentials
                pass
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        if (form.get("client_id") != self.auth["client_id"]
                or not same_secret(form.get("client_secret", ""), self.auth["client_secret"])):
            return Reply(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        with self._tokens_lock:
            self._tokens[token] = self._clock() + self.token_ttl_s
        return Reply(200, {"access_token": token, "token_type": "Bearer",
                           "expires_in": self.token_ttl_s, "scope": form.get("scope", "")})

    # -- routing ------------------------------------------------------------------

    def dispatch(self, call: Call) -> Reply:
        """Answer one request (auth, routing, 400s); faults are applied by the handler."""
        if call.path == "/health":
            return Reply(200, {"status": "ok"})
        if call.path == "/oauth/token":
            return self._token(call) if call.method == "POST" else error(405, "use POST")
        route = ROUTES.get(call.path)
        detail_id = DETAIL_ROUTE.match(call.path) if route is None else None
        if detail_id is not None:
            route = ("GET", lambda api, c: detail(api, c, unquote(detail_id.group(1))))
        if route is None:
            return error(404, f"no such endpoint {call.path}")
        if route[0] != call.method:
            return error(405, f"{call.path} accepts {route[0]} only")
        denied = self._check_auth(call)
        if denied is not None:
            return denied
        try:
            return route[1](self, call)
        except BadRequest as exc:
            return error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug here must still answer, as a real 500
            return error(500, f"unexpected {type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs and pooled clients use
    server_version = "restlake-demo/1.0"
    timeout = 30  # idle keep-alive connections release their thread eventually
    api: DemoApi

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus the
        # client's delayed ACK adds ~40 ms to every response and skews benchmarks.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.api._connections_lock:
            self.api._connections.add(self.connection)

    def finish(self) -> None:
        with self.api._connections_lock:
            self.api._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the request log is api.request_log

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        try:
            self._answer(method)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _answer(self, method: str) -> None:
        api, started = self.api, time.monotonic()
        url = urlsplit(self.path)
        query = {k: v[0] if len(v) == 1 else v
                 for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        entry = {"t": started, "method": method, "path": url.path, "query": query, "status": None,
                 "auth": api.has_credentials(self.headers, query), "fault": None}
        api._record(entry)
        if api.latency_ms:
            api._wait(api.latency_ms / 1000)
        fault = api.faults.take(url.path, query)
        entry["fault"] = fault.kind if fault else None
        if fault is not None and fault.kind in CANNED:
            status, payload, ctype = CANNED[fault.kind]
            headers = {}
            if fault.kind == "429":
                retry = fault.retry_after
                headers["Retry-After"] = str(int(retry) if float(retry).is_integer() else retry)
            if fault.kind == "token_expired":
                api.revoke_tokens()
                headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            self._send(entry, Reply(status, payload, headers, ctype))
            return
        if fault is not None and fault.kind == "timeout":
            api._wait(fault.delay_s)
        cached = api._replies is not None and method == "GET" and fault is None
        if cached:
            key = (self.path, self.headers.get("Authorization", ""),
                   self.headers.get("X-API-Key", ""))
            reply = api._replies.get(key)
        else:
            reply = None
        if reply is None:
            call = Call(method, url.path, query, body, self.headers,
                        drift=fault is not None and fault.kind == "schema_drift")
            reply = api.dispatch(call)
            if cached and reply.status == 200:
                api._replies[key] = Reply(200, reply.payload(), reply.headers, reply.content_type)
        if fault is not None and fault.kind == "drip":
            entry["status"] = reply.status
            headers = dict(reply.headers, **{"Content-Type": reply.content_type})
            send_dripping(self, reply.status, headers, reply.payload(), api._wait, fault.delay_s)
            return
        if fault is not None and fault.kind in ("reset", "truncated"):
            entry["status"] = reply.status
            headers = dict(reply.headers, **{"Content-Type": reply.content_type})
            send_partial(self, reply.status, headers, reply.payload(), abort=fault.kind == "reset")
            return
        self._send(entry, reply)

    def _send(self, entry: dict[str, Any], reply: Reply) -> None:
        payload = reply.payload()
        entry["status"] = reply.status
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
