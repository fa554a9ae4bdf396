"""The compiled direct path of RowShaper.shape_page (framework/native) against its Python twin.

Every page is shaped twice, by fresh shapers of the same settings: once with the compiled
path and once without it. The staged lines, the rejected records and their reasons, the
key hashes, what the schema tracker is handed and the shaper's drift state must be the
same, byte for byte, whatever the page holds.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sysconfig
from pathlib import Path

import orjson
import pytest

import framework.native
import framework.schema as schema
from framework.schema import ColumnType, RowShaper, SchemaTracker

UTC = dt.timezone.utc
W0, W1 = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
AT = dt.datetime(2024, 1, 1, 12, 30, tzinfo=UTC)

compiled = pytest.mark.skipif(not framework.native.available(),
                              reason="the compiled shaping path is not built here")


def _buildable() -> bool:
    include = Path(sysconfig.get_paths()["include"])
    return (shutil.which(sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var("CC")
                         else "cc") is not None
            and (include / "Python.h").exists() and Path("/usr/include/openssl/sha.h").exists())


@pytest.mark.skipif(os.environ.get("RESTLAKE_NATIVE", "1") == "0",
                    reason="the compiled path is switched off here")
def test_the_compiled_path_is_built_where_it_can_be() -> None:
    """An install from source on a machine with a C compiler and OpenSSL's headers builds
    it (a build that silently fell back would cost every load its speed)."""
    if not _buildable():
        pytest.skip("no C compiler or OpenSSL headers here")
    assert framework.native.available()


def shape_both(records: list, *, seq: int = 0, rounds: int = 2, **settings):
    """Shape ``records`` ``rounds`` times (layouts planned in the first) on each path."""
    out = []
    for native in (framework.native.shape_direct, None):
        saved = schema.native_shape_direct
        schema.native_shape_direct = native
        try:
            shaper = RowShaper("github", **settings)
            pages = [shaper.shape_page(list(records), run_id="run-1", window_start=W0,
                                       window_end=W1, collected_at=AT, seq=seq)
                     for _ in range(rounds)]
        finally:
            schema.native_shape_direct = saved
        out.append((shaper, pages))
    return out


def assert_same(records: list, **settings) -> list:
    (fast, fast_pages), (slow, slow_pages) = shape_both(records, **settings)
    for a, b in zip(fast_pages, slow_pages):
        assert a.lines == b.lines
        assert a.keys == b.keys
        assert [(str(r), rec) for r, rec in a.rejects] == [(str(r), rec) for r, rec in b.rejects]
        # what the schema tracker makes of the page: the same columns and types
        tracked = []
        for shaped in (a, b):
            tracker = SchemaTracker()
            tracker.observe_all(shaped.observed)
            tracked.append((list(tracker.columns.items()), sorted(tracker.wide)))
        assert tracked[0] == tracked[1]
    assert (fast.new_fields, fast.new_keys, fast.rescued_rows, fast.retyped) == \
        (slow.new_fields, slow.new_keys, slow.rescued_rows, slow.retyped)
    return fast_pages[0].lines


BASE = {"id": 1, "number": 7, "title": "Fix retry", "state": "open", "closed_at": None,
        "labels": ["api", "bug"], "user": {"login": "dennis-r", "id": 1941},
        "created_at": "2023-12-25T02:34:47Z", "score": 43.36, "draft": False}
COLUMNS = {"id": ColumnType.LONG, "number": ColumnType.LONG, "title": ColumnType.STRING,
           "state": ColumnType.STRING, "closed_at": ColumnType.TIMESTAMP,
           "labels": ColumnType.STRING, "user": ColumnType.STRING,
           "created_at": ColumnType.STRING, "score": ColumnType.DOUBLE,
           "draft": ColumnType.BOOLEAN}


def variants() -> list:
    """Records of one page that exercise every way out of the direct path and back."""
    page = [dict(BASE, id=i, score=i / 3) for i in range(1, 6)]
    page += [
        dict(BASE, id=6, closed_at="2024-01-01T00:00:00Z"),  # timestamp text: general path
        dict(BASE, id=7, number=2 ** 63),  # a long out of range: rescued
        dict(BASE, id=8, number=-2 ** 63),  # the edge of the range: direct
        dict(BASE, id=9, number=2 ** 70),  # beyond 64 bits: the canonical fallback
        dict(BASE, id=10, title=None),
        {k: v for k, v in BASE.items() if k != "state"} | {"id": 11},  # a field left out
        dict(BASE, id=12, extra="new field"),
        dict(reversed(list(dict(BASE, id=13).items()))),  # another key order
        dict(BASE, id=14, score=3),  # an int into a double column
        dict(BASE, id=15, draft="no"),  # a misfit: rescued
        dict(BASE, id=16, title="Zürich \"quoted\" \\ \x01 \u2028 😀"),
        "not an object",
        None,
        {},
        dict(BASE, id=None),  # a null key: rejected
        dict(BASE, id=""),  # an empty key: rejected
        {k: v for k, v in BASE.items() if k != "id"},  # no key: rejected
        dict(BASE, id="17"),  # a key as text
        dict(BASE, id=True),  # a boolean key
        dict(BASE, id=1.5),  # a float key
        dict(BASE, id=18, user={"b": 1, "a": [1, {"d": None, "c": 2}]}),
        dict(BASE, id=19, ID=20),  # a case variant of the key field
        dict(BASE, id=21, **{"a.b": 1}),  # a field renamed into its column
        dict(BASE, id=22, number=True),  # a bool in a long column
        dict(BASE, id=2 ** 64),  # a key beyond its column
        dict(BASE, id=23, comments=2 ** 63),  # an int beyond a long in a new field
        dict(BASE, id=24, comments=1),
        dict(BASE, id=25, comments=-2 ** 63 - 1),
        dict(BASE, id=26, comments=2),
    ]
    page += [dict(BASE, id=100 + i) for i in range(5)]
    return page


@compiled
@pytest.mark.parametrize("columns", [None, COLUMNS], ids=["first-load", "into-target"])
@pytest.mark.parametrize("settings", [
    {"primary_key": ("id",)},
    {"primary_key": ("id", "number")},
    {},
    {"primary_key": ("id",), "required_fields": ("title",)},
    {"primary_key": ("ID",)},
    {"primary_key": ("id",), "schema_mode": "evolve"},
], ids=["key", "composite", "keyless", "required", "key-case", "evolve"])
def test_every_page_variant_is_staged_alike_on_both_paths(settings, columns) -> None:
    records = variants()
    lines = assert_same(records, columns=columns, **settings)
    assert lines  # something was staged
    # and the page in other orders: each way out of the direct path leads back into it
    assert_same(list(reversed(records)), columns=columns, **settings)
    assert_same(records[5:] + records[:5], columns=columns, seq=1000, **settings)


@compiled
@pytest.mark.parametrize("big", [2 ** 63, -2 ** 63 - 1, 2 ** 64 - 1])
def test_an_int_beyond_a_long_within_a_run_of_one_layout_reaches_the_schema_tracker(big) -> None:
    """The compiled path gives the tracker one row of a run of one layout, and every row
    whose ints do not all fit a long: the column's type must come out as on the Python path."""
    records = [dict(BASE, id=i, number=big if i == 2 else i) for i in range(5)]
    assert_same(records, primary_key=("id",))
    assert_same(records, primary_key=("id",), columns={**COLUMNS, "number": ColumnType.DOUBLE})


