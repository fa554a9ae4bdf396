"""Talking to APIs: the client, auth methods, paginators, retry policy and rate budget.

Knows nothing of Spark or Delta. ``HttpClient.send`` turns a :class:`PageRequest` into
a :class:`PageResponse` under the HTTP policy; paginators and auth methods are
registries (``build_paginator``, ``build_auth``) keyed by their config names.
"""

from framework.http.auth import Auth, auth_methods, build_auth
from framework.http.client import HttpClient, api_message, pooled_session, source_session
from framework.http.models import PageRequest, PageResponse
from framework.http.pagination import Paginator, build_paginator, paginator_styles
from framework.http.ratelimit import RateLimiter, limiter_for
from framework.http.retry import RetryPolicy
from framework.http.telemetry import Telemetry

__all__ = ["Auth", "HttpClient", "PageRequest", "PageResponse", "Paginator", "RateLimiter",
           "RetryPolicy", "Telemetry", "api_message", "auth_methods", "build_auth",
           "build_paginator", "limiter_for", "paginator_styles", "pooled_session",
           "source_session"]
