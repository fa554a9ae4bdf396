"""Detail fan-out (``detail:``) against the demo API: each listed record completed by its
detail request, in list order, with faults on the list and the detail calls, 404s
quarantined or failing the window, credentials only to the allowed origins, and the
detail requests counted apart."""

from __future__ import annotations

import datetime as dt
import json
import threading
from urllib.parse import unquote

import pytest

from framework.config import parse_source
from framework.demoapi import DemoApi
from framework.errors import ConfigError, CrossOriginError, HttpError, ResponseError
from framework.http.telemetry import Telemetry
from framework.load.fetch import WindowFetcher
from framework.load.staging import RunStaging
from framework.windows import Window

try:
    from _httpd import FakeApi, Reply
except ImportError:  # collected as a package
    from tests.unit._httpd import FakeApi, Reply

UTC = dt.timezone.utc
START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
TOKEN = "s3cr3t-detail-token"


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=5, records_per_resource=40, end=END, max_page_size=10,
                 auth={"method": "bearer", "token": TOKEN}) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(api, monkeypatch):
    monkeypatch.setenv("DETAIL_TOKEN", TOKEN)
    api.faults.clear()
    api.clear_log()
    yield
    api.faults.clear()


def _cfg(api, *, detail=None, base=None, **extra):
    base = base or api.base_url
    raw = {
        "config_id": "d", "api_name": "Demo", "endpoint": f"{base}/api/offset/issues",
        "params": {"since": "{window_start}", "until": "{window_end}"},
        "auth": {"method": "bearer", "secret": "env:DETAIL_TOKEN"},
        "pagination": {"style": "offset", "page_size": 10, "total_path": "total"},
        "data_path": "data", "primary_key": ["id"],
        "load_start": START.isoformat(), "load_end": END.isoformat(), "window": "daily",
        "target": {"catalog": "raw", "schema": "t", "table": "d"},
        "limits": {"timeout_s": 5, "max_retries": 2, "backoff_base_s": 0.0, "backoff_max_s": 0.0,
                   "concurrency": 2},
        "detail": {"endpoint": f"{base}/api/offset/issues/{{id}}", "concurrency": 4,
                   **(detail or {})},
        **extra,
    }
    return parse_source(raw)


def _fetch(cfg, tmp_path):
    staging = RunStaging(tmp_path, cfg.config_id, "r")
    with WindowFetcher(cfg, "r", staging, None, None) as fetcher:
        return fetcher(0, Window(START, END))


def _staged(result):
    rows = []
    for path in result.stage.files:
        with open(path, "rb") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def _quarantined(result):
    path = result.stage.quarantine_file
    if path is None or not path.exists():
        return []
    with open(path, "rb") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _details_requested(api):
    return [e for e in api.request_log if e["path"].startswith("/api/offset/issues/")]


def test_each_record_is_completed_by_its_detail_in_list_order(api, tmp_path):
    result = _fetch(_cfg(api), tmp_path)
    listed = api.dataset.records_in(START, END)
    rows = _staged(result)
    assert [r["id"] for r in sorted(rows, key=lambda r: r["_seq"])] == [r["id"] for r in listed]
    # merged: the listed fields and the detail-only ones
    assert all(r["body"].startswith(f"Issue #{r['number']}:") for r in rows)
    assert all(json.loads(r["reactions"]) if isinstance(r["reactions"], str) else r["reactions"]
               for r in rows)
    tel = result.telemetry.as_dict()
    assert tel["detail_requests"] == len(listed) == len(_details_requested(api))
    assert tel["requests"] == result.pages + len(listed) and tel["pages"] == result.pages
    assert result.records == len(listed)


def test_replace_mode_keeps_only_the_detail_record(api, tmp_path):
    result = _fetch(_cfg(api, detail={"mode": "replace", "data_path": "$"}), tmp_path)
    rows = _staged(result)
    assert rows and all("body" in r for r in rows)


