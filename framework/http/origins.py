"""Where a source's credentials may go: its endpoint's origin and its ``allowed_hosts``.

An origin is scheme + host + port (``https://api.example.com:443``). Every request the
client sends, the first one, a next-page URL taken from a response, or a redirect, is
checked against the :class:`OriginPolicy` of the request before the auth is applied, so
no paginator and no redirect can carry a credential elsewhere:

* the endpoint's own origin is always allowed;
* ``allowed_hosts`` lists further origins (``https://api2.example.com`` or
  ``https://api2.example.com:8443``; ``http://`` only when the endpoint itself is http);
* anything else fails the window with a :class:`~framework.errors.CrossOriginError`
  naming both origins; an https endpoint never follows an http URL.

An origin is read the way the HTTP stack (requests and urllib3) reads the URL when it
connects, and a URL that the standard library's parser reads another way is refused as
ambiguous: ``http://evil.example\\@api.example.com/`` is ``api.example.com`` to
:func:`urllib.parse.urlsplit` but ``evil.example`` to urllib3, so a check by the one would
let the other send the credentials elsewhere.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Optional
from urllib.parse import urlsplit

import idna
import requests
from urllib3.util import parse_url

from framework.errors import ConfigError, CrossOriginError

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, order=True)
class Origin:
    """scheme, host (lower case) and port of a URL; default ports made explicit."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> "Origin":
        """The origin of an absolute http(s) URL.

        Raises:
            ValueError: ``url`` is not an absolute http(s) URL.
        """
        text = str(url).strip()
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{_shown(url)} is not an absolute http(s) URL")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:  # a port that is not a number, or out of range
            raise ValueError(f"{_shown(url)} has an invalid port") from None
        read = cls(scheme, _host(parts.hostname), port)
        sent = _as_connected(str(url))  # as sent: requests strips leading blanks only
        if sent != read:
            raise ValueError(f"{_shown(url)} is ambiguous: its origin reads as {read} to one URL "
                             f"parser and as {sent or 'nothing'} to the one that connects (a "
                             "backslash, space or control character in its host part?)")
        return read

    @classmethod
    def parse_allowed(cls, entry: str) -> "Origin":
        """An ``allowed_hosts`` entry: ``scheme://host[:port]``, nothing else.

        Raises:
            ValueError: a path, query, fragment, user info or wildcard, or no scheme.
        """
        text = str(entry).strip()
        parts = urlsplit(text)
        if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{text!r} is not an origin: write scheme://host[:port], "
                             "e.g. https://api2.example.com")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"{_shown(text)} holds user info; an origin is scheme://host[:port]")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{text!r} has a path, query or fragment; an origin is "
                             "scheme://host[:port]")
        if "*" in parts.netloc:
            raise ValueError(f"{text!r}: wildcards are not allowed; list each origin")
        return cls.of(text)

    @property
    def is_loopback(self) -> bool:
        """True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
        if self.host == "localhost" or self.host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def _host(host: str) -> str:
    """``host`` as compared: lower case, no trailing dot, IDNA-encoded (as it is sent)."""
    host = host.lower().rstrip(".")
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            pass  # requests refuses it too: the reading differs, the URL is refused
    return host


def _as_connected(url: str) -> Optional[Origin]:
    """The origin requests connects to for ``url`` (``None``: requests refuses the URL).

    requests prepares the URL with urllib3's parser, whose host ends at the first ``/``,
    ``?``, ``#`` or backslash; the standard library's ends at ``/``, ``?`` or ``#`` only
    and takes the last ``@`` before it as the end of user info."""
    prepared = requests.models.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
        parts = parse_url(prepared.url)
    except (requests.RequestException, ValueError):  # LocationParseError is a ValueError
        return None
    scheme = (parts.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or not parts.host:
        return None
    return Origin(scheme, _host(parts.host.strip("[]")), parts.port or DEFAULT_PORTS[scheme])


def _shown(url: str) -> str:
    from framework.secrets import redact

    return repr(redact(url))


class OriginPolicy:
    """The origins one source may send its credentials to.

    Args:
        endpoint: the source's (expanded) endpoint URL; its origin is always allowed.
        allowed_hosts: further origins (``allowed_hosts`` entries).

    Raises:
        ConfigError: the endpoint is not an http(s) URL, an entry is not an origin, or
            an https endpoint lists an http origin.
    """

    def __init__(self, endpoint: str, allowed_hosts: Iterable[str] = ()) -> None:
        try:
            self.home = Origin.of(endpoint)
        except ValueError as exc:
            raise ConfigError(str(exc), field="endpoint") from None
        allowed = {self.home}
        for n, entry in enumerate(allowed_hosts):
            try:
                origin = Origin.parse_allowed(entry)
            except ValueError as exc:
                raise ConfigError(str(exc), field=f"allowed_hosts[{n}]") from None
            if self.home.scheme == "https" and origin.scheme == "http":
                raise ConfigError(f"{origin} is http while the endpoint is https: credentials "
                                  "never go over plain http", field=f"allowed_hosts[{n}]")
            allowed.add(origin)
        self.allowed = frozenset(allowed)

    @classmethod
    def same_origin(cls, url: str) -> "OriginPolicy":
        """The policy of a request built without a source: its own origin only."""
        return cls(url)

    def check(self, url: str, *, via: str = "request", from_url: str | None = None) -> Origin:
        """Return the origin of ``url`` when the source's credentials may go there.

        Args:
            url: the URL about to be requested.
            via: what is being sent ("page request", "redirect (302) from ..."), for the error.
            from_url: the URL that pointed there (a redirect's source).

        Raises:
            CrossOriginError: the origin is neither the endpoint's nor an allowed one,
                or the request would go from https to http.
        """
        try:
            origin = Origin.of(url)
        except ValueError as exc:
            raise CrossOriginError(f"{via} refused: {exc}") from None
        downgrade = self.home.scheme == "https"
        if from_url is not None and not downgrade:
            try:
                downgrade = Origin.of(from_url).scheme == "https"
            except ValueError:
                pass
        if origin.scheme == "http" and downgrade:
            raise CrossOriginError(
                f"{via} to {origin} refused: the endpoint's origin is {self.home} and an "
                "https source never follows an http URL (its credentials would travel in "
                "clear text)")
        if origin not in self.allowed:
            raise CrossOriginError(
                f"{via} to {origin} refused: {origin} is not the endpoint's origin "
                f"({self.home}) and not in allowed_hosts, so it must not receive this "
                "source's credentials (list it in allowed_hosts only if it may)")
        return origin

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OriginPolicy) and (self.home, self.allowed) == (other.home,
                                                                                 other.allowed)

    def __hash__(self) -> int:
        return hash((self.home, self.allowed))

    def __repr__(self) -> str:
        extra = sorted(str(o) for o in self.allowed - {self.home})
        return f"OriginPolicy({self.home}" + (f", allowed={extra})" if extra else ")")


def check_https(url: str, *, field: str) -> str:
    """``url`` when it is https, or http on a loopback host (local stand-ins and tests).

    Raises:
        ConfigError: naming ``field``: not an http(s) URL, or plain http to another host.
    """
    try:
        origin = Origin.of(url)
    except ValueError as exc:
        raise ConfigError(str(exc), field=field) from None
    if origin.scheme != "https" and not origin.is_loopback:
        raise ConfigError(f"must be an https URL (got {origin}): the client secret would travel "
                          "in clear text; plain http is accepted on loopback hosts only",
                          field=field)
    return url
