"""The HTTP client: one pooled session, the retry policy, the rate budget.

:meth:`HttpClient.send` turns a :class:`PageRequest` into a :class:`PageResponse`
or a typed error, following the project's HTTP policy:

* timeouts always;
* 429 honours ``Retry-After``, pauses the host's limiter for every worker and
  rotates API keys when the auth has several;
* 408/5xx, timeouts, resets, incomplete bodies and bodies that are not JSON
  are retried with exponential backoff and jitter (``RetryPolicy``);
* 401 refreshes the credentials once when the auth can, then fails (AuthError); a token
  endpoint that fails for a moment (408/429/5xx, unreachable) is retried like the request;
* other 4xx fail fast (HttpError) with the API's own message, redacted;
* credentials go only to the request's allowed origins (:mod:`framework.http.origins`):
  every URL, including next links, is checked before the auth is applied, and redirects
  are followed here (at most :data:`MAX_REDIRECTS` hops), each hop checked the same way.

restlake only reads: GET always, POST only when the source allows it.
"""

from __future__ import annotations

import codecs
import email.message
import json
import logging
import random
import threading
import time
import zlib
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import orjson
import requests
import tenacity
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from framework.http.auth import Auth
from framework.http.body import INCOMPLETE, TIMED_OUT, TOO_LARGE, TOO_SLOW, BodyFault, read_body
from framework.http.deadline import WATCHDOG
from framework.errors import AuthError, ConfigError, HttpError, ResponseError, RetriableError
from framework.http.models import PageRequest, PageResponse
from framework.http.origins import Origin, OriginPolicy
from framework.http.ratelimit import RateLimiter
from framework.http.retry import RetryPolicy, parse_retry_after
from framework.secrets import redact
from framework.http.telemetry import CONNECTION_ERROR, TIMEOUT, Telemetry
from framework.http.urls import from_header, request_target, upper_escapes
from framework.schema import NonFinite

USER_AGENT = "restlake/0.1"
MESSAGE_LIMIT = 300
# Every digit becomes "0", everything else a space: a run of 20 digits is then a substring
# search (C speed; a regex over digit runs backtracks and costs more than the parse).
#: digits become "0", "-" stays, every other byte a space: then a number orjson cannot
#: hold exactly shows as a run of 20 digits (>= 10**19) or "-" and 19 (<= -10**18)
_DIGITS_AND_MINUS = bytes(48 if 48 <= i <= 57 else 45 if i == 45 else 32 for i in range(256))
_TWENTY_DIGITS, _MINUS_NINETEEN = b"0" * 20, b"-" + b"0" * 19
#: Redirect hops followed for one request (requests' own default is 30).
MAX_REDIRECTS = 5
#: The most an undeclared gzip/zlib body is inflated to when the client has no body limit.
UNDECLARED_INFLATE_CAP = 1024 ** 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MESSAGE_KEYS = ("message", "error_description", "detail", "errorMessage", "title", "error")


class _Transient(RetriableError):
    """A retriable failure of one attempt; ``bad_body`` marks a non-JSON 2xx body."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None, bad_body: bool = False) -> None:
        self.bad_body = bad_body
        super().__init__(message, status=status, retry_after=retry_after)


class _Unauthorized(Exception):
    """A 401; :meth:`HttpClient.send` decides whether to refresh and resend.
    ``sent`` is the ``Authorization`` value the rejected request carried (never shown)."""

    def __init__(self, message: str, sent: str | None = None) -> None:
        self.message = message
        self.sent = sent
        super().__init__(message)


class _Session(requests.Session):
    """A ``requests.Session`` that reads proxy and CA settings from the environment once
    per host instead of on every request.

    requests walks the whole process environment (``*_proxy`` variables) for each request;
    a load sends thousands of requests to one host while the environment stays the same.

    It never reads ``~/.netrc``: requests would, on every request without an ``auth``
    argument, and send an entry for the host as Basic auth in place of the
    ``Authorization`` header the source's auth set (a Databricks driver's ``.netrc``
    holds workspace tokens). A request carries the credentials its config names, or none.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._environment_lock = threading.Lock()

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        parts = urlsplit(str(url))
        try:
            key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream,
                   verify, cert)
            hit = self._environment.get(key)
        except TypeError:  # unhashable settings: no cache
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if hit is None:
            hit = super().merge_environment_settings(url, dict(proxies or {}), stream, verify, cert)
            with self._environment_lock:
                if len(self._environment) < 256:
                    self._environment[key] = hit
        return {**hit, "proxies": dict(hit["proxies"])}

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if request.auth is None and self.auth is None:
            request.auth = _as_sent  # a set auth: requests then leaves ~/.netrc unread
        prepared = super().prepare_request(request)
        if isinstance(request.url, str) and not isinstance(request.params, (str, bytes)):
            # requests re-quotes the path and query (%7E becomes ~, and urllib3 makes %2f
            # %2F): a signed next link would no longer match its signature
            scheme, netloc = urlsplit(prepared.url)[:2]
            prepared.url = f"{scheme}://{netloc}{request_target(request.url, request.params)}"
        return prepared

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        _WIRE.target = request.path_url  # what the connection puts on the request line
        try:
            return super().send(request, **kwargs)
        finally:
            _WIRE.target = None


