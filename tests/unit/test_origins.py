"""Credentials go only to the endpoint's origin or ``allowed_hosts``: next links and redirects
to another local server, for every auth method (two real servers on 127.0.0.1; the second
one's log is what the assertions read)."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from framework.config import parse_source
from framework.errors import ConfigError, WindowError
from framework.http.auth import build_auth
from framework.http.client import HttpClient
from framework.http.retry import RetryPolicy
from framework.load.fetch import fetch_window
from framework.load.staging import RunStaging
from framework.schema import RowShaper
from framework.windows import Window

try:
    from _httpd import FakeApi, Reply
except ImportError:  # collected as a package
    from tests.unit._httpd import FakeApi, Reply

UTC = dt.timezone.utc
START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
SECRET = "origin-test-Secret-7f3a9c"
ACCESS_TOKEN = "oauth-access-Token-51d0e2"
AUTHS = {
    "bearer": {"method": "bearer", "secret": "env:RL_ORIGIN_SECRET"},
    "api_key_header": {"method": "api_key", "secret": "env:RL_ORIGIN_SECRET", "header": "X-API-Key"},
    "api_key_query": {"method": "api_key", "secret": "env:RL_ORIGIN_SECRET", "query": "api_key"},
    "basic": {"method": "basic", "username": "svc_user", "password": "env:RL_ORIGIN_SECRET"},
    "api_token": {"method": "api_token", "secret": "env:RL_ORIGIN_SECRET", "header": "X-Api-Token"},
    "oauth2": {"method": "oauth2_client_credentials", "client_id": "cid",
               "client_secret": "env:RL_ORIGIN_SECRET"},
}
CREDENTIALS = (SECRET, ACCESS_TOKEN, base64.b64encode(f"svc_user:{SECRET}".encode()).decode())


@pytest.fixture(autouse=True)
def secret_env(monkeypatch):
    monkeypatch.setenv("RL_ORIGIN_SECRET", SECRET)


@pytest.fixture
def home():
    with FakeApi() as server:
        server.route("/token", Reply(200, {"access_token": ACCESS_TOKEN, "expires_in": 3600}))
        yield server


@pytest.fixture
def other():
    with FakeApi() as server:
        server.route("/steal", Reply(200, [{"id": 2}]))
        yield server


def _cfg(home, auth_name, *, style="link_header", path="/items", **extra):
    auth = dict(AUTHS[auth_name])
    if auth_name == "oauth2":
        auth["token_url"] = home.url("/token")
    return parse_source({
        "config_id": f"o_{auth_name}", "api_name": "Origins", "endpoint": home.url(path),
        "auth": auth, "pagination": {"style": style}, "data_path": "$", "primary_key": ["id"],
        "load_start": START.isoformat(), "load_end": END.isoformat(),
        "target": {"catalog": "raw", "schema": "t", "table": "o"},
        "limits": {"timeout_s": 5, "max_retries": 0}, **extra})


def _fetch(cfg, tmp_path, session=None):
    auth = build_auth(cfg.auth.model_dump(exclude_none=True), session)
    with HttpClient(auth, RetryPolicy(max_retries=0), timeout_s=5, session=session) as client:
        shaper = RowShaper(source_system="o", primary_key=("id",))
        return fetch_window(cfg, client, shaper, Window(START, END), 0,
                            RunStaging(tmp_path, cfg.config_id, "r").window(0), "r")


def _failure(cfg, tmp_path, session=None):
    """The window's error (``None`` when it loaded): asserted after the servers' logs."""
    try:
        _fetch(cfg, tmp_path, session)
    except WindowError as exc:
        return exc
    return None


def _credentials_seen_by(server):
    """Every credential (or credential header) the server received, with where it was."""
    found = []
    for got in server.received:
        texts = {"path": got.path, "query": json.dumps(got.query), "body": got.body.decode("latin-1")}
        texts.update({f"header {k}": v for k, v in got.headers.items()})
        for where, text in texts.items():
            found += [(where, c[:6] + "...") for c in CREDENTIALS if c in text]
        found += [(f"header {k}", "present") for k in got.headers
                  if k.lower() in ("authorization", "x-api-key", "x-api-token")]
    return found


@pytest.mark.parametrize("auth_name", sorted(AUTHS))
def test_a_next_link_to_another_origin_fails_the_window_and_carries_no_credential(
        home, other, tmp_path, auth_name):
    home.route("/items", Reply(200, [{"id": 1}], headers={
        "Link": f'<{other.url("/steal")}?page=2>; rel="next"'}))
    error = _failure(_cfg(home, auth_name), tmp_path)
    assert _credentials_seen_by(other) == []
    assert other.received == []  # refused before sending
    message = str(error)
    assert other.base_url in message and home.base_url in message and "allowed_hosts" in message
    # the home server did get the credential: the auth itself works
    assert _credentials_seen_by(home)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("auth_name", sorted(AUTHS))
def test_a_redirect_to_another_origin_fails_the_window_and_carries_no_credential(
        home, other, tmp_path, auth_name, status):
    home.route("/items", Reply(status, {}, headers={"Location": other.url("/steal")}))
    error = _failure(_cfg(home, auth_name, style="none"), tmp_path)
    assert _credentials_seen_by(other) == []
    message = str(error)
    assert other.base_url in message and home.base_url in message and "redirect" in message


@pytest.mark.parametrize("auth_name", sorted(AUTHS))
def test_an_allowed_host_gets_next_links_and_redirects_with_the_credential(
        home, other, tmp_path, auth_name):
    home.route("/items", Reply(200, [{"id": 1}], headers={
        "Link": f'<{home.url("/moved")}>; rel="next"'}))
    home.route("/moved", Reply(302, {}, headers={"Location": other.url("/steal")}))
    result = _fetch(_cfg(home, auth_name, allowed_hosts=[other.base_url]), tmp_path)
    assert (result.records, result.pages) == (2, 2)
    assert _credentials_seen_by(other)  # re-applied on the allowed origin
    # an api_key query param is sent once, not once per hop
    if auth_name == "api_key_query":
        assert [r.query["api_key"] for r in other.received] == [[SECRET]]


def test_a_same_origin_redirect_is_followed_with_the_credential(home, tmp_path):
    home.route("/old", Reply(301, {}, headers={"Location": "/items?moved=1"}))
    home.route("/items", Reply(200, [{"id": 1}]))
    result = _fetch(_cfg(home, "api_key_header", style="none", path="/old"), tmp_path)
    assert result.records == 1
    final = home.requests_to("/items")
    assert final[0].headers.get("X-API-Key") == SECRET and final[0].query == {"moved": ["1"]}


def test_a_relative_next_link_after_a_redirect_is_read_against_the_page_that_sent_it(home, tmp_path):
    # The link was joined to the URL first asked for (/old -> /items?page=2), not to the
    # page it came from (/v2/items -> /v2/items?page=2): another resource, or a 404.
    home.route("/old", Reply(301, {}, headers={"Location": "/v2/items"}))
    home.route("/v2/items", lambda got: Reply(200, [{"id": 2}]) if got.query.get("page") else
               Reply(200, [{"id": 1}], headers={"Link": '<items?page=2>; rel="next"'}))
    home.route("/items", Reply(200, [{"id": 99}]))
    result = _fetch(_cfg(home, "bearer", path="/old"), tmp_path)
    assert (result.records, result.pages) == (2, 2)
    assert home.requests_to("/items") == []
    assert [r.query for r in home.requests_to("/v2/items")] == [{}, {"page": ["2"]}]


def test_redirects_are_bounded(home, tmp_path):
    home.route("/items", Reply(302, {}, headers={"Location": "/items"}))
    with pytest.raises(WindowError, match="redirects"):
        _fetch(_cfg(home, "bearer", style="none"), tmp_path)
    assert len(home.requests_to("/items")) == 6  # the request and five hops


def test_an_echoed_query_key_is_not_sent_twice_on_a_same_origin_next_link(home, tmp_path):
    home.route("/items", Reply(200, [{"id": 1}], headers={
        "Link": f'<{home.url("/items2")}?page=2&api_key={SECRET}>; rel="next"'}))
    home.route("/items2", Reply(200, [{"id": 2}]))
    _fetch(_cfg(home, "api_key_query"), tmp_path)
    assert home.requests_to("/items2")[0].query == {"page": ["2"], "api_key": [SECRET]}


# -- next links and redirects go on the wire as the API wrote them ------------------------------

#: A pre-signed query: escapes of ``/`` and ``~`` and of an unreserved letter, lower-case
#: escapes, ``+`` for a space and ``%20``, an empty value, a key without ``=``, a repeated
#: key, an order that is not sorted, and the query key echoed in the middle.
SIGNED = ("X-Amz-Credential=AKIA%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&b=x+y&c=%20z"
          "&empty=&flag&dup=2&dup=1&api_key=ECHOED&tilde=%7Euser&A=%41&lower=%2f%3a"
          "&list=a,b;c&X-Amz-Signature=9f%2B0c")


@pytest.mark.parametrize("auth_name", ["api_key_query", "bearer"])
def test_signed_next_links_and_redirects_are_requested_byte_for_byte(home, tmp_path, auth_name):
    key = f"api_key={SECRET}" if auth_name == "api_key_query" else "api_key=ECHOED"
    home.route("/items", Reply(200, [{"id": 1}], headers={
        "Link": f'<{home.url("/v1/a%2Fb/%7Ex")}?{SIGNED}>; rel="next"'}))
    home.route("/v1/a%2Fb/%7Ex", Reply(302, {}, headers={
        "Location": "/v1/moved%2f?sig=a%2fb+c%3D%3D&z=&z&q=%7E"}))
    home.route("/v1/moved%2f", Reply(200, [{"id": 2}]))
    result = _fetch(_cfg(home, auth_name, path="/items?filter=a%2Cb&t=%7E"), tmp_path)
    assert (result.records, result.pages) == (2, 2)
    targets = [got.target for got in home.received]
    owned = f"&{key}" if auth_name == "api_key_query" else ""
    assert targets == [
        f"/items?filter=a%2Cb&t=%7E{owned}",
        "/v1/a%2Fb/%7Ex?" + SIGNED.replace("api_key=ECHOED", key),
        f"/v1/moved%2f?sig=a%2fb+c%3D%3D&z=&z&q=%7E{owned}",
    ]


@pytest.mark.parametrize("how", ["next link", "redirect"])
def test_a_url_sent_as_raw_utf8_in_a_header_is_requested_once_encoded(home, tmp_path, how):
    # HTTP headers arrive as latin-1 text: a Link or Location holding raw UTF-8 ("café")
    # was read as "cafÃ©" and requested as caf%C3%83%C2%A9, another URL
    raw = "/caf\u00e9/items?q=\u00fcber".encode("utf-8").decode("latin-1")
    if how == "next link":
        home.route("/items", Reply(200, [{"id": 1}], headers={"Link": f'<{raw}>; rel="next"'}))
    else:
        home.route("/items", Reply(302, {}, headers={"Location": raw}))
    home.route("/caf%C3%A9/items", Reply(200, [{"id": 2}]))
    result = _fetch(_cfg(home, "bearer", style="link_header" if how == "next link" else "none"),
                    tmp_path)
    assert result.records == (2 if how == "next link" else 1)
    assert [got.target for got in home.received][1:] == ["/caf%C3%A9/items?q=%C3%BCber"]


# -- URLs that two parsers read differently -----------------------------------------------------

def _disguised(home, other, path):
    """A URL whose host is ``home`` to urllib.parse and ``other`` to urllib3 (which connects):
    urlsplit ends the host at ``/?#`` and takes the last ``@`` before as the end of user info;
    urllib3 also ends it at a backslash."""
    return f"http://localhost:{other.server.server_address[1]}\\@{home.base_url.split('//')[1]}{path}"


@pytest.mark.parametrize("how", ["next link", "redirect"])
@pytest.mark.parametrize("auth_name", sorted(AUTHS))
def test_a_url_whose_host_a_backslash_disguises_is_refused_and_carries_no_credential(
        home, other, tmp_path, auth_name, how):
    # the other server answers whatever reaches it: a page it sent would have been loaded
    other.route(f"/%5C@{home.base_url.split('//')[1]}/steal", Reply(200, [{"id": 2}]))
    url = _disguised(home, other, "/steal")
    if how == "next link":
        home.route("/items", Reply(200, [{"id": 1}], headers={"Link": f'<{url}>; rel="next"'}))
    else:
        home.route("/items", Reply(302, {}, headers={"Location": url}))
    error = _failure(_cfg(home, auth_name, style="link_header" if how == "next link" else "none"),
                     tmp_path)
    assert other.received == [] and _credentials_seen_by(other) == []
    assert error is not None and "ambiguous" in str(error)
    assert not any(c in str(error) for c in CREDENTIALS)


def _connected_origin(url):
    """The origin requests really connects to for ``url`` (None: it refuses the URL)."""
    import requests
    from urllib3.util import parse_url

    try:
        # an auth set, as the client's session does: user info in the URL is not sent
        parts = parse_url(requests.Request("GET", url, auth=lambda r: r).prepare().url)
    except (requests.RequestException, ValueError):
        return None
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https") or not parts.host:
        return None
    return (scheme, parts.host.strip("[]").lower().rstrip("."),
            parts.port or {"http": 80, "https": 443}[scheme])


def test_an_origin_is_read_as_the_http_stack_connects_or_the_url_is_refused():
    """Seeded URLs built from the characters parsers disagree on: whenever Origin.of accepts
    one, its origin is where requests connects (the policy checks where credentials go)."""
    import random

    from framework.http.origins import Origin

    pieces = ["a.example", "127.0.0.1", "localhost", ":80", ":8080", "@", "\\", "/", "?", "#",
              ";", " ", "\t", "%40", "%2f", "%5c", "[::1]", ":", "\n", ".", "\u3002", "\uff0e",
              "\u00e9", "A.EXAMPLE", "@b.example", "\x00"]
    rng = random.Random(20240611)
    accepted = refused = 0
    for _ in range(20_000):
        url = (rng.choice(["http://", "https://", "HTTP://", "http:\\\\"])
               + "".join(rng.choice(pieces) for _ in range(rng.randint(1, 5)))
               + rng.choice(["", "/x", "?q=1", "#f"]))
        try:
            origin = Origin.of(url)
        except ValueError:
            refused += 1
            continue
        accepted += 1
        assert (origin.scheme, origin.host, origin.port) == _connected_origin(url), url
    assert accepted > 1000 and refused > 1000  # both sides of the rule were exercised


@pytest.mark.parametrize("url, host", [
    ("http://API.Example.com./x", "api.example.com"),
    ("https://\u00e9xample.com/x", "xn--xample-9ua.com"),
    ("http://[::1]:8080/x", "::1"),
])
def test_hosts_compare_as_sent(url, host):
    from framework.http.origins import Origin

    assert Origin.of(url).host == host


def test_a_token_url_a_backslash_points_elsewhere_is_refused():
    raw = {"config_id": "x", "api_name": "X", "endpoint": "https://api.example.com/x",
           "auth": {"method": "oauth2_client_credentials", "client_id": "c",
                    "token_url": "http://id.example.com\\@127.0.0.1/token",
                    "client_secret": "env:RL_ORIGIN_SECRET"},
           "load_start": "2024-01-01T00:00:00Z",
           "target": {"catalog": "raw", "schema": "t", "table": "x"}}
    with pytest.raises(ConfigError) as caught:
        parse_source(raw)
    assert caught.value.field == "auth.token_url" and "ambiguous" in str(caught.value)


# -- https -------------------------------------------------------------------------------------

@pytest.fixture
def tls(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    import ssl

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_ctx, str(ca_file)


@pytest.mark.parametrize("how", ["next link", "redirect"])
def test_an_https_source_never_follows_an_http_url(tls, other, tmp_path, how):
    import requests

    server_ctx, ca_file = tls
    with FakeApi(ssl_context=server_ctx) as secure:
        if how == "next link":
            secure.route("/items", Reply(200, [{"id": 1}], headers={
                "Link": f'<{other.url("/steal")}>; rel="next"'}))
        else:
            secure.route("/items", Reply(302, {}, headers={"Location": other.url("/steal")}))
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = ca_file
        cfg = _cfg(secure, "api_key_header", style="link_header" if how == "next link" else "none")
        error = _failure(cfg, tmp_path, session)
        assert secure.requests_to("/items")[0].headers["X-API-Key"] == SECRET  # TLS works
    assert _credentials_seen_by(other) == []
    assert "https" in str(error) and "http URL" in str(error)


def test_an_https_endpoint_cannot_allow_an_http_origin():
    with pytest.raises(ConfigError) as caught:
        parse_source({"config_id": "x", "api_name": "X", "endpoint": "https://api.example.com/x",
                      "allowed_hosts": ["http://api2.example.com"],
                      "load_start": "2024-01-01T00:00:00Z",
                      "target": {"catalog": "raw", "schema": "t", "table": "x"}})
    assert caught.value.field == "allowed_hosts[0]" and "http" in str(caught.value)


# -- OAuth token endpoint ------------------------------------------------------------------------

def test_a_redirecting_token_endpoint_gets_no_second_chance_at_the_client_secret(home, other, tmp_path):
    home.route("/token", Reply(307, {}, headers={"Location": other.url("/token")}))
    other.route("/token", Reply(200, {"access_token": ACCESS_TOKEN, "expires_in": 3600}))
    home.route("/items", Reply(200, [{"id": 1}]))
    error = _failure(_cfg(home, "oauth2", style="none"), tmp_path)
    assert _credentials_seen_by(other) == []
    assert "redirect" in str(error)


@pytest.mark.parametrize("url, ok", [
    ("https://id.example.com/oauth/token", True),
    ("http://127.0.0.1:8080/token", True),
    ("http://localhost/token", True),
    ("http://id.example.com/oauth/token", False),
])
def test_oauth_token_url_must_be_https_except_on_loopback(url, ok):
    raw = {"config_id": "x", "api_name": "X", "endpoint": "https://api.example.com/x",
           "auth": {"method": "oauth2_client_credentials", "token_url": url, "client_id": "c",
                    "client_secret": "env:RL_ORIGIN_SECRET"},
           "load_start": "2024-01-01T00:00:00Z",
           "target": {"catalog": "raw", "schema": "t", "table": "x"}}
    if ok:
        assert parse_source(raw).auth.token_url == url
        assert build_auth(raw["auth"]) is not None
    else:
        with pytest.raises(ConfigError) as caught:
            parse_source(raw)
        assert caught.value.field == "auth.token_url" and "https" in str(caught.value)
        with pytest.raises(ConfigError, match="https"):
            build_auth(raw["auth"])
