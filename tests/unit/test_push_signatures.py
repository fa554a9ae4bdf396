"""Webhook signatures: GitHub, Stripe (with its replay tolerance) and plain HMAC-SHA256."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from framework.push.signatures import SignatureError, Verifier, sign, stripe_parts

SECRET = b"whsec_test_0123456789"
BODY = b'{"id": "evt_1", "type": "issue.opened", "n": 1}'
NOW = 1_714_000_000.0


def github(secret: bytes = SECRET) -> Verifier:
    return Verifier("github", secret, "X-Hub-Signature-256")


def stripe(tolerance: int = 300) -> Verifier:
    return Verifier("stripe", SECRET, "Stripe-Signature", tolerance)


def plain() -> Verifier:
    return Verifier("hmac_sha256", SECRET, "X-Signature")


def test_github_good_bad_missing():
    good = "sha256=" + hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()  # GitHub's own recipe
    assert sign("github", SECRET, BODY) == good
    github().verify(BODY, {"X-Hub-Signature-256": good}, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        github().verify(BODY + b" ", {"X-Hub-Signature-256": good}, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        github(b"another secret").verify(BODY, {"X-Hub-Signature-256": good}, NOW)
    with pytest.raises(SignatureError, match="missing signature header X-Hub-Signature-256"):
        github().verify(BODY, {}, NOW)
    with pytest.raises(SignatureError, match="is not 'sha256=<hex digest>'"):
        github().verify(BODY, {"X-Hub-Signature-256": good.replace("sha256=", "sha1=")}, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        github().verify(BODY, {"X-Hub-Signature-256": "sha256=zz-not-hex"}, NOW)


def test_stripe_good_bad_missing_and_replayed():
    t = int(NOW) - 10
    expected = hmac.new(SECRET, f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()
    header = sign("stripe", SECRET, BODY, timestamp=t)
    assert header == f"t={t},v1={expected}"
    stripe().verify(BODY, {"Stripe-Signature": header}, NOW)
    # a secret roll: two v1 signatures (and a v0) of which one is good
    stripe().verify(BODY, {"Stripe-Signature": f"t={t},v1={'0' * 64},v1={expected},v0=ab"}, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        stripe().verify(b'{"id": "evt_2"}', {"Stripe-Signature": header}, NOW)
    with pytest.raises(SignatureError, match="no 't=' timestamp or no 'v1='"):
        stripe().verify(BODY, {"Stripe-Signature": f"v1={expected}"}, NOW)
    with pytest.raises(SignatureError, match="missing signature header"):
        stripe().verify(BODY, {"X-Other": header}, NOW)
    # the same signed event replayed an hour later: refused
    with pytest.raises(SignatureError, match="replayed or delayed"):
        stripe().verify(BODY, {"Stripe-Signature": header}, NOW + 3600)
    stripe(tolerance=7200).verify(BODY, {"Stripe-Signature": header}, NOW + 3600)
    # the timestamp is signed: moving it forward breaks the signature
    moved = header.replace(f"t={t}", f"t={t + 3600}")
    with pytest.raises(SignatureError, match="does not match"):
        stripe().verify(BODY, {"Stripe-Signature": moved}, NOW + 3600)
    assert stripe_parts(f"t={t}, v1=aa ,v1=bb,x=1") == (t, ["aa", "bb"])


def test_plain_hmac_hex_prefixed_and_base64():
    digest = hmac.new(SECRET, BODY, hashlib.sha256).digest()
    for value in (digest.hex(), "sha256=" + digest.hex(), base64.b64encode(digest).decode()):
        plain().verify(BODY, {"X-Signature": value}, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        plain().verify(BODY, {"X-Signature": hmac.new(b"x", BODY, hashlib.sha256).hexdigest()}, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        plain().verify(BODY, {"X-Signature": "!!!"}, NOW)
    with pytest.raises(SignatureError, match="missing signature header X-Signature"):
        plain().verify(BODY, {"X-Signature": ""}, NOW)


def test_the_comparison_is_constant_time_and_the_secret_never_shows(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    t = int(NOW)
    header = f"t={t},v1={'0' * 64},v1={'1' * 64},v1={sign('stripe', SECRET, BODY, t)[-64:]}"
    stripe().verify(BODY, {"Stripe-Signature": header}, NOW)
    assert calls == [(32, 32)] * 3  # every candidate compared, through compare_digest
    assert "whsec" not in repr(stripe()) and "whsec" not in repr(github())
    with pytest.raises(ValueError, match="unknown signature scheme"):
        Verifier("md5", SECRET, "X")


@pytest.mark.parametrize("t", ["\u00b2", "\u00b9714000000", "1" * 5000, "-5", "0x10", ""])
def test_a_stripe_timestamp_that_is_not_ascii_digits_is_refused_as_a_bad_signature(t):
    """A superscript digit (str.isdigit() takes it, int() does not) or a 5 000-digit
    timestamp (past Python's integer-string limit) raised ValueError: the receiver
    answered 500 instead of 401."""
    header = f"t={t},v1={'0' * 64}"
    with pytest.raises(SignatureError, match="no 't=' timestamp"):
        stripe().verify(BODY, {"Stripe-Signature": header}, NOW)
    assert stripe_parts(header) == (None, ["0" * 64])