@compiled
@pytest.mark.parametrize("big", [2 ** 53, -(2 ** 53), 2 ** 62])
def test_an_int_a_double_cannot_hold_within_a_run_of_one_layout_is_seen_alike(big) -> None:
    """An int beyond +-(2**53 - 1) reaches the tracker (a first load re-shapes a double
    column that held one) and is rescued from a double column, on both paths."""
    records = [dict(BASE, id=i, number=big if i == 2 else i) for i in range(5)]
    [(_, fast_pages), _] = shape_both(records, primary_key=("id",))
    tracker = SchemaTracker()
    tracker.observe_all(fast_pages[1].observed)
    assert tracker.wide == {"number"}
    assert_same(records, primary_key=("id",))
    (fast, _), _ = shape_both(records, primary_key=("id",),
                              columns={**COLUMNS, "number": ColumnType.DOUBLE})
    assert fast.rescued_rows == 2 and fast.retyped == {"number": ColumnType.LONG}
    assert_same(records, primary_key=("id",), columns={**COLUMNS, "number": ColumnType.DOUBLE})


@compiled
@pytest.mark.parametrize("columns,score", [(None, 1.5), (COLUMNS, 1.5), (COLUMNS, 3)],
                         ids=["first-load", "into-target", "int-into-double"])