def test_faults_on_list_and_detail_calls_are_retried(api, tmp_path):
    listed = api.dataset.records_in(START, END)
    third = listed[2]["id"]
    api.faults.add("500", times=1, path="/api/offset/issues", query={"offset": "10"})
    api.faults.add("reset", times=1, path=f"/api/offset/issues/{third}")
    api.faults.add("429", times=1, path="/api/offset/issues/", after=7, retry_after=0)
    result = _fetch(_cfg(api), tmp_path)
    assert sorted(r["id"] for r in _staged(result)) == sorted(r["id"] for r in listed)
    fired = {kind for kind, _ in api.faults.fired}
    assert fired == {"500", "reset", "429"}
    tel = result.telemetry.as_dict()
    assert tel["retries"] == 3
    # the reset and the 429 were detail attempts; the list's 500 was not
    assert tel["detail_requests"] == len(listed) + 2


def test_a_detail_failing_after_retries_fails_the_window_and_stages_nothing(api, tmp_path):
    listed = api.dataset.records_in(START, END)
    api.faults.add("503", times=None, path=f"/api/offset/issues/{listed[13]['id']}")
    cfg = _cfg(api)
    staging = RunStaging(tmp_path, cfg.config_id, "r")
    with WindowFetcher(cfg, "r", staging, None, None) as fetcher, \
            pytest.raises(HttpError, match="503"):
        fetcher(0, Window(START, END))
    assert not any(p.is_file() for p in staging.folder.rglob("*")), "the stage is removed"


def test_a_404_fails_the_window_by_default(api, tmp_path):
    gone = api.dataset.records_in(START, END)[4]["id"]
    api.faults.add("404", times=None, path=f"/api/offset/issues/{gone}")
    with pytest.raises(HttpError, match="404"):
        _fetch(_cfg(api), tmp_path)


def test_a_404_quarantines_that_record_with_its_id_when_configured(api, tmp_path):
    listed = api.dataset.records_in(START, END)
    gone = listed[4]["id"]
    api.faults.add("404", times=None, path=f"/api/offset/issues/{gone}")
    result = _fetch(_cfg(api, detail={"on_404": "quarantine"}), tmp_path)
    rows = _staged(result)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in listed if r["id"] != gone)
    [rejected] = _quarantined(result)
    assert str(gone) in rejected["reason"] and "404" in rejected["reason"]
    assert json.loads(rejected["raw_payload"])["id"] == gone
    assert result.records == len(listed)  # the API listed it: completeness still holds


@pytest.mark.parametrize("on_404, loads", [("quarantine", True), ("fail", False)])
def test_a_410_gone_is_a_404_for_on_404(tmp_path, on_404, loads):
    with FakeApi() as fake:
        fake.route("/items", Reply(200, [{"n": n, "id": n} for n in range(4)]))
        fake.route("/d/*", lambda got: Reply(410, {"message": "deleted"}) if got.path == "/d/2"
                   else _echo(got))
        cfg = _fake_cfg(fake, "/d/{id}", on_404=on_404)
        if not loads:
            with pytest.raises(HttpError, match="410"):
                _fetch(cfg, tmp_path)
            return
        result = _fetch(cfg, tmp_path)
    assert sorted(r["n"] for r in _staged(result)) == [0, 1, 3]
    [rejected] = _quarantined(result)
    assert "id 2 answered 410 Gone" in rejected["reason"]


def test_credentials_go_to_an_allowed_detail_origin_and_nowhere_else(api, tmp_path):
    other = api.base_url.replace("127.0.0.1", "localhost")  # another origin, same server
    with pytest.raises(ConfigError, match="detail.endpoint.*allowed_hosts"):
        _cfg(api, detail={"endpoint": f"{other}/api/offset/issues/{{id}}"})
    cfg = _cfg(api, detail={"endpoint": f"{other}/api/offset/issues/{{id}}"},
               allowed_hosts=[other])
    result = _fetch(cfg, tmp_path)
    details = _details_requested(api)
    assert len(details) == result.records and all(e["auth"] for e in details)


def test_the_origin_is_checked_again_for_every_detail_request(api, tmp_path, monkeypatch):
    # The config was valid; the host behind ${ENV} changed before the run.
    monkeypatch.setenv("DETAIL_HOST", api.base_url)
    cfg = _cfg(api, detail={"endpoint": "${DETAIL_HOST}/api/offset/issues/{id}"})
    monkeypatch.setenv("DETAIL_HOST", api.base_url.replace("127.0.0.1", "localhost"))
    with pytest.raises(CrossOriginError, match="not the endpoint's origin"):
        _fetch(cfg, tmp_path)
    assert _details_requested(api) == []