#: The request target of the request this thread is sending (see :meth:`_Session.send`).
_WIRE = threading.local()


def _as_sent(prepared: requests.PreparedRequest) -> requests.PreparedRequest:
    """The ``auth`` of a request whose credentials, if any, are already in its headers."""
    return prepared


#: The longest a response's status line and headers may take as a whole (each read is
#: bounded by ``timeout_s``): a server sending them a byte at a time is cut there.
HEAD_TIMEOUT_S = 120.0


def _head_bounded(connection: type, seconds: float) -> type:
    """``connection`` (urllib3's) whose wait for a response's status line and headers is
    bounded as a whole: past ``seconds`` the watchdog cuts the connection and the wait ends
    as a read timeout (retried like one)."""

    class HeadBounded(connection):  # type: ignore[misc, valid-type]
        def putrequest(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
            # urllib3 upper-cases the target's escapes; the session's own target goes
            # as written when it is that same target otherwise
            exact = getattr(_WIRE, "target", None)
            if exact and url != exact and url == upper_escapes(exact):
                url = exact
            return super().putrequest(method, url, *args, **kwargs)

        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            sock = getattr(self, "sock", None)
            armed = WATCHDOG.arm(seconds, sock) if sock is not None else None
            try:
                return super().getresponse(*args, **kwargs)
            except Exception:
                if armed is not None and armed.fired:
                    raise TimeoutError(f"the status line and headers took longer than "
                                       f"{seconds:g}s") from None
                raise
            finally:
                if armed is not None:
                    WATCHDOG.disarm(armed)

    HeadBounded.__name__ = HeadBounded.__qualname__ = f"HeadBounded{connection.__name__}"
    return HeadBounded


class _Adapter(HTTPAdapter):
    """requests' adapter on connections whose response head is bounded as a whole."""

    def __init__(self, head_timeout_s: float, **kwargs: Any) -> None:
        self._pools = {}
        for scheme, pool in (("http", HTTPConnectionPool), ("https", HTTPSConnectionPool)):
            self._pools[scheme] = type(f"HeadBounded{pool.__name__}", (pool,), {
                "ConnectionCls": _head_bounded(pool.ConnectionCls, head_timeout_s)})
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)


