"""framework.jsonpath: the path syntax of data_path and the pagination response paths."""

from __future__ import annotations

import pytest

from framework.jsonpath import PathError, Step, compile_path, exists, find, records

DOC = {
    "data": [{"id": 1}, {"id": 2}],
    "meta": {"next_cursor": "abc", "total": 2, "empty": None},
    "results": {"items": [{"id": 3}]},
    "result": [{"data": [1, 2]}, {"data": [3]}, {"other": 4}],
    "a.b": {"c": "dotted"},
    "single": {"id": 9},
}


@pytest.mark.parametrize("path,steps", [
    ("$", ()),
    ("data", (Step("data", ()),)),
    ("$.results.items", (Step("results", ()), Step("items", ()))),
    ("result[].data[]", (Step("result", (None,)), Step("data", (None,)))),
    ("items[0].id", (Step("items", (0,)), Step("id", ()))),
    ("$[0]", (Step(None, (0,)),)),
    ("m[1][]", (Step("m", (1, None)),)),
    (r"a\.b.c", (Step("a.b", ()), Step("c", ()))),
])
def test_compile(path: str, steps: tuple) -> None:
    assert compile_path(path) == steps


@pytest.mark.parametrize("path", ["", "  ", "a..b", "a.", ".a", "a[x]", "a[", "a]", "a[0", "$."])
def test_compile_errors(path: str) -> None:
    with pytest.raises(PathError):
        compile_path(path)


def test_error_names_the_bad_segment() -> None:
    with pytest.raises(PathError, match=r"bad path segment 'b\[x\]' in 'a.b\[x\]'"):
        compile_path("a.b[x]")
    with pytest.raises(PathError, match="use '\\$' for the whole document"):
        compile_path("")
    with pytest.raises(PathError, match="must be a string, got int"):
        compile_path(5)  # type: ignore[arg-type]


def test_find() -> None:
    assert find(DOC, "meta.next_cursor") == "abc"
    assert find(DOC, "data[1].id") == 2
    assert find(DOC, "data[5].id", "none") == "none"
    assert find(DOC, "meta.missing") is None
    assert find(DOC, r"a\.b.c") == "dotted"
    assert find(DOC, "$") is DOC
    assert find(DOC, "result[].data[]") == 1  # the first of several


def test_find_through_a_scalar_is_absent() -> None:
    assert find(DOC, "meta.total.x", "absent") == "absent"
    assert find(DOC, "meta[0]", "absent") == "absent"


def test_exists_tells_null_from_absent() -> None:
    assert exists(DOC, "meta.empty")
    assert not exists(DOC, "meta.nothing")
    assert find(DOC, "meta.empty", "default") is None


def test_records() -> None:
    assert records(DOC, "data") == [{"id": 1}, {"id": 2}]
    assert records(DOC, "results.items") == [{"id": 3}]
    assert records(DOC, "single") == [{"id": 9}]
    assert records(DOC, "result[].data[]") == [1, 2, 3]
    assert records(DOC, "result[].data") == [1, 2, 3]
    assert records(DOC, "missing") is None
    assert records(DOC, "meta.empty") == []
    assert records([{"id": 1}], "$") == [{"id": 1}]


def test_precompiled_steps_are_accepted() -> None:
    steps = compile_path("results.items")
    assert records(DOC, steps) == [{"id": 3}] and exists(DOC, steps)
