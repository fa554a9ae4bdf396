"""Auth methods, chosen by name from a registry.

A config holds secret references only (``env:TOKEN``); they are resolved here,
which registers the values for redaction. Every method implements :class:`Auth`:
``apply`` decorates a request, ``refresh`` fetches a new token (OAuth, once
after a 401), and ``rotate`` switches API keys after a 429 when the config
lists several (``secrets: [...]``).
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import requests

from framework import secrets
from framework.errors import AuthError, ConfigError, RetriableError
from framework.http.body import TOO_LARGE, BodyFault, read_body
from framework.http.models import PageRequest
from framework.http.origins import check_https
from framework.http.ratelimit import KeyRing
from framework.http.retry import is_retriable_status, parse_retry_after
from framework.http.urls import query_value, set_query_value

#: Fetch a new OAuth token this long before the old one expires (half its lifetime when that
#: is shorter: a token living 30 s is still used for 15 s, not fetched for every request).
TOKEN_EXPIRY_SKEW_S = 60.0
TOKEN_TIMEOUT_S = 30.0
TOKEN_BODY_TIMEOUT_S = 60.0  # the whole answer of the token endpoint
TOKEN_MAX_BYTES = 1024 * 1024


class Auth:
    """No authentication; the base of every method."""

    method = "none"
    options: frozenset[str] = frozenset()
    can_refresh = False

    def apply(self, request: PageRequest) -> None:
        """Add credentials to ``request`` (in place)."""

    def refresh(self, rejected: str | None = None) -> bool:
        """Fetch new credentials (only when :attr:`can_refresh`).

        Args:
            rejected: the ``Authorization`` value the API rejected; when the credentials
                were already renewed since it was applied (another request saw its 401
                first), nothing is fetched again.

        Returns:
            True when new credentials were fetched.
        """
        raise AuthError(f"auth method {self.method} cannot refresh its credentials")

    @property
    def can_rotate(self) -> bool:
        """True when a 429 can be answered by switching to another key."""
        return False

    def rotate(self, retry_after_s: float | None,
               request: PageRequest | None = None) -> float | None:
        """React to a 429; return seconds to wait, or ``None`` to let the policy decide."""
        return None

    def set_timeout(self, timeout_s: float) -> None:
        """Requests the auth itself sends (an OAuth token request) time out after
        ``timeout_s``, the source's ``limits.timeout_s``."""

    @classmethod
    def from_config(cls, config: dict[str, Any], session: requests.Session | None,
                    clock: Callable[[], float]) -> "Auth":
        return cls()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_METHODS: dict[str, type[Auth]] = {}


def register_auth(name: str, options: set[str]) -> Callable[[type[Auth]], type[Auth]]:
    """Class decorator: make an :class:`Auth` subclass available as ``method: name``."""
    def decorate(cls: type[Auth]) -> type[Auth]:
        cls.method = name
        cls.options = frozenset(options)
        _METHODS[name] = cls
        return cls
    return decorate


register_auth("none", set())(Auth)


def auth_methods() -> list[str]:
    """Names of the registered auth methods."""
    return sorted(_METHODS)


def build_auth(config: dict[str, Any] | None, session: requests.Session | None = None, *,
               clock: Callable[[], float] = time.monotonic,
               timeout_s: float | None = None) -> Auth:
    """Turn an ``auth:`` config into an :class:`Auth`, resolving its secrets.

    Args:
        config: e.g. ``{"method": "bearer", "secret": "env:TOKEN"}``; ``None``
            means no auth.
        session: used for token requests (OAuth).
        clock: monotonic clock for token expiry and key blocking.
        timeout_s: the timeout of the auth's own requests (an OAuth token request; default
            :data:`TOKEN_TIMEOUT_S`): the source's ``limits.timeout_s``.

    Raises:
        ConfigError: unknown method, unknown or missing option, or a literal
            where a secret reference is required.
        SecretError: a reference cannot be resolved.
    """
    if config is None:
        return Auth()
    if not isinstance(config, dict):
        raise ConfigError(f"expected a mapping, got {type(config).__name__}", field="auth")
    name = config.get("method", "none")
    cls = _METHODS.get(name)
    if cls is None:
        raise ConfigError(f"unknown auth method {name!r}; known methods: {', '.join(auth_methods())}",
                          field="auth.method")
    unknown = sorted(set(config) - cls.options - {"method"})
    if unknown:
        allowed = ", ".join(sorted(cls.options)) or "none"
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for auth method {name}; "
                          f"allowed: {allowed}", field="auth")
    auth = cls.from_config(config, session, clock)
    if timeout_s is not None:
        auth.set_timeout(timeout_s)
    return auth


