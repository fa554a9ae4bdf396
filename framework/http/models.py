"""Plain values passed between the HTTP client, paginators and parsers (no Spark)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass
class PageRequest:
    """One HTTP request of a window. Paginators and auth mutate it in place."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None

    def copy(self) -> "PageRequest":
        return PageRequest(self.method, self.url, dict(self.params), dict(self.headers),
                           copy.deepcopy(self.json))

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

    def __repr__(self) -> str:
        return f"PageResponse({self.status} {self.url} {len(self.body)} bytes)"