def pooled_session(pool_maxsize: int, pool_connections: int = 4,
                   head_timeout_s: float = HEAD_TIMEOUT_S) -> requests.Session:
    """A session for one source: ``pool_maxsize`` kept connections per host, no urllib3
    retries (the retry policy counts every attempt), environment read once per host, a
    response head bounded as a whole by ``head_timeout_s``."""
    session = _Session()
    adapter = _Adapter(head_timeout_s, pool_connections=pool_connections,
                       pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def source_session(concurrency: int, head_timeout_s: float = HEAD_TIMEOUT_S) -> requests.Session:
    """The session of one load fetching ``concurrency`` windows at once (on the driver or in
    a Spark task): connections kept for twice that, at least 10."""
    return pooled_session(max(10, concurrency * 2), head_timeout_s=head_timeout_s)


def cancelled_before_sent(req: PageRequest) -> HttpError:
    """The error of a request whose window ended before it was sent (nothing was sent)."""
    return HttpError(f"{req.method} {redact(req.url)} cancelled before it was sent")


def parse_json(body: bytes) -> Any:
    """Decode a response body: orjson for speed, the standard library for what orjson refuses.

    orjson reads UTF-8 only and rejects ``NaN``/``Infinity``, which some APIs send and
    :func:`json.loads` accepts (as :class:`~framework.schema.NonFinite`, kept apart from
    ``null`` downstream); it also turns integers beyond 64 bits into floats, losing
    digits of large ids (from 2**64 up, and below -2**63). Those bodies take the slow path
    (a run of 20 digits, or a minus and 19, anywhere is enough to send a body there: exact,
    if slower, for the rare body that has one).
    """
    shape = body.translate(_DIGITS_AND_MINUS)
    try:
        if _TWENTY_DIGITS in shape or _MINUS_NINETEEN in shape:
            return json.loads(body, parse_constant=NonFinite.parse)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return json.loads(body, parse_constant=NonFinite.parse)
    except RecursionError:
        raise TooDeep("the JSON is nested deeper than restlake reads (about 1 000 levels of "
                      "arrays and objects)") from None


def page_data(status: int, body: bytes) -> Any:
    """The data of a 2xx page whose body is UTF-8 (as :class:`PageResponse` keeps it): none
    for ``204 No Content``, else the body's JSON. A replay of archived pages reads them so.

    Raises:
        ValueError: the body is not JSON.
    """
    return None if status == 204 else parse_json(body)


class TooDeep(ValueError):
    """A JSON text nested too deep to read (a resend gets the same text)."""


def inflate_undeclared(body: bytes, limit: int | None, where: str) -> bytes:
    """``body`` decompressed when it is a gzip or zlib stream its response did not declare
    (no ``Content-Encoding``: a file stored compressed and served as is), else ``body``.

    Only for a body that did not parse: no JSON text starts with these bytes (gzip's
    ``1f 8b``; zlib's ``78`` is an ``x``). Declared encodings are decoded by urllib3 while
    the body is read, counted against ``max_body_bytes`` as here.

    Raises:
        ResponseError: the decompressed body exceeds ``limit`` (``limits.max_body_bytes``).
    """
    if body[:2] == b"\x1f\x8b":
        wbits = 47  # gzip (or zlib) header
    elif len(body) > 2 and body[0] == 0x78 and ((body[0] << 8) | body[1]) % 31 == 0:
        wbits = 15  # zlib header
    else:
        return body
    cap = limit if limit is not None else UNDECLARED_INFLATE_CAP
    out: list[bytes] = []
    size, rest = 0, body
    try:
        while rest:  # a gzip file may hold several members, one after the other
            inflater = zlib.decompressobj(wbits)
            chunk = inflater.decompress(rest, cap + 1 - size)
            size += len(chunk)
            out.append(chunk)
            if size > cap:
                raise ResponseError(f"{where}: response body exceeds limits.max_body_bytes "
                                    f"(more than {cap} bytes once decompressed)")
            if not inflater.eof:
                return body  # cut short: not a whole stream
            rest = inflater.unused_data
            if rest[:2] != b"\x1f\x8b":
                break
    except zlib.error:
        return body
    return b"".join(out)


def utf8_json_text(body: bytes) -> bytes:
    """A JSON ``body`` that parsed, as UTF-8 without a byte order mark: JSON read in UTF-16
    or UTF-32, or after a BOM (both of which the parser accepts), transcoded, so the text
    kept (the raw archive) reads back as what was loaded; any other body as it is."""
    if body[:3] == codecs.BOM_UTF8:
        return body[3:]
    if len(body) >= 2 and (0 in body[:4] or body[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = json.detect_encoding(body)
        if encoding != "utf-8":
            return body.decode(encoding).encode("utf-8")
    return body


def as_utf8(body: bytes, content_type: str | None) -> bytes | None:
    """``body`` transcoded to UTF-8 from the charset its ``Content-Type`` declares, or
    ``None`` when it declares none (or UTF-8, or one unknown), or the body is not in it.

    Only for a body that did not parse as UTF-8: APIs often declare ISO-8859-1 for a
    UTF-8 body, and read as ISO-8859-1 (where every byte is a character) it would turn
    into other text without an error.
    """
    message = email.message.Message()
    message["Content-Type"] = content_type or ""
    charset = message.get_param("charset")
    if not isinstance(charset, str):
        return None
    try:
        if codecs.lookup(charset.strip()).name == "utf-8":
            return None
        return body.decode(charset.strip()).encode("utf-8")
    except (LookupError, UnicodeError):
        return None


def _find_message(data: Any, depth: int = 0) -> str | None:
    """The human message inside a JSON error body, wherever the API put it."""
    if depth > 3:
        return None
    if isinstance(data, dict):
        for key in _MESSAGE_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
            if isinstance(value, (dict, list)):
                found = _find_message(value, depth + 1)
                if found:
                    return found
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            return _find_message(errors[0], depth + 1)
    if isinstance(data, list) and data:
        return _find_message(data[0], depth + 1)
    return None


def api_message(body: bytes, limit: int = MESSAGE_LIMIT) -> str:
    """The API's own error message (or the body's start), redacted, at most ``limit`` chars."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        message = _find_message(json.loads(text)) or text
    except ValueError:
        message = text
    # Redact before cutting, so a secret split by the cut cannot leak its first half.
    message = " ".join(redact(message).split())
    return message[:limit] + ("..." if len(message) > limit else "")


class HttpClient:
    """Sends page requests with retries, rate limiting, auth and telemetry.

    Thread-safe: the windows of a load share one client and its connection pool.

    Args:
        auth: credentials (default: none).
        policy: retry policy (default: ``RetryPolicy()``).
        timeout_s: connect and read timeout of each attempt.
        limiter: the host's shared budget (see :func:`framework.http.ratelimit.limiter_for`).
        telemetry: counters to update (default: a new one, see :attr:`telemetry`).
        session: a ``requests.Session`` to use; by default the client makes one
            with a pool of ``pool_size`` connections and owns it.
        max_body_bytes: refuse larger bodies (``limits.max_body_bytes``).
        sleep: the sleep between attempts (injectable for tests).
        allow_post: allow POST (read-only policy: GET only by default).
        pool_size: connections kept per host; match the load's concurrency.
        rand: jitter source in ``[0, 1)``.
        now: current UTC time, for HTTP-date ``Retry-After`` values.
        on_attempt: observer called once per attempt with ``(method, url_redacted,
            status | None, elapsed_s, error_kind | None)``; ``error_kind`` is ``None``
            for a 2xx/3xx, else ``"timeout"``, ``"connection_error"`` or ``"http_status"``.
            It must be cheap; its exceptions are logged and ignored (health logging).
        body_timeout_s: the longest a response body may take to arrive as a whole
            (``limits.body_timeout_s``; None: each read is bounded by ``timeout_s`` only);
            the session the client makes bounds the status line and headers by it too.
    """

    def __init__(self, auth: Auth | None = None, policy: RetryPolicy | None = None,
                 timeout_s: float = 30.0, limiter: RateLimiter | None = None,
                 telemetry: Telemetry | None = None, session: requests.Session | None = None,
                 max_body_bytes: int | None = None, sleep: Callable[[float], None] = time.sleep,
                 *, allow_post: bool = False, pool_size: int = 10,
                 rand: Callable[[], float] = random.random,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 on_attempt: Callable[[str, str, int | None, float, str | None], None] | None = None,
                 body_timeout_s: float | None = None) -> None:
        if not timeout_s or timeout_s <= 0:
            raise ConfigError(f"must be > 0 (requests always time out), got {timeout_s!r}",
                              field="limits.timeout_s")
        if max_body_bytes is not None and max_body_bytes <= 0:
            raise ConfigError(f"must be > 0, got {max_body_bytes!r}", field="limits.max_body_bytes")
        self.auth = auth or Auth()
        self.policy = policy or RetryPolicy()
        self.timeout_s = float(timeout_s)
        self.limiter = limiter
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.allow_post = allow_post
        self._sleep = sleep
        self._rand = rand
        self._now = now
        self._on_attempt = on_attempt
        self._owns_session = session is None
        if session is None:
            session = pooled_session(pool_size, pool_connections=pool_size,
                                     head_timeout_s=body_timeout_s or HEAD_TIMEOUT_S)
        self.session = session

    # -- public ---------------------------------------------------------------------------

    def send(self, request: PageRequest, cancel: threading.Event | None = None) -> PageResponse:
        """Send ``request`` and return its parsed response.

        Args:
            cancel: once set, no further attempt starts and a retry's wait ends: whoever
                asked (a window that failed) will not read the answer, so the request
                stops spending the API's rate budget and sending the credentials.

        Raises:
            ConfigError: the method is not allowed (read-only policy).
            AuthError: 401 (after one refresh when the auth can refresh).
            HttpError: a non-retriable status, or retries exhausted.
            ResponseError: the body is too large, or still not JSON after retries.
        """
        self._check_method(request.method)
        try:
            return self._send_with_retries(request, cancel)
        except _Unauthorized as first:
            if not self.auth.can_refresh or (cancel is not None and cancel.is_set()):
                raise AuthError(first.message, status=401) from None
            rejected = first.sent
        try:
            return self._send_with_retries(request, cancel, refresh=True, rejected=rejected)
        except _Unauthorized as second:
            raise AuthError(f"{second.message} (again after refreshing the token)",
                            status=401) from None

    def close(self) -> None:
        """Close the session if the client created it."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"HttpClient(auth={self.auth!r}, timeout_s={self.timeout_s:g}, "
                f"max_retries={self.policy.max_retries}, limiter={self.limiter!r}, "
                f"allow_post={self.allow_post})")

    # -- one request ------------------------------------------------------------------------

    def _check_method(self, method: str) -> None:
        verb = (method or "").upper()
        if verb == "GET" or (verb == "POST" and self.allow_post):
            return
        hint = "set allow_post: true on the source" if verb == "POST" else "only GET and POST exist here"
        raise ConfigError(f"HTTP method {method!r} is not allowed: restlake is read-only "
                          f"({hint})", field="method")

    def _send_with_retries(self, request: PageRequest, cancel: threading.Event | None = None,
                           *, refresh: bool = False, rejected: str | None = None
                           ) -> PageResponse:
        """Send ``request`` under the retry policy; with ``refresh``, the credentials
        rejected as ``rejected`` are renewed first, that renewal retried like the request
        (a token endpoint answering 5xx or 429, or unreachable, for a moment)."""
        to_refresh = [refresh]
        stop = tenacity.stop_after_attempt(self.policy.max_attempts)
        sleep = self._sleep
        if cancel is not None:
            stop = stop | tenacity.stop_when_event_set(cancel)
            if sleep is time.sleep:
                sleep = cancel.wait  # a wait that ends when the request is cancelled
        retrying = tenacity.Retrying(
            stop=stop,
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(RetriableError),
            sleep=sleep,
            before_sleep=lambda _state: self.telemetry.count_retry(),
            reraise=True,
        )
        def attempt(req: PageRequest) -> PageResponse:
            if cancel is not None and cancel.is_set():  # cancelled during the wait before it
                raise cancelled_before_sent(req)
            if to_refresh[0]:
                if self.auth.refresh(rejected):
                    self.telemetry.count_token_refresh()
                to_refresh[0] = False
            return self._attempt(req, cancel)

        try:
            return retrying(attempt, request)
        except RetriableError as exc:  # an attempt's, or the token endpoint's
            attempts = self.policy.max_attempts
            if getattr(exc, "bad_body", False):
                raise ResponseError(f"{exc.message} (gave up after {attempts} attempts)") from None
            raise HttpError(f"gave up after {attempts} attempts; last error: {exc.message}",
                            status=exc.status) from None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.policy.wait_seconds(state.attempt_number, getattr(exc, "retry_after", None),
                                        rand=self._rand)

    def _attempt(self, request: PageRequest, cancel: threading.Event | None = None
                 ) -> PageResponse:
        # Auth decorates a copy: the caller's request (owned by the paginator) never
        # holds credentials, and a rotated key or refreshed token applies on resend.
        base = request.copy()
        base.method = base.method.upper()
        base.headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **base.headers}
        policy = request.origins or OriginPolicy.same_origin(request.url)
        url, method, params, body = base.url, base.method, base.params, base.json
        via, came_from = "page request", None
        for _hop in range(MAX_REDIRECTS + 1):
            # Checked where the auth is applied: no paginator or redirect can skip it.
            policy.check(url, via=via, from_url=came_from)
            req = PageRequest(method, url, dict(params), dict(base.headers), body, policy)
            self.auth.apply(req)
            resp, where, started = self._send_once(req, request.url if _hop == 0 else url,
                                                   cancel)
            location = resp.headers.get("Location") if resp.status_code in REDIRECT_STATUSES else None
            if not location:
                break
            resp.close()
            self.telemetry.count_request(resp.status_code)
            self._observe(req.method, url, resp.status_code, started, None)
            came_from, via = url, f"redirect ({resp.status_code}) from {_origin_text(url)}"
            url = urljoin(resp.url or url, from_header(location))
            params = {}  # the Location is the whole URL
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                method, body = "GET", None  # what browsers and requests do
        else:
            raise HttpError(f"{method} {request.url}: more than {MAX_REDIRECTS} redirects")
        try:
            body_bytes = self._read_body(resp, where)
        except _Transient as exc:
            self._observe(req.method, url, resp.status_code, started,
                          TIMEOUT if "timed out" in exc.message else CONNECTION_ERROR)
            raise
        finally:
            resp.close()
        self.telemetry.count_request(resp.status_code, len(body_bytes))
        self._observe(req.method, url, resp.status_code, started,
                      None if resp.status_code < 400 else "http_status")
        return self._classify(req, resp, body_bytes, where)

    def _send_once(self, req: PageRequest, shown_url: str,
                   cancel: threading.Event | None = None
                   ) -> tuple[requests.Response, str, float]:
        """One HTTP exchange, redirects not followed; ``shown_url`` (no credentials) names it.
        ``cancel`` set while the host's limiter holds it back: nothing is sent."""
        if self.limiter is not None:
            self.limiter.acquire(cancel)
            if cancel is not None and cancel.is_set():
                raise cancelled_before_sent(req)
        where = f"{req.method} {shown_url}"
        started = time.monotonic()
        try:
            resp = self.session.request(
                req.method, req.url, params=req.params or None, headers=req.headers,
                json=req.json if req.method == "POST" else None,
                timeout=self.timeout_s, stream=True, allow_redirects=False)
        except requests.Timeout:
            self.telemetry.count_request(TIMEOUT)
            self._observe(req.method, shown_url, None, started, TIMEOUT)
            raise _Transient(f"{where} timed out after {self.timeout_s:g}s") from None
        except requests.RequestException as exc:
            self.telemetry.count_request(CONNECTION_ERROR)
            self._observe(req.method, shown_url, None, started, CONNECTION_ERROR)
            raise _Transient(f"{where} failed: {self._describe(exc)}") from None
        return resp, where, started

    def _observe(self, method: str, url: str, status: int | None, started: float,
                 error_kind: str | None) -> None:
        if self._on_attempt is None:
            return
        try:
            self._on_attempt(method, redact(url), status, time.monotonic() - started, error_kind)
        except Exception as exc:  # noqa: BLE001 - an observer never breaks a request
            logging.getLogger(__name__).warning("on_attempt observer failed: %s",
                                                redact(f"{type(exc).__name__}: {exc}"))

    def _read_body(self, resp: requests.Response, where: str) -> bytes:
        limit = self.max_body_bytes
        try:
            return read_body(resp, limit, self.body_timeout_s)
        except BodyFault as fault:
            if fault.kind == TOO_LARGE:
                self.telemetry.count_request(resp.status_code, fault.size)
                size = f"{fault.declared} > {limit}" if fault.declared else f"more than {limit}"
                raise ResponseError(f"{where}: response body exceeds limits.max_body_bytes "
                                    f"({size} bytes)") from None
            self.telemetry.count_request(CONNECTION_ERROR if fault.kind == INCOMPLETE else TIMEOUT,
                                         fault.size)
            if fault.kind == TOO_SLOW:
                raise _Transient(f"{where} timed out: its body took longer than "
                                 f"limits.body_timeout_s ({self.body_timeout_s:g}s), {fault.size} "
                                 "bytes read", status=resp.status_code) from None
            what = "timed out reading the body" if fault.kind == TIMED_OUT else "body incomplete"
            raise _Transient(f"{where} {what} after {fault.size} bytes: "
                             f"{self._describe(fault.cause)}", status=resp.status_code) from None

    def _classify(self, req: PageRequest, resp: requests.Response, body: bytes,
                  where: str) -> PageResponse:
        status = resp.status_code
        label = f"{status} {resp.reason}".strip() if resp.reason else str(status)
        if 200 <= status < 300:
            data = None
            if status != 204:
                try:
                    data = parse_json(body)
                    body = utf8_json_text(body)
                except TooDeep as exc:
                    raise ResponseError(f"{where} returned {label}: {exc}") from None
                except ValueError:  # JSONDecodeError and UnicodeDecodeError
                    body = inflate_undeclared(body, self.max_body_bytes, where)
                    try:
                        data = parse_json(body)
                        body = utf8_json_text(body)
                    except ValueError:
                        data, body = self._parse_declared_charset(resp, body, where, label)
            return PageResponse(status=status, url=redact(resp.url), headers=resp.headers,
                                body=body, data=data, elapsed_s=resp.elapsed.total_seconds(),
                                final_url=req.url)
        message = f"{where} returned {label}: {api_message(body)}"
        if status == 401:
            raise _Unauthorized(message, req.headers.get("Authorization"))
        if status == 429:
            raise _Transient(message, status=status,
                             retry_after=self._on_rate_limited(req, resp, message))
        if self.policy.is_retriable_status(status):
            retry_after = self._asked_wait(resp, message)
            raise _Transient(message, status=status, retry_after=retry_after)
        raise HttpError(message, status=status)

    @staticmethod
    def _parse_declared_charset(resp: requests.Response, body: bytes, where: str,
                                label: str) -> tuple[Any, bytes]:
        """A 2xx body that is not UTF-8 JSON, read in the charset its ``Content-Type``
        declares: the data and the body as UTF-8 (what is archived).

        Raises:
            _Transient: still not JSON (bad_body).
        """
        transcoded = as_utf8(body, resp.headers.get("Content-Type"))
        if transcoded is not None:
            try:
                return parse_json(transcoded), transcoded
            except ValueError:
                pass
        # Often a body cut short by the network; a resend usually fixes it.
        raise _Transient(f"{where} returned {label} with a body that is not valid "
                         f"JSON ({len(body)} bytes): {api_message(body, 80)}",
                         status=resp.status_code, bad_body=True)

    def _asked_wait(self, resp: requests.Response, message: str,
                    wait: float | None = None) -> float | None:
        """The ``Retry-After`` of ``resp`` in seconds (or ``wait`` when given).

        Raises:
            HttpError: it is longer than the policy's ``retry_after_max_s``: a retry sent
                before then would only be refused again (a daily quota used up).
        """
        if wait is None:
            wait = parse_retry_after(resp.headers.get("Retry-After"), self._now(),
                                     max_s=float("inf"))
        longest = self.policy.retry_after_max_s
        if wait is not None and wait > longest:
            raise HttpError(f"{message} (Retry-After asks to wait {wait:.0f} s, longer than the "
                            f"{longest:g} s of limits.retry_after_max_s: failing now instead of "
                            "retrying before the API allows it)", status=resp.status_code)
        return wait

    def _on_rate_limited(self, req: PageRequest, resp: requests.Response,
                         message: str) -> float | None:
        """Decide the wait after a 429; rotate keys or pause the host for everyone."""
        self.telemetry.count_rate_limit_wait()
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), self._now(),
                                        max_s=float("inf"))
        if self.auth.can_rotate:
            wait = self.auth.rotate(retry_after, req)
            if wait is not None and wait <= 0:
                return 0.0  # another key is available: resend at once, host not paused
            if wait is not None:
                retry_after = wait
        retry_after = self._asked_wait(resp, message, retry_after)
        if retry_after is not None and self.limiter is not None:
            self.limiter.pause_for(retry_after)
        return retry_after

    @staticmethod
    def _describe(exc: BaseException) -> str:
        # requests' texts embed the full URL (query included); redact and shorten.
        return f"{type(exc).__name__}: {redact(exc)[:200]}"


def _origin_text(url: str) -> str:
    try:
        return str(Origin.of(url))
    except ValueError:
        return redact(url)