def _reference(config: dict[str, Any], key: str) -> str:
    """Resolve the secret reference at ``config[key]``; a literal is refused."""
    value = config.get(key)
    if not value:
        raise ConfigError("is required", field=f"auth.{key}")
    if not secrets.is_reference(value):
        # Say nothing of the value: it may be a pasted secret.
        raise ConfigError("takes a secret reference only (env:NAME, file:PATH or "
                          "databricks:SCOPE/KEY), not a literal value", field=f"auth.{key}")
    return secrets.resolve(value, field=f"auth.{key}")


def _literal_or_reference(config: dict[str, Any], key: str) -> str:
    value = config.get(key)
    if not value or not isinstance(value, str):
        raise ConfigError("is required (a literal or a secret reference)", field=f"auth.{key}")
    return secrets.resolve(value, field=f"auth.{key}") if secrets.is_reference(value) else value


class _KeyAuth(Auth):
    """Shared code of methods that send one static key (or a ring of keys)."""

    def __init__(self, refs: list[str], keys: list[str], clock: Callable[[], float]) -> None:
        self._refs = refs
        self._ring = KeyRing(keys, clock)

    @classmethod
    def _keys(cls, config: dict[str, Any], clock: Callable[[], float]) -> tuple[list[str], list[str]]:
        if "secret" in config and "secrets" in config:
            raise ConfigError("give either secret or secrets, not both", field="auth")
        if "secrets" in config:
            refs = config["secrets"]
            if not isinstance(refs, list) or not refs:
                raise ConfigError("must be a non-empty list of secret references",
                                  field="auth.secrets")
            keys = [_reference({"secrets": ref}, "secrets") for ref in refs]
            return list(refs), keys
        return [config.get("secret")], [_reference(config, "secret")]

    @property
    def can_rotate(self) -> bool:
        return len(self._ring) > 1

    def _used_key(self, request: PageRequest | None) -> str | None:
        return None

    def rotate(self, retry_after_s: float | None,
               request: PageRequest | None = None) -> float | None:
        if not self.can_rotate:
            return None
        return self._ring.block(retry_after_s, self._used_key(request))

    def __repr__(self) -> str:
        refs = self._refs[0] if len(self._refs) == 1 else f"[{', '.join(map(str, self._refs))}]"
        return f"{type(self).__name__}(secret={refs})"


class _HeaderKeyAuth(_KeyAuth):
    """A key sent in a header as ``<prefix> <key>`` (or the bare key)."""

    def __init__(self, refs: list[str], keys: list[str], clock: Callable[[], float],
                 header: str, prefix: str) -> None:
        if header:
            for n, key in enumerate(keys):
                if not key.isprintable() or key != key.strip():
                    # requests would refuse the header quoting the value; say which one
                    field = "auth.secret" if len(keys) == 1 else f"auth.secrets[{n}]"
                    raise ConfigError("the value holds a line break, a control character or "
                                      "leading or trailing blanks, which an HTTP header cannot "
                                      "carry (a trailing newline in the variable or file?)",
                                      field=field)
        super().__init__(refs, keys, clock)
        self._header = header
        self._prefix = prefix

    def _value(self, key: str) -> str:
        return f"{self._prefix} {key}" if self._prefix else key

    def apply(self, request: PageRequest) -> None:
        request.headers[self._header] = self._value(self._ring.current)

    def _used_key(self, request: PageRequest | None) -> str | None:
        if request is None:
            return None
        sent = request.headers.get(self._header)
        return next((k for k in self._ring.keys if self._value(k) == sent), None)


@register_auth("bearer", {"secret", "secrets"})
class BearerAuth(_HeaderKeyAuth):
    """``Authorization: Bearer <token>``."""

    @classmethod
    def from_config(cls, config, session, clock):  # type: ignore[override]
        refs, keys = cls._keys(config, clock)
        return cls(refs, keys, clock, "Authorization", "Bearer")