def test_the_compiled_path_shapes_the_direct_records(columns, score) -> None:
    """Not a twin that always hands back to Python: it shapes the page's direct records
    (ints bound for a double column included, once their range is checked)."""
    calls = []
    real = framework.native.shape_direct

    def counting(records, start, *args):
        stop, seq, exact = real(records, start, *args)
        calls.append(stop - start)
        return stop, seq, exact

    saved = schema.native_shape_direct
    schema.native_shape_direct = counting
    try:
        shaper = RowShaper("github", primary_key=("id",), columns=columns)
        page = [dict(BASE, id=i, score=score) for i in range(100)]
        shaped = shaper.shape_page(page, run_id="r", window_start=W0, window_end=W1,
                                   collected_at=AT, seq=0)
    finally:
        schema.native_shape_direct = saved
    assert len(shaped.lines) == 100
    assert sum(calls) == 99  # the first record plans its layout in Python


@compiled
@pytest.mark.parametrize("key", [chr(c) for c in range(128)] + [
    "", "a\"b", "a\\b", "\x7f", "é", "日本", "😀", "a\u2028b", "x" * 300])
def test_entity_keys_are_json_text_as_the_encoder_writes_them(key) -> None:
    records = [dict(BASE, id=key), dict(BASE, id=key + "-2")]
    lines = assert_same(records, primary_key=("id",), rounds=1)
    for line in lines:
        assert orjson.loads(line)["entity_key"] in (key, key + "-2")


@compiled
@pytest.mark.parametrize("key", [0, -1, 2 ** 63 - 1, -2 ** 63, 10 ** 30, 0.1, 1e300, False])
def test_keys_of_every_number_type_are_staged_alike(key) -> None:
    assert_same([dict(BASE, id=key), dict(BASE, id=key)], primary_key=("id",),
                columns=COLUMNS)
    assert_same([dict(BASE, id=key), dict(BASE, id=key)], primary_key=("id",))


@compiled
def test_a_record_the_encoder_refuses_fails_alike_on_both_paths() -> None:
    """A lone surrogate in a value: the compiled path hands the record back, and the page
    fails (or not) exactly as the Python path does."""
    records = [dict(BASE, id=1), dict(BASE, id=2, title="bad \ud800 text")]
    outcomes = []
    for native in (framework.native.shape_direct, None):
        saved = schema.native_shape_direct
        schema.native_shape_direct = native
        try:
            shaper = RowShaper("github", primary_key=("id",))
            shaper.shape_page([dict(BASE, id=0)], run_id="r", window_start=W0, window_end=W1,
                              collected_at=AT, seq=0)
            try:
                shaped = shaper.shape_page(records, run_id="r", window_start=W0,
                                           window_end=W1, collected_at=AT, seq=0)
                outcomes.append(("ok", shaped.lines))
            except Exception as exc:  # noqa: BLE001 - compared across the paths
                outcomes.append((type(exc).__name__, str(exc)))
        finally:
            schema.native_shape_direct = saved
    assert outcomes[0] == outcomes[1]
