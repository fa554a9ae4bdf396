"""RowShaper.shape_page: a page of records to staged JSON lines (the per-record hot path).

A record whose fields all land unchanged in columns of their own names is staged as its
canonical JSON (the text its hash is computed from) plus the contract columns; every
other record goes through the general row builder. Both must stage the same rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from framework.load.fetch import stage_records
from framework.load.staging import RunStaging
from framework.schema import SEQ_COLUMN, ColumnType, RowShaper, SchemaTracker

UTC = dt.timezone.utc
W0, W1 = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
AT = dt.datetime(2024, 1, 1, 12, 30, tzinfo=UTC)


def page(shaper: RowShaper, records: list, seq: int = 0):
    return shaper.shape_page(records, run_id="run-1", window_start=W0, window_end=W1,
                             collected_at=AT, seq=seq)


def rows(shaped) -> list[dict]:
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in shaped.lines)
    return [json.loads(line) for line in shaped.lines]


def stdlib_hash(record: dict) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_a_verbatim_row_is_the_record_with_its_contract_columns() -> None:
    records = [{"id": 3, "title": "Zürich \"quoted\"", "user": {"login": "a", "id": 2},
                "labels": ["b", "a"], "score": 1.5, "open": True, "closed_at": None}]
    [row] = rows(page(RowShaper("github", ("id",)), records, seq=41))

    data = {k: v for k, v in row.items() if k in records[0]}
    assert data == records[0]
    assert row["payload_hash"] == stdlib_hash(records[0])
    assert row["entity_key"] == "3" and row[SEQ_COLUMN] == 42
    assert row["_rescued_data"] is None and row["source_system"] == "github"
    assert (row["_run_id"], row["collected_at_utc"]) == ("run-1", "2024-01-01T12:30:00.000000Z")
    assert (row["_window_start"], row["_window_end"]) == ("2024-01-01T00:00:00.000000Z",
                                                         "2024-01-02T00:00:00.000000Z")


def test_the_pinned_hash_holds_on_both_paths() -> None:
    pinned = hashlib.sha256(b'{"id":7,"name":"x"}').hexdigest()
    verbatim = rows(page(RowShaper("github", ("id",)), [{"name": "x", "id": 7}]))
    renamed = rows(page(RowShaper("github", ("id",)), [{"name": "x", "id": 7, "a.b": 1}]))

    assert verbatim[0]["payload_hash"] == pinned
    assert renamed[0]["payload_hash"] == stdlib_hash({"name": "x", "id": 7, "a.b": 1})
    assert renamed[0]["a_b"] == 1  # the general path renamed the column


def test_both_paths_stage_the_same_row_for_the_same_values() -> None:
    columns = {"id": ColumnType.LONG, "name": ColumnType.STRING, "score": ColumnType.DOUBLE,
               "labels": ColumnType.STRING, "at": ColumnType.TIMESTAMP}
    shaper = RowShaper("github", ("id",), columns=columns)
    values = {"id": 1, "name": "a", "score": 2.5, "labels": ["b", "a"]}
    # a timestamp text is parsed and re-encoded: that record takes the general path
    verbatim, general = rows(page(shaper, [values, {**values, "at": "2024-01-01T00:00:00Z"}]))

    assert [layout.direct for layout in shaper._layouts.values()] == [True, False]
    assert general.pop("at") == "2024-01-01T00:00:00.000000Z"
    # the direct row holds the nested value as JSON, the general row its text: the same
    # text once the staged rows are read into the string column
    assert verbatim.pop("labels") == ["b", "a"] and general.pop("labels") == '["b","a"]'
    for row in (verbatim, general):
        row.pop("payload_hash"), row.pop(SEQ_COLUMN)
    assert verbatim == general


def test_a_long_out_of_range_is_rescued_on_the_verbatim_path() -> None:
    shaper = RowShaper("github", ("id",), columns={"id": ColumnType.LONG, "n": ColumnType.LONG})
    first, second = rows(page(shaper, [{"id": 1, "n": 2}, {"id": 2, "n": 2 ** 63}]))

    assert first["n"] == 2 and first["_rescued_data"] is None
    assert "n" not in second and json.loads(second["_rescued_data"]) == {"n": 2 ** 63}
    assert shaper.retyped == {"n": ColumnType.STRING} and shaper.rescued_rows == 1


def test_rejected_records_keep_their_sequence_numbers_and_reasons() -> None:
    shaped = page(RowShaper("github", ("id",)), [{"id": 1}, {"x": 1}, "text", {"id": ""}, {"id": 5}])

    assert [r[SEQ_COLUMN] for r in rows(shaped)] == [1, 5]
    assert [str(reason) for reason, _ in shaped.rejects] == [
        "required field 'id' is missing", "record is a str, not a JSON object",
        "required field 'id' is null or empty"]
    assert [record for _, record in shaped.rejects] == [{"x": 1}, "text", {"id": ""}]


def test_layouts_change_within_a_page(tmp_path) -> None:
    records = [{"id": 1, "a": 1}, {"id": 2, "a": "x"}, {"a": None, "id": 3}, {"id": 4, "b.c": True}]
    staged = rows(page(RowShaper("github", ("id",)), records))

    assert [(r["id"], r.get("a"), r.get("b_c")) for r in staged] == [
        (1, 1, None), (2, "x", None), (3, None, None), (4, None, True)]
    assert [r["payload_hash"] for r in staged] == [stdlib_hash(r) for r in records]


def test_staged_files_and_schema_tracker_see_every_row(tmp_path) -> None:
    stage = RunStaging(tmp_path, "c", "r").window(0)
    shaper = RowShaper("github", ("id",))
    last = stage_records([{"id": 1, "big": 5, "user": {"id": 1}}, {"id": 2, "big": 2 ** 70, "user": {"id": 2}},
                          {"id": 3, "x-y": 1.5}, {"nope": 1}],
                         shaper, stage, run_id="r", window_start=W0, window_end=W1,
                         collected_at=AT, seq=0)
    stage.close()

    assert last == 4 and (stage.rows, stage.rejected) == (3, 1)
    lines = [json.loads(line) for p in stage.files for line in p.read_text().splitlines()]
    assert [r["id"] for r in lines] == [1, 2, 3] and lines[1]["big"] == 2 ** 70
    # an int beyond a long makes its column text, a nested object text, a double stays one
    assert stage.tracker.resolved() == {"id": ColumnType.LONG, "big": ColumnType.STRING,
                                        "user": ColumnType.STRING, "x_y": ColumnType.DOUBLE}
    [reject] = [json.loads(line) for line in stage.quarantine_file.read_text().splitlines()]
    assert reject["raw_payload"] == '{"nope":1}' and "id" in reject["reason"]


# --- which pages prove their keys distinct (ShapedPage.keys) ------------------------------

def test_keys_staged_as_they_came_are_hashed_per_row_on_both_paths() -> None:
    records = [{"id": 1, "org": "a"}, {"id": 2, "org": "a"}, {"id": 2, "org": "b", "x.y": 1}]
    shaped = page(RowShaper("github", ("id", "org")), records)

    assert shaped.keys == [hash("1|a"), hash("2|a"), hash("2|b")]  # the third: general path
    assert page(RowShaper("github", ("id",)), [{"id": "k1"}]).keys == [hash("k1")]
    assert page(RowShaper("github"), [{"id": 1}]).keys is None  # no primary key


def test_keys_that_spark_could_equate_or_change_prove_nothing() -> None:
    def keys(records, columns=None, primary_key=("id",)):
        return page(RowShaper("github", primary_key, columns=columns), records).keys

    # one float makes the column double, where 1 and 1.0 are one key; bools and nested
    # values are written by Spark otherwise than str() writes them
    assert keys([{"id": 1}, {"id": 1.5}]) is None
    assert keys([{"id": True}]) is None
    assert keys([{"id": {"a": 1}}]) is None
    # converted or taken out by the target's column type
    assert keys([{"id": 1}], columns={"id": ColumnType.DOUBLE}) is None
    # refused (a key value its column cannot hold): no row, nothing to prove
    assert keys([{"id": "1"}], columns={"id": ColumnType.LONG}) == []
    assert keys([{"id": 2 ** 64}], columns={"id": ColumnType.LONG}) == []
    assert keys([{"id": "2024-01-01T00:00:00Z"}], columns={"id": ColumnType.TIMESTAMP}) is None
    # the key field takes its own column over a case variant sent before it
    assert keys([{"ID": 1, "id": 2}]) == [hash("2")]
    # fitting columns keep the proof
    assert keys([{"id": 7}], columns={"id": ColumnType.LONG}) == [hash("7")]
    assert keys([{"id": "7"}], columns={"id": ColumnType.STRING}) == [hash("7")]


def test_a_row_into_a_target_is_the_records_canonical_json_as_in_a_first_load(tmp_path) -> None:
    """Records into a target whose string columns take nested values and whose double
    columns take ints: each row is staged as a first load stages it, the record's
    canonical JSON and the contract columns (the staged rows' reader makes the nested
    values JSON text and the ints doubles: tests/integration/test_staged_values.py)."""
    from framework.schema import canonical_json_bytes

    columns = {"id": ColumnType.LONG, "labels": ColumnType.STRING, "user": ColumnType.STRING,
               "score": ColumnType.DOUBLE, "name": ColumnType.STRING, "n": ColumnType.LONG}
    records = [
        {"id": 1, "labels": ["b", "a"], "user": {"z": 1, "a": "é\"x"}, "score": 2, "name": "x", "n": None},
        {"id": 2, "labels": [], "user": {"id": 2 ** 62, "f": 1.5}, "score": 7, "name": "", "n": -3},
        {"id": 3, "labels": [{"k": [1, None]}], "user": {}, "score": 0, "name": "ü", "n": 2 ** 63 - 1},
    ]
    lines = {}
    for target in (None, columns):
        shaper = RowShaper("github", ("id",), columns=target)
        stage = RunStaging(tmp_path, "p", f"r{len(lines)}").window(0)
        stage_records(records, shaper, stage, run_id="r", window_start=W0, window_end=W1,
                      collected_at=AT, seq=0)
        stage.close()
        lines[target is None] = [line for p in stage.files for line in p.read_bytes().splitlines()]
        assert all(layout.direct for layout in shaper._layouts.values())
        assert stage.key_hashes is not None and len(stage.key_hashes) == 3

    assert lines[False] == lines[True]
    for record, line in zip(records, lines[False], strict=True):
        assert line.startswith(canonical_json_bytes(record)[:-1] + b",")
        row = json.loads(line)
        assert {k: row[k] for k in record} == record
        assert row["payload_hash"] == stdlib_hash(record) and row["_rescued_data"] is None
        assert row["entity_key"] == str(record["id"])


# A primary-key value that did not fit its column went to _rescued_data like any other
# field: the key column was null, the MERGE (joining on it) matched nothing, and every
# delivery of that key inserted another row.
def test_a_key_value_a_string_key_column_can_hold_is_stored_as_its_text() -> None:
    shaper = RowShaper("sys", primary_key=("id",),
                       columns={"id": ColumnType.STRING, "status": ColumnType.STRING})
    shaped = page(shaper, [{"id": 7, "status": "new"}, {"id": "A-1", "status": "new"}])
    assert [(r["id"], r["_rescued_data"], r["entity_key"]) for r in rows(shaped)] == [
        ("7", None, "7"), ("A-1", None, "A-1")]
    assert shaper.rescued_rows == 0 and not shaper.retyped


def test_a_key_value_its_column_cannot_hold_is_rejected_naming_the_field() -> None:
    shaper = RowShaper("sys", primary_key=("id",),
                       columns={"id": ColumnType.LONG, "status": ColumnType.STRING})
    shaped = page(shaper, [{"id": "A-1", "status": "new"}, {"id": 2 ** 70, "status": "big"},
                           {"id": 5, "status": "ok"}])
    assert [(r["id"], r["_rescued_data"]) for r in rows(shaped)] == [(5, None)]
    reasons = [str(reason) for reason, _ in shaped.rejects]
    assert len(reasons) == 2 and all("primary_key field 'id'" in r for r in reasons), reasons
    assert "column id" in reasons[0] and "long" in reasons[0], reasons


def test_a_key_value_re_shaped_at_the_write_is_kept_in_its_column() -> None:
    from framework.schema import reshape

    row = {"id": 7, "status": "new", "_rescued_data": None, "payload_hash": "h"}
    out = reshape(row, {"id": ColumnType.STRING, "status": ColumnType.STRING}, "rescue", set(),
                  keys=frozenset({"id"}))
    assert out["id"] == "7" and out["_rescued_data"] is None


def test_integers_a_double_column_cannot_hold_exactly_are_rescued_on_both_paths() -> None:
    # a double holds every integer up to 2**53 - 1; beyond, float() drops digits silently
    shaper = RowShaper("github", ("id",), columns={"id": ColumnType.LONG, "x": ColumnType.DOUBLE})
    safe, wide, general, huge = rows(page(shaper, [
        {"id": 1, "x": 2 ** 53 - 1}, {"id": 2, "x": 2 ** 53 + 1},
        {"id": 3, "x": -(2 ** 60) - 3, "new": 1}, {"id": 4, "x": 10 ** 400, "new": 2}]))

    assert safe["x"] == 2 ** 53 - 1 and safe["_rescued_data"] is None
    assert "x" not in wide and json.loads(wide["_rescued_data"]) == {"x": 2 ** 53 + 1}
    assert "x" not in general and json.loads(general["_rescued_data"]) == {"new": 1, "x": -(2 ** 60) - 3}
    assert "x" not in huge and json.loads(huge["_rescued_data"]) == {"new": 2, "x": 10 ** 400}
    assert shaper.retyped == {"x": ColumnType.STRING} and shaper.rescued_rows == 3
    # the hash is the record's, as always
    assert wide["payload_hash"] == stdlib_hash({"id": 2, "x": 2 ** 53 + 1})


def test_a_wide_integer_is_reported_as_a_long_that_its_double_column_misses() -> None:
    shaper = RowShaper("github", ("id",), columns={"id": ColumnType.LONG, "x": ColumnType.DOUBLE})
    rows(page(shaper, [{"id": 1, "x": 2.5}, {"id": 2, "x": 2 ** 62}]))
    assert shaper.retyped == {"x": ColumnType.LONG} and shaper.rescued_rows == 1


def test_the_tracker_marks_columns_whose_integers_a_double_cannot_hold() -> None:
    tracker = SchemaTracker()
    for row in ({"a": 1.5, "b": 1}, {"a": 2 ** 53 - 1, "b": 2}, {"a": 3, "b": 2 ** 53}):
        tracker.observe(row)
    assert tracker.resolved() == {"a": ColumnType.DOUBLE, "b": ColumnType.LONG}
    assert tracker.wide == {"b"}
    tracker.observe({"a": -(2 ** 53), "b": 3})
    assert tracker.wide == {"a", "b"}
    other = SchemaTracker()
    other.merge(tracker)
    assert other.wide == {"a", "b"}


def test_a_key_value_its_column_cannot_hold_is_refused_naming_why() -> None:
    """A primary-key value is never rescued (the MERGE joins on its column): the record is
    rejected with the field, its column and what the column cannot hold."""
    for ctype, value, why in (
            (ColumnType.LONG, 2 ** 63, "is beyond its column id (long)"),
            (ColumnType.DOUBLE, 2 ** 53, "is an integer its column id (double) cannot hold exactly"),
            (ColumnType.TIMESTAMP, "not a time", "is not a timestamp its column id can hold")):
        shaper = RowShaper("github", ("id",), columns={"id": ctype, "name": ColumnType.STRING})
        shaped = page(shaper, [{"id": value, "name": "a"}])
        assert shaped.lines == []
        [(reason, record)] = shaped.rejects
        assert str(reason) == f"primary_key field 'id' {why}" and record["id"] == value