@register_auth("api_token", {"secret", "secrets", "header", "prefix"})
class ApiTokenAuth(_HeaderKeyAuth):
    """``Authorization: Api-Token <token>`` (Dynatrace); header and prefix configurable."""

    @classmethod
    def from_config(cls, config, session, clock):  # type: ignore[override]
        refs, keys = cls._keys(config, clock)
        prefix = config.get("prefix", "Api-Token")
        return cls(refs, keys, clock, config.get("header", "Authorization"), prefix or "")


@register_auth("api_key", {"secret", "secrets", "header", "query"})
class ApiKeyAuth(_HeaderKeyAuth):
    """An API key in a header (default ``X-API-Key``) or a query parameter."""

    def __init__(self, refs, keys, clock, header: str | None, query: str | None) -> None:
        super().__init__(refs, keys, clock, header or "", "")
        self._query = query

    @classmethod
    def from_config(cls, config, session, clock):  # type: ignore[override]
        if "header" in config and "query" in config:
            raise ConfigError("give either header or query, not both", field="auth")
        refs, keys = cls._keys(config, clock)
        query = config.get("query")
        return cls(refs, keys, clock, None if query else config.get("header", "X-API-Key"), query)

    def apply(self, request: PageRequest) -> None:
        if self._query:
            # A next link may echo the key (or a masked one from a checkpoint): send ours
            # once, where the link has it, every other byte of the link as the API wrote it
            # (it may be signed over its text).
            key = self._ring.current
            request.url, found = set_query_value(request.url, self._query, key)
            if found:
                request.params.pop(self._query, None)
            else:
                request.params[self._query] = key
        else:
            super().apply(request)

    def _used_key(self, request: PageRequest | None) -> str | None:
        if self._query and request is not None:
            return request.params.get(self._query, query_value(request.url, self._query))
        return super()._used_key(request)


@register_auth("basic", {"username", "password"})
class BasicAuth(Auth):
    """HTTP Basic; ``username`` literal or reference, ``password`` a reference."""

    def __init__(self, username: str, password: str, password_ref: str) -> None:
        self._username = username
        self._password_ref = password_ref
        raw = f"{username}:{password}".encode("utf-8")
        self._header = "Basic " + base64.b64encode(raw).decode("ascii")
        secrets.register(self._header.split(" ", 1)[1])  # the encoding reveals the password

    @classmethod
    def from_config(cls, config, session, clock):  # type: ignore[override]
        return cls(_literal_or_reference(config, "username"), _reference(config, "password"),
                   config["password"])

    def apply(self, request: PageRequest) -> None:
        request.headers["Authorization"] = self._header

    def __repr__(self) -> str:
        return secrets.redact(f"BasicAuth(username={self._username}, password={self._password_ref})")

@register_auth("oauth2_client_credentials",
               {"token_url", "client_id", "client_secret", "scopes", "audience", "client_auth"})
