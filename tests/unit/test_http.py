"""Tests of framework.http.client against a real local server; sleeps are recorded, not slept."""

import datetime as dt
import json

import pytest

from framework.http.auth import build_auth
from framework.errors import AuthError, ConfigError, HttpError, ResponseError
from framework.http.client import USER_AGENT, HttpClient, api_message
from framework.http.models import PageRequest
from framework.http.ratelimit import RateLimiter
from framework.http.retry import RetryPolicy
from framework.http.telemetry import Telemetry

try:
    from _httpd import FakeApi, Received, Reply
except ImportError:  # collected as a package
    from tests.unit._httpd import FakeApi, Received, Reply

SECRET = "sk-live-Hush-4242-abcdef"
NO_JITTER = RetryPolicy(max_retries=3, backoff_base_s=0.5, backoff_max_s=30, jitter=False)


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def api():
    with FakeApi() as server:
        yield server


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def client(clock):
    with HttpClient(policy=NO_JITTER, timeout_s=0.2, sleep=clock.sleep) as c:
        yield c


def get(api, path="/items", **params):
    return PageRequest("GET", api.url(path), params=params)


# -- success ---------------------------------------------------------------------------------------

def test_get_sends_params_and_user_agent(api, client):
    api.route("/items", Reply(200, {"data": [1, 2]}))
    req = get(api, a="1", b="x y")
    resp = client.send(req)
    assert resp.status == 200 and resp.data == {"data": [1, 2]}
    assert resp.url.startswith(api.url("/items?"))
    got = api.requests_to("/items")[0]
    assert got.query == {"a": ["1"], "b": ["x y"]}
    assert got.headers["User-Agent"] == USER_AGENT
    assert client.telemetry.as_dict()["status_counts"] == {"200": 1}
    assert client.telemetry.bytes_received == len(resp.body)
    assert req.headers == {}  # the caller's request is never decorated


def test_auth_is_applied_on_a_copy(api, clock, monkeypatch):
    monkeypatch.setenv("HTTP_TOKEN", SECRET)
    api.route("/items", Reply(200, []))
    auth = build_auth({"method": "api_key", "secret": "env:HTTP_TOKEN", "query": "api_key"})
    client = HttpClient(auth, NO_JITTER, sleep=clock.sleep)
    req = get(api)
    resp = client.send(req)
    assert api.requests_to("/items")[0].query == {"api_key": [SECRET]}
    assert req.params == {}
    assert SECRET not in resp.url and "api_key=***" in resp.url


def test_a_query_key_that_travels_percent_encoded_is_masked_in_the_response_url(api, clock,
                                                                              monkeypatch):
    key = "sk+Live/Key=42abc"  # base64-like: + / = are percent-encoded in the query
    monkeypatch.setenv("HTTP_TOKEN", key)
    api.route("/items", Reply(200, []))
    auth = build_auth({"method": "api_key", "secret": "env:HTTP_TOKEN", "query": "appid"})
    resp = HttpClient(auth, NO_JITTER, sleep=clock.sleep).send(get(api))
    assert api.requests_to("/items")[0].query == {"appid": [key]}
    assert resp.url.endswith("/items?appid=***"), resp.url


def test_post_sends_json_body_only_when_allowed(api, clock):
    api.route("/search", Reply(200, {"ok": True}))
    req = PageRequest("POST", api.url("/search"), json={"q": "x"})
    with pytest.raises(ConfigError, match="allow_post"):
        HttpClient(policy=NO_JITTER, sleep=clock.sleep).send(req)
    client = HttpClient(policy=NO_JITTER, sleep=clock.sleep, allow_post=True)
    assert client.send(req).data == {"ok": True}
    got = api.requests_to("/search")
    assert len(got) == 1 and got[0].method == "POST" and got[0].json() == {"q": "x"}


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
def test_write_methods_are_refused(api, method):
    client = HttpClient(allow_post=True)
    with pytest.raises(ConfigError, match="read-only"):
        client.send(PageRequest(method, api.url("/items")))
    assert api.received == []


def test_no_content_is_none(api, client):
    api.route("/items", Reply(204))
    assert client.send(get(api)).data is None


