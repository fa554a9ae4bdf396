"""A tiny scripted HTTP server on 127.0.0.1 for the HTTP and auth tests.

Each path has a queue of :class:`Reply` objects (the last one repeats) or a
function of the received request. Every request is logged so tests can assert
what the client sent.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    """One scripted response.

    Attributes:
        status: HTTP status.
        body: dict/list (sent as JSON), str or bytes (sent as is).
        headers: extra headers.
        delay_s: wait before answering (to trip client timeouts).
        reset_after: send the headers and this many body bytes, then reset the socket.
        content_length: a Content-Length to declare instead of the real one (-1: none; the
            body ends when the connection closes).
        drip_s: send the body one byte every ``drip_s`` seconds.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    reset_after: int | None = None
    content_length: int | None = None
    drip_s: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        if self.body is None:
            return b""
        return json.dumps(self.body).encode("utf-8")


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    #: the request target exactly as it came on the request line (path and query, raw)
    target: str = ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"))


Route = list[Reply] | Callable[[Received], Reply]


class FakeApi:
    """Start with ``with FakeApi() as api:``; script with ``api.route(path, ...)``.

    ``ssl_context`` (a server-side :class:`ssl.SSLContext`) serves https instead of http.
    """

    def __init__(self, ssl_context: Any = None) -> None:
        self.routes: dict[str, Route] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                got = Received(self.command, parts.path, parse_qs(parts.query),
                               {k: v for k, v in self.headers.items()}, self.rfile.read(length),
                               self.path)
                reply = api._next_reply(got)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                payload = reply.payload()
                try:
                    self.send_response(reply.status)
                    declared = reply.content_length if reply.content_length is not None else len(payload)
                    if declared >= 0:
                        self.send_header("Content-Length", str(declared))
                    if "Content-Type" not in reply.headers:
                        self.send_header("Content-Type", "application/json")
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if reply.reset_after is not None:
                        self.wfile.write(payload[:reply.reset_after])
                        # SO_LINGER 0 makes close() send a TCP RST: a real reset.
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   struct.pack("ii", 1, 0))
                        self.connection.close()
                        self.close_connection = True
                        return
                    if reply.drip_s:
                        for i in range(len(payload)):
                            self.wfile.write(payload[i:i + 1])
                            self.wfile.flush()
                            time.sleep(reply.drip_s)
                    else:
                        self.wfile.write(payload)
                    if reply.content_length is not None:
                        self.close_connection = True  # the stream cannot be reused
                except OSError:  # the client gave up (timeout)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, *replies: Reply | Callable[[Received], Reply]) -> None:
        """Script ``path``: replies in order (the last repeats), or one function; a path
        ending in ``*`` answers every path that starts with what comes before it."""
        with self._lock:
            if len(replies) == 1 and callable(replies[0]):
                self.routes[path] = replies[0]  # type: ignore[assignment]
            else:
                self.routes[path] = list(replies)  # type: ignore[arg-type]

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def _next_reply(self, got: Received) -> Reply:
        with self._lock:
            self.received.append(got)
            route = self.routes.get(got.path)
            if route is None:  # "/prefix/*" answers every path under /prefix/
                route = next((r for p, r in self.routes.items()
                              if p.endswith("*") and got.path.startswith(p[:-1])), None)
            if route is None:
                return Reply(404, {"message": f"no route {got.path}"})
            if callable(route):
                return route(got)
            return route.pop(0) if len(route) > 1 else route[0]

    def __enter__(self) -> "FakeApi":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