def test_detail_requests_merge_into_a_telemetry_as_their_own_counter():
    window, detail = Telemetry(), Telemetry()
    window.count_request(200)
    detail.count_request(200)
    detail.count_request(503)
    detail.count_retry()
    d = window.merge_detail(detail).as_dict()
    assert (d["requests"], d["detail_requests"], d["retries"]) == (3, 2, 1)
    assert Telemetry.from_dict(d).as_dict() == d


def test_detail_config_is_validated_with_the_field_named(api):
    for detail, message in [({"endpoint": f"{api.base_url}/api/offset/issues"}, "{id}"),
                            ({"concurrency": 0}, "detail.concurrency"),
                            ({"mode": "upsert"}, "detail.mode"),
                            ({"on_404": "skip"}, "detail.on_404"),
                            ({"id_field": "a\tb"}, "detail.id_field")]:
        with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
            _cfg(api, detail=detail)
    # a replay rebuilds rows from the archived list pages: it could not add the details
    with pytest.raises(ConfigError, match="detail: cannot be combined with archive"):
        _cfg(api, archive=True)


def test_a_failed_windows_detail_requests_stop_retrying_and_end_with_it(api, tmp_path):
    """The first record's detail is gone (404: the window fails) while the details in
    flight beside it are answered 429 with Retry-After: they do not retry behind the
    failed window, and the window ends once they have."""
    first = api.dataset.records_in(START, END)[0]["id"]
    api.faults.add("404", times=None, path=f"/api/offset/issues/{first}")
    api.faults.add("429", times=None, path="/api/offset/issues/", retry_after=1)
    before = set(threading.enumerate())
    with pytest.raises(HttpError, match="404"):
        _fetch(_cfg(api), tmp_path)
    running = [t.name for t in set(threading.enumerate()) - before
               if t.name.startswith("restlake-detail")]
    assert running == [], f"the failed window's detail requests were still running: {running}"
    asked = [e["path"] for e in _details_requested(api)]
    assert asked and all(asked.count(path) == 1 for path in asked), asked


# -- ids that need escaping, and ids no URL can name ----------------------------------------------

ODD_IDS = ["a/b", "../etc", "q?x=1&y=2", "h#frag", "na\u00efve \u00fc", "%2E%2E", "100%", "a+b",
           "a\\b", "\u2028", " ", "~", "x;y=1", "@evil", 7, "7x", -1, 12345678901234567890123, 2.5]


def _fake_cfg(api, endpoint, **detail):
    return parse_source({
        "config_id": "d", "api_name": "Fake", "endpoint": api.url("/items"),
        "pagination": {"style": "none"}, "data_path": "$", "primary_key": ["n"],
        "load_start": START.isoformat(), "load_end": END.isoformat(),
        "target": {"catalog": "raw", "schema": "t", "table": "d"},
        "limits": {"timeout_s": 5, "max_retries": 0},
        "detail": {"endpoint": api.url(endpoint), "concurrency": 3, **detail}})


def _echo(got):
    """The detail of whatever id the path names: the id as the server decoded it."""
    return Reply(200, {"asked": unquote(got.path.split("/")[2]), "query": got.query})


@pytest.mark.parametrize("tail", ["", "/full"])
def test_each_id_reaches_the_api_as_one_path_segment_whatever_its_characters(tmp_path, tail):
    with FakeApi() as fake:
        fake.route("/items", Reply(200, [{"n": n, "id": i} for n, i in enumerate(ODD_IDS)]))
        fake.route("/d/*", _echo)
        result = _fetch(_fake_cfg(fake, "/d/{id}" + tail), tmp_path)
        asked = [r.path for r in fake.received if r.path != "/items"]
    rows = sorted(_staged(result), key=lambda r: r["n"])
    assert [r["asked"] for r in rows] == [str(i) for i in ODD_IDS]
    assert all(r["query"] == {} for r in rows)  # a "?" or "#" in an id stays in the id
    assert len(asked) == len(ODD_IDS) and all(p.endswith(tail) for p in asked)
    assert _quarantined(result) == []