@pytest.mark.parametrize("body, expected", [
    (b'{"data": [{"v": NaN}]}', "nan"),                       # non-standard, common in the wild
    (b'{"data": [{"v": 123456789012345678901234567890}]}', 123456789012345678901234567890),
    # below -2**63 with 19 digits: orjson made it a float (-9.223372036854776e+18)
    (b'{"data": [{"v": -9223372036854775809}]}', -9223372036854775809),
    (b'{"data": [{"v": 18446744073709551616}]}', 18446744073709551616),  # 2**64: 20 digits
    ('{"data": [{"v": "\u00e9t\u00e9"}]}'.encode("utf-16"), "\u00e9t\u00e9"),
])
def test_bodies_the_fast_parser_refuses_still_parse(api, client, body, expected):
    api.route("/items", Reply(200, body))
    value = client.send(get(api)).data["data"][0]["v"]
    assert (str(value) if expected == "nan" else value) == expected


def test_proxy_from_the_environment_is_used_and_read_once_per_host(api, clock, monkeypatch):
    import requests.sessions

    reads = []
    real = requests.sessions.get_environ_proxies
    monkeypatch.setattr(requests.sessions, "get_environ_proxies",
                        lambda url, no_proxy=None: reads.append(url) or real(url, no_proxy=no_proxy))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", api.url(""))  # the fake API plays the proxy
    monkeypatch.setenv("http_proxy", api.url(""))
    api.route("/items", Reply(200, {"data": [1]}))
    client = HttpClient(policy=NO_JITTER, sleep=clock.sleep)
    for page in range(3):
        req = PageRequest("GET", "http://api.restlake-proxy-test.invalid/items", params={"p": page})
        assert client.send(req).data == {"data": [1]}
    assert len(api.requests_to("/items")) == 3  # every request went through the proxy
    assert len(reads) == 1


