"""Webhook signatures, checked in constant time (no I/O, no clock of its own).

Three schemes (``webhook.signature``):

* ``github`` — ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
* ``stripe`` — ``Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``
  (several ``v1`` during a secret roll); a timestamp further than ``tolerance_s`` from
  now is refused, so a captured event cannot be replayed later;
* ``hmac_sha256`` — the configured header holds the HMAC-SHA256 of the body, hex
  (optionally ``sha256=``-prefixed) or base64.

Every candidate is compared with :func:`hmac.compare_digest`, and every candidate is
compared (no early exit on the first match), so the time taken does not tell a sender
how close a forged signature was.

Rotation: a verifier may hold a previous secret too (``webhook.previous_secret``), accepted
like the current one until ``previous_until`` (Unix seconds; ``None``: while configured).
Both secrets are always computed and compared, so timing does not tell which one matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Optional


class SignatureError(Exception):
    """The request is not signed by the source's secret; the message says why (no secret)."""


@dataclass(frozen=True)
class Verifier:
    """Checks one source's signatures.

    Args:
        scheme: ``github`` | ``stripe`` | ``hmac_sha256``.
        secret: the shared secret (resolved; never shown by ``repr``).
        header: the header holding the signature.
        tolerance_s: Stripe: the largest accepted distance between its timestamp and now.
        previous: the previous secret (rotation), accepted as well until ``previous_until``.
        previous_until: Unix seconds after which ``previous`` is refused (None: no end).
    """

    scheme: str
    secret: bytes
    header: str
    tolerance_s: int = 300
    previous: Optional[bytes] = None
    previous_until: Optional[float] = None

    def __post_init__(self) -> None:
        if self.scheme not in _SCHEMES:
            raise ValueError(f"unknown signature scheme {self.scheme!r} "
                             f"(one of {', '.join(_SCHEMES)})")

    def __repr__(self) -> str:
        rotating = ", with a previous secret" if self.previous is not None else ""
        return f"Verifier({self.scheme}, header {self.header}{rotating})"

    def secrets(self, now: float) -> list[bytes]:
        """The secrets accepted at ``now``: the current one, and the previous one while its
        overlap lasts."""
        if self.previous is None or (self.previous_until is not None and now >= self.previous_until):
            return [self.secret]
        return [self.secret, self.previous]

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """Accept the request or raise.

        Args:
            body: the raw request body, exactly as received.
            headers: request headers (case-insensitive lookups are the caller's mapping's).
            now: the current time, Unix seconds (Stripe's tolerance).

        Raises:
            SignatureError: missing, malformed, wrong, or (Stripe) too old or too new.
        """
        value = headers.get(self.header)
        if not value:
            raise SignatureError(f"missing signature header {self.header}")
        _SCHEMES[self.scheme](self, body, value.strip(), now)


def _digest(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def _any_equal(expected: list[bytes], candidates: list[bytes]) -> bool:
    ok = False
    for digest in expected:
        for candidate in candidates:  # every pair is compared: no early exit
            ok |= hmac.compare_digest(digest, candidate)
    return ok


def _digests(v: Verifier, payload: bytes, now: float) -> list[bytes]:
    return [_digest(secret, payload) for secret in v.secrets(now)]


def _hex(text: str) -> Optional[bytes]:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _github(v: Verifier, body: bytes, value: str, now: float) -> None:
    prefix, _, hexdigest = value.partition("=")
    if prefix != "sha256" or not hexdigest:
        raise SignatureError(f"{v.header} is not 'sha256=<hex digest>'")
    given = _hex(hexdigest)
    if given is None or not _any_equal(_digests(v, body, now), [given]):
        raise SignatureError(f"{v.header} does not match the body")


# ASCII digits only, and few of them: str.isdigit() takes superscripts int() refuses, and
# int() refuses more than 4 300 digits; both raised instead of refusing the signature.
_UNIX_SECONDS = re.compile(r"[0-9]{1,18}")


def stripe_parts(value: str) -> tuple[Optional[int], list[str]]:
    """``t=…,v1=…,v1=…`` -> (timestamp, the v1 signatures); other schemes are ignored, and
    so is a ``t`` that is not Unix seconds in ASCII digits."""
    timestamp, signatures = None, []
    for item in value.split(","):
        key, _, val = item.strip().partition("=")
        if key == "t" and _UNIX_SECONDS.fullmatch(val):
            timestamp = int(val)
        elif key == "v1" and val:
            signatures.append(val)
    return timestamp, signatures


def _stripe(v: Verifier, body: bytes, value: str, now: float) -> None:
    timestamp, signatures = stripe_parts(value)
    if timestamp is None or not signatures:
        raise SignatureError(f"{v.header} has no 't=' timestamp or no 'v1=' signature")
    expected = _digests(v, str(timestamp).encode("ascii") + b"." + body, now)
    given = [b for b in (_hex(s) for s in signatures) if b is not None]
    if not _any_equal(expected, given):
        raise SignatureError(f"{v.header} does not match the body")
    # Checked after the signature, so that an unsigned sender learns nothing from it.
    if abs(now - timestamp) > v.tolerance_s:
        raise SignatureError(f"{v.header} timestamp is {int(now - timestamp)} s away from now "
                             f"(tolerance {v.tolerance_s} s): a replayed or delayed event")


def _plain(v: Verifier, body: bytes, value: str, now: float) -> None:
    text = value[len("sha256="):] if value.startswith("sha256=") else value
    given = _hex(text)
    if given is None:
        try:
            given = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            given = None
    if given is None or not _any_equal(_digests(v, body, now), [given]):
        raise SignatureError(f"{v.header} does not match the body")


_SCHEMES: dict[str, Callable[[Verifier, bytes, str, float], None]] = {
    "github": _github, "stripe": _stripe, "hmac_sha256": _plain}


def sign(scheme: str, secret: bytes, body: bytes, timestamp: Optional[int] = None) -> str:
    """The header value a sender computes (tests, the benchmark, and users checking a setup).

    Args:
        timestamp: Stripe only: the ``t=`` value (Unix seconds).
    """
    if scheme == "github":
        return "sha256=" + _digest(secret, body).hex()
    if scheme == "stripe":
        if timestamp is None:
            raise ValueError("a Stripe signature needs a timestamp")
        signed = _digest(secret, str(timestamp).encode("ascii") + b"." + body).hex()
        return f"t={timestamp},v1={signed}"
    if scheme == "hmac_sha256":
        return _digest(secret, body).hex()
    raise ValueError(f"unknown signature scheme {scheme!r}")
