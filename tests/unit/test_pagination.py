"""Tests of framework.http.pagination: each paginator driven through scripted responses."""

import json

import pytest

from framework import jsonpath, secrets
from framework.errors import ConfigError, PaginationError, ResponseError
from framework.http.models import PageRequest, PageResponse
from framework.http.pagination import build_paginator, paginator_styles

URL = "https://api.example.com/v2/items"


def drive(config, pages, *, data_path="$", request=None):
    """Run a paginator over ``pages`` (each ``data`` or ``(data, headers)``).

    Returns the requests it made (snapshots) and the paginator.
    """
    paginator = build_paginator(config)
    request = request or PageRequest("GET", URL, params={"q": "x"})
    paginator.init_request(request)
    sent = []
    for page in pages:
        if not paginator.has_next_page:
            break
        data, headers = page if isinstance(page, tuple) else (page, {})
        sent.append(request.copy())
        response = PageResponse(200, request.url, headers, b"", data)
        paginator.update_state(response, jsonpath.records(data, data_path) or [])
        if paginator.has_next_page:
            paginator.update_request(request)
    return sent, paginator


def params(sent):
    return [r.params for r in sent]


# -- registry and validation -------------------------------------------------------------------

def test_unknown_style_lists_valid_ones():
    with pytest.raises(ValueError) as exc:
        build_paginator({"style": "scroll"})
    assert isinstance(exc.value, ConfigError)
    for style in ("none", "offset", "page", "cursor", "next_key", "link_header", "has_more",
                  "body_token"):
        assert style in str(exc.value) and style in paginator_styles()


@pytest.mark.parametrize("config, field", [
    ({"style": "offset", "pagesize": 10}, "pagesize"),
    ({"style": "offset", "page_size": 0}, "page_size"),
    ({"style": "offset", "page_size": "100"}, "page_size"),
    ({"style": "page", "size_param": "per_page"}, "page_size"),
    ({"style": "page", "start": -1}, "start"),
    ({"style": "cursor", "cursor_path": "$"}, "cursor_path"),
    ({"style": "cursor", "cursor_path": "a..b"}, "cursor_path"),
    ({"style": "cursor", "cursor_param": ""}, "cursor_param"),
    ({"style": "next_key", "exclusive": "yes"}, "exclusive"),
    ({"style": "body_token", "body_field": "token"}, "token_path"),
    ({"style": "body_token", "token_path": "next"}, "body_field"),
    ({"style": "has_more", "has_more_path": "$"}, "has_more_path"),
    ({"style": "none", "max_pages": 0}, "max_pages"),
    ({"style": "link_header", "url": "x"}, "url"),
])
def test_bad_options_are_refused(config, field):
    with pytest.raises(ValueError, match=field):
        build_paginator(config)


def test_none_style_makes_one_request():
    for config in ({"style": "none"}, None):
        sent, p = drive(config, [[1, 2], [3]])
        assert len(sent) == 1 and not p.has_next_page


# -- offset ----------------------------------------------------------------------------------------

def test_offset_short_page_does_not_stop():
    sent, p = drive({"style": "offset", "page_size": 3}, [[1, 2, 3], [4, 5], [6, 7, 8], []])
    assert params(sent) == [{"q": "x", "offset": o, "limit": 3} for o in (0, 3, 5, 8)]
    assert not p.has_next_page and p.value == 8


def test_offset_advances_by_records_received_when_server_caps_pages():
    sent, _ = drive({"style": "offset", "page_size": 100}, [list(range(50)), list(range(50, 90)), []])
    assert [r.params["offset"] for r in sent] == [0, 50, 90]


def test_offset_stops_at_total():
    pages = [{"total": 5, "data": [1, 2]}, {"total": 5, "data": [3, 4]}, {"total": 5, "data": [5]},
             {"total": 5, "data": []}]
    sent, p = drive({"style": "offset", "offset_param": "skip", "limit_param": "top", "page_size": 2,
                     "total_path": "total"}, pages, data_path="data")
    assert params(sent) == [{"q": "x", "skip": s, "top": 2} for s in (0, 2, 4)]
    assert not p.has_next_page