@pytest.mark.parametrize("endpoint", ["/d/{id}", "/d/{id}/full"])
def test_an_id_that_would_be_a_dot_segment_is_quarantined_and_nothing_is_asked(tmp_path, endpoint):
    # /d/.. is / and /d/. is /d/ to the HTTP stack (and %2E%2E is .. to URL normalisation):
    # the record would be merged with another resource's answer
    ids = ["ok", ".", "..", "...", ".x", "..."[:2] + "/"]
    with FakeApi() as fake:
        fake.route("/items", Reply(200, [{"n": n, "id": i} for n, i in enumerate(ids)]))
        fake.route("/d/*", _echo)
        fake.route("/", Reply(200, {"asked": "the root"}))
        fake.route("/full", Reply(200, {"asked": "another resource"}))
        result = _fetch(_fake_cfg(fake, endpoint), tmp_path)
        asked = [unquote(r.path) for r in fake.received if r.path != "/items"]
    assert sorted(r["asked"] for r in _staged(result)) == ["...", "../", ".x", "ok"]
    rejected = _quarantined(result)
    assert sorted(json.loads(q["raw_payload"])["id"] for q in rejected) == [".", ".."]
    assert all("path segment" in q["reason"] for q in rejected)
    assert len(asked) == 4 and all(p.startswith("/d/") for p in asked), asked


def test_a_dot_id_in_a_query_is_asked_for(tmp_path):
    with FakeApi() as fake:
        fake.route("/items", Reply(200, [{"n": 0, "id": ".."}, {"n": 1, "id": "a&b=c"}]))
        fake.route("/d/*", _echo)
        result = _fetch(_fake_cfg(fake, "/d/one?id={id}"), tmp_path)
    assert [r["query"] for r in sorted(_staged(result), key=lambda r: r["n"])] == [
        {"id": [".."]}, {"id": ["a&b=c"]}]


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_a_detail_that_answers_another_record_fails_the_window(tmp_path, mode):
    # merged, record 8 would have loaded as a second 9, and 8 would be missing
    with FakeApi() as fake:
        fake.route("/items", Reply(200, [{"n": 0, "id": 8}, {"n": 1, "id": 9}]))
        fake.route("/d/8", Reply(200, {"id": 9, "b": "nine"}))
        fake.route("/d/9", Reply(200, {"id": 9, "b": "nine"}))
        with pytest.raises(ResponseError, match="id 8 answered the record with id 9"):
            _fetch(_fake_cfg(fake, "/d/{id}", mode=mode), tmp_path)


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_a_detail_writing_the_id_another_way_keeps_the_listed_id(tmp_path, mode):
    with FakeApi() as fake:
        fake.route("/items", Reply(200, [{"n": 0, "id": 7}, {"n": 1, "id": "x1"}, {"n": 2, "id": 5}]))
        fake.route("/d/7", Reply(200, {"n": 0, "id": "7", "b": "seven"}))
        fake.route("/d/x1", Reply(200, {"n": 1, "id": "x1", "b": "x"}))
        fake.route("/d/5", Reply(200, {"n": 2, "id": 5.0, "b": "five"}))
        result = _fetch(_fake_cfg(fake, "/d/{id}", mode=mode), tmp_path)
    rows = sorted(_staged(result), key=lambda r: r["n"])
    assert [(r["id"], r["b"]) for r in rows] == [(7, "seven"), ("x1", "x"), (5, "five")]


def test_a_boolean_id_is_no_id(tmp_path):
    # {"id": true} named no record: it was asked for as /d/True
    with FakeApi() as fake:
        fake.route("/items", Reply(200, [{"n": 0, "id": True}, {"n": 1, "id": 3}]))
        fake.route("/d/*", _echo)
        result = _fetch(_fake_cfg(fake, "/d/{id}"), tmp_path)
        asked = [unquote(r.path) for r in fake.received if r.path != "/items"]
    assert asked == ["/d/3"] and [r["n"] for r in _staged(result)] == [1]
    [rejected] = _quarantined(result)
    assert json.loads(rejected["raw_payload"])["n"] == 0 and "has no usable 'id'" in rejected["reason"]