class OAuth2ClientCredentials(Auth):
    """OAuth 2.0 client credentials grant, with a cached token refreshed before expiry."""

    can_refresh = True

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 scopes: list[str] | None = None, audience: str | None = None,
                 client_auth: str = "body", session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic, secret_ref: str = "") -> None:
        if client_auth not in ("body", "basic"):
            raise ConfigError(f"must be body or basic, got {client_auth!r}", field="auth.client_auth")
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._secret_ref = secret_ref
        self._scopes = list(scopes or [])
        self._audience = audience
        self._client_auth = client_auth
        if session is None:  # the load's session is passed; a lone token client gets its own
            from framework.http.client import pooled_session  # (client imports this module)
            session = pooled_session(1, pool_connections=1)
        self._session = session
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = float("-inf")
        self._timeout_s = TOKEN_TIMEOUT_S

    def set_timeout(self, timeout_s: float) -> None:
        self._timeout_s = float(timeout_s)

    @classmethod
    def from_config(cls, config, session, clock):  # type: ignore[override]
        url = config.get("token_url")
        if not url or not isinstance(url, str):
            raise ConfigError("is required", field="auth.token_url")
        scopes = config.get("scopes", [])
        if isinstance(scopes, str) or not isinstance(scopes, list):
            raise ConfigError(f"must be a list, got {type(scopes).__name__}", field="auth.scopes")
        token_url = check_https(secrets.expand_env(url, field="auth.token_url"),
                                field="auth.token_url")
        return cls(token_url,
                   _literal_or_reference(config, "client_id"),
                   _reference(config, "client_secret"),
                   scopes=scopes, audience=config.get("audience"),
                   client_auth=config.get("client_auth", "body"), session=session, clock=clock,
                   secret_ref=config["client_secret"])

    def apply(self, request: PageRequest) -> None:
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._fetch()
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"

    def refresh(self, rejected: str | None = None) -> bool:
        """Fetch a new token now (the API rejected the cached one), once for every request
        that was sent with it: concurrent requests rejected together share one refresh."""
        with self._lock:
            if (rejected is not None and self._token is not None
                    and rejected != f"Bearer {self._token}"):
                return False  # renewed since that request was sent: just resend
            self._fetch()
            return True

    def _fetch(self) -> None:
        """Fetch a token.

        Raises:
            RetriableError: the token endpoint is unreachable, or answered 408, 429 or 5xx
                (the HTTP client retries the request under its policy, fetching again).
            AuthError: the token endpoint refused the client, or answered no token.
        """
        form = {"grant_type": "client_credentials"}
        if self._scopes:
            form["scope"] = " ".join(self._scopes)
        if self._audience:
            form["audience"] = self._audience
        basic = None
        if self._client_auth == "basic":
            basic = (self._client_id, self._client_secret)
        else:
            form.update(client_id=self._client_id, client_secret=self._client_secret)
        where = f"token endpoint {self._token_url}"
        try:
            # Never redirected: a 307 would replay the client secret to wherever it points.
            resp = self._session.post(self._token_url, data=form, auth=basic,
                                      headers={"Accept": "application/json"},
                                      timeout=self._timeout_s, allow_redirects=False, stream=True)
        except requests.RequestException as exc:
            # The exception text may carry the request; name only its type.
            raise RetriableError(f"{where} unreachable: {type(exc).__name__}") from None
        with resp:
            try:  # bounded like an API's body: a token answer is small and quick
                raw = read_body(resp, TOKEN_MAX_BYTES, TOKEN_BODY_TIMEOUT_S)
            except BodyFault as fault:
                if fault.kind == TOO_LARGE:
                    raise AuthError(f"{where} answered a body larger than {TOKEN_MAX_BYTES} bytes",
                                    status=resp.status_code) from None
                raise RetriableError(f"{where} answer not read whole ({fault.kind.replace('_', ' ')}"
                                     f" after {fault.size} bytes)", status=resp.status_code) from None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            body = None
        if resp.is_redirect:
            raise AuthError(f"{where} answered {resp.status_code} with a redirect; restlake does "
                            "not follow it (the client secret would go along): set token_url "
                            "to the final URL", status=resp.status_code)
        if resp.status_code != 200:
            detail = ""
            if isinstance(body, dict):
                detail = str(body.get("error_description") or body.get("error") or "")
            message = f"{where} returned {resp.status_code}" + (f": {detail[:300]}" if detail else "")
            if is_retriable_status(resp.status_code):
                retry_after = parse_retry_after(resp.headers.get("Retry-After"),
                                                datetime.now(timezone.utc))
                raise RetriableError(message, status=resp.status_code, retry_after=retry_after)
            raise AuthError(message, status=resp.status_code)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token or not isinstance(token, str):
            raise AuthError(f"{where} returned no access_token", status=resp.status_code)
        if not token.isprintable() or token != token.strip():
            raise AuthError(f"{where} returned an access_token with a line break or another "
                            "character an Authorization header cannot carry",
                            status=resp.status_code)
        secrets.register(token)
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        if not math.isfinite(lifetime) or lifetime <= 0:
            # no usable lifetime: kept like one without expires_in (a 401 still refreshes it),
            # not fetched again for every request
            lifetime = 3600.0
        self._token = token
        self._renew_at = self._clock() + lifetime - min(TOKEN_EXPIRY_SKEW_S, lifetime / 2)

    def __repr__(self) -> str:
        return secrets.redact(
            f"OAuth2ClientCredentials(token_url={self._token_url}, client_id={self._client_id}, "
            f"client_secret={self._secret_ref}, scopes={self._scopes})")