def test_offset_server_ignoring_offset_raises():
    with pytest.raises(PaginationError, match="same records"):
        drive({"style": "offset", "page_size": 2}, [[1, 2], [1, 2], [1, 2]])


@pytest.mark.parametrize("style", ["offset", "page"])
def test_an_api_that_starts_over_past_its_last_page_is_stopped_at_once(style):
    # without a total, an API that answers the first page again past its end was read
    # until max_pages (100 000 by default), every record staged again and again
    pages = [[{"id": 1}, {"id": 2}], [{"id": 3}, {"id": 4}], [{"id": 5}]] * 50
    with pytest.raises(PaginationError, match="earlier page.*start over") as caught:
        drive({"style": style, "page_size": 2} if style == "offset"
              else {"style": style}, pages)
    assert "page 4 " in str(caught.value)


def test_a_resumed_walk_still_knows_the_pages_read_before_its_checkpoint():
    first = build_paginator({"style": "offset", "page_size": 1})
    request = PageRequest("GET", URL)
    first.init_request(request)
    for page in ([{"id": 1}], [{"id": 2}]):
        first.update_state(PageResponse(200, URL, {}, b"", page), page)
        first.update_request(request)
    resumed = build_paginator({"style": "offset", "page_size": 1})
    resumed.resume(json.loads(json.dumps(first.checkpoint())))  # as the window log keeps it
    with pytest.raises(PaginationError, match="earlier page"):
        resumed.update_state(PageResponse(200, URL, {}, b"", [{"id": 1}]), [{"id": 1}])


# -- page ------------------------------------------------------------------------------------------

def test_page_short_page_does_not_stop_and_empty_page_does():
    sent, p = drive({"style": "page", "size_param": "per_page", "page_size": 2},
                    [[1, 2], [3], [4, 5], []])
    assert params(sent) == [{"q": "x", "page": n, "per_page": 2} for n in (1, 2, 3, 4)]
    assert not p.has_next_page


def test_page_stops_after_total_pages():
    pages = [{"pages": 2, "r": [1]}, {"pages": 2, "r": [2]}, {"pages": 2, "r": [3]}]
    sent, p = drive({"style": "page", "total_pages_path": "pages"}, pages, data_path="r")
    assert [r.params["page"] for r in sent] == [1, 2] and not p.has_next_page


def test_page_zero_based_with_total():
    pages = [{"meta": {"n": 2}, "r": [1]}, {"meta": {"n": 2}, "r": [2]}, {"r": [3]}]
    sent, p = drive({"style": "page", "page_param": "p", "start": 0,
                     "total_pages_path": "meta.n"}, pages, data_path="r")
    assert [r.params["p"] for r in sent] == [0, 1] and not p.has_next_page


# -- cursor ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("end", [{}, {"next_cursor": None}, {"next_cursor": ""},
                                 {"next_cursor": False}])
def test_cursor_stops_when_missing_null_or_empty(end):
    pages = [{"data": [1], "next_cursor": "c1"}, {"data": [], "next_cursor": "c2"},
             {"data": [3], **end}]
    sent, p = drive({"style": "cursor"}, pages, data_path="data")
    assert params(sent) == [{"q": "x"}, {"q": "x", "cursor": "c1"}, {"q": "x", "cursor": "c2"}]
    assert not p.has_next_page


def test_cursor_repeated_raises_naming_style_and_value():
    pages = [{"next": "abc"}, {"next": "def"}, {"next": "abc"}]
    with pytest.raises(PaginationError) as exc:
        drive({"style": "cursor", "cursor_path": "next", "cursor_param": "after"}, pages)
    assert "cursor" in str(exc.value) and "abc" in str(exc.value)


