"""Plain values passed between the HTTP client, paginators and parsers (no Spark)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from framework.http.origins import OriginPolicy


@dataclass
class PageRequest:
    """One HTTP request of a window. Paginators and auth mutate it in place.

    ``origins`` says where the source's credentials may go; it is fixed when the first
    request of a window is built (default: the origin of ``url`` alone) and travels with
    the request as paginators change its URL, so the client checks every page against it.
    """

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    origins: "OriginPolicy | None" = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.origins is None:
            from framework.errors import ConfigError
            from framework.http.origins import OriginPolicy

            try:
                self.origins = OriginPolicy.same_origin(self.url)
            except ConfigError:  # not an http(s) URL: the client refuses to send it
                self.origins = None

    def copy(self) -> "PageRequest":
        return PageRequest(self.method, self.url, dict(self.params), dict(self.headers),
                           copy.deepcopy(self.json), self.origins)

    def checkpoint(self) -> dict[str, Any]:
        """The request as JSON-able values to resume from, known secrets masked (a key a
        next link echoed is sent again by the auth, not by the saved URL). The origin
        policy is not saved: it comes from the source's config."""
        from framework.secrets import redact_values

        return redact_values({"method": self.method, "url": self.url, "params": dict(self.params),
                              "headers": dict(self.headers), "json": copy.deepcopy(self.json)},
                             known_only=True)

    def resumed(self, saved: dict[str, Any]) -> "PageRequest":
        """This freshly built first request, moved to a checkpoint's saved request.

        A value masked in the checkpoint (a ``${ENV}`` value a next link echoed) takes
        this request's value of the same query parameter or header again; the origin
        policy stays this request's (the config's).
        """
        from framework.http.urls import encode_params, raw_query_values, replace_query_values
        from framework.secrets import MASK

        # raw values (as written in the URL, or as the params are encoded): the saved URL
        # keeps every byte it had but the masked values (a signed next link stays signed)
        fresh_raw = raw_query_values(self.url)
        for key, value in self.params.items():
            fresh_raw[key] = encode_params({key: value}).partition("=")[2]

        def unmask(value: Any, fresh: Any) -> Any:
            return fresh if isinstance(value, str) and MASK in value and fresh is not None else value

        url = saved.get("url", self.url)
        if MASK in url:
            url = replace_query_values(
                url, lambda name, raw: fresh_raw.get(name) if MASK in raw else None)
        params = {k: unmask(v, self.params.get(k)) for k, v in saved.get("params", {}).items()}
        headers = {k: unmask(v, self.headers.get(k)) for k, v in saved.get("headers", {}).items()}
        return PageRequest(saved.get("method", self.method), url, params, headers,
                           copy.deepcopy(saved.get("json", self.json)), self.origins)

    def __repr__(self) -> str:
        from framework.secrets import redact

        return redact(f"PageRequest({self.method} {self.url} params={sorted(self.params)})")


@dataclass
class PageResponse:
    """A successful (2xx) response whose body parsed as JSON."""

    status: int
    url: str  # redacted
    headers: Mapping[str, str]
    body: bytes
    data: Any
    elapsed_s: float = 0.0
    #: the URL that answered (after redirects), unredacted: relative next links are read
    #: against it; never shown (``url`` is)
    final_url: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"PageResponse({self.status} {self.url} {len(self.body)} bytes)"
