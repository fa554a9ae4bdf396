"""Paginators: small stateful classes, one per pagination style, chosen by name.

Each window gets a fresh paginator. The loop that drives it
(:meth:`framework.http.client.HttpClient.paginate`)::

    paginator.init_request(request)
    while paginator.has_next_page:
        response = send(request)
        paginator.update_state(response, records_of(response))
        paginator.update_request(request)

Only each style's own end rule stops a window; a short page never does, since
servers cap page sizes silently. A value seen twice (cursor, key, token, link,
page) raises :class:`PaginationError` instead of looping forever; the values are
remembered as short digests, the last :data:`SEEN_LIMIT` of them (a checkpoint keeps
the last :data:`CHECKPOINT_SEEN`), so an API handing out fresh cursors forever costs
bounded memory and is stopped by ``max_pages`` (default :data:`DEFAULT_MAX_PAGES`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable
from urllib.parse import urljoin

import orjson

from framework import jsonpath
from framework.errors import ConfigError, PaginationError, ResponseError
from framework.http.models import PageRequest, PageResponse
from framework.http.urls import from_header
from framework.secrets import redact, redact_values

#: Pages one window may read unless ``pagination.max_pages`` says otherwise: a safety stop
#: for an API that never stops handing out next pages.
DEFAULT_MAX_PAGES = 100_000
#: Digests of cursors/keys/links remembered for loop detection (in memory, per window) ...
SEEN_LIMIT = 4096
#: ... and in a page checkpoint.
CHECKPOINT_SEEN = 256


def _digest(key: str) -> str:
    """A short digest of a seen value: bounded size, and no cursor or link text kept."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def page_digest(records: list) -> str:
    """sha256 of a page's records, key order ignored (a page repeated by an API that ignores
    its offset is detected by it)."""
    try:
        text = orjson.dumps(records, option=orjson.OPT_SORT_KEYS, default=str)
    except TypeError:  # e.g. an integer beyond 64 bits: the slower encoder takes anything
        text = json.dumps(records, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(text).hexdigest()


class PaginationConfigError(ConfigError, ValueError):
    """A ``pagination:`` config is invalid (also a ``ValueError``)."""


def _positive_int(style: str, name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PaginationConfigError(f"must be an integer >= {minimum} for style {style}, "
                                    f"got {value!r}", field=f"pagination.{name}")
    return value


def _name(style: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PaginationConfigError(f"must be a non-empty string for style {style}, got {value!r}",
                                    field=f"pagination.{name}")
    return value


def _path(style: str, name: str, value: Any) -> tuple[jsonpath.Step, ...]:
    if value is None:
        raise PaginationConfigError(f"is required for style {style}", field=f"pagination.{name}")
    try:
        steps = jsonpath.compile_path(value)
    except jsonpath.PathError as exc:
        raise PaginationConfigError(f"{exc} (style {style})", field=f"pagination.{name}") from None
    if not steps:  # "$" is the whole body: never missing, so the window could never end
        raise PaginationConfigError(f"cannot be '$' for style {style}: it would never stop",
                                    field=f"pagination.{name}")
    return steps


class Paginator:
    """The interface and shared state: page count, ``max_pages`` (default
    :data:`DEFAULT_MAX_PAGES`), repeat detection.

    Subclasses implement :meth:`_read` (and usually :meth:`init_request` and
    :meth:`update_request`).
    """

    style = "none"
    options: frozenset[str] = frozenset()

    def __init__(self, max_pages: int | None = None) -> None:
        if max_pages is not None:
            _positive_int(self.style, "max_pages", max_pages)
        self.max_pages = DEFAULT_MAX_PAGES if max_pages is None else max_pages
        self.pages = 0
        self._has_next_page = True
        self._seen: dict[str, None] = {}  # digests, oldest first (an ordered, bounded set)

    @property
    def has_next_page(self) -> bool:
        """True until the style's end rule has been met."""
        return self._has_next_page

    def init_request(self, request: PageRequest) -> None:
        """Set the first page's parameters on ``request``."""

    def update_state(self, response: PageResponse, records: list) -> None:
        """Read one page: ``records`` are its records after ``data_path`` extraction."""
        self.pages += 1
        self._read(response, records)
        if self._has_next_page and self.pages >= self.max_pages:
            default = " (the default safety stop)" if self.max_pages == DEFAULT_MAX_PAGES else ""
            raise PaginationError(f"pagination style {self.style} exceeded max_pages="
                                  f"{self.max_pages}{default} and the API still reports more "
                                  "pages; raise pagination.max_pages if the window really has "
                                  "more, or use smaller windows")

    def update_request(self, request: PageRequest) -> None:
        """Change ``request`` (in place) to ask for the next page."""

    def _read(self, response: PageResponse, records: list) -> None:
        self._has_next_page = False

    def checkpoint(self) -> dict[str, Any]:
        """The paginator's progress as JSON-able values, to resume a window mid-way.

        Known secrets are masked (a next link may echo a key); seen values are kept as
        the last :data:`CHECKPOINT_SEEN` digests.
        """
        out: dict[str, Any] = {}
        for key, value in vars(self).items():
            if key == "_seen":
                out[key] = {"__seen__": list(self._seen)[-CHECKPOINT_SEEN:]}
            elif value is None or isinstance(value, (str, int, float, bool)):
                out[key] = value
        return redact_values(out, known_only=True)

    def resume(self, state: dict[str, Any]) -> None:
        """Restore progress saved by :meth:`checkpoint` (same style and options)."""
        for key, value in state.items():
            if key == "_seen" and isinstance(value, dict):
                digests = value.get("__seen__")
                if digests is None:  # an older checkpoint: the values themselves
                    digests = [_digest(v) for v in value.get("__set__", [])]
                value = dict.fromkeys(digests[-SEEN_LIMIT:])
            setattr(self, key, value)

    def _remember(self, value: Any, what: str) -> None:
        """Raise when ``value`` was already seen in this window (the API loops)."""
        key = json.dumps(value, sort_keys=True, default=str)
        digest = _digest(key)
        if digest in self._seen:
            shown = redact(value if isinstance(value, str) else key)
            if len(shown) > 120:
                shown = shown[:120] + "..."
            raise PaginationError(f"pagination style {self.style}: the API returned the same "
                                  f"{what} twice ({shown!r}) after {self.pages} pages; stopping "
                                  "instead of looping forever")
        self._seen[digest] = None
        if len(self._seen) > SEEN_LIMIT:
            del self._seen[next(iter(self._seen))]

    def _state(self) -> str:
        return ""

    def __repr__(self) -> str:
        state = self._state()
        return (f"{type(self).__name__}(pages={self.pages}, has_next_page={self._has_next_page}"
                f"{', ' + state if state else ''})")


_STYLES: dict[str, type[Paginator]] = {}


def register_paginator(name: str, options: set[str]) -> Callable[[type[Paginator]], type[Paginator]]:
    """Class decorator: make a :class:`Paginator` subclass available as ``style: name``."""
    def decorate(cls: type[Paginator]) -> type[Paginator]:
        cls.style = name
        cls.options = frozenset(options | {"max_pages"})
        _STYLES[name] = cls
        return cls
    return decorate


register_paginator("none", set())(Paginator)


def paginator_styles() -> list[str]:
    """Names of the registered styles."""
    return sorted(_STYLES)


def build_paginator(config: dict[str, Any] | None) -> Paginator:
    """Turn a ``pagination:`` config (``{"style": ..., **options}``) into a paginator.

    Raises:
        PaginationConfigError: unknown style, unknown option or bad value (a
            ``ValueError`` and a ``ConfigError``).
    """
    config = dict(config or {"style": "none"})
    style = config.pop("style", None)
    cls = _STYLES.get(style)  # type: ignore[arg-type]
    if cls is None:
        raise PaginationConfigError(f"unknown pagination style {style!r}; valid styles: "
                                    f"{', '.join(paginator_styles())}", field="pagination.style")
    unknown = sorted(set(config) - cls.options)
    if unknown:
        raise PaginationConfigError(f"unknown option(s) {', '.join(unknown)} for style {style}; "
                                    f"valid options: {', '.join(sorted(cls.options))}",
                                    field="pagination")
    return cls(**config)


class _RangePaginator(Paginator):
    """Offset and page styles: a number in ``param`` that advances until an empty
    page or the total at ``total_path``.

    Also catches servers that ignore the parameter and send the same page again, or
    start over from the first page past their last one (a page's records seen before in
    the window, remembered as digests like the other styles' cursors).
    """

    counts_records = True  # offset counts records; page counts pages from ``start``
    start = 0

    def __init__(self, param: str, value: int, total_path: str | None, total_option: str,
                 max_pages: int | None) -> None:
        super().__init__(max_pages)
        self.param = _name(self.style, f"{self.style}_param", param)
        self.value = value
        self.total_path = None if total_path is None else _path(self.style, total_option, total_path)
        self._last_page_hash: str | None = None

    def _read(self, response: PageResponse, records: list) -> None:
        if not records:
            self._has_next_page = False
            total = self._total(response)
            done = self.value - (0 if self.counts_records else self.start)
            if total is not None and done < total:
                # Stopping here would end the window with the rest of the total unread.
                raise PaginationError(
                    f"pagination style {self.style}: a page came back empty before the total "
                    f"{total} was reached ({self.param}={self.value}); the window fails and a "
                    "rerun reads it again")
            return
        digest = page_digest(records)
        if digest == self._last_page_hash:
            raise PaginationError(f"pagination style {self.style}: page {self.pages} has the same "
                                  f"records as the page before; the API seems to ignore "
                                  f"{self.param}")
        if _digest(json.dumps(digest)) in self._seen:  # an API starting over past its end
            raise PaginationError(f"pagination style {self.style}: page {self.pages} "
                                  f"({self.param}={self.value}) has the same records as an "
                                  "earlier page of the window; the API seems to start over "
                                  "past its last page (stopping instead of reading it again "
                                  "until max_pages)")
        self._remember(digest, "page")
        self._last_page_hash = digest
        # Offsets advance by what came back, not page_size: a server that caps pages
        # below our limit would otherwise make us skip records.
        self.value += len(records) if self.counts_records else 1
        total = self._total(response)
        if total is not None:
            done = self.value - (0 if self.counts_records else self.start)
            self._has_next_page = done < total

    def _total(self, response: PageResponse) -> int | None:
        """The total the response reports (records, or pages), if the config names one."""
        total = jsonpath.find(response.data, self.total_path) if self.total_path else None
        if total is None:
            return None
        try:
            return int(total)
        except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity
            raise ResponseError(f"pagination style {self.style}: the total is not a number: "
                                f"{total!r}") from None

    def update_request(self, request: PageRequest) -> None:
        request.params[self.param] = self.value

    def _state(self) -> str:
        return f"{self.param}={self.value}"


@register_paginator("offset", {"offset_param", "limit_param", "page_size", "total_path"})
class OffsetPaginator(_RangePaginator):
    """``?offset=N&limit=M``; stops on an empty page or when offset >= total (an empty
    page before the reported total fails the window)."""

    def __init__(self, offset_param: str = "offset", limit_param: str | None = "limit",
                 page_size: int = 100, total_path: str | None = None,
                 max_pages: int | None = None) -> None:
        super().__init__(offset_param, 0, total_path, "total_path", max_pages)
        self.limit_param = None if limit_param is None else _name(self.style, "limit_param", limit_param)
        self.page_size = _positive_int(self.style, "page_size", page_size)

    def init_request(self, request: PageRequest) -> None:
        self.update_request(request)
        if self.limit_param:
            request.params[self.limit_param] = self.page_size


@register_paginator("page", {"page_param", "size_param", "page_size", "start", "total_pages_path"})
class PageNumberPaginator(_RangePaginator):
    """``?page=N`` (and optionally ``&per_page=M``); stops on an empty page or page > total
    (an empty page before the reported total fails the window)."""

    counts_records = False

    def __init__(self, page_param: str = "page", size_param: str | None = None,
                 page_size: int | None = None, start: int = 1,
                 total_pages_path: str | None = None, max_pages: int | None = None) -> None:
        self.start = _positive_int("page", "start", start, minimum=0)
        super().__init__(page_param, self.start, total_pages_path, "total_pages_path", max_pages)
        if (size_param is None) != (page_size is None):
            raise PaginationConfigError("size_param and page_size go together for style page",
                                        field="pagination.page_size")
        self.size_param = None if size_param is None else _name(self.style, "size_param", size_param)
        self.page_size = None if page_size is None else _positive_int(self.style, "page_size", page_size)

    def init_request(self, request: PageRequest) -> None:
        self.update_request(request)
        if self.size_param:
            request.params[self.size_param] = self.page_size


class _TokenPaginator(Paginator):
    """Styles that follow a value the response hands back (cursor, key, token, link)."""

    what = "cursor"
    in_query = True  # the token is sent as a query parameter's value

    def __init__(self, max_pages: int | None) -> None:
        super().__init__(max_pages)
        self.token: Any = None
        self._token_steps: tuple[jsonpath.Step, ...] = ()

    def _next(self, response: PageResponse, records: list) -> Any:
        return jsonpath.find(response.data, self._token_steps)

    def _read(self, response: PageResponse, records: list) -> None:
        token = self._next(response, records)
        # "" would only ask for the first page again; false is how some APIs say "no more"
        # (sent back, it would be the text "False")
        if token is None or token == "" or token is False:
            self._has_next_page = False
            return
        if self.in_query and (token is True or isinstance(token, (dict, list))):
            # sent, it would be Python's text of it (?cursor=%7B%27a%27...), repeated
            # parameters, or "True": never what the API handed out
            kind = "boolean" if token is True else "object" if isinstance(token, dict) else "array"
            shown = redact(json.dumps(token, default=str))
            raise PaginationError(f"pagination style {self.style}: the {self.what} the API "
                                  f"returned is a JSON {kind} ({shown[:120]}), not a string or a "
                                  "number that a query parameter can carry; point the style's "
                                  "path option at the value to send")
        self._remember(token, self.what)
        self.token = token

    def _state(self) -> str:
        return redact(f"{self.what}={self.token!r}") if self.token is not None else ""


@register_paginator("cursor", {"cursor_param", "cursor_path"})
class CursorPaginator(_TokenPaginator):
    """``?cursor=<value of cursor_path in the last response>``."""

    def __init__(self, cursor_param: str = "cursor", cursor_path: str = "next_cursor",
                 max_pages: int | None = None) -> None:
        super().__init__(max_pages)
        self.cursor_param = _name(self.style, "cursor_param", cursor_param)
        self._token_steps = _path(self.style, "cursor_path", cursor_path)

    def update_request(self, request: PageRequest) -> None:
        request.params[self.cursor_param] = self.token


@register_paginator("next_key", {"key_param", "key_path", "exclusive"})
class NextKeyPaginator(_TokenPaginator):
    """Dynatrace style: ``?nextPageKey=...``; with ``exclusive`` the key is the only parameter."""

    what = "page key"

    def __init__(self, key_param: str = "nextPageKey", key_path: str = "nextPageKey",
                 exclusive: bool = True, max_pages: int | None = None) -> None:
        super().__init__(max_pages)
        self.key_param = _name(self.style, "key_param", key_param)
        self._token_steps = _path(self.style, "key_path", key_path)
        if not isinstance(exclusive, bool):
            raise PaginationConfigError(f"must be true or false, got {exclusive!r}",
                                        field="pagination.exclusive")
        self.exclusive = exclusive

    def update_request(self, request: PageRequest) -> None:
        if self.exclusive:
            # The key encodes the whole query; the API rejects it alongside other params,
            # the endpoint's own query (?pageSize=500) among them.
            request.params.clear()
            request.url = request.url.split("#", 1)[0].split("?", 1)[0]
        request.params[self.key_param] = self.token


def header_links(header: str) -> list[tuple[str, str]]:
    """The ``(url, rel)`` pairs of a ``Link`` header (RFC 8288), each URL as written
    between ``<`` and ``>``: a ``;`` or ``,`` inside it is part of it (a query may hold
    both), as they are inside a quoted parameter."""
    links: list[tuple[str, str]] = []
    at = 0
    while True:
        start = header.find("<", at)
        end = header.find(">", start + 1) if start >= 0 else -1
        if end < 0:
            return links
        url, at = header[start + 1:end].strip(), end + 1
        # the link's parameters: ";"-separated, up to a "," outside quotes
        params, current, quoted = [], [], False
        while at < len(header) and (quoted or header[at] != ","):
            char = header[at]
            if char == "\\" and quoted and at + 1 < len(header):
                current.append(header[at + 1])
                at += 2
                continue
            if char == '"':
                quoted = not quoted
            elif char == ";" and not quoted:
                params.append("".join(current))
                current = []
            else:
                current.append(char)
            at += 1
        params.append("".join(current))
        rel = next((value.strip().strip("'") for name, _eq, value
                    in (p.partition("=") for p in params)
                    if name.strip().lower() == "rel"), "")
        links.append((url, rel))


@register_paginator("link_header", set())
class LinkHeaderPaginator(_TokenPaginator):
    """Follows ``Link: <url>; rel="next"`` (GitHub style)."""

    what = "next link"
    in_query = False  # a URL (header_links yields text only)

    def __init__(self, max_pages: int | None = None) -> None:
        super().__init__(max_pages)
        self._base_url = ""

    def init_request(self, request: PageRequest) -> None:
        self._base_url = request.url  # the real URL: PageResponse.url is redacted

    def _next(self, response: PageResponse, records: list) -> Any:
        header = from_header((response.headers or {}).get("Link") or "")
        for url, rel in header_links(header):
            # relation types are case-insensitive (RFC 8288): rel=Next is the next page too
            if "next" in rel.lower().split():
                # a relative link is relative to the page that sent it (after redirects)
                return urljoin(response.final_url or self._base_url, url) or None
        return None

    def update_request(self, request: PageRequest) -> None:
        request.url = self._base_url = self.token
        request.params.clear()  # the link carries the full query


def _flag(value: Any) -> bool | None:
    """A true/false flag as APIs write it (``true``, ``"true"`` in any case, ``1``, ``"1"``),
    or ``None`` when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower())
    return None


@register_paginator("has_more", {"has_more_path", "cursor_param", "id_field"})
class HasMorePaginator(_TokenPaginator):
    """Stripe style: ``has_more`` plus ``?starting_after=<last record's id>``."""

    def __init__(self, has_more_path: str = "has_more", cursor_param: str = "starting_after",
                 id_field: str = "id", max_pages: int | None = None) -> None:
        super().__init__(max_pages)
        self.has_more_path = _path(self.style, "has_more_path", has_more_path)
        self._has_more_text = has_more_path
        self.cursor_param = _name(self.style, "cursor_param", cursor_param)
        self.id_field = _name(self.style, "id_field", id_field)

    def _next(self, response: PageResponse, records: list) -> Any:
        has_more = jsonpath.find(response.data, self.has_more_path)
        if has_more is None:
            raise PaginationError(f"pagination style has_more: the response has no "
                                  f"{self._has_more_text!r} field")
        more = _flag(has_more)
        if more is None:
            # read as "no more", it would end the window silently with pages unread
            shown = redact(json.dumps(has_more, default=str))[:80]
            raise PaginationError(f"pagination style has_more: {self._has_more_text!r} is "
                                  f"neither true nor false ({shown}); the window fails instead "
                                  "of ending with pages unread")
        if not more:
            return None
        if not records:
            raise PaginationError("pagination style has_more: the API says has_more is true "
                                  "but sent an empty page, so there is no id to continue after")
        last = records[-1]
        if not isinstance(last, dict) or last.get(self.id_field) in (None, ""):
            raise PaginationError(f"pagination style has_more: the last record has no "
                                  f"{self.id_field!r} to continue after")
        return last[self.id_field]

    def update_request(self, request: PageRequest) -> None:
        request.params[self.cursor_param] = self.token


@register_paginator("body_token", {"token_path", "body_field"})
class BodyTokenPaginator(_TokenPaginator):
    """A continuation token sent in the POST JSON body."""

    what = "token"
    in_query = False  # any JSON value goes in the body

    def __init__(self, token_path: str | None = None, body_field: str | None = None,
                 max_pages: int | None = None) -> None:
        super().__init__(max_pages)
        self._token_steps = _path(self.style, "token_path", token_path)
        if body_field is None:
            raise PaginationConfigError("is required for style body_token",
                                        field="pagination.body_field")
        self.body_field = _name(self.style, "body_field", body_field)

    def init_request(self, request: PageRequest) -> None:
        if request.method.upper() != "POST":
            raise PaginationError(f"pagination style body_token needs a POST request, "
                                  f"got {request.method}")
        if request.json is not None and not isinstance(request.json, dict):
            raise PaginationError("pagination style body_token needs a JSON object body")

    def update_request(self, request: PageRequest) -> None:
        body = dict(request.json or {})
        body[self.body_field] = self.token
        request.json = body
