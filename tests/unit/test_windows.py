"""framework.windows: half-open load windows, window specs and request placeholders."""

from __future__ import annotations

import datetime as dt

import pytest
from dateutil.relativedelta import relativedelta

from framework import windows
from framework.windows import (PLACEHOLDERS, Window, check_placeholders, expand_env,
                               parse_window, placeholders_in, render, split)

UTC = dt.timezone.utc


def t(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def bounds(ws: list[Window]) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(w.start, w.end) for w in ws]


# ------------------------------------------------------------------ split
def test_daily_split_is_half_open_and_contiguous() -> None:
    ws = split(t(2024, 1, 1), t(2024, 1, 4), "daily")

    assert bounds(ws) == [(t(2024, 1, 1), t(2024, 1, 2)), (t(2024, 1, 2), t(2024, 1, 3)),
                          (t(2024, 1, 3), t(2024, 1, 4))]
    for left, right in zip(ws, ws[1:]):
        assert left.end == right.start  # no gap, no overlap


def test_last_window_is_clipped_to_the_end() -> None:
    ws = split(t(2024, 1, 1), t(2024, 1, 3, 12), "daily")

    assert len(ws) == 3
    assert ws[-1] == Window(t(2024, 1, 3), t(2024, 1, 3, 12))


def test_monthly_steps_follow_the_calendar_from_jan_31() -> None:
    ws = split(t(2024, 1, 31), t(2024, 5, 1), "monthly")

    # Each step is counted from the start: Mar 31, not Feb 29 + 1 month = Mar 29.
    assert [w.end for w in ws] == [t(2024, 2, 29), t(2024, 3, 31), t(2024, 4, 30), t(2024, 5, 1)]


def test_iso_month_duration_matches_monthly() -> None:
    start, end = t(2023, 11, 30), t(2024, 3, 15)
    assert split(start, end, "P1M") == split(start, end, "monthly")


def test_pt6h_split() -> None:
    ws = split(t(2024, 1, 1), t(2024, 1, 2), "PT6H")
    assert [w.start.hour for w in ws] == [0, 6, 12, 18]
    assert all(w.end - w.start == dt.timedelta(hours=6) for w in ws)


@pytest.mark.parametrize("spec,count", [("hourly", 48), ("weekly", 1), ("P1D", 2)])
def test_named_and_iso_specs(spec: str, count: int) -> None:
    assert len(split(t(2024, 1, 1), t(2024, 1, 3), spec)) == count


def test_none_is_one_window() -> None:
    assert split(t(2024, 1, 1), t(2024, 6, 1), "none") == [Window(t(2024, 1, 1), t(2024, 6, 1))]


def test_split_takes_naive_bounds_as_utc() -> None:
    ws = split(dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2), "none")
    assert ws[0].start == t(2024, 1, 1) and ws[0].start.tzinfo is not None


@pytest.mark.parametrize("end", [t(2024, 1, 1), t(2023, 12, 31)])
def test_split_rejects_an_empty_range(end: dt.datetime) -> None:
    with pytest.raises(ValueError, match="is not after load start"):
        split(t(2024, 1, 1), end, "daily")


def test_max_windows_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(windows, "MAX_WINDOWS", 10)

    assert len(split(t(2024, 1, 1), t(2024, 1, 1, 10), "hourly")) == 10
    with pytest.raises(ValueError, match="more than 10 windows"):
        split(t(2024, 1, 1), t(2024, 1, 1, 11), "hourly")