@pytest.fixture
def netrc_for_loopback(tmp_path, monkeypatch):
    """A netrc file (``$NETRC``) holding Basic credentials for 127.0.0.1, the fake API."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password netrc-pass-77\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))


@pytest.mark.parametrize("configured", [None, "bearer"])
def test_a_netrc_entry_for_the_api_host_neither_replaces_nor_adds_credentials(
        api, clock, monkeypatch, netrc_for_loopback, configured):
    # requests reads ~/.netrc on every request of a session that trusts the environment
    # and, when it has an entry for the host, sends its login as Basic auth, replacing
    # the Authorization header the source's auth set. A load sends what its config says.
    monkeypatch.setenv("NETRC_TEST_TOKEN", SECRET)
    api.route("/items", Reply(200, {"data": [1]}))
    auth = (build_auth({"method": "bearer", "secret": "env:NETRC_TEST_TOKEN"})
            if configured else None)
    client = HttpClient(auth, NO_JITTER, sleep=clock.sleep)
    client.send(get(api))
    [received] = api.requests_to("/items")
    sent = {k.lower(): v for k, v in received.headers.items()}.get("authorization")
    if configured:
        as_configured = sent == f"Bearer {SECRET}"  # compared aside: no secret in a failure
        assert as_configured, "the Authorization header is not the one the source's auth set"
    else:
        assert sent is None


# -- retries ---------------------------------------------------------------------------------------

def test_429_honours_retry_after_and_pauses_the_host(api, clock):
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    api.route("/items", Reply(429, {"message": "slow down"}, {"Retry-After": "7"}), Reply(200, []))
    client = HttpClient(policy=NO_JITTER, limiter=limiter, sleep=clock.sleep)
    assert client.send(get(api)).data == []
    assert clock.sleeps == [7.0]
    t = client.telemetry.as_dict()
    assert t["status_counts"] == {"200": 1, "429": 1}
    assert t["retries"] == 1 and t["rate_limit_waits"] == 1 and t["requests"] == 2
    # Another worker asking now waits for nothing (the pause has passed) ...
    assert limiter.acquire() == 0.0


def test_429_pause_holds_back_other_workers(api):
    pause_clock = FakeClock()
    limiter = RateLimiter(None, clock=pause_clock, sleep=pause_clock.sleep)
    api.route("/items", Reply(429, {}, {"Retry-After": "12"}), Reply(200, []))
    client = HttpClient(policy=NO_JITTER, limiter=limiter, sleep=lambda s: None)
    client.send(get(api))
    # The client's own sleep was a no-op, so the limiter made it wait the full pause.
    assert pause_clock.sleeps == [12.0]


def test_429_http_date_retry_after(api, clock):
    from datetime import datetime, timezone

    now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    api.route("/items", Reply(429, {}, {"Retry-After": "Fri, 01 Mar 2024 12:00:09 GMT"}),
              Reply(200, []))
    client = HttpClient(policy=NO_JITTER, sleep=clock.sleep, now=lambda: now)
    client.send(get(api))
    assert clock.sleeps == [9.0]


@pytest.mark.parametrize("status, retry_after", [
    (429, "86400"), (429, "Sat, 02 Mar 2024 12:00:00 GMT"), (503, "86400")])
def test_a_retry_after_beyond_the_longest_wait_fails_at_once(api, clock, status, retry_after):
    from datetime import datetime, timezone

    now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    api.route("/items", Reply(status, {"message": "daily quota used up"},
                              {"Retry-After": retry_after}), Reply(200, []))
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    client = HttpClient(policy=NO_JITTER, sleep=clock.sleep, now=lambda: now, limiter=limiter)
    with pytest.raises(HttpError) as exc:
        client.send(get(api))
    text = str(exc.value)
    assert "daily quota used up" in text and "86400" in text and "300" in text
    assert clock.sleeps == [] and len(api.requests_to("/items")) == 1  # no early retries
    assert limiter.pauses == 0  # the host is not held for a wait nobody will take


def test_503_burst_backs_off_exponentially(api, client, clock):
    api.route("/items", Reply(503), Reply(503), Reply(502), Reply(200, {"ok": 1}))
    assert client.send(get(api)).data == {"ok": 1}
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert client.telemetry.retries == 3


def test_jitter_uses_the_injected_random(api, clock):
    api.route("/items", Reply(500), Reply(500), Reply(200, []))
    client = HttpClient(policy=RetryPolicy(backoff_base_s=1), sleep=clock.sleep, rand=lambda: 0.25)
    client.send(get(api))
    assert clock.sleeps == [0.25, 0.5]


def test_retries_exhausted_names_attempts_and_last_status(api, client):
    api.route("/items", Reply(503, {"error": {"message": "maintenance"}}))
    with pytest.raises(HttpError) as exc:
        client.send(get(api))
    text = str(exc.value)
    assert "4 attempts" in text and "503" in text and "maintenance" in text
    assert exc.value.status == 503
    assert len(api.requests_to("/items")) == 4


def test_timeout_is_retried(api, client):
    api.route("/items", Reply(200, [1], delay_s=0.6), Reply(200, [2]))
    assert client.send(get(api)).data == [2]
    counts = client.telemetry.as_dict()["status_counts"]
    assert counts == {"timeout": 1, "200": 1}


def test_timeouts_exhausted(api, clock):
    api.route("/items", Reply(200, [], delay_s=0.5))
    client = HttpClient(policy=RetryPolicy(max_retries=1, jitter=False), timeout_s=0.1,
                        sleep=clock.sleep)
    with pytest.raises(HttpError, match="2 attempts.*timed out"):
        client.send(get(api))


@pytest.mark.parametrize("content_length", [None, -1], ids=["declared", "until_close"])
def test_a_body_dripped_byte_by_byte_is_bounded_as_a_whole(api, clock, content_length):
    # each byte comes within timeout_s (0.2 s), the whole body would take ~10 s
    api.route("/items", Reply(200, {"data": list(range(40))}, drip_s=0.05,
                              content_length=content_length), Reply(200, {"data": [7]}))
    with HttpClient(policy=NO_JITTER, timeout_s=0.2, sleep=clock.sleep,
                    body_timeout_s=0.5) as client:
        assert client.send(get(api)).data == {"data": [7]}
        assert client.telemetry.as_dict()["status_counts"] == {"timeout": 1, "200": 1}
        with pytest.raises(HttpError, match="limits.body_timeout_s"):
            api.route("/items", Reply(200, {"data": list(range(40))}, drip_s=0.05,
                                      content_length=content_length))
            with HttpClient(policy=RetryPolicy(max_retries=0), timeout_s=0.2,
                            body_timeout_s=0.3) as once:
                once.send(get(api))


def test_connection_reset_mid_body_is_retried(api, client):
    api.route("/items", Reply(200, {"data": list(range(500))}, reset_after=20), Reply(200, {"data": []}))
    assert client.send(get(api)).data == {"data": []}
    assert client.telemetry.as_dict()["status_counts"] == {"connection_error": 1, "200": 1}


def test_content_length_longer_than_body_is_retried(api, client):
    api.route("/items", Reply(200, '{"data": [1, 2', content_length=400), Reply(200, {"data": [1, 2]}))
    assert client.send(get(api)).data == {"data": [1, 2]}
    assert client.telemetry.retries == 1


def test_content_length_shorter_than_body_is_retried(api, client):
    api.route("/items", Reply(200, {"data": [1, 2, 3]}, content_length=8), Reply(200, {"data": [3]}))
    assert client.send(get(api)).data == {"data": [3]}


@pytest.mark.parametrize("charset", ["ISO-8859-1", "windows-1252"])
def test_a_body_in_the_charset_its_content_type_declares_is_read_in_it(api, client, charset):
    doc = {"data": [{"id": 1, "name": "Café Zürich", "note": "naïve"}]}
    body = json.dumps(doc, ensure_ascii=False).encode(charset)
    api.route("/items", Reply(200, body, {"Content-Type": f"application/json; charset={charset}"}))
    resp = client.send(get(api))
    assert resp.data == doc
    assert json.loads(resp.body.decode("utf-8")) == doc  # kept as UTF-8 (the raw archive)
    assert len(api.requests_to("/items")) == 1  # read at once, not retried as a bad body


def test_a_utf8_body_under_a_latin1_content_type_stays_utf8(api, client):
    doc = {"data": [{"id": 1, "name": "Café"}]}  # a common lie: UTF-8 sent as ISO-8859-1
    api.route("/items", Reply(200, json.dumps(doc, ensure_ascii=False).encode("utf-8"),
                              {"Content-Type": "application/json; charset=ISO-8859-1"}))
    assert client.send(get(api)).data == doc


@pytest.mark.parametrize("encoded", [
    lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),  # a UTF-8 byte order mark
    lambda text: text.encode("utf-16"), lambda text: text.encode("utf-16-le"),
    lambda text: text.encode("utf-32-be")], ids=["utf-8-bom", "utf-16", "utf-16-le", "utf-32-be"])
def test_a_body_with_a_bom_or_in_utf_16_or_32_is_kept_as_the_utf8_text_read(api, client,
                                                                            encoded, tmp_path):
    # read (JSON allows these), but archived as UTF-8 with replacement characters or a
    # BOM: the replay of the archived page could not read it
    from framework.load.archive import PageRecorder
    from framework.windows import Window

    doc = {"data": [{"id": 1, "name": "Café Zürich 😀"}]}
    text = json.dumps(doc, ensure_ascii=False)
    api.route("/items", Reply(200, encoded(text)))
    resp = client.send(get(api))
    assert resp.data == doc and resp.body == text.encode("utf-8")
    recorder = PageRecorder(tmp_path, "c", "r", None, 0)
    recorder(resp, Window(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
                          dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)), 0)
    [page] = [json.loads(line) for line in recorder.path.read_text("utf-8").splitlines()]
    assert json.loads(page["body"]) == doc


def _gzip(data: bytes, members: int = 1) -> bytes:
    import gzip

    step = -(-len(data) // members)
    return b"".join(gzip.compress(data[i:i + step]) for i in range(0, len(data), step))


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("declared", [True, False])
def test_a_compressed_body_is_read_whether_or_not_its_encoding_is_declared(api, client,
                                                                           encoding, declared):
    import zlib

    doc = {"data": [{"id": n, "name": "Café"} for n in range(50)]}
    raw = json.dumps(doc).encode("utf-8")
    body = _gzip(raw) if encoding == "gzip" else zlib.compress(raw)
    headers = {"Content-Encoding": encoding} if declared else {"Content-Type": "application/octet-stream"}
    api.route("/items", Reply(200, body, headers))
    resp = client.send(get(api))
    assert resp.data == doc and json.loads(resp.body) == doc  # archived decompressed
    assert len(api.requests_to("/items")) == 1  # read at once, not retried as a bad body


def test_an_undeclared_gzip_body_of_several_members_is_read_whole(api, client):
    doc = {"data": list(range(2000))}
    api.route("/items", Reply(200, _gzip(json.dumps(doc).encode(), members=3)))
    assert client.send(get(api)).data == doc


@pytest.mark.parametrize("declared", [True, False])
def test_a_compressed_body_is_held_to_max_body_bytes_once_decompressed(api, clock, declared):
    # 64 MiB of blanks is 64 KiB compressed: the limit counts what it inflates to
    bomb = _gzip(b"[" + b" " * (64 * 1024 * 1024) + b"]")
    api.route("/items", Reply(200, bomb, {"Content-Encoding": "gzip"} if declared else {}))
    client = HttpClient(policy=NO_JITTER, sleep=clock.sleep, max_body_bytes=1024 * 1024)
    with pytest.raises(ResponseError, match="exceeds limits.max_body_bytes"):
        client.send(get(api))
    assert len(api.requests_to("/items")) == 1


def test_a_truncated_undeclared_gzip_body_is_retried_as_a_bad_body(api, client):
    whole = _gzip(json.dumps({"data": list(range(500))}).encode())
    api.route("/items", Reply(200, whole[: len(whole) // 2]), Reply(200, whole))
    assert client.send(get(api)).data == {"data": list(range(500))}
    assert len(api.requests_to("/items")) == 2


def test_a_body_nested_too_deep_to_read_fails_at_once_naming_it(api, client):
    # a RecursionError text before, after retries that could not help
    api.route("/items", Reply(200, b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}"))
    with pytest.raises(ResponseError, match="nested deeper than restlake reads"):
        client.send(get(api))
    assert len(api.requests_to("/items")) == 1


def test_non_json_200_fails_after_retries(api, client):
    api.route("/items", Reply(200, "<html>maintenance</html>", {"Content-Type": "text/html"}))
    with pytest.raises(ResponseError) as exc:
        client.send(get(api))
    assert "not valid JSON" in str(exc.value) and "4 attempts" in str(exc.value)


def test_connection_refused_is_retried_then_fails(clock):
    client = HttpClient(policy=NO_JITTER, timeout_s=0.2, sleep=clock.sleep)
    with pytest.raises(HttpError, match="4 attempts"):
        client.send(PageRequest("GET", "http://127.0.0.1:9/items"))
    assert client.telemetry.as_dict()["status_counts"] == {"connection_error": 4}


# -- fail fast ------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_other_4xx_fail_fast_with_the_api_message(api, client, status):
    api.route("/items", Reply(status, {"error": {"code": status, "message": "no such metric"}}))
    with pytest.raises(HttpError) as exc:
        client.send(get(api))
    assert exc.value.status == status
    assert str(status) in str(exc.value) and "no such metric" in str(exc.value)
    assert len(api.requests_to("/items")) == 1 and client.telemetry.retries == 0


def test_long_error_bodies_are_cut(api, client):
    api.route("/items", Reply(400, "x" * 5000, {"Content-Type": "text/plain"}))
    with pytest.raises(HttpError) as exc:
        client.send(get(api))
    assert "x" * 300 in str(exc.value) and "x" * 301 not in str(exc.value)


def test_body_over_limit(api, clock):
    api.route("/items", Reply(200, {"data": "y" * 1000}))
    client = HttpClient(policy=NO_JITTER, sleep=clock.sleep, max_body_bytes=100)
    with pytest.raises(ResponseError, match="exceeds limits.max_body_bytes"):
        client.send(get(api))
    assert len(api.requests_to("/items")) == 1


# -- 401 and OAuth --------------------------------------------------------------------------------

def test_401_without_refresh_is_an_auth_error(api, client):
    api.route("/items", Reply(401, {"message": "token expired"}))
    with pytest.raises(AuthError) as exc:
        client.send(get(api))
    assert "401" in str(exc.value) and "token expired" in str(exc.value)
    assert len(api.requests_to("/items")) == 1


def _oauth_api(api, monkeypatch, accept):
    monkeypatch.setenv("OAUTH_SECRET", "cs-" + SECRET)
    issued = []

    def token(got: Received) -> Reply:
        issued.append(got)
        return Reply(200, {"access_token": f"at-{len(issued)}-long-token", "expires_in": 3600})

    def items(got: Received) -> Reply:
        if got.headers.get("Authorization") in accept:
            return Reply(200, {"data": [1]})
        return Reply(401, {"message": "token expired"})

    api.route("/oauth/token", token)
    api.route("/items", items)
    auth = build_auth({"method": "oauth2_client_credentials", "token_url": api.url("/oauth/token"),
                       "client_id": "cid", "client_secret": "env:OAUTH_SECRET"})
    return auth, issued


def test_expired_token_is_refreshed_once(api, clock, monkeypatch):
    auth, issued = _oauth_api(api, monkeypatch, accept={"Bearer at-2-long-token"})
    client = HttpClient(auth, NO_JITTER, sleep=clock.sleep)
    assert client.send(get(api)).data == {"data": [1]}
    assert len(issued) == 2 and client.telemetry.token_refreshes == 1
    assert [r.headers["Authorization"] for r in api.requests_to("/items")] == [
        "Bearer at-1-long-token", "Bearer at-2-long-token"]


def test_a_token_request_carries_no_netrc_credentials(api, clock, monkeypatch, netrc_for_loopback):
    auth, issued = _oauth_api(api, monkeypatch, accept={"Bearer at-1-long-token"})
    client = HttpClient(auth, NO_JITTER, sleep=clock.sleep)  # the token client's own session
    assert client.send(get(api)).data == {"data": [1]}
    [token_request] = issued
    assert "authorization" not in {k.lower() for k in token_request.headers}


def test_401_after_refresh_fails(api, clock, monkeypatch):
    auth, issued = _oauth_api(api, monkeypatch, accept=set())
    client = HttpClient(auth, NO_JITTER, sleep=clock.sleep)
    with pytest.raises(AuthError, match="again after refreshing"):
        client.send(get(api))
    assert len(issued) == 2 and len(api.requests_to("/items")) == 2


def test_a_token_endpoint_that_fails_for_a_moment_is_retried(api, clock, monkeypatch):
    monkeypatch.setenv("OAUTH_SECRET", "cs-" + SECRET)
    api.route("/oauth/token", Reply(503, {"error": "temporarily_unavailable"}),
              Reply(429, {"error": "slow_down"}, headers={"Retry-After": "7"}),
              Reply(200, {"access_token": "at-0-cut-short"}, reset_after=5),
              Reply(200, {"access_token": "at-1-long-token", "expires_in": 3600}))
    api.route("/items", Reply(200, {"data": [1]}))
    auth = build_auth({"method": "oauth2_client_credentials", "token_url": api.url("/oauth/token"),
                       "client_id": "cid", "client_secret": "env:OAUTH_SECRET"})
    client = HttpClient(auth, NO_JITTER, sleep=clock.sleep)
    assert client.send(get(api)).data == {"data": [1]}
    assert len(api.requests_to("/oauth/token")) == 4
    assert clock.sleeps == [0.5, 7.0, 2.0]  # backoff, the token endpoint's Retry-After, backoff
    assert [r.headers["Authorization"] for r in api.requests_to("/items")] == [
        "Bearer at-1-long-token"]


def test_a_token_answer_is_bounded_in_time_and_size_like_an_api_body(api, clock, monkeypatch):
    from framework.http import auth as auth_module

    monkeypatch.setenv("OAUTH_SECRET", "cs-" + SECRET)
    monkeypatch.setattr(auth_module, "TOKEN_BODY_TIMEOUT_S", 0.5)
    api.route("/oauth/token",
              Reply(200, {"access_token": "at-0-dripped", "expires_in": 3600}, drip_s=0.05),
              Reply(200, {"access_token": "at-1-whole", "expires_in": 3600}))
    api.route("/items", Reply(200, {"data": [1]}))
    oauth = {"method": "oauth2_client_credentials", "token_url": api.url("/oauth/token"),
             "client_id": "cid", "client_secret": "env:OAUTH_SECRET"}
    client = HttpClient(build_auth(oauth), NO_JITTER, sleep=clock.sleep)
    assert client.send(get(api)).data == {"data": [1]}
    token_requests = len(api.requests_to("/oauth/token"))  # (its bodies hold the secret)
    assert token_requests == 2  # the dripped answer was cut and retried
    assert [r.headers["Authorization"] for r in api.requests_to("/items")] == ["Bearer at-1-whole"]

    monkeypatch.setattr(auth_module, "TOKEN_MAX_BYTES", 64)
    api.route("/oauth/token", Reply(200, {"access_token": "at-2-" + "x" * 100}))
    with pytest.raises(AuthError, match="larger than 64 bytes") as exc:
        HttpClient(build_auth(oauth), NO_JITTER, sleep=clock.sleep).send(get(api))
    assert SECRET not in str(exc.value)


def test_a_refresh_after_a_401_retries_a_token_endpoint_that_fails_for_a_moment(
        api, clock, monkeypatch):
    auth, issued = _oauth_api(api, monkeypatch, accept={"Bearer at-3-long-token"})
    replies = iter([None, Reply(502, {"error": "bad gateway"})])

    def token(got: Received) -> Reply:
        issued.append(got)
        reply = next(replies, None)
        return reply or Reply(200, {"access_token": f"at-{len(issued)}-long-token",
                                    "expires_in": 3600})

    api.route("/oauth/token", token)
    client = HttpClient(auth, NO_JITTER, sleep=clock.sleep)
    assert client.send(get(api)).data == {"data": [1]}
    assert len(issued) == 3 and client.telemetry.token_refreshes == 1
    assert [r.headers["Authorization"] for r in api.requests_to("/items")] == [
        "Bearer at-1-long-token", "Bearer at-3-long-token"]


def test_a_token_endpoint_that_keeps_failing_fails_the_request_without_its_secret(
        api, clock, monkeypatch):
    monkeypatch.setenv("OAUTH_SECRET", "cs-" + SECRET)
    api.route("/oauth/token", Reply(503, {"error": "temporarily_unavailable",
                                          "error_description": "down, cs-" + SECRET}))
    auth = build_auth({"method": "oauth2_client_credentials", "token_url": api.url("/oauth/token"),
                       "client_id": "cid", "client_secret": "env:OAUTH_SECRET"})
    client = HttpClient(auth, NO_JITTER, sleep=clock.sleep)
    with pytest.raises(HttpError) as exc:
        client.send(get(api))
    text = str(exc.value)
    assert "token endpoint" in text and "503" in text and "gave up after 4 attempts" in text
    assert SECRET not in text
    assert len(api.requests_to("/oauth/token")) == 4 and not api.requests_to("/items")


# -- key rotation -----------------------------------------------------------------------------------

def test_429_rotates_to_another_key_without_waiting(api, clock, monkeypatch):
    monkeypatch.setenv("KEY_A", "key-aaaa-1111")
    monkeypatch.setenv("KEY_B", "key-bbbb-2222")
    api.route("/items", lambda got: Reply(200, []) if got.headers.get("X-API-Key") == "key-bbbb-2222"
              else Reply(429, {}, {"Retry-After": "60"}))
    auth = build_auth({"method": "api_key", "secrets": ["env:KEY_A", "env:KEY_B"]})
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    client = HttpClient(auth, NO_JITTER, limiter=limiter, sleep=clock.sleep)
    assert client.send(get(api)).data == []
    assert clock.sleeps == [0.0]          # no waiting: the other key was free
    assert limiter.acquire() == 0.0       # and the host was not paused for everyone
    assert client.send(get(api)).data == []
    assert len(api.requests_to("/items")) == 3


# -- secrets never leak ---------------------------------------------------------------------------

def test_secret_never_appears_in_errors_or_reprs(api, clock, monkeypatch):
    monkeypatch.setenv("LEAKY", SECRET)
    api.route("/items", Reply(403, {"message": f"token {SECRET} lacks scope",
                                    "echo": f"Authorization: Bearer {SECRET}"}))
    api.route("/flaky", Reply(503, {"message": f"bad key {SECRET}"}))
    auth = build_auth({"method": "bearer", "secret": "env:LEAKY"})
    client = HttpClient(auth, RetryPolicy(max_retries=1), sleep=clock.sleep)
    texts = [repr(auth), repr(client), repr(client.telemetry)]
    for path in ("/items", "/flaky"):
        req = PageRequest("GET", api.url(path), params={"api_key": SECRET})
        texts.append(repr(req))
        with pytest.raises(HttpError) as exc:
            client.send(req)
        texts += [str(exc.value), repr(exc.value), str(exc.value.args)]
    for text in texts:
        assert SECRET not in text, text
    assert "***" in texts[-3]


def test_api_message_extraction():
    assert api_message(b'{"errors": [{"message": "first"}]}') == "first"
    assert api_message(b'{"error": "invalid_grant", "error_description": "expired"}') == "expired"
    assert api_message(b"plain\n text") == "plain text"
    assert api_message(b"z" * 400).endswith("...")


# -- paginate ---------------------------------------------------------------------------------------

def test_repr_and_pool(clock):
    client = HttpClient(policy=NO_JITTER, pool_size=16, sleep=clock.sleep)
    adapter = client.session.get_adapter("https://x.example")
    assert adapter._pool_maxsize == 16
    assert "max_retries=3" in repr(client)
    with pytest.raises(ConfigError):
        HttpClient(timeout_s=0)
    client.close()
    assert isinstance(client.telemetry, Telemetry)


def test_a_cancelled_request_waiting_for_its_host_is_not_sent(api):
    """A request held back by the host's limiter (a 429 paused every worker) whose window
    is over stops waiting and is never sent."""
    import threading

    class Watched(RateLimiter):
        entered = threading.Event()

        def _reserve(self):
            self.entered.set()
            return super()._reserve()

    limiter = Watched(None)
    limiter.pause_for(20)  # as a 429 with Retry-After: 20 from another worker does
    api.route("/items", Reply(200, []))
    client = HttpClient(policy=NO_JITTER, limiter=limiter)
    cancel, outcome = threading.Event(), []

    def send():
        try:
            outcome.append(client.send(get(api), cancel=cancel))
        except HttpError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    assert limiter.entered.wait(30)
    cancel.set()
    thread.join(60)  # a bound against a hang, not a timing
    assert len(outcome) == 1 and isinstance(outcome[0], HttpError), outcome
    assert "cancelled" in str(outcome[0])
    assert api.requests_to("/items") == []


def test_a_response_head_dripped_byte_by_byte_is_bounded_as_a_whole(clock):
    # the status line and headers a byte at a time, each within timeout_s (0.2 s): the
    # wait for them ended only when the server was done (a minute here, for ever elsewhere)
    import socket
    import threading
    import time

    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: "
            + b"x" * 1200 + b"\r\nContent-Length: 7\r\nConnection: close\r\n\r\n")
    server = socket.create_server(("127.0.0.1", 0))
    answers = []

    def serve():
        for drip in (True, False):
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                try:
                    if drip:
                        for i in range(len(head)):
                            conn.sendall(head[i:i + 1])
                            time.sleep(0.05)
                    else:
                        conn.sendall(head + b'{"a":1}')
                    answers.append("sent")
                except OSError:
                    answers.append("cut")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/items"
    with server, HttpClient(policy=NO_JITTER, timeout_s=0.2, sleep=clock.sleep,
                            body_timeout_s=0.5) as client:
        assert client.send(PageRequest("GET", url)).data == {"a": 1}
        assert client.telemetry.as_dict()["status_counts"] == {"timeout": 1, "200": 1}
        thread.join(10)  # (bounds a hang)
    assert answers == ["cut", "sent"]


def test_params_go_as_a_yaml_source_wrote_them(api, client):
    # params: {archived: true, ratio: 0.5, tags: [a, b]}: a boolean went as True
    api.route("/items", Reply(200, []))
    client.send(get(api, archived=True, draft=False, ratio=0.5, tags=["a", "b"], none=None))
    assert api.requests_to("/items")[0].target == \
        "/items?archived=true&draft=false&ratio=0.5&tags=a&tags=b"
