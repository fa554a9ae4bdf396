"""The demo API against plain ``requests``: every pagination style, auth mode and fault."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from framework.demoapi import NEXT_KEY_RULE, Dataset, DemoApi

UTC = timezone.utc
MAX_PAGE = 40
WINDOWS = [
    {},
    {"since": "2024-01-10T00:00:00Z", "until": "2024-02-10T00:00:00Z"},
    {"since": "2024-02-20T12:00:00Z"},
    {"since": "2024-05-01T00:00:00Z", "until": "2024-06-01T00:00:00Z"},  # empty
]
MAX_STEPS = 500  # a walk that takes more requests than this is a pagination bug


@pytest.fixture(scope="module")
def api():
    with DemoApi(records_per_resource=300, max_page_size=MAX_PAGE) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(request):
    yield
    if "api" in request.fixturenames:
        server = request.getfixturevalue("api")
        server.faults.clear()
        server.latency_ms = 0


@pytest.fixture()
def http():
    with requests.Session() as session:
        yield session


# -- hand-written walks, one per style ------------------------------------------------


def walk_none(http, base, window, size):
    return http.get(f"{base}/api/none/issues", params=window).json()["data"]


def walk_offset(http, base, window, size):
    out, offset = [], 0
    for _ in range(MAX_STEPS):
        body = http.get(f"{base}/api/offset/issues",
                        params={**window, "offset": offset, "limit": size}).json()
        out += body["data"]
        offset += len(body["data"])
        if not body["data"] or offset >= body["total"]:
            return out
    raise AssertionError("offset walk did not end")


def walk_page(http, base, window, size):
    out = []
    for page in range(1, MAX_STEPS):
        body = http.get(f"{base}/api/page/issues",
                        params={**window, "page": page, "per_page": size}).json()
        assert body["page"] == page
        out += body["data"]
        if not body["data"] or page >= body["total_pages"]:
            return out
    raise AssertionError("page walk did not end")


def walk_cursor(http, base, window, size):
    out, cursor = [], None
    for _ in range(MAX_STEPS):
        params = {**window, "limit": size, **({"cursor": cursor} if cursor else {})}
        body = http.get(f"{base}/api/cursor/issues", params=params).json()
        out += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("cursor walk did not end")


def walk_next_key(http, base, window, size):
    out, params = [], {**window, "pageSize": size}
    for _ in range(MAX_STEPS):
        response = http.get(f"{base}/api/next_key/issues", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["pageSize"] == min(size, MAX_PAGE)
        out += body["items"]
        if body["nextPageKey"] is None:
            assert body["totalCount"] == len(out)
            return out
        params = {"nextPageKey": body["nextPageKey"]}
    raise AssertionError("next_key walk did not end")


def walk_link_header(http, base, window, size):
    out = []
    url, params = f"{base}/api/link_header/issues", {**window, "per_page": size}
    for _ in range(MAX_STEPS):
        response = http.get(url, params=params)
        assert isinstance(response.json(), list)
        assert "last" in response.links
        out += response.json()
        if "next" not in response.links:
            return out
        url, params = response.links["next"]["url"], None  # the link carries the filter
    raise AssertionError("link walk did not end")


def walk_has_more(http, base, window, size):
    out, after = [], None
    for _ in range(MAX_STEPS):
        params = {**window, "limit": size, **({"starting_after": after} if after else {})}
        body = http.get(f"{base}/api/has_more/issues", params=params).json()
        assert body["object"] == "list"
        out += body["data"]
        if not body["has_more"]:
            return out
        after = body["data"][-1]["id"]
    raise AssertionError("has_more walk did not end")


def walk_body_token(http, base, window, size):
    out, token = [], None
    for _ in range(MAX_STEPS):
        body = http.post(f"{base}/api/body_token/search",
                         json={**window, "page_size": size, "page_token": token}).json()
        out += body["results"]["items"]
        token = body["next_page_token"]
        if token is None:
            return out
    raise AssertionError("body_token walk did not end")


WALKS = {"none": walk_none, "offset": walk_offset, "page": walk_page, "cursor": walk_cursor,
         "next_key": walk_next_key, "link_header": walk_link_header, "has_more": walk_has_more,
         "body_token": walk_body_token}


@pytest.mark.parametrize("size", [7, 500], ids=["size7", "size500_capped"])
@pytest.mark.parametrize("window", WINDOWS, ids=["all", "jan_feb", "open_end", "empty"])
@pytest.mark.parametrize("style", sorted(WALKS))
def test_every_style_walks_exactly_the_window(api, http, style, window, size):
    expected = api.dataset.records_in(window.get("since"), window.get("until"))
    got = WALKS[style](http, api.base_url, window, size)
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)), "duplicate records"
    if style == "has_more":  # ordered by id within the window
        expected = sorted(expected, key=lambda r: r["id"])
    assert got == expected


def test_walks_are_not_trivial(api):
    assert 0 < len(api.dataset.records_in(**{k: WINDOWS[1][k] for k in WINDOWS[1]})) < 300
    assert api.dataset.records_in("2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z") == []


@pytest.mark.parametrize("path, params, key", [
    ("/api/offset/issues", {"limit": 500}, "data"),
    ("/api/page/issues", {"per_page": 500}, "data"),
    ("/api/cursor/issues", {"limit": 500}, "data"),
    ("/api/next_key/issues", {"pageSize": 500}, "items"),
    ("/api/has_more/issues", {"limit": 500}, "data"),
])
def test_page_size_is_capped_at_max_page_size(api, http, path, params, key):
    body = http.get(api.base_url + path, params=params).json()
    assert len(body[key]) == MAX_PAGE


def test_default_page_size_and_link_header_cap(api, http):
    assert len(http.get(api.base_url + "/api/offset/issues").json()["data"]) == 25
    response = http.get(api.base_url + "/api/link_header/issues", params={"per_page": 999})
    assert len(response.json()) == MAX_PAGE
    assert f"per_page={MAX_PAGE}" in response.links["next"]["url"]
    assert response.links["last"]["url"].endswith(f"page={-(-300 // MAX_PAGE)}&per_page={MAX_PAGE}")


def test_link_header_next_is_absolute_and_keeps_the_window(api, http):
    response = http.get(api.base_url + "/api/link_header/issues", params={**WINDOWS[1], "per_page": 5})
    nxt = response.links["next"]["url"]
    assert nxt.startswith(api.base_url + "/api/link_header/issues?page=2")
    assert "since=2024-01-10T00%3A00%3A00Z" in nxt and "until=2024-02-10T00%3A00%3A00Z" in nxt


@pytest.mark.parametrize("extra", [{"pageSize": 5}, {"since": "2024-01-10T00:00:00Z"}, {"x": "1"}])
def test_next_key_must_be_the_only_parameter(api, http, extra):
    key = http.get(api.base_url + "/api/next_key/issues", params={"pageSize": 5}).json()["nextPageKey"]
    response = http.get(api.base_url + "/api/next_key/issues", params={"nextPageKey": key, **extra})
    assert response.status_code == 400
    assert response.json() == {"error": {"code": 400, "message": NEXT_KEY_RULE}}


@pytest.mark.parametrize("path, params", [
    ("/api/next_key/issues", {"nextPageKey": "not-a-key"}),
    ("/api/cursor/issues", {"cursor": "garbage!"}),
    ("/api/offset/issues", {"limit": "ten"}),
    ("/api/page/issues", {"page": 0}),
    ("/api/offset/issues", {"since": "yesterday"}),
])
def test_bad_parameters_are_400(api, http, path, params):
    response = http.get(api.base_url + path, params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_cursor_from_another_window_is_rejected(api, http):
    body = http.get(api.base_url + "/api/cursor/issues", params={**WINDOWS[1], "limit": 5}).json()
    response = http.get(api.base_url + "/api/cursor/issues",
                        params={"since": "2024-01-01T00:00:00Z", "cursor": body["next_cursor"]})
    assert response.status_code == 400


def test_routing_errors_and_health(api, http):
    assert http.get(api.base_url + "/health").json() == {"status": "ok"}
    assert http.get(api.base_url + "/api/nope").status_code == 404
    assert http.get(api.base_url + "/api/body_token/search").status_code == 405
    assert http.post(api.base_url + "/api/body_token/search", data=b"[1").status_code == 400


# -- dataset ----------------------------------------------------------------------------


def test_dataset_is_deterministic_and_realistic():
    a, b = Dataset(seed=3, size=50), Dataset(seed=3, size=50)
    assert a.records_in() == b.records_in()
    assert a.records_in() != Dataset(seed=4, size=50).records_in()
    rows = a.records_in()
    assert [(r["updated_at"], r["id"]) for r in rows] == sorted((r["updated_at"], r["id"]) for r in rows)
    for row in rows:
        assert set(row) == {"id", "number", "title", "state", "closed_at", "labels", "user",
                            "created_at", "updated_at", "comments", "score"}
        assert row["state"] in ("open", "closed") and row["updated_at"].endswith("Z")
        assert (row["closed_at"] is not None) == (row["state"] == "closed")
        assert "2024-01-01T00:00:00Z" <= row["updated_at"] < "2024-03-01T00:00:00Z"
        assert row["created_at"] <= row["updated_at"]
        assert isinstance(row["user"]["login"], str) and isinstance(row["score"], float)


def test_dataset_pages_equal_slices_of_the_window():
    data = Dataset(5, 200, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 11, tzinfo=UTC))
    since, until = datetime(2024, 1, 3, tzinfo=UTC), datetime(2024, 1, 7, tzinfo=UTC)
    window = data.select(since, until)
    assert 40 < len(window) == data.count(since, until) < 200
    for offset, limit in [(0, 7), (5, 10), (len(window) - 3, 10), (len(window) + 5, 10), (3, 0)]:
        assert data.select(since, until, offset=offset, limit=limit) == window[offset:offset + limit]
    after = (window[9]["updated_at"], window[9]["id"])
    after = (datetime.fromisoformat(after[0].replace("Z", "+00:00")), after[1])
    assert data.select(since, until, after=after, limit=4) == window[10:14]


def test_touch_and_add_move_records_between_windows(http):
    with DemoApi(records_per_resource=20, max_page_size=5) as api:
        first = api.dataset.records_in()[0]
        later = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
        api.dataset.touch([first["id"]], at=later)
        new_ids = api.dataset.add(3, at=later + timedelta(hours=1))
        window = {"since": "2024-06-01T00:00:00Z", "until": "2024-06-02T00:00:00Z"}
        got = walk_cursor(http, api.base_url, window, 2)
        assert [r["id"] for r in got] == [first["id"], *new_ids]
        assert got[0]["state"] != first["state"] and got[0]["title"] != first["title"]
        assert got[0]["updated_at"] == "2024-06-01T12:30:00Z"
        assert got == api.dataset.records_in(window["since"], window["until"])
        assert len(api.dataset.records_in()) == 23
        with pytest.raises(KeyError):
            api.dataset.touch([1])


def test_cached_replies_are_resent_and_faults_still_apply(http):
    window = {"since": "2024-06-01T00:00:00Z", "until": "2024-06-02T00:00:00Z", "limit": 5}
    with DemoApi(records_per_resource=20, max_page_size=5, cache_replies=True) as api:
        url = api.base_url + "/api/cursor/issues"
        first = http.get(url, params=window)
        api.dataset.add(2, at=datetime(2024, 6, 1, 1, tzinfo=UTC))
        again = http.get(url, params=window)
        assert again.status_code == 200 and again.content == first.content  # not re-computed
        assert first.json()["data"] == []  # ...which is why only benchmarks turn it on
        api.faults.add("503")
        assert http.get(url, params=window).status_code == 503
        assert len(api.request_log) == 3
    with DemoApi(records_per_resource=20, max_page_size=5) as api:
        url = api.base_url + "/api/cursor/issues"
        http.get(url, params=window)
        api.dataset.add(2, at=datetime(2024, 6, 1, 1, tzinfo=UTC))
        assert len(http.get(url, params=window).json()["data"]) == 2


# -- auth -------------------------------------------------------------------------------

AUTH_CASES = [
    ({"method": "bearer", "token": "t0k3n-abc"}, {"headers": {"Authorization": "Bearer t0k3n-abc"}},
     {"headers": {"Authorization": "Bearer wrong"}}),
    ({"method": "api_key", "header": "X-API-Key", "key": "k3y-123"}, {"headers": {"X-API-Key": "k3y-123"}},
     {"headers": {"X-API-Key": "nope"}}),
    ({"method": "api_key", "query": "api_key", "key": "k3y-123"}, {"params": {"api_key": "k3y-123"}},
     {"params": {"api_key": "nope"}}),
    ({"method": "basic", "username": "svc", "password": "pa55"}, {"auth": ("svc", "pa55")},
     {"auth": ("svc", "wrong")}),
    ({"method": "api_token", "token": "dt0c01.abc"}, {"headers": {"Authorization": "Api-Token dt0c01.abc"}},
     {"headers": {"Authorization": "Bearer dt0c01.abc"}}),
]


@pytest.mark.parametrize("auth, good, bad", AUTH_CASES, ids=lambda v: str(v)[:30])
def test_auth_modes(http, auth, good, bad):
    with DemoApi(records_per_resource=5, auth=auth) as api:
        url = api.base_url + "/api/none/issues"
        assert len(http.get(url, **good).json()["data"]) == 5
        for kwargs in (bad, {}):
            response = http.get(url, **kwargs)
            assert response.status_code == 401 and "error" in response.json()
        assert http.get(api.base_url + "/health").status_code == 200  # health stays open
        assert [e["auth"] for e in api.request_log] == [True, True, False, False]


def test_api_key_in_query_may_come_with_next_page_key(http):
    auth = {"method": "api_key", "query": "api_key", "key": "k3y-123"}
    with DemoApi(records_per_resource=12, auth=auth, max_page_size=5) as api:
        url = api.base_url + "/api/next_key/issues"
        body = http.get(url, params={"api_key": "k3y-123", "pageSize": 5}).json()
        nxt = http.get(url, params={"nextPageKey": body["nextPageKey"], "api_key": "k3y-123"})
        assert nxt.status_code == 200 and len(nxt.json()["items"]) == 5


def test_oauth2_tokens_are_issued_and_expire(http):
    auth = {"method": "oauth2", "client_id": "cid", "client_secret": "cs3cret", "token_ttl_s": 0.3}
    now = [100.0]
    with DemoApi(records_per_resource=5, auth=auth, clock=lambda: now[0]) as api:
        form = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "cs3cret",
                "scope": "read"}
        token = http.post(api.token_url, data=form).json()
        assert token["token_type"] == "Bearer" and token["expires_in"] == 0.3
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert http.get(api.base_url + "/api/none/issues", headers=headers).status_code == 200
        now[0] += 0.29
        assert http.get(api.base_url + "/api/none/issues", headers=headers).status_code == 200
        now[0] += 0.02
        expired = http.get(api.base_url + "/api/none/issues", headers=headers)
        assert expired.status_code == 401 and expired.json() == {"error": "invalid_token"}
        # client credentials in a Basic header are accepted too (RFC 6749 2.3.1)
        again = http.post(api.token_url, data={"grant_type": "client_credentials"},
                          auth=("cid", "cs3cret"))
        assert again.status_code == 200
        bad = http.post(api.token_url, data={**form, "client_secret": "nope"})
        assert bad.status_code == 401 and bad.json() == {"error": "invalid_client"}
        grant = http.post(api.token_url, data={**form, "grant_type": "password"})
        assert grant.status_code == 400


def test_token_expired_fault_revokes_oauth_tokens(http):
    auth = {"method": "oauth2", "client_id": "cid", "client_secret": "cs3cret"}
    with DemoApi(records_per_resource=5, auth=auth) as api:
        form = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "cs3cret"}
        headers = {"Authorization": "Bearer " + http.post(api.token_url, data=form).json()["access_token"]}
        api.faults.add("token_expired")
        first = http.get(api.base_url + "/api/none/issues", headers=headers)
        assert first.status_code == 401 and first.json() == {"error": "invalid_token"}
        assert http.get(api.base_url + "/api/none/issues", headers=headers).status_code == 401
        headers = {"Authorization": "Bearer " + http.post(api.token_url, data=form).json()["access_token"]}
        assert http.get(api.base_url + "/api/none/issues", headers=headers).status_code == 200


def test_bad_auth_config_is_refused():
    with pytest.raises(ValueError, match="known methods"):
        DemoApi(auth={"method": "kerberos"})
    with pytest.raises(ValueError, match="token"):
        DemoApi(auth={"method": "bearer"})


# -- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["429", "500", "502", "503"])
def test_status_faults_hit_once(api, http, kind):
    api.faults.add(kind, retry_after=2)
    url = api.base_url + "/api/offset/issues"
    response = http.get(url)
    assert response.status_code == int(kind)
    assert response.json()["error"]["code"] == int(kind)
    if kind == "429":
        assert response.headers["Retry-After"] == "2"
    assert http.get(url).status_code == 200


def test_timeout_fault_stalls_the_answer(api, http):
    api.faults.add("timeout", delay_s=0.4)
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(api.base_url + "/api/none/issues", timeout=0.1)
    assert http.get(api.base_url + "/api/none/issues", timeout=2).status_code == 200


@pytest.mark.parametrize("kind", ["reset", "truncated"])
def test_connection_faults_break_the_body(api, http, kind):
    api.faults.add(kind)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        http.get(api.base_url + "/api/none/issues")
    assert len(http.get(api.base_url + "/api/none/issues").json()["data"]) == 300


def test_truncated_fault_announces_the_full_length(api):
    import socket

    api.faults.add("truncated")
    port = int(api.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"GET /api/offset/issues HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    assert 0 < len(body) < length


def test_body_faults(api, http):
    url = api.base_url + "/api/cursor/issues"
    api.faults.add("error_body")
    api.faults.add("bad_json")
    api.faults.add("schema_drift")
    error = http.get(url)
    assert error.status_code == 200 and error.json() == {"error": {"code": 500, "message": "internal"}}
    html = http.get(url)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert html.text == "<html>oops</html>"
    drifted = http.get(url).json()["data"]
    assert all(r["priority"] == "high" and isinstance(r["comments"], str) for r in drifted)
    normal = http.get(url).json()["data"]
    assert all("priority" not in r and isinstance(r["comments"], int) for r in normal)
    assert [e["fault"] for e in api.request_log[-4:]] == ["error_body", "bad_json", "schema_drift", None]


def test_fault_path_after_times_and_clear(api, http):
    base = api.base_url
    api.faults.add("500", path="/api/page", after=2, times=2)
    assert http.get(base + "/api/offset/issues").status_code == 200  # other path: not counted
    statuses = [http.get(base + "/api/page/issues").status_code for _ in range(5)]
    assert statuses == [200, 200, 500, 500, 200]
    api.faults.add("503", times=None)
    assert http.get(base + "/health").status_code == 200  # default filter: /api/ only
    assert [http.get(base + "/api/none/issues").status_code for _ in range(3)] == [503] * 3
    assert len(api.faults) == 1
    api.faults.clear()
    assert http.get(base + "/api/none/issues").status_code == 200
    with pytest.raises(ValueError, match="known kinds"):
        api.faults.add("418")


def test_a_fault_can_name_the_query_of_one_page(api, http):
    url = api.base_url + "/api/page/issues"
    api.faults.add("500", times=None, path="/api/page", query={"since": "2024-01-03T00:00:00Z",
                                                               "page": 2})
    assert http.get(url, params={"since": "2024-01-03T00:00:00Z", "page": 1}).status_code == 200
    assert http.get(url, params={"since": "2024-01-02T00:00:00Z", "page": 2}).status_code == 200
    assert http.get(url, params={"page": 2}).status_code == 200
    for _ in range(2):  # every request for that page, whenever it comes
        assert http.get(url, params={"since": "2024-01-03T00:00:00Z", "page": 2}).status_code == 500


def test_token_endpoint_faults_need_an_explicit_path(http):
    auth = {"method": "oauth2", "client_id": "cid", "client_secret": "cs3cret"}
    with DemoApi(records_per_resource=1, auth=auth) as api:
        api.faults.add("503", path="/oauth/token")
        form = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "cs3cret"}
        assert http.post(api.token_url, data=form).status_code == 503
        assert http.post(api.token_url, data=form).status_code == 200


def test_latency_and_timeout_faults_wait_before_answering(http):
    waits: list[float] = []
    with DemoApi(records_per_resource=5, wait=waits.append) as api:
        http.get(api.base_url + "/health")
        assert waits == []  # no latency: no wait
        api.latency_ms = 60  # settable at runtime
        http.get(api.base_url + "/health")
        api.latency_ms = 0
        api.faults.add("timeout", times=1, path="/api/none/issues", delay_s=2.5)
        assert http.get(api.base_url + "/api/none/issues").status_code == 200
    assert waits == [0.06, 2.5]


def test_request_log_and_lifecycle(http):
    server = DemoApi(records_per_resource=3)
    with pytest.raises(RuntimeError):
        server.base_url
    assert server.start() is server
    url = server.base_url
    try:
        http.get(server.base_url + "/api/offset/issues", params={"limit": 2, "since": "2024-01-01T00:00:00Z"})
        (entry,) = server.request_log
        assert entry["method"] == "GET" and entry["path"] == "/api/offset/issues"
        assert entry["query"] == {"limit": "2", "since": "2024-01-01T00:00:00Z"}
        assert entry["status"] == 200 and entry["auth"] is False and isinstance(entry["t"], float)
        assert "records=3" in repr(server) and server.base_url in repr(server)
        server.clear_log()
        assert server.request_log == []
    finally:
        server.stop()
    # the session's kept-alive connection is closed too, not served by a leftover thread
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(url + "/health", timeout=0.5)


def test_degraded_data_is_consistent_across_styles_and_totals(http):
    with DemoApi(seed=9, records_per_resource=200, max_page_size=MAX_PAGE) as api:
        full = api.dataset.records_in()
        api.dataset.degrade(drop_pct=40, null_field="state", remove_field="title")
        served = api.dataset.records_in()
        assert 0.3 < 1 - len(served) / len(full) < 0.5
        assert {r["id"] for r in served} < {r["id"] for r in full}
        assert all(r["state"] is None and "title" not in r for r in served)
        # every endpoint agrees with the degraded ground truth: no overlap, no gap, same total
        by_offset, total = [], None
        while total is None or len(by_offset) < total:
            page = http.get(api.base_url + "/api/offset/issues",
                            params={"offset": len(by_offset), "limit": 30}).json()
            by_offset += [r["id"] for r in page["data"]]
            total = page["total"]
        assert by_offset == [r["id"] for r in served]
        ids, cursor = [], None
        while True:
            page = http.get(api.base_url + "/api/cursor/issues",
                            params={"limit": 30, **({"cursor": cursor} if cursor else {})}).json()
            ids += [r["id"] for r in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert ids == [r["id"] for r in served]
        assert api.dataset.get(full[0]["id"])["title"]  # the records themselves are untouched
        api.dataset.restore()
        assert api.dataset.records_in() == full
    with pytest.raises(ValueError, match="drop_pct"):
        api.dataset.degrade(drop_pct=140)
    with pytest.raises(ValueError, match="give drop_pct"):
        api.dataset.degrade()
