"""framework.http.urls: a URL's path and query go on the wire as written (no Spark, no I/O)."""

from __future__ import annotations

import pytest

from framework.http.urls import (query_value, raw_query_values, replace_query_values,
                                 request_target, set_query_value)

SIGNED = "/a%2Fb/%7Ex?s=a%2fb+c%20d&e=&f&d=2&d=1&t=%7E&A=%41&l=a,b;c:@/?x"


def test_the_target_is_the_url_as_written():
    assert request_target("https://h" + SIGNED) == SIGNED
    assert request_target("https://h") == "/"
    assert request_target("https://h/x#frag") == "/x"


def test_params_are_appended_after_the_query():
    assert request_target("https://h/x?b=1&a", {"z": "x y", "n": None, "l": [1, 2]}) == \
        "/x?b=1&a&z=x+y&l=1&l=2"
    assert request_target("https://h/x", {"k": "v/w"}) == "/x?k=v%2Fw"


def test_only_what_no_target_may_hold_is_encoded():
    assert request_target("https://h/é x?q=ü v&p=100%&r=%zz&s=[1]|\"") == \
        "/%C3%A9%20x?q=%C3%BC%20v&p=100%25&r=%25zz&s=%5B1%5D%7C%22"


@pytest.mark.parametrize("path, sent", [("/a/./b/../c", "/a/c"), ("/a/..", "/"),
                                        ("/a/b/.", "/a/b/"), ("/../x", "/x")])
def test_dot_segments_are_resolved_as_every_client_resolves_them(path, sent):
    # RFC 3986 5.2: a reference's path has its dot segments removed; escaped dots stay
    assert request_target(f"https://h{path}?q=/../") == f"{sent}?q=/../"
    assert request_target("https://h/a/%2E%2E/b") == "/a/%2E%2E/b"


def test_the_owned_parameter_is_set_in_place():
    url = "https://h/x?a=1&key=old&b=%7E&key=again#f"
    assert set_query_value(url, "key", "new/v") == ("https://h/x?a=1&key=new%2Fv&b=%7E#f", True)
    assert set_query_value("https://h/x?a=1&b", "key", "v") == ("https://h/x?a=1&b", False)
    assert set_query_value("https://h/x", "key", "v") == ("https://h/x", False)
    # a value already the key stays byte for byte, however the API escaped it
    assert set_query_value("https://h/x?key=a%2fb&z", "key", "a/b") == ("https://h/x?key=a%2fb&z", True)
    assert query_value("https://h/x?k%65y=a+b", "key") == "a b"
    assert query_value("https://h/x?flag", "flag") == "" and query_value("https://h/x", "k") is None


def test_masked_values_are_replaced_in_place():
    url = "https://h/x?a=%7E&sig=***&b="
    assert raw_query_values("https://h/x?sig=s%2Fv&sig=2&c") == {"sig": "s%2Fv", "c": ""}
    assert replace_query_values(url, lambda name, raw: "s%2Fv" if raw == "***" else None) == \
        "https://h/x?a=%7E&sig=s%2Fv&b="