def test_repeated_secret_like_cursor_is_redacted():
    secrets.register("cursor-holds-a-Secret-77")
    pages = [{"next_cursor": "cursor-holds-a-Secret-77"}] * 2
    with pytest.raises(PaginationError) as exc:
        drive({"style": "cursor"}, pages)
    assert "cursor-holds-a-Secret-77" not in str(exc.value)
    assert "***" in str(exc.value)


# -- next_key --------------------------------------------------------------------------------------

def test_next_key_exclusive_drops_other_params():
    request = PageRequest("GET", URL, params={"metricSelector": "builtin:host.cpu", "from": "now-1h"})
    pages = [{"nextPageKey": "k1", "result": [1]}, {"nextPageKey": "k2", "result": []},
             {"nextPageKey": None, "result": [2]}]
    sent, p = drive({"style": "next_key"}, pages, request=request)
    assert params(sent) == [{"metricSelector": "builtin:host.cpu", "from": "now-1h"},
                            {"nextPageKey": "k1"}, {"nextPageKey": "k2"}]
    assert not p.has_next_page


def test_next_key_not_exclusive_keeps_params():
    pages = [{"meta": {"key": "k1"}}, {"meta": {}}]
    sent, p = drive({"style": "next_key", "exclusive": False, "key_path": "meta.key",
                     "key_param": "key"}, pages)
    assert params(sent) == [{"q": "x"}, {"q": "x", "key": "k1"}] and not p.has_next_page


def test_next_key_repeated_raises():
    with pytest.raises(PaginationError, match="next_key"):
        drive({"style": "next_key"}, [{"nextPageKey": "k1"}, {"nextPageKey": "k1"}])


# -- link_header -----------------------------------------------------------------------------------

def test_link_header_follows_absolute_and_relative_links():
    pages = [([1], {"Link": '<https://api.example.com/v2/items?page=2&q=x>; rel="next", '
                            '<https://api.example.com/v2/items?page=9>; rel="last"'}),
             ([2], {"Link": '</v2/items?page=3&q=x>; rel="next"'}),
             ([3], {"Link": '<https://api.example.com/v2/items?page=1>; rel="first"'})]
    sent, p = drive({"style": "link_header"}, pages)
    assert [r.url for r in sent] == [URL, URL + "?page=2&q=x", URL + "?page=3&q=x"]
    assert params(sent) == [{"q": "x"}, {}, {}]
    assert not p.has_next_page


@pytest.mark.parametrize("rel", ['rel="Next"', "rel=NEXT", 'rel="prev NEXT"', "rel='next'"])
def test_link_header_relation_types_are_case_insensitive(rel):
    # a window that stopped at rel="Next" would end after its first page without an error
    pages = [([1], {"Link": f'<{URL}?page=2>; {rel}'}), ([2], {})]
    sent, p = drive({"style": "link_header"}, pages)
    assert [r.url for r in sent] == [URL, URL + "?page=2"] and not p.has_next_page


def test_link_header_without_header_stops():
    sent, p = drive({"style": "link_header"}, [[1], [2]])
    assert len(sent) == 1 and not p.has_next_page


def test_link_header_repeated_link_raises():
    link = {"Link": '<https://api.example.com/v2/items?page=2>; rel="next"'}
    with pytest.raises(PaginationError, match="page=2"):
        drive({"style": "link_header"}, [([1], link), ([2], link)])


# -- has_more --------------------------------------------------------------------------------------

def test_has_more_uses_last_record_id():
    pages = [{"data": [{"id": "a"}, {"id": "b"}], "has_more": True},
             {"data": [{"id": "c"}], "has_more": True},
             {"data": [{"id": "d"}], "has_more": False}]
    sent, p = drive({"style": "has_more"}, pages, data_path="data")
    assert params(sent) == [{"q": "x"}, {"q": "x", "starting_after": "b"},
                            {"q": "x", "starting_after": "c"}]
    assert not p.has_next_page


def test_has_more_true_with_empty_page_raises():
    with pytest.raises(PaginationError, match="empty page"):
        drive({"style": "has_more"}, [{"data": [], "has_more": True}], data_path="data")


