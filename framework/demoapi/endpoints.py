"""The demo API's data endpoints, one per pagination style, as plain functions of a request.

Every endpoint serves the records whose ``updated_at`` lies in ``[since, until)``
(query parameters, or body fields for ``body_token``) in ``(updated_at, id)``
order (``has_more``: ``id`` order), and caps the page size at ``max_page_size``
whatever the client asks for, so a client that stops on a short page loses records.

Opaque tokens (``cursor``, ``nextPageKey``, ``page_token``) encode the window and
the last ``(updated_at, id)`` served, so a record edited mid-walk moves to the end
of the walk instead of shifting every later page, as with keyset pagination on a
real server.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import urlencode

import orjson

from framework.demoapi.data import decode_token, encode_token, parse_time, to_iso
from framework.demoapi.faults import drift

if TYPE_CHECKING:
    from framework.demoapi.server import DemoApi

DEFAULT_PAGE_SIZE = 25
NEXT_KEY_RULE = "Constraints violated: nextPageKey must be the only query parameter"

Records = list[dict[str, Any]]


class BadRequest(Exception):
    """A request the demo API answers with 400 (the message is the API's)."""


@dataclass
class Call:
    """One request as the endpoints see it."""

    method: str
    path: str
    query: dict[str, Any]
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    drift: bool = False


@dataclass
class Reply:
    """An endpoint's answer: a JSON-serializable body, or raw bytes with a content type."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def payload(self) -> bytes:
        """The body as bytes."""
        if isinstance(self.body, bytes):
            return self.body
        # orjson, for speed; it writes NaN as null (the demo data has none) and refuses ints
        # beyond 64 bits (orjson.JSONEncodeError, a TypeError), which json.dumps takes.
        try:
            return orjson.dumps(self.body)
        except TypeError:
            return json.dumps(self.body, separators=(",", ":")).encode()


def error(status: int, message: str) -> Reply:
    """A JSON error reply ``{"error": {"code": status, "message": message}}``."""
    return Reply(status, {"error": {"code": status, "message": message}})


def _int(name: str, raw: Any, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None


def _size(api: DemoApi, params: Mapping[str, Any], name: str) -> int:
    raw = params.get(name)
    size = _int(name, raw, DEFAULT_PAGE_SIZE)
    if size < 1:
        raise BadRequest(f"{name} must be >= 1, got {raw}")
    return min(size, api.max_page_size)


def _iso(value: datetime | None) -> str | None:
    return to_iso(value) if value else None


def _window(params: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    try:
        return (parse_time(params.get("since"), field="since"),
                parse_time(params.get("until"), field="until"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _decode(token: Any, name: str) -> dict[str, Any]:
    try:
        state = decode_token(str(token))
        for key in ("s", "e", "u"):
            parse_time(state.get(key))
        if state.get("u") and not isinstance(state.get("i"), int):
            raise ValueError("position without an id")
        if name == "nextPageKey" and not (isinstance(state.get("n"), int) and state["n"] > 0):
            raise ValueError("no page size")
    except (ValueError, TypeError):
        raise BadRequest(f"{name} is invalid") from None
    return state


def _same_window(state: dict[str, Any], since: datetime | None, until: datetime | None,
                 name: str) -> None:
    # A token belongs to one filter; a client that changes the window mid-walk has a bug.
    for key, given in (("s", since), ("e", until)):
        if given is not None and parse_time(state.get(key)) != given:
            raise BadRequest(f"{name} was issued for another since/until window")


def _out(call: Call, records: Records) -> Records:
    return drift(records) if call.drift else records


def _keyed_page(api: DemoApi, state: dict[str, Any], size: int
                ) -> tuple[Records, dict[str, Any] | None]:
    """The page after the position in ``state``, and the state of the next page (or None)."""
    since, until = parse_time(state.get("s")), parse_time(state.get("e"))
    after = (parse_time(state["u"]), state["i"]) if state.get("u") else None
    rows = api.dataset.select(since, until, after=after, limit=size + 1)
    page = rows[:size]
    if len(rows) <= size:
        return page, None
    return page, dict(state, u=page[-1]["updated_at"], i=page[-1]["id"])


def none(api: DemoApi, call: Call) -> Reply:
    """``GET /api/none/issues`` → ``{"data": [...]}`` (the whole window at once)."""
    return Reply(200, {"data": _out(call, api.dataset.select(*_window(call.query)))})


def offset(api: DemoApi, call: Call) -> Reply:
    """``GET /api/offset/issues?offset&limit`` → ``{"data": [...], "total": N}``."""
    since, until = _window(call.query)
    start, size = _int("offset", call.query.get("offset"), 0), _size(api, call.query, "limit")
    if start < 0:
        raise BadRequest(f"offset must be >= 0, got {start}")
    rows = api.dataset.select(since, until, offset=start, limit=size)
    return Reply(200, {"data": _out(call, rows), "total": api.dataset.count(since, until)})


def _numbered(api: DemoApi, call: Call) -> tuple[Records, int, int, int]:
    since, until = _window(call.query)
    number, size = _int("page", call.query.get("page"), 1), _size(api, call.query, "per_page")
    if number < 1:
        raise BadRequest(f"page must be >= 1, got {number}")
    rows = api.dataset.select(since, until, offset=(number - 1) * size, limit=size)
    return rows, number, size, math.ceil(api.dataset.count(since, until) / size)


def page(api: DemoApi, call: Call) -> Reply:
    """``GET /api/page/issues?page&per_page`` → ``{"data", "page", "total_pages"}`` (1-based)."""
    rows, number, _, total_pages = _numbered(api, call)
    return Reply(200, {"data": _out(call, rows), "page": number, "total_pages": total_pages})


def link_header(api: DemoApi, call: Call) -> Reply:
    """``GET /api/link_header/issues?page&per_page`` → a JSON array plus a ``Link`` header.

    ``rel="next"`` (only when there are more pages) and ``rel="last"`` are absolute
    URLs that carry ``per_page``, ``since``, ``until`` and every other query parameter
    of the request, as GitHub's do: a key sent as a query parameter is echoed in them.
    """
    rows, number, size, total_pages = _numbered(api, call)
    since, until = _window(call.query)
    keep = {"per_page": size, **({"since": to_iso(since)} if since else {}),
            **({"until": to_iso(until)} if until else {})}
    keep.update({k: v for k, v in call.query.items() if k not in keep and k != "page"})

    def link(target: int, rel: str) -> str:
        return (f'<{api.base_url}{call.path}?{urlencode({"page": target, **keep}, doseq=True)}>; '
                f'rel="{rel}"')

    links = [link(number + 1, "next")] if number < total_pages else []
    links.append(link(max(total_pages, 1), "last"))
    return Reply(200, _out(call, rows), {"Link": ", ".join(links)})


def cursor(api: DemoApi, call: Call) -> Reply:
    """``GET /api/cursor/issues?cursor&limit`` → ``{"data", "next_cursor"}`` (null on the last page)."""
    since, until = _window(call.query)
    size = _size(api, call.query, "limit")
    state = {"s": _iso(since), "e": _iso(until)}
    if call.query.get("cursor"):
        state = _decode(call.query["cursor"], "cursor")
        _same_window(state, since, until, "cursor")
    rows, nxt = _keyed_page(api, state, size)
    return Reply(200, {"data": _out(call, rows), "next_cursor": encode_token(nxt) if nxt else None})


def next_key(api: DemoApi, call: Call) -> Reply:
    """``GET /api/next_key/issues?pageSize&since&until`` or ``?nextPageKey=K`` (Dynatrace rules).

    Returns ``{"totalCount", "pageSize", "nextPageKey", "items"}``. The key carries the
    filter and page size, so it must come alone: any other query parameter (except an
    API key sent in the query) is a 400, as Dynatrace answers.
    """
    if "nextPageKey" in call.query:
        others = [k for k in call.query if k not in ("nextPageKey", api.auth.get("query"))]
        if others:
            return error(400, NEXT_KEY_RULE)
        state = _decode(call.query["nextPageKey"], "nextPageKey")
    else:
        since, until = _window(call.query)
        state = {"s": _iso(since), "e": _iso(until), "n": _size(api, call.query, "pageSize")}
    total = api.dataset.count(parse_time(state.get("s")), parse_time(state.get("e")))
    rows, nxt = _keyed_page(api, state, state["n"])
    return Reply(200, {"totalCount": total, "pageSize": state["n"],
                       "nextPageKey": encode_token(nxt) if nxt else None,
                       "items": _out(call, rows)})


def has_more(api: DemoApi, call: Call) -> Reply:
    """``GET /api/has_more/issues?limit&starting_after=<id>`` → ``{"object", "data", "has_more"}``.

    Ordered by ``id`` within the window, as Stripe lists are ordered by their cursor field.
    """
    rows = sorted(api.dataset.select(*_window(call.query)), key=lambda r: r["id"])
    size = _size(api, call.query, "limit")
    if call.query.get("starting_after"):
        last = _int("starting_after", call.query["starting_after"], 0)
        rows = [r for r in rows if r["id"] > last]
    return Reply(200, {"object": "list", "url": call.path, "data": _out(call, rows[:size]),
                       "has_more": len(rows) > size})


def body_token(api: DemoApi, call: Call) -> Reply:
    """``POST /api/body_token/search`` with ``{"since", "until", "page_size", "page_token"}``.

    Returns ``{"results": {"items": [...]}, "next_page_token": str | null}``.
    """
    try:
        body = json.loads(call.body or b"{}")
    except ValueError:
        raise BadRequest("request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    since, until = _window(body)
    size = _size(api, body, "page_size")
    state = {"s": _iso(since), "e": _iso(until)}
    if body.get("page_token"):
        state = _decode(body["page_token"], "page_token")
        _same_window(state, since, until, "page_token")
    rows, nxt = _keyed_page(api, state, size)
    return Reply(200, {"results": {"items": _out(call, rows)},
                       "next_page_token": encode_token(nxt) if nxt else None})


def detail(api: DemoApi, call: Call, record_id: str) -> Reply:
    """``GET /api/<style>/issues/<id>`` → the issue with its detail-only fields
    (``body``, ``reactions``), or 404 for an unknown id."""
    try:
        record = api.dataset.get(int(record_id))
    except (KeyError, ValueError):
        return error(404, f"no issue with id {record_id}")
    body = f"Issue #{record['number']}: {record['title']}"
    reactions = {"+1": record["number"] % 7, "heart": record["number"] % 3}
    return Reply(200, _out(call, [dict(record, body=body, reactions=reactions)])[0])


#: ``/api/<style>/issues/<id>``: the detail route of every list style.
DETAIL_ROUTE = re.compile(r"^/api/[a-z_]+/issues/([^/]+)$")

# path -> (HTTP method, endpoint)
ROUTES: dict[str, tuple[str, Callable[[DemoApi, Call], Reply]]] = {
    "/api/none/issues": ("GET", none),
    "/api/offset/issues": ("GET", offset),
    "/api/page/issues": ("GET", page),
    "/api/cursor/issues": ("GET", cursor),
    "/api/next_key/issues": ("GET", next_key),
    "/api/link_header/issues": ("GET", link_header),
    "/api/has_more/issues": ("GET", has_more),
    "/api/body_token/search": ("POST", body_token),
}
