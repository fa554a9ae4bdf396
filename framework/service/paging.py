"""Pages of a list answer and the JSON shape of values.

A list answer is ``{"items": [...], "limit": N, "next_cursor": "…" | null}``. A cursor is
opaque to clients: the sort key of the page's last item, as base64url JSON. Datetimes are
ISO-8601 UTC with ``Z``; text passes through :func:`framework.secrets.redact`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from typing import Any, Callable, Optional, Sequence, Union

import orjson
from fastapi import Query
from starlette.responses import Response

from framework.secrets import redact
from framework.service.problems import Problem
from framework.timeutil import iso, parse_iso, to_utc

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

LimitParam = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="items per page (1..500)")
CursorParam = Query(None, description="the next_cursor of the previous page")


class JsonAnswer(Response):
    """A JSON answer encoded by orjson: the values are JSON already (see :func:`jsonable`),
    so nothing walks them again."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def encode_cursor(key: Sequence[Any]) -> str:
    parts = [{"t": iso(v)} if isinstance(v, dt.datetime) else v for v in key]
    return base64.urlsafe_b64encode(json.dumps(parts, separators=(",", ":")).encode()).decode()


#: What one part of a sort key may hold: a type, or a tuple of types (``type(None)``: null).
#: Only datetimes (encoded as ``{"t": ISO}``), text and null occur in a key.
Kind = Union[type, tuple[type, ...]]
NULLABLE_TIME: Kind = (dt.datetime, type(None))
NULLABLE_TEXT: Kind = (str, type(None))


def decode_cursor(cursor: Optional[str], kinds: Sequence[Kind]) -> Optional[list[Any]]:
    """The sort key in ``cursor`` (None for the first page), each part of its ``kinds``.

    Raises:
        Problem: 422 when the cursor is not one this service returned (not base64 JSON,
            another number of parts, or a part of another type).
    """
    if not cursor:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"==="))
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong shape")
        return [_part(p, kind) for p, kind in zip(parts, kinds)]
    except (ValueError, TypeError, KeyError):
        raise Problem(422, "cursor: not a cursor of this list (pass the next_cursor of the "
                           "previous page unchanged)",
                      errors=[{"field": "cursor", "in": "query", "message": "invalid cursor"}]) from None


def _part(value: Any, kind: Kind) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, dict) and dt.datetime in kinds and set(value) == {"t"} \
            and isinstance(value["t"], str):
        return parse_iso(value["t"])
    if (value is None and type(None) in kinds) or (isinstance(value, str) and str in kinds):
        return value
    raise ValueError(f"a cursor part of the wrong type: {type(value).__name__}")


def page(fetch: Callable[[Optional[list[Any]], int], list[dict[str, Any]]], key: Callable[[dict], Sequence[Any]],
         limit: int, cursor: Optional[str], key_kinds: Sequence[Kind],
         shape: Callable[[dict[str, Any]], dict[str, Any]] = lambda r: r, encoded: bool = False
         ) -> JsonAnswer:
    """One page: ``fetch(after, n)`` returns up to ``n`` rows after the key ``after``
    (``encoded``: the rows are JSON values already, see :func:`jsonable`); ``key(row)`` is
    the row's sort key, whose parts are of ``key_kinds``."""
    after = decode_cursor(cursor, key_kinds)
    rows = fetch(after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [shape(r) for r in rows] if encoded else [jsonable(shape(r)) for r in rows]
    return JsonAnswer({"items": items, "limit": limit,
                           "next_cursor": encode_cursor(key(rows[-1])) if more and rows else None})


def respond(value: Any, status_code: int = 200) -> JsonAnswer:
    """A JSON answer of :func:`jsonable` values, encoded by orjson (FastAPI's generic encoder
    would walk every value again)."""
    return JsonAnswer(jsonable(value), status_code=status_code)


def jsonable(value: Any) -> Any:
    """Datetimes as ISO-8601 UTC text, text redacted, containers walked."""
    if isinstance(value, dt.datetime):
        return iso(to_utc(value))
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