def test_has_more_missing_field_or_id_raises():
    with pytest.raises(PaginationError, match="has_more"):
        drive({"style": "has_more"}, [{"data": [{"id": 1}]}], data_path="data")
    with pytest.raises(PaginationError, match="'uid'"):
        drive({"style": "has_more", "id_field": "uid"}, [{"data": [{"id": 1}], "has_more": True}],
              data_path="data")


# -- body_token ------------------------------------------------------------------------------------

def test_body_token_sets_the_post_body_field():
    request = PageRequest("POST", URL, json={"query": "*", "size": 2})
    pages = [{"hits": [1], "next": "t1"}, {"hits": [2], "next": "t2"}, {"hits": [], "next": None}]
    sent, p = drive({"style": "body_token", "token_path": "next", "body_field": "searchAfter"},
                    pages, request=request)
    assert [r.json for r in sent] == [{"query": "*", "size": 2},
                                      {"query": "*", "size": 2, "searchAfter": "t1"},
                                      {"query": "*", "size": 2, "searchAfter": "t2"}]
    assert not p.has_next_page


def test_body_token_needs_post():
    with pytest.raises(PaginationError, match="POST"):
        drive({"style": "body_token", "token_path": "next", "body_field": "t"}, [{}])


def test_body_token_repeated_raises():
    request = PageRequest("POST", URL, json={})
    with pytest.raises(PaginationError, match="token"):
        drive({"style": "body_token", "token_path": "n", "body_field": "t"},
              [{"n": "x"}, {"n": "x"}], request=request)


# -- max_pages and repr ----------------------------------------------------------------------------

def test_max_pages_raises_when_more_pages_remain():
    pages = [{"next_cursor": f"c{i}"} for i in range(10)]
    with pytest.raises(PaginationError, match="max_pages=3"):
        drive({"style": "cursor", "max_pages": 3}, pages)


def test_max_pages_allows_exactly_that_many():
    pages = [{"next_cursor": "c1"}, {"next_cursor": "c2"}, {"next_cursor": None}]
    sent, p = drive({"style": "cursor", "max_pages": 3}, pages)
    assert len(sent) == 3 and not p.has_next_page


def test_repr_shows_state():
    _, p = drive({"style": "offset", "page_size": 2}, [[1, 2]])
    assert repr(p) == "OffsetPaginator(pages=1, has_next_page=True, offset=2)"
    _, p = drive({"style": "cursor"}, [{"next_cursor": "zz"}])
    assert "cursor='zz'" in repr(p)


def test_page_digest_ignores_key_order_and_takes_any_json_value():
    from framework.http.pagination import page_digest

    a = [{"id": 1, "tags": ["x"], "at": "2024-01-01"}, {"id": 2, "n": None}]
    b = [{"at": "2024-01-01", "tags": ["x"], "id": 1}, {"n": None, "id": 2}]
    assert page_digest(a) == page_digest(b) != page_digest(a[:1])
    huge = [{"id": 2 ** 70}]  # beyond orjson's 64-bit integers: the fallback encoder
    assert page_digest(huge) != page_digest([{"id": 2 ** 70 + 1}])


def test_link_header_urls_keep_semicolons_and_commas_of_their_query():
    # a ";" in a link's query ended its URL there: the rest of a signed query was dropped
    link = f'<{URL}?sig=a;b,c&x=1>; rel="next"; title="page 2, <of 9>", <{URL}?page=9>; rel=last'
    sent, p = drive({"style": "link_header"}, [([1], {"Link": link}), ([2], {})])
    assert [r.url for r in sent] == [URL, URL + "?sig=a;b,c&x=1"] and not p.has_next_page


def test_a_resumed_signed_link_keeps_its_bytes_and_gets_its_masked_value_again():
    secrets.register("sig-Value-0123456789")
    fresh = PageRequest("GET", "https://api.example.com/items?sig=sig-Value-0123456789")
    link = PageRequest("GET", "https://api.example.com/items?b=x+y&sig=sig-Value-0123456789"
                              "&c=%7E&e=&f&dup=2&dup=1&X-Amz-Signature=ab%2fc")
    saved = json.loads(json.dumps(link.checkpoint()))
    assert "sig-Value" not in json.dumps(saved)
    assert fresh.resumed(saved).url == link.url