# ------------------------------------------------------------------ Window
def test_window_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(dt.datetime(2024, 1, 1), t(2024, 1, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(t(2024, 1, 1), dt.datetime(2024, 1, 2))


def test_window_rejects_end_not_after_start() -> None:
    with pytest.raises(ValueError, match="is not after start"):
        Window(t(2024, 1, 1), t(2024, 1, 1))


def test_window_bounds_in_another_zone_become_utc() -> None:
    minus2 = dt.timezone(dt.timedelta(hours=-2))
    w = Window(dt.datetime(2024, 1, 1, 23, tzinfo=minus2), t(2024, 1, 3))

    assert w.start == t(2024, 1, 2, 1) and w.start.utcoffset() == dt.timedelta(0)
    assert w.placeholders()["window_start_date"] == "2024-01-02"


def test_window_key_repr_and_order() -> None:
    a, b = Window(t(2024, 1, 1), t(2024, 1, 2)), Window(t(2024, 1, 2), t(2024, 1, 3))
    assert a.key == "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z"
    assert repr(a) == f"Window({a.key})"
    assert sorted([b, a]) == [a, b]


# ------------------------------------------------------------------ placeholders
def test_placeholder_values() -> None:
    w = Window(t(2024, 1, 2, 3, 4, 5), t(2024, 1, 3))

    assert w.placeholders() == {
        "window_start": "2024-01-02T03:04:05Z",
        "window_end": "2024-01-03T00:00:00Z",
        "window_start_ms": "1704164645000",
        "window_end_ms": "1704240000000",
        "window_start_s": "1704164645",
        "window_end_s": "1704240000",
        "window_start_date": "2024-01-02",
        "window_end_date": "2024-01-03",
    }
    assert set(w.placeholders()) == set(PLACEHOLDERS)


def test_millisecond_placeholder_keeps_sub_second_precision() -> None:
    w = Window(dt.datetime(2024, 1, 1, 0, 0, 0, 1000, tzinfo=UTC), t(2024, 1, 2))
    assert w.placeholders()["window_start_ms"] == "1704067200001"


def test_render_substitutes_inside_nested_values() -> None:
    w = Window(t(2024, 1, 1), t(2024, 1, 2))
    value = {"range": {"from": "{window_start_ms}", "to": "{window_end_ms}"},
             "days": ["{window_start_date}", "{window_end_date}"], "limit": 100, "flag": None,
             "literal": "{{not a placeholder}}"}

    assert render(value, w) == {
        "range": {"from": "1704067200000", "to": "1704153600000"},
        "days": ["2024-01-01", "2024-01-02"], "limit": 100, "flag": None,
        "literal": "{not a placeholder}"}


def test_render_does_not_change_its_input() -> None:
    value = {"since": "{window_start}"}
    render(value, Window(t(2024, 1, 1), t(2024, 1, 2)))
    assert value == {"since": "{window_start}"}


def test_render_without_window_blanks_placeholders() -> None:
    assert render("https://x.example.com/{window_start_date}/", None) == "https://x.example.com//"


def test_placeholders_in() -> None:
    assert placeholders_in("a{window_start}b{window_end_s}") == ["window_start", "window_end_s"]
    assert placeholders_in("{{window_start}}") == []
    assert placeholders_in("{window_start:%Y}") == ["window_start:%Y"]


def test_check_placeholders_accepts_every_documented_name() -> None:
    check_placeholders({"a": ["{" + p + "}" for p in PLACEHOLDERS], "b": 5, "c": None})


@pytest.mark.parametrize("value,message", [
    ("{window_strt}", "unknown placeholder {window_strt}"),
    ("{window_start:%Y}", "unknown placeholder {window_start:%Y}"),
    ("{window_start!r}", "unknown placeholder {window_start!r}"),
    ("{window_start.year}", "unknown placeholder {window_start.year}"),
    ("{}", "unknown placeholder {}"),
    ({"deep": [{"x": "{since}"}]}, "unknown placeholder {since}"),
    ("{window_start", "bad placeholder syntax"),
    ("window_start}", "bad placeholder syntax"),
])
def test_check_placeholders_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_placeholders(value)
    assert message in str(info.value)


def test_unknown_placeholder_error_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"valid: \{window_start\}, \{window_end\}"):
        check_placeholders("{start}")


# ------------------------------------------------------------------ specs
@pytest.mark.parametrize("spec,expected", [
    ("none", None),
    ("hourly", dt.timedelta(hours=1)),
    ("Daily", dt.timedelta(days=1)),
    ("weekly", dt.timedelta(weeks=1)),
    ("PT6H", dt.timedelta(hours=6)),
    ("pt15m", dt.timedelta(minutes=15)),
])
def test_parse_window(spec: str, expected: object) -> None:
    assert parse_window(spec) == expected


def test_parse_window_monthly_is_calendar_arithmetic() -> None:
    step = parse_window("monthly")
    assert isinstance(step, relativedelta) and step.months == 1
    assert isinstance(parse_window("P1M"), relativedelta)


@pytest.mark.parametrize("spec,message", [
    ("fortnightly", "is not one of none, hourly"),
    ("P1X", "is not an ISO-8601 duration"),
    ("PT0S", "zero-length window"),
    ("-PT1H", "is not one of"),
    ("P0M", "zero-length window"),
    (6, "expected text"),
])
def test_parse_window_errors(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_window(spec)  # type: ignore[arg-type]


# ------------------------------------------------------------------ ${ENV}
def test_expand_env() -> None:
    env = {"HOST": "api.example.com", "V": "2"}
    assert expand_env("https://${HOST}/v${V}/$HOST", env) == "https://api.example.com/v2/$HOST"


def test_expand_env_unset_raises_with_the_name() -> None:
    with pytest.raises(KeyError) as info:
        expand_env("https://${NOPE}/x", {})
    assert info.value.args[0] == "NOPE"
