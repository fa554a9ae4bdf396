"""Tests of framework.http.auth; OAuth runs against a real local token endpoint."""

import base64

import pytest
import requests

from framework.http.auth import (ApiKeyAuth, Auth, BearerAuth, OAuth2ClientCredentials, auth_methods,
                            build_auth)
from framework.errors import AuthError, ConfigError, RetriableError, SecretError
from framework.http.models import PageRequest

try:
    from _httpd import FakeApi, Received, Reply
except ImportError:  # collected as a package
    from tests.unit._httpd import FakeApi, Received, Reply

SECRET = "tok-Sup3rSecret-0001"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _req(**kw):
    return PageRequest("GET", "https://api.example.com/items", **kw)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("TOKEN", SECRET)
    monkeypatch.setenv("TOKEN2", "tok-second-key-0002")
    monkeypatch.setenv("TOKEN3", "tok-third-key-0003")
    monkeypatch.setenv("CLIENT_SECRET", "cs-very-secret-9999")
    monkeypatch.setenv("SVC_USER", "svc-user")
    return monkeypatch


@pytest.fixture
def api():
    with FakeApi() as server:
        yield server


# -- registry and config validation ------------------------------------------------------------

def test_unknown_method_lists_known_ones():
    with pytest.raises(ConfigError) as exc:
        build_auth({"method": "kerberos"})
    text = str(exc.value)
    assert "kerberos" in text
    for name in ("none", "bearer", "api_key", "basic", "api_token", "oauth2_client_credentials"):
        assert name in text and name in auth_methods()


def test_none_and_missing_config_add_nothing():
    for config in (None, {"method": "none"}, {}):
        auth = build_auth(config)
        req = _req()
        auth.apply(req)
        assert req.headers == {} and req.params == {}
        assert not auth.can_refresh and not auth.can_rotate
        assert auth.rotate(10) is None
        with pytest.raises(AuthError):
            auth.refresh()


def test_unknown_option_is_refused(env):
    with pytest.raises(ConfigError, match="scope"):
        build_auth({"method": "bearer", "secret": "env:TOKEN", "scope": "x"})


def test_literal_secret_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as exc:
        build_auth({"method": "bearer", "secret": "literal-pasted-token"})
    assert "literal-pasted-token" not in str(exc.value)
    assert "auth.secret" in str(exc.value)