def test_next_key_exclusive_sends_the_key_alone_when_the_endpoint_has_a_query(tmp_path):
    # an endpoint copied with its query (?pageSize=5): page 2 kept it beside nextPageKey,
    # which Dynatrace (and the demo API) refuses with a 400
    import datetime as dt

    from framework.config import parse_source
    from framework.demoapi import DemoApi
    from framework.http.client import HttpClient
    from framework.load.fetch import fetch_window
    from framework.load.staging import RunStaging
    from framework.schema import RowShaper
    from framework.windows import Window

    start, end = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    with DemoApi(seed=3, records_per_resource=60, end=end, max_page_size=10) as api:
        cfg = parse_source({
            "config_id": "nk", "api_name": "D", "endpoint": f"{api.base_url}/api/next_key/issues?pageSize=5",
            "params": {"since": "{window_start}", "until": "{window_end}"},
            "pagination": {"style": "next_key"}, "data_path": "items", "primary_key": ["id"],
            "load_start": start.isoformat(), "load_end": end.isoformat(),
            "target": {"catalog": "raw", "schema": "t", "table": "nk"},
            "limits": {"timeout_s": 5, "max_retries": 0}})
        with HttpClient() as client:
            result = fetch_window(cfg, client, RowShaper("d", ("id",)), Window(start, end), 0,
                                  RunStaging(tmp_path, "nk", "r").window(0), "r")
        expected = api.dataset.records_in(start, end)
        later = [entry["query"] for entry in api.request_log][1:]
    assert result.records == len(expected) > 5 and result.pages > 1
    assert later and all(list(query) == ["nextPageKey"] for query in later)


@pytest.mark.parametrize("total", ["many", float("inf"), float("nan"), [3]])
def test_a_total_that_is_not_a_number_fails_with_the_style_named(total):
    with pytest.raises(ResponseError, match="pagination style offset: the total is not a number"):
        drive({"style": "offset", "total_path": "total"}, [{"data": [1], "total": total}],
              data_path="data")


@pytest.mark.parametrize("config, page", [
    ({"style": "cursor"}, {"next_cursor": {"after": "x"}}),
    ({"style": "cursor"}, {"next_cursor": ["a", "b"]}),
    ({"style": "next_key"}, {"nextPageKey": True}),
    ({"style": "has_more", "id_field": "id"}, {"has_more": True, "data": [{"id": {"n": 1}}]}),
])
def test_a_cursor_that_no_query_parameter_can_hold_fails_naming_it(config, page):
    # a dict or a list was sent as its Python text (?cursor=%7B%27after%27...) or as
    # repeated parameters, and true as "True"
    with pytest.raises(PaginationError, match=f"pagination style {config['style']}: .* is a JSON"):
        drive(config, [page, page], data_path="data")


@pytest.mark.parametrize("more, done", [(1, 0), ("1", "0"), ("TRUE", "False"), (True, False)])
def test_has_more_reads_the_flag_as_apis_write_it(more, done):
    # has_more: 1 (PHP/MySQL APIs) ended the window after its first page, without an error
    pages = [{"data": [{"id": "a"}], "has_more": more}, {"data": [{"id": "b"}], "has_more": done},
             {"data": [{"id": "c"}], "has_more": False}]
    sent, p = drive({"style": "has_more"}, pages, data_path="data")
    assert len(sent) == 2 and not p.has_next_page


@pytest.mark.parametrize("flag", ["yes please", 2, {"more": True}, [True]])
def test_a_has_more_flag_that_is_neither_true_nor_false_fails_naming_it(flag):
    with pytest.raises(PaginationError, match="has_more: .has_more. is neither true nor false"):
        drive({"style": "has_more"}, [{"data": [{"id": "a"}], "has_more": flag}], data_path="data")
