"""framework.schema: shaping records into target rows (rescue / evolve / fail, contract columns)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from framework.errors import RecordRejected, SchemaDriftError, WindowError
from framework.schema import (CONTRACT_COLUMNS, RESERVED, SEQ_COLUMN, ColumnType, RowShaper, SchemaTracker,
                              canonical_json, column_name, data_columns, encode, fits, infer_type,
                              merge_types, payload_hash, reshape)

UTC = dt.timezone.utc
W0, W1 = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
AT = dt.datetime(2024, 1, 1, 12, 30, tzinfo=UTC)
COLUMNS = {"id": ColumnType.LONG, "name": ColumnType.STRING, "score": ColumnType.DOUBLE,
           "active": ColumnType.BOOLEAN, "updated_at": ColumnType.TIMESTAMP}


def shape(shaper: RowShaper, record: object, seq: int = 1) -> dict:
    return shaper.shape(record, run_id="run-1", window_start=W0, window_end=W1, collected_at=AT,
                        seq=seq)


def shaper(**kw: object) -> RowShaper:
    kw.setdefault("columns", dict(COLUMNS))
    return RowShaper("github", **kw)  # type: ignore[arg-type]


def rescued(row: dict) -> dict:
    return json.loads(row["_rescued_data"]) if row["_rescued_data"] else {}


# ------------------------------------------------------------------ rescue / evolve / fail
def test_known_fields_land_in_their_columns() -> None:
    row = shape(shaper(), {"id": 1, "name": "a", "score": 2, "active": True,
                           "updated_at": "2024-01-01T01:00:00+01:00"})

    assert (row["id"], row["name"], row["score"], row["active"]) == (1, "a", 2.0, True)
    assert isinstance(row["score"], float)
    assert row["updated_at"] == "2024-01-01T00:00:00.000000Z"
    assert row["_rescued_data"] is None


def test_unknown_field_is_rescued() -> None:
    s = shaper()
    row = shape(s, {"id": 1, "colour": "red"})

    assert "colour" not in row
    assert rescued(row) == {"colour": "red"}
    assert s.new_fields == {"colour"} and s.rescued_rows == 1


def test_type_change_is_rescued() -> None:
    s = shaper()
    row = shape(s, {"id": "abc", "name": "a"})

    assert "id" not in row
    assert rescued(row) == {"id": "abc"}
    assert s.new_fields == set() and s.rescued_rows == 1


def test_long_out_of_range_is_rescued() -> None:
    row = shape(shaper(), {"id": 2 ** 63})
    assert "id" not in row and rescued(row) == {"id": 2 ** 63}


def test_bad_timestamp_text_is_rescued() -> None:
    row = shape(shaper(), {"id": 1, "updated_at": "yesterday"})
    assert "updated_at" not in row and rescued(row) == {"updated_at": "yesterday"}


def test_evolve_keeps_the_new_field() -> None:
    s = shaper(schema_mode="evolve")
    row = shape(s, {"id": 1, "colour": "red"})

    assert row["colour"] == "red" and row["_rescued_data"] is None
    assert s.new_fields == {"colour"}


def test_fail_raises_schema_drift() -> None:
    with pytest.raises(SchemaDriftError, match="'colour' is not in the target table"):
        shape(shaper(schema_mode="fail"), {"id": 1, "colour": "red"})


def test_fail_accepts_known_fields() -> None:
    assert shape(shaper(schema_mode="fail"), {"id": 1})["id"] == 1


def test_without_a_schema_every_key_is_a_column() -> None:
    row = shape(RowShaper("gh"), {"id": 1, "user.login": "x", "9lives": True, "meta": {"a": 1}})

    assert (row["id"], row["user_login"], row["_9lives"]) == (1, "x", True)
    assert row["meta"] == {"a": 1}  # encoded once the target schema is known (see reshape)
    assert row["_rescued_data"] is None


# ------------------------------------------------------------------ rejects
@pytest.mark.parametrize("record,why", [({"name": "a"}, "is missing"), ({"id": None}, "is null or empty"),
                                        ({"id": ""}, "is null or empty")])
def test_missing_required_field_is_rejected(record: dict, why: str) -> None:
    with pytest.raises(RecordRejected) as info:
        shape(shaper(required_fields=("id",)), record)
    assert info.value.field == "id" and f"required field 'id' {why}" in str(info.value)


def test_missing_primary_key_field_is_rejected() -> None:
    with pytest.raises(RecordRejected, match="'b'"):
        shape(shaper(primary_key=("a", "b")), {"a": 1})


def test_zero_and_false_are_present_values() -> None:
    row = shape(shaper(required_fields=("id", "active")), {"id": 0, "active": False})
    assert row["id"] == 0 and row["active"] is False


@pytest.mark.parametrize("record", [[1, 2], "text", 5, None])
def test_non_object_record_is_rejected(record: object) -> None:
    with pytest.raises(RecordRejected, match="not a JSON object"):
        shape(shaper(), record)


# ------------------------------------------------------------------ contract columns
def test_contract_and_lineage_columns() -> None:
    record = {"id": 7, "name": "x"}
    row = shape(shaper(primary_key=("id",)), record, seq=42)

    assert row["source_system"] == "github"
    assert row["collected_at_utc"] == "2024-01-01T12:30:00.000000Z"
    assert row["payload_hash"] == hashlib.sha256(b'{"id":7,"name":"x"}').hexdigest()
    assert row["entity_key"] == "7"
    assert (row["_run_id"], row[SEQ_COLUMN]) == ("run-1", 42)
    assert row["_window_start"] == "2024-01-01T00:00:00.000000Z"
    assert row["_window_end"] == "2024-01-02T00:00:00.000000Z"
    assert set(CONTRACT_COLUMNS) <= set(row)


def test_payload_hash_ignores_key_order() -> None:
    a = {"id": 1, "tags": ["x", "y"], "user": {"login": "a", "id": 2}}
    b = {"user": {"id": 2, "login": "a"}, "tags": ["x", "y"], "id": 1}
    assert payload_hash(a) == payload_hash(b)
    assert payload_hash(a) != payload_hash({**a, "tags": ["y", "x"]})


def test_payload_hash_is_of_the_original_record_not_the_shaped_row() -> None:
    record = {"id": 1, "colour": "red"}
    assert shape(shaper(), record)["payload_hash"] == payload_hash(record)


def test_composite_entity_key() -> None:
    row = shape(shaper(primary_key=("account", "id")), {"account": "acme", "id": 3})
    assert row["entity_key"] == "acme|3"


def test_entity_key_without_primary_key_is_the_payload_hash() -> None:
    row = shape(shaper(), {"id": 1})
    assert row["entity_key"] == row["payload_hash"]


# ------------------------------------------------------------------ names and nesting
def test_case_insensitive_collision_is_rescued() -> None:
    row = shape(RowShaper("gh"), {"id": 1, "ID": 2})
    assert row["id"] == 1 and "ID" not in row
    assert rescued(row) == {"ID": 2}


def test_case_insensitive_match_with_the_target_schema() -> None:
    row = shape(shaper(), {"Name": "a", "NAME": "b"})
    assert row["name"] == "a" and rescued(row) == {"NAME": "b"}


def test_the_field_spelled_as_its_column_wins_it_over_a_case_variant_sent_before_it() -> None:
    # {"ID": 99, "id": 5}: the column id holds 5, the record's key, whatever the key order;
    # the variant is rescued and reported as new
    s = shaper(primary_key=("id",))
    row = shape(s, {"ID": 99, "Name": "variant", "id": 5, "name": "a"})
    assert (row["id"], row["name"], row["entity_key"]) == (5, "a", "5")
    assert "ID" not in row and "Name" not in row
    assert rescued(row) == {"ID": 99, "Name": "variant"}
    assert s.new_fields == {"ID", "Name"}


def test_new_fields_are_reported_with_the_payload_keys_their_columns_stand_for() -> None:
    s = shaper(primary_key=("id",))
    shape(s, {"id": 1, "ü": 1, "é": 2, "Has Space": 3, "ID": 4, "priority": "high"})
    assert s.new_fields == {"_", "Has_Space", "ID", "priority"}
    assert s.new_keys == {"_": {"ü", "é"}, "Has_Space": {"Has Space"}, "ID": {"ID"},
                          "priority": {"priority"}}


def test_on_a_first_load_a_declared_field_wins_its_column_over_a_case_variant() -> None:
    s = shaper(primary_key=("id",), required_fields=("user.login",), columns=None)
    row = shape(s, {"ID": 99, "User.Login": "variant", "id": 5, "user.login": "mona"})
    assert (row["id"], row["user_login"], row["entity_key"]) == (5, "mona", "5")
    assert rescued(row) == {"ID": 99, "User.Login": "variant"}
    assert s.new_fields == set()  # a first load says nothing about drift
    # a declared field as written wins over another key making the same column
    s = shaper(primary_key=("id",), required_fields=("a.b",), columns=None)
    row = shape(s, {"a_b": "other", "a.b": "declared", "id": 1})
    assert row["a_b"] == "declared" and rescued(row) == {"a_b": "other"}


def test_reserved_names_are_rescued() -> None:
    row = shape(shaper(), {"id": 1, "payload_hash": "fake", "_seq": 9})
    assert rescued(row) == {"payload_hash": "fake", "_seq": 9}
    assert row["payload_hash"] != "fake" and row[SEQ_COLUMN] == 1


def test_a_nested_value_for_a_string_column_is_staged_as_canonical_json() -> None:
    """Staged as the record has it, inside the record's canonical JSON: the staged rows'
    reader turns it into that JSON text (tests/integration/test_staged_values.py); a row
    the general path builds (here: a field rescued) holds the same text already."""
    for value, text in (({"last": "L", "first": "Ada"}, b'"name":{"first":"Ada","last":"L"}'),
                        (["b", "a"], b'"name":["b","a"]')):
        direct = shaper().shape_page([{"name": value}], run_id="r", window_start=W0,
                                     window_end=W1, collected_at=AT, seq=0)
        assert text in direct.lines[0]
        assert json.loads(direct.lines[0])["name"] == value
        general = shape(shaper(), {"name": value, "unknown": 1})
        assert general["name"] == text.decode().split(":", 1)[1]


def test_column_name() -> None:
    assert column_name("user.login") == "user_login"
    assert column_name("a-b c") == "a_b_c"
    assert column_name("1st") == "_1st"
    assert column_name("") == "_"
    assert len(column_name("x" * 300)) == 255


# ------------------------------------------------------------------ reshape
def test_reshape_an_open_staged_row_against_a_schema() -> None:
    open_row = shape(RowShaper("gh"), {"id": 1, "name": {"a": 1}, "score": "high", "Active": True,
                                       "extra": [1]})
    new_fields: set[str] = set()

    out = reshape(open_row, COLUMNS, "rescue", new_fields)

    assert out["id"] == 1
    assert out["name"] == '{"a":1}'
    assert out["active"] is True  # matched case-insensitively
    assert "score" not in out and "extra" not in out
    assert rescued(out) == {"score": "high", "extra": [1]}
    assert new_fields == {"extra"}
    for name in ("payload_hash", "entity_key", "source_system", "_run_id", SEQ_COLUMN):
        assert out[name] == open_row[name]


def test_reshape_keeps_earlier_rescued_data() -> None:
    open_row = shape(RowShaper("gh"), {"id": 1, "ID": 2})
    out = reshape(open_row, {"id": ColumnType.LONG}, "rescue", set())
    assert out["id"] == 1 and rescued(out) == {"ID": 2}


def test_reshape_fail_mode_raises() -> None:
    open_row = shape(RowShaper("gh"), {"id": 1, "colour": "red"})
    with pytest.raises(SchemaDriftError, match="'colour'"):
        reshape(open_row, {"id": ColumnType.LONG}, "fail", set())


# ------------------------------------------------------------------ types
@pytest.mark.parametrize("value,ctype", [
    (None, None), (True, ColumnType.BOOLEAN), (5, ColumnType.LONG), (2 ** 64, ColumnType.STRING),
    (1.5, ColumnType.DOUBLE), ("x", ColumnType.STRING), ({"a": 1}, ColumnType.STRING),
    (AT, ColumnType.TIMESTAMP),
])
def test_infer_type(value: object, ctype: ColumnType | None) -> None:
    assert infer_type(value) == ctype


def test_merge_types() -> None:
    assert merge_types(None, ColumnType.LONG) == ColumnType.LONG
    assert merge_types(ColumnType.LONG, ColumnType.DOUBLE) == ColumnType.DOUBLE
    assert merge_types(ColumnType.LONG, ColumnType.BOOLEAN) == ColumnType.STRING
    assert merge_types(ColumnType.STRING, None) == ColumnType.STRING


@pytest.mark.parametrize("value,ctype,ok", [
    (True, ColumnType.LONG, False), (True, ColumnType.DOUBLE, False), (1, ColumnType.BOOLEAN, False),
    (3, ColumnType.DOUBLE, True), (3.5, ColumnType.LONG, False), (5, ColumnType.STRING, False),
    ("2024-01-01T00:00:00Z", ColumnType.TIMESTAMP, True), ("May", ColumnType.TIMESTAMP, False),
    (1704067200, ColumnType.TIMESTAMP, False), (None, ColumnType.LONG, True),
])
def test_fits(value: object, ctype: ColumnType, ok: bool) -> None:
    assert fits(value, ctype) is ok


def test_encode() -> None:
    assert encode(3, ColumnType.DOUBLE) == 3.0 and isinstance(encode(3, ColumnType.DOUBLE), float)
    assert encode(None, ColumnType.TIMESTAMP) is None
    assert encode([1, {"b": 2, "a": 1}], ColumnType.STRING) == '[1,{"a":1,"b":2}]'


def test_schema_tracker_merges_types_and_skips_reserved() -> None:
    a, b = SchemaTracker(), SchemaTracker()
    a.observe({"id": 1, "x": None, "payload_hash": "h"})
    a.observe({"id": 2.5})
    b.observe({"id": "z", "y": True})

    assert a.resolved() == {"id": ColumnType.DOUBLE, "x": ColumnType.STRING}
    a.merge(b)
    assert a.resolved() == {"id": ColumnType.STRING, "x": ColumnType.STRING, "y": ColumnType.BOOLEAN}


def _reference_types(rows: list[dict]) -> dict:
    """Column types by inferring and merging every value, one at a time."""
    out: dict = {}
    for row in rows:
        for key, value in row.items():
            if key in RESERVED:
                continue
            out[key] = merge_types(out[key], infer_type(value)) if key in out else infer_type(value)
    return {k: v or ColumnType.STRING for k, v in out.items()}


def test_schema_tracker_sees_what_differs_in_rows_of_one_shape() -> None:
    rows = [{"id": 1, "n": 2, "s": "a"}] * 3 + [
        {"id": 2, "n": 2 ** 63, "s": "b"},      # same keys and types, an int out of range
        {"id": 3, "n": 4, "s": None},           # a null where a string was
        {"id": 4, "n": 5, "s": 1.5},            # same keys, another type
        {"s": "c", "id": 5, "n": 6},            # another key order
    ]
    tracker = SchemaTracker()
    for i, row in enumerate(rows):
        tracker.observe(row)
        assert tracker.resolved() == _reference_types(rows[: i + 1]), i
    assert tracker.resolved()["n"] == ColumnType.STRING


def test_schema_tracker_equals_per_value_inference_on_random_rows() -> None:
    import random

    rng = random.Random(5)
    pool = [None, True, 0, -(2 ** 63), 2 ** 63, 1.5, "x", {"a": 1}, [1]]
    rows = [{k: rng.choice(pool) for k in rng.sample("abcd", rng.randint(1, 4))}
            for _ in range(400)]
    tracker = SchemaTracker()
    for i, row in enumerate(rows):
        tracker.observe(row)
        if i % 20 == 19:
            assert tracker.resolved() == _reference_types(rows[: i + 1]), i


def test_data_columns_drops_contract_columns() -> None:
    cols = data_columns([("id", ColumnType.LONG), ("payload_hash", ColumnType.STRING),
                         (SEQ_COLUMN, ColumnType.LONG)])
    assert cols == {"id": ColumnType.LONG}


def test_canonical_json_handles_datetimes() -> None:
    assert canonical_json({"b": AT, "a": dt.date(2024, 1, 1)}) == \
        '{"a":"2024-01-01","b":"2024-01-01T12:30:00Z"}'


def test_values_that_no_longer_fit_their_column_are_reported_as_retyped() -> None:
    s = RowShaper("s", columns={"id": ColumnType.LONG, "n": ColumnType.LONG,
                                "when": ColumnType.TIMESTAMP})
    for record in ({"id": 1, "n": 2}, {"id": 2, "n": "two"}, {"id": 3, "n": 2.5, "when": "soon"}):
        shape(s, record)
    assert s.retyped == {"n": ColumnType.STRING, "when": ColumnType.STRING}
    assert s.rescued_rows == 2
    fine = shaper()
    shape(fine, {"id": 1, "score": 3})  # an int in a double column fits
    assert fine.retyped == {}


# ------------------------------------------------------------- field names and columns
@pytest.mark.parametrize("named", ["ext-id", "ext_id"])
def test_key_and_required_names_match_the_field_through_its_column(named: str) -> None:
    s = shaper(columns=None, primary_key=(named,), required_fields=("user.login",))
    row = shape(s, {"ext-id": 7, "user.login": "mona"})

    assert row["ext_id"] == 7 and row["user_login"] == "mona" and row["entity_key"] == "7"
    with pytest.raises(RecordRejected, match="required field 'user.login' is null or empty"):
        shape(s, {"ext-id": 8, "user.login": None})
    with pytest.raises(RecordRejected, match=f"required field '{named}' is missing"):
        shape(s, {"user.login": "x"})


def test_a_key_field_the_records_lack_fails_the_window_naming_the_fields_seen() -> None:
    s = shaper(columns=None, primary_key=("uid",))
    s.check_keys([])  # an empty page says nothing
    with pytest.raises(WindowError) as info:
        s.check_keys([{"id": 1, "title": "a"}, {"id": 2, "extra": True}])
    assert str(info.value) == ("primary_key field uid is not in the parsed records "
                               "(fields seen: id, title, extra)")


def test_key_check_passes_once_a_page_has_the_keys() -> None:
    s = shaper(columns=None, primary_key=("a", "b-c"))
    s.check_keys([{"a": 1}, {"b_c": 2}])  # every key is in some record of the page
    s.check_keys([{"z": 1}])  # later pages: records lacking a key are rejected one by one


def test_non_finite_numbers_keep_their_token_in_the_canonical_json() -> None:
    from framework.http.client import parse_json
    from framework.schema import payload_hash

    record = parse_json(b'{"b": NaN, "a": [Infinity, -Infinity], "c": 1.5}')
    assert canonical_json(record) == '{"a":[Infinity,-Infinity],"b":NaN,"c":1.5}'
    assert payload_hash(record) != payload_hash({**record, "b": None})
    # the same text with an integer that takes the other encoder
    assert canonical_json({**record, "d": 2 ** 64}).startswith('{"a":[Infinity,-Infinity],"b":NaN')


def test_reserved_names_in_another_case_are_rescued() -> None:
    # Delta's column names ignore case: a record's "Source_System" or "_RUN_ID" took a data
    # column of that spelling beside restlake's own, and the write failed on a duplicate
    # column at every run (first load and existing target alike).
    for columns in (dict(COLUMNS), None):
        row = shape(shaper(columns=columns), {"id": 1, "Source_System": "fake", "_RUN_ID": "x",
                                              "Payload-Hash": "h"})
        assert rescued(row) == {"Source_System": "fake", "_RUN_ID": "x", "Payload-Hash": "h"}
        assert not {"Source_System", "_RUN_ID", "Payload_Hash"} & set(row)
        assert row["source_system"] == "github" and row["_run_id"] == "run-1"
