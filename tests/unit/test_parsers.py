"""Parsers: data paths, error bodies, flattening, options and the registry (no Spark, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from framework import secrets
from framework.errors import ConfigError, ResponseError
from parsers import (FlattenParser, Option, Parser, ParserConfigError, RecordsParser,
                     check_error_body, flatten_record, get_parser, known_parsers, register,
                     unregister)

ISSUE = {"id": 1, "user": {"login": "mona", "org": {"id": 9, "name": "acme"}}, "labels": ["bug"]}


# -- records ------------------------------------------------------------------------------


@pytest.mark.parametrize("path, body, expected", [
    ("$", [{"a": 1}, {"a": 2}], [{"a": 1}, {"a": 2}]),
    ("$", {"a": 1}, [{"a": 1}]),  # one object is one record
    ("data", {"data": [{"a": 1}], "total": 1}, [{"a": 1}]),
    ("results.items", {"results": {"items": [{"a": 1}, {"a": 2}]}}, [{"a": 1}, {"a": 2}]),
    ("data", {"data": []}, []),
    ("data", {"data": None}, []),
    ("items[0]", {"items": [{"a": 1}, {"a": 2}]}, [{"a": 1}]),
])
def test_records_at_nested_paths(path, body, expected):
    assert get_parser("records", data_path=path).parse(body) == expected


def test_fan_out_concatenates_every_list():
    body = {"totalCount": 2, "result": [
        {"metricId": "cpu", "data": [{"dimensions": ["h1"], "values": [1.0]},
                                     {"dimensions": ["h2"], "values": [2.0]}]},
        {"metricId": "mem", "data": [{"dimensions": ["h1"], "values": [3.0]}]},
        {"metricId": "disk", "data": []},
    ]}
    rows = get_parser("records", data_path="result[].data[]").parse(body)
    assert [r["values"][0] for r in rows] == [1.0, 2.0, 3.0]


def test_missing_path_names_the_path_and_the_keys_found():
    with pytest.raises(ResponseError) as info:
        get_parser("records", data_path="data").parse({"items": [], "total": 0})
    assert str(info.value) == "data path 'data' not found in response; top-level keys: ['items', 'total']"
    with pytest.raises(ResponseError, match="'results.items' not found.*JSON list"):
        get_parser("records", data_path="results.items").parse([{"a": 1}])


@pytest.mark.parametrize("body, message", [
    ({"error": {"code": 500, "message": "internal"}}, "500: internal"),
    ({"errors": [{"message": "rate quota gone"}, {"message": "again"}]}, "rate quota gone; again"),
    ({"error": "invalid_token", "error_description": "expired"}, "invalid_token"),
    ({"status": "error", "message": "account suspended"}, "account suspended"),
    ({"status": "fail", "data": None}, "status fail"),
    ({"data": None, "errors": [{"message": "field x unknown"}]}, "field x unknown"),
])
def test_error_bodies_fail_with_the_api_message(body, message):
    for path in ("$", "data"):
        with pytest.raises(ResponseError) as info:
            get_parser("records", data_path=path).parse(body)
        assert message in str(info.value)
        assert "error in a successful response" in str(info.value)


def test_data_with_warnings_is_not_an_error():
    body = {"data": [{"a": 1}], "errors": [{"message": "one shard was slow"}], "status": "ok"}
    assert get_parser("records", data_path="data").parse(body) == [{"a": 1}]
    assert get_parser("records", data_path="data").parse({"data": [{"a": 1}], "error": None}) == [{"a": 1}]


def test_error_message_is_redacted():
    secrets.register("sk_live_51Hsecretvalue")
    body = {"error": {"message": "key sk_live_51Hsecretvalue rejected; got Bearer eyJhbGci0iJIUzI1"}}
    with pytest.raises(ResponseError) as info:
        check_error_body(body, "data")
    assert "sk_live_51Hsecretvalue" not in str(info.value)
    assert "eyJhbGci0iJIUzI1" not in str(info.value)
    assert "rejected" in str(info.value)


def test_long_error_messages_are_cut():
    with pytest.raises(ResponseError) as info:
        check_error_body({"error": "x" * 5000}, "$")
    assert len(str(info.value)) < 400


def test_check_error_body_leaves_normal_bodies_alone():
    check_error_body({"data": [1]}, "data")
    check_error_body([{"error": "a record field, not an error body"}], "$")
    check_error_body({"status": "ok"}, "$")


def test_scalar_records_fail_unless_wrapped():
    with pytest.raises(ResponseError, match=r"record 1 at data path 'ids' is a JSON int.*wrap_scalars"):
        get_parser("records", data_path="ids").parse({"ids": [{"a": 1}, 2]})
    parser = get_parser("records", {"wrap_scalars": True}, data_path="ids")
    assert parser.parse({"ids": [1, "x", [2]]}) == [{"value": 1}, {"value": "x"}, {"value": [2]}]


# -- flatten ------------------------------------------------------------------------------


def test_flatten_default_separator_and_lists_stay_lists():
    rows = get_parser("flatten", data_path="data").parse({"data": [ISSUE]})
    assert rows == [{"id": 1, "user_login": "mona", "user_org_id": 9, "user_org_name": "acme",
                     "labels": ["bug"]}]


@pytest.mark.parametrize("options, expected", [
    ({"separator": "."}, {"id": 1, "user.login": "mona", "user.org.id": 9, "user.org.name": "acme",
                          "labels": ["bug"]}),
    ({"max_depth": 1}, {"id": 1, "user_login": "mona", "user_org": {"id": 9, "name": "acme"},
                        "labels": ["bug"]}),
    ({"max_depth": 0}, ISSUE),
    ({"separator": "__", "max_depth": 2}, {"id": 1, "user__login": "mona", "user__org__id": 9,
                                            "user__org__name": "acme", "labels": ["bug"]}),
])
def test_flatten_separator_and_depth(options, expected):
    assert get_parser("flatten", options).parse([ISSUE]) == [expected]


def test_flatten_keeps_empty_objects_and_lists_of_objects():
    record = {"meta": {}, "tags": [{"k": "v"}], "a": {"b": None}}
    assert flatten_record(record) == {"meta": {}, "tags": [{"k": "v"}], "a_b": None}


def test_flatten_collision_is_an_error_not_a_silent_overwrite():
    with pytest.raises(ResponseError, match="'a_b' occurs twice"):
        flatten_record({"a_b": 1, "a": {"b": 2}})


def test_flatten_also_checks_error_bodies():
    with pytest.raises(ResponseError, match="internal"):
        get_parser("flatten", data_path="data").parse({"error": {"code": 500, "message": "internal"}})


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, options, match", [
    ("records", {"explode": True}, r"parser_options\.explode: unknown option 'explode'.*known options: wrap_scalars"),
    ("records", {"wrap_scalars": "yes"}, r"'wrap_scalars'.*must be bool, got str"),
    ("flatten", {"separator": ""}, r"'separator'.*non-empty string"),
    ("flatten", {"max_depth": -1}, r"'max_depth'.*>= 0"),
    ("flatten", {"max_depth": True}, r"'max_depth'.*must be int, got bool"),
    ("flatten", {"data_path": "a..b"}, r"data_path: bad path segment"),
])
def test_bad_options_name_the_option(name, options, match):
    with pytest.raises(ValueError, match=match) as info:
        get_parser(name, options)
    assert isinstance(info.value, ConfigError)


def test_options_must_be_a_mapping():
    with pytest.raises(ParserConfigError, match="must be a mapping"):
        get_parser("records", ["wrap_scalars"])  # type: ignore[arg-type]


def test_data_path_argument_overrides_options_and_repr_is_useful():
    parser = get_parser("flatten", {"data_path": "x", "separator": "."}, data_path="data")
    assert isinstance(parser, FlattenParser) and parser.data_path == "data"
    assert repr(parser) == "FlattenParser(data_path='data', wrap_scalars=False, separator='.', max_depth=5)"
    assert repr(RecordsParser()) == "RecordsParser(data_path='$', wrap_scalars=False)"


# -- registry -----------------------------------------------------------------------------


def test_unknown_parser_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        get_parser("dynatrace", {})
    assert str(info.value) == ("parser: unknown parser 'dynatrace'; known parsers: "
                               "dynatrace_metrics, flatten, records")
    assert isinstance(info.value, ConfigError)


def test_register_a_parser_plugin():
    @register("upper_keys")
    class UpperKeys(RecordsParser):
        OPTIONS = {**RecordsParser.OPTIONS, "prefix": Option(str, "")}

        def parse(self, data: Any) -> list[dict[str, Any]]:
            return [{self.options["prefix"] + k.upper(): v for k, v in r.items()}
                    for r in super().parse(data)]

    try:
        assert "upper_keys" in known_parsers() and UpperKeys.name == "upper_keys"
        parser = get_parser("upper_keys", {"prefix": "x_"}, data_path="data")
        assert parser.parse({"data": [{"a": 1}]}) == [{"x_A": 1}]
    finally:
        unregister("upper_keys")
    assert "upper_keys" not in known_parsers()


def test_register_refuses_bad_names_classes_and_duplicates():
    with pytest.raises(ValueError, match="parser name must match"):
        register("Bad Name")
    with pytest.raises(ValueError, match="needs a Parser subclass"):
        register("thing")(dict)
    with pytest.raises(ValueError, match="already registered"):
        @register("records")
        class Other(Parser):
            pass


def test_base_parser_is_abstract():
    with pytest.raises(NotImplementedError):
        Parser().parse([])
