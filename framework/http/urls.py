"""A URL as it goes on the wire: byte for byte as the API or the config wrote it.

A next link or a redirect an API hands out may be signed over its exact text (a
pre-signed ``?X-Amz-Signature=...``, an HMAC over the query): decoding and re-encoding
it (``%2F`` to ``/``, ``%20`` to ``+``, ``%7E`` to ``~``, ``%2f`` to ``%2F``, sorted or
merged keys, ``a=&b`` to ``a=&b=``) makes another URL that the API refuses. So a URL is
never rebuilt from parsed parts here:

* :func:`request_target` is the path and query sent for a URL plus restlake's own
  parameters (a paginator's, a query API key), which are appended after the URL's
  query; it changes only the bytes no request target may hold (a space, a non-ASCII
  character, a ``%`` that starts no escape), percent-encoded, and resolves the path's
  ``.`` and ``..`` segments as every client does (RFC 3986 5.2);
* :func:`set_query_value` sets the one parameter restlake owns (the API key) where the
  URL already has it, leaving every other byte as it is.

The client sends the target so (:class:`framework.http.client.HttpClient`); the rest of
the HTTP stack (requests, urllib3) would otherwise normalize it.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping
from urllib.parse import quote_plus, unquote_plus, urlencode, urlsplit

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
#: What a path and a query may hold as is (RFC 3986; urllib3 encodes the rest the same way).
_PATH_CHARS = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_CHARS = _PATH_CHARS | frozenset("?")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _encode_invalid(text: str, allowed: frozenset[str]) -> str:
    """``text`` with what may not appear in it percent-encoded (UTF-8); escapes kept as
    written, a ``%`` that starts none becomes ``%25``."""
    if all(c in allowed for c in text):
        return text
    out = []
    for i, char in enumerate(text):
        if char in allowed or (char == "%" and _ESCAPE.match(text, i)):
            out.append(char)
        else:
            out.extend(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def from_header(value: str) -> str:
    """A URL read from a response header (``Link``, ``Location``) as the server wrote it.

    Header values arrive as latin-1 text; a server that writes raw UTF-8 in them (common,
    though not allowed) would otherwise be read as mojibake (``cafÃ©``) and requested as
    another URL. Text that is not UTF-8 once read back as bytes stays as it came.
    """
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def encode_params(params: Mapping[str, Any] | None) -> str:
    """``params`` as a query string: ``None`` values left out, a list value repeated, a
    boolean as JSON and YAML write it (``true``, not Python's ``True``)."""
    pairs = []
    for key, value in (params or {}).items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None:
                pairs.append((key, ("true" if item else "false") if isinstance(item, bool) else item))
    return urlencode(pairs)


def _remove_dot_segments(path: str) -> str:
    """``path`` with its ``.`` and ``..`` segments resolved (RFC 3986 5.2.4), as every
    client resolves a reference's path (escaped dots are not dot segments)."""
    if "." not in path:
        return path
    out: list[str] = []
    for segment in path.split("/"):
        if segment == ".":
            continue
        if segment != "..":
            out.append(segment)
        elif len(out) > 1 or (out and out[0]):
            out.pop()
    if path.startswith("/") and (not out or out[0]):
        out.insert(0, "")
    if path.endswith(("/.", "/..")):
        out.append("")
    return "/".join(out)


def request_target(url: str, params: Mapping[str, Any] | None = None) -> str:
    """The path and query sent for ``url`` and ``params``: ``url``'s own as written
    (dot segments resolved, invalid bytes encoded), then ``params`` appended (no
    fragment)."""
    parts = urlsplit(url)
    target = _encode_invalid(_remove_dot_segments(parts.path), _PATH_CHARS) or "/"
    query = _encode_invalid(parts.query, _QUERY_CHARS)
    extra = encode_params(params)
    if extra:
        query = f"{query}&{extra}" if query else extra
    return f"{target}?{query}" if query else target


def _split_query(url: str) -> tuple[str, str, str]:
    """``url`` as (before the query and its ``?``, the query, the fragment and its ``#``)."""
    head, hash_, fragment = url.partition("#")
    base, mark, query = head.partition("?")
    return base + mark, query, hash_ + fragment


def _name_of(part: str) -> str:
    return unquote_plus(part.split("=", 1)[0])


def query_value(url: str, name: str) -> str | None:
    """The decoded value of the query parameter ``name`` in ``url`` (its first), or None."""
    raw = raw_query_values(url).get(name)
    return None if raw is None else unquote_plus(raw)


def raw_query_values(url: str) -> dict[str, str]:
    """The raw (as written) value of each query parameter of ``url``, by decoded name
    (the first of a repeated one)."""
    values: dict[str, str] = {}
    for part in _split_query(url)[1].split("&"):
        if part:
            raw_name, _eq, raw = part.partition("=")
            values.setdefault(unquote_plus(raw_name), raw)
    return values


def replace_query_values(url: str, new: Callable[[str, str], str | None]) -> str:
    """``url`` with the raw value of each query parameter for which ``new(name, raw)``
    returns a raw replacement; every other byte stays as written."""
    before, query, after = _split_query(url)
    if not query:
        return url
    parts = query.split("&")
    for n, part in enumerate(parts):
        if not part:
            continue
        raw_name, eq, raw = part.partition("=")
        value = new(unquote_plus(raw_name), raw)
        if value is not None:
            parts[n] = f"{raw_name}={value}"
    return before + "&".join(parts) + after


def set_query_value(url: str, name: str, value: str) -> tuple[str, bool]:
    """``url`` with the query parameter ``name`` set to ``value`` where ``url`` has it
    (its first; any later one dropped), every other byte as written, and whether it had
    it. An occurrence that already holds ``value`` stays byte for byte."""
    before, query, after = _split_query(url)
    if not query:
        return url, False
    kept, found = [], False
    for part in query.split("&"):
        if part and _name_of(part) == name:
            if found:
                continue
            found = True
            raw_name, _eq, raw = part.partition("=")
            if unquote_plus(raw) != value:
                part = f"{raw_name}={quote_plus(value, safe='')}"
        kept.append(part)
    return (before + "&".join(kept) + after, True) if found else (url, False)


def upper_escapes(target: str) -> str:
    """``target`` with its percent escapes in upper case: how urllib3 sends a target it is
    given (RFC 3986 calls the two equivalent; a signature over the text does not)."""
    return _ESCAPE.sub(lambda m: m.group(0).upper(), target)