def test_missing_secret_reference_fails_clearly(monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(SecretError, match="NOPE_NOT_SET"):
        build_auth({"method": "bearer", "secret": "env:NOPE_NOT_SET"})


# -- static methods ------------------------------------------------------------------------------

def test_bearer(env):
    auth = build_auth({"method": "bearer", "secret": "env:TOKEN"})
    req = _req()
    auth.apply(req)
    assert req.headers["Authorization"] == f"Bearer {SECRET}"
    assert isinstance(auth, BearerAuth)
    assert SECRET not in repr(auth) and "env:TOKEN" in repr(auth)


def test_api_key_header_default_and_custom(env):
    req = _req()
    build_auth({"method": "api_key", "secret": "env:TOKEN"}).apply(req)
    assert req.headers == {"X-API-Key": SECRET}
    req = _req()
    build_auth({"method": "api_key", "secret": "env:TOKEN", "header": "X-Key"}).apply(req)
    assert req.headers == {"X-Key": SECRET}


def test_api_key_in_query(env):
    auth = build_auth({"method": "api_key", "secret": "env:TOKEN", "query": "api_key"})
    req = _req(params={"a": 1})
    auth.apply(req)
    assert req.params == {"a": 1, "api_key": SECRET} and req.headers == {}
    assert SECRET not in repr(req)
    with pytest.raises(ConfigError):
        build_auth({"method": "api_key", "secret": "env:TOKEN", "query": "k", "header": "h"})


def test_basic_with_literal_or_referenced_username(env):
    for username, expected in (("svc", "svc"), ("env:SVC_USER", "svc-user")):
        auth = build_auth({"method": "basic", "username": username, "password": "env:TOKEN"})
        req = _req()
        auth.apply(req)
        encoded = base64.b64encode(f"{expected}:{SECRET}".encode()).decode()
        assert req.headers["Authorization"] == f"Basic {encoded}"
        assert SECRET not in repr(auth) and encoded not in repr(auth)
    with pytest.raises(ConfigError, match="auth.password"):
        build_auth({"method": "basic", "username": "svc", "password": "plain"})


def test_api_token_default_and_custom(env):
    req = _req()
    build_auth({"method": "api_token", "secret": "env:TOKEN"}).apply(req)
    assert req.headers == {"Authorization": f"Api-Token {SECRET}"}
    req = _req()
    build_auth({"method": "api_token", "secret": "env:TOKEN", "header": "X-Token",
                "prefix": ""}).apply(req)
    assert req.headers == {"X-Token": SECRET}


# -- key rotation --------------------------------------------------------------------------------

def test_key_rotation_after_429(env):
    clock = Clock()
    auth = build_auth({"method": "api_token", "secrets": ["env:TOKEN", "env:TOKEN2", "env:TOKEN3"]},
                      clock=clock)
    assert auth.can_rotate
    sent = []
    for _ in range(2):
        req = _req()
        auth.apply(req)
        sent.append(req)
        assert auth.rotate(30, req) == 0.0  # switched to a free key: resend at once
    clock.now += 10
    req = _req()
    auth.apply(req)
    sent.append(req)
    assert [r.headers["Authorization"].split()[-1] for r in sent] == [
        SECRET, "tok-second-key-0002", "tok-third-key-0003"]
    # Every key blocked: wait until the earliest reset (the first key, at +30 s).
    assert auth.rotate(30, req) == pytest.approx(20)
    req = _req()
    auth.apply(req)
    assert req.headers["Authorization"] == f"Api-Token {SECRET}"
    assert "[env:TOKEN, env:TOKEN2, env:TOKEN3]" in repr(auth)


def test_key_rotation_in_query_identifies_the_used_key(env):
    auth = build_auth({"method": "api_key", "query": "key", "secrets": ["env:TOKEN", "env:TOKEN2"]},
                      clock=Clock())
    first = _req()
    auth.apply(first)
    assert auth.rotate(60, first) == 0.0
    assert auth.rotate(60, first) == 0.0  # the same 429 reported twice blocks key 1 only
    req = _req()
    auth.apply(req)
    assert req.params["key"] == "tok-second-key-0002"


def test_single_key_does_not_rotate(env):
    auth = build_auth({"method": "bearer", "secrets": ["env:TOKEN"]})
    assert not auth.can_rotate and auth.rotate(5) is None
    with pytest.raises(ConfigError):
        build_auth({"method": "bearer", "secrets": []})
    with pytest.raises(ConfigError):
        build_auth({"method": "bearer", "secret": "env:TOKEN", "secrets": ["env:TOKEN"]})


# -- OAuth2 client credentials -------------------------------------------------------------------

def _token_endpoint(tokens, expires_in=3600):
    def reply(got: Received) -> Reply:
        tokens.append(got)
        return Reply(200, {"access_token": f"at-{len(tokens):04d}-xyz", "token_type": "Bearer",
                           "expires_in": expires_in})
    return reply


def _oauth(api, **extra):
    config = {"method": "oauth2_client_credentials", "token_url": api.url("/oauth/token"),
              "client_id": "my-client", "client_secret": "env:CLIENT_SECRET", "scopes": ["read", "write"]}
    config.update(extra)
    return config


def test_oauth_fetches_caches_and_sends_bearer(env, api):
    got = []
    api.route("/oauth/token", _token_endpoint(got))
    clock = Clock()
    auth = build_auth(_oauth(api, audience="https://api"), requests.Session(), clock=clock)
    assert isinstance(auth, OAuth2ClientCredentials) and auth.can_refresh
    for _ in range(3):
        req = _req()
        auth.apply(req)
        assert req.headers["Authorization"] == "Bearer at-0001-xyz"
    assert len(got) == 1
    form = got[0].form()
    assert form == {"grant_type": ["client_credentials"], "scope": ["read write"],
                    "audience": ["https://api"], "client_id": ["my-client"],
                    "client_secret": ["cs-very-secret-9999"]}
    assert "cs-very-secret-9999" not in repr(auth)


def test_oauth_refreshes_before_expiry_with_skew(env, api):
    got = []
    api.route("/oauth/token", _token_endpoint(got, expires_in=300))
    clock = Clock()
    auth = build_auth(_oauth(api), clock=clock)
    auth.apply(_req())
    clock.now += 239  # 61 s before expiry: still good
    auth.apply(_req())
    assert len(got) == 1
    clock.now += 1    # inside the 60 s skew: refresh
    req = _req()
    auth.apply(req)
    assert len(got) == 2 and req.headers["Authorization"] == "Bearer at-0002-xyz"


def test_a_token_shorter_lived_than_the_skew_is_reused_for_half_its_life(env, api):
    got = []
    api.route("/oauth/token", _token_endpoint(got, expires_in=30))
    clock = Clock()
    auth = build_auth(_oauth(api), clock=clock)
    for _ in range(3):
        auth.apply(_req())
    clock.now += 14
    auth.apply(_req())
    assert len(got) == 1  # not one token request per API request
    clock.now += 1    # half its life gone: refresh
    req = _req()
    auth.apply(req)
    assert len(got) == 2 and req.headers["Authorization"] == "Bearer at-0002-xyz"


@pytest.mark.parametrize("expires_in", [0, -5, "NaN", None])
def test_a_token_without_a_usable_lifetime_is_reused_until_refused(env, api, expires_in):
    # expires_in 0 (or below) fetched a token for every request
    got = []
    api.route("/oauth/token", _token_endpoint(got, expires_in=expires_in))
    clock = Clock()
    auth = build_auth(_oauth(api), clock=clock)
    for _ in range(3):
        auth.apply(_req())
        clock.now += 60
    fetched = len(got)  # (the requests hold the client secret)
    assert fetched == 1


def test_requests_rejected_with_the_same_token_share_one_refresh(env, api):
    got = []
    api.route("/oauth/token", _token_endpoint(got))
    auth = build_auth(_oauth(api), clock=Clock())
    sent = []
    for _ in range(3):  # three requests on the wire with the first token
        req = _req()
        auth.apply(req)
        sent.append(req.headers["Authorization"])
    # all three come back 401: the first refreshes, the others resend with the new token
    assert [auth.refresh(s) for s in sent] == [True, False, False]
    req = _req()
    auth.apply(req)
    assert len(got) == 2 and req.headers["Authorization"] == "Bearer at-0002-xyz"
    assert auth.refresh(req.headers["Authorization"]) is True and len(got) == 3


def test_oauth_refresh_forces_a_new_token(env, api):
    got = []
    api.route("/oauth/token", _token_endpoint(got))
    auth = build_auth(_oauth(api), clock=Clock())
    auth.apply(_req())
    auth.refresh()
    req = _req()
    auth.apply(req)
    assert len(got) == 2 and req.headers["Authorization"] == "Bearer at-0002-xyz"


def test_oauth_basic_client_auth(env, api):
    got = []
    api.route("/oauth/token", _token_endpoint(got))
    auth = build_auth(_oauth(api, client_auth="basic"), clock=Clock())
    auth.apply(_req())
    expected = base64.b64encode(b"my-client:cs-very-secret-9999").decode()
    assert got[0].headers["Authorization"] == f"Basic {expected}"
    assert "client_secret" not in got[0].form()


def test_oauth_token_url_expands_env(env, api):
    got = []
    api.route("/oauth/token", _token_endpoint(got))
    env.setenv("IDP_BASE", api.base_url)
    auth = build_auth(_oauth(api, token_url="${IDP_BASE}/oauth/token"), clock=Clock())
    auth.apply(_req())
    assert len(got) == 1
    env.delenv("IDP_BASE")
    with pytest.raises(ConfigError, match="IDP_BASE"):
        build_auth(_oauth(api, token_url="${IDP_BASE}/oauth/token"))


def test_oauth_endpoint_rejection_is_sanitized(env, api):
    api.route("/oauth/token", Reply(401, {"error": "invalid_client",
                                          "error_description": "bad secret cs-very-secret-9999"}))
    auth = build_auth(_oauth(api), clock=Clock())
    with pytest.raises(AuthError) as exc:
        auth.apply(_req())
    text = str(exc.value)
    assert "401" in text and "bad secret" in text and "/oauth/token" in text
    assert "cs-very-secret-9999" not in text and "cs-very-secret-9999" not in repr(exc.value)
    assert exc.value.status == 401


def test_oauth_endpoint_without_token_or_json(env, api):
    api.route("/oauth/token", Reply(200, {"token_type": "Bearer"}), Reply(200, "<html>"))
    auth = build_auth(_oauth(api), clock=Clock())
    with pytest.raises(AuthError, match="no access_token"):
        auth.apply(_req())
    with pytest.raises(AuthError, match="no access_token"):
        auth.refresh()


def test_oauth_endpoint_unreachable(env):
    config = {"method": "oauth2_client_credentials", "token_url": "http://127.0.0.1:9/token",
              "client_id": "c", "client_secret": "env:CLIENT_SECRET"}
    with pytest.raises(RetriableError, match="unreachable"):  # the HTTP client retries it
        build_auth(config).apply(_req())


def test_a_hanging_token_endpoint_times_out_after_the_sources_timeout(env, api):
    # the answer comes after 3 s: within the 30 s default of a lone token client, so only
    # the source's timeout (limits.timeout_s) makes this a timeout
    api.route("/oauth/token", Reply(200, {"access_token": "at-late-0001"}, delay_s=3))
    auth = build_auth(_oauth(api), clock=Clock(), timeout_s=0.3)
    with pytest.raises(RetriableError, match="unreachable: ReadTimeout"):
        auth.apply(_req())


def test_the_runtime_gives_the_token_request_the_sources_timeout(env, api, tmp_path):
    from framework.config import parse_source
    from framework.load.fetch import WindowFetcher
    from framework.load.staging import RunStaging

    cfg = parse_source({"config_id": "t", "api_name": "T", "endpoint": api.url("/items"),
                        "auth": _oauth(api), "load_start": "2024-01-01T00:00:00Z",
                        "target": {"catalog": "raw", "schema": "t", "table": "t"},
                        "limits": {"timeout_s": 7}})
    with WindowFetcher(cfg, "r", RunStaging(tmp_path, "t", "r"), None, None) as fetcher:
        assert fetcher.auth._timeout_s == 7


@pytest.mark.parametrize("bad", [{"client_auth": "jwt"}, {"scopes": "read"}, {"token_url": None},
                                 {"client_secret": "not-a-ref"}])
def test_oauth_bad_config(env, api, bad):
    with pytest.raises(ConfigError):
        build_auth(_oauth(api, **bad))


def test_registry_names_the_classes():
    assert repr(Auth()) == "Auth()"
    assert type(build_auth(None)) is Auth and Auth.method == "none"
    assert ApiKeyAuth.method == "api_key" and OAuth2ClientCredentials.can_refresh


@pytest.mark.parametrize("config", [
    {"method": "bearer", "secret": "env:BROKEN"},
    {"method": "api_key", "secret": "env:BROKEN", "header": "X-Key"},
    {"method": "api_token", "secrets": ["env:TOKEN", "env:BROKEN"]},
])
def test_a_header_key_with_a_line_break_is_refused_naming_the_field_not_the_value(env, config):
    # requests refused the header with the value's repr in its message ('Bearer tok-\\n...'),
    # which no mask matched: the key reached the audit row, after retries that could not help
    env.setenv("BROKEN", "tok-broken-Key\n0042")
    with pytest.raises(ConfigError) as info:
        build_auth(config)
    assert info.value.field and info.value.field.startswith("auth.secret")
    assert "line break" in str(info.value) and "0042" not in str(info.value)


def test_a_query_key_with_a_line_break_still_goes_percent_encoded(env):
    env.setenv("BROKEN", "tok-broken-Key\n0042")
    auth = build_auth({"method": "api_key", "secret": "env:BROKEN", "query": "key"})
    req = _req()
    auth.apply(req)
    assert req.params == {"key": "tok-broken-Key\n0042"}


def test_an_access_token_with_a_line_break_fails_without_showing_it(env, api):
    api.route("/oauth/token", Reply(200, {"access_token": "at-Bad\r\nX-Evil: 1", "expires_in": 60}))
    auth = build_auth(_oauth(api), requests.Session(), clock=Clock())
    with pytest.raises(AuthError) as info:
        auth.apply(_req())
    assert "line break" in str(info.value) and "Evil" not in str(info.value)


def test_a_secret_is_masked_in_the_escaped_text_an_exception_shows():
    from framework.secrets import redact, register

    register("tok-broken-Key\n0042")
    assert redact("header value: 'Bearer tok-broken-Key\\n0042'") == "header value: 'Bearer ***'"
