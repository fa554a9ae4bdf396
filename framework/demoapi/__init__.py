"""A local REST API for demos, tests and benchmarks (standard library only).

It serves one GitHub-issue-like dataset through every pagination style restlake
supports, behind any of its auth methods, and injects faults on demand::

    from framework.demoapi import DemoApi

    with DemoApi(records_per_resource=200, auth={"method": "bearer", "token": "t0ken"}) as api:
        api.faults.add("429", times=2, retry_after=0)
        ...  # point a source's endpoint at api.base_url + "/api/cursor/issues"
        expected = api.dataset.records_in("2024-01-05T00:00:00Z", "2024-01-06T00:00:00Z")
        api.dataset.degrade(drop_pct=40, null_field="state")  # a 200 with wrong data (drills)

Endpoints (``since``/``until`` filter ``updated_at`` to ``[since, until)`` everywhere; page
sizes are capped at ``max_page_size``):

* ``GET /api/none/issues`` → ``{"data": [...]}``
* ``GET /api/offset/issues?offset=&limit=`` → ``{"data": [...], "total": N}``
* ``GET /api/page/issues?page=&per_page=`` → ``{"data": [...], "page": p, "total_pages": T}``
* ``GET /api/cursor/issues?cursor=&limit=`` → ``{"data": [...], "next_cursor": str | null}``
* ``GET /api/next_key/issues?pageSize=`` then ``?nextPageKey=K`` (alone) →
  ``{"totalCount": N, "pageSize": n, "nextPageKey": str | null, "items": [...]}``
* ``GET /api/link_header/issues?page=&per_page=`` → ``[...]`` with
  ``Link: <...>; rel="next", <...>; rel="last"``
* ``GET /api/has_more/issues?limit=&starting_after=ID`` →
  ``{"object": "list", "data": [...], "has_more": bool}`` (``id`` order)
* ``POST /api/body_token/search`` ``{"since", "until", "page_size", "page_token"}`` →
  ``{"results": {"items": [...]}, "next_page_token": str | null}``
* ``GET /api/<style>/issues/<id>`` → one issue with the detail-only fields ``body`` and
  ``reactions`` (404 for an unknown id), for detail fan-out; faults apply as to the lists
  (``path="/api/offset/issues/"`` targets the detail requests only)
* ``POST /oauth/token`` (form) → ``{"access_token", "token_type": "Bearer", "expires_in"}``
* ``GET /health`` → ``{"status": "ok"}``
"""

from framework.demoapi.data import Dataset, decode_token, encode_token
from framework.demoapi.faults import KINDS as FAULT_KINDS
from framework.demoapi.faults import Fault, Faults
from framework.demoapi.endpoints import DEFAULT_PAGE_SIZE, NEXT_KEY_RULE
from framework.demoapi.server import AUTH_METHODS, DemoApi

__all__ = ["DemoApi", "Dataset", "Fault", "Faults", "FAULT_KINDS", "DEFAULT_PAGE_SIZE",
           "NEXT_KEY_RULE", "AUTH_METHODS", "encode_token", "decode_token"]
