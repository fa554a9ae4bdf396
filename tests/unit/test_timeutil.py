"""framework.timeutil: UTC parsing and ISO-8601 durations."""

from __future__ import annotations

import datetime as dt

import pytest
from dateutil.relativedelta import relativedelta

from framework.timeutil import iso, parse_duration, to_utc, utcnow

UTC = dt.timezone.utc


@pytest.mark.parametrize("value,expected", [
    ("2024-01-01T00:00:00Z", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T02:00:00+02:00", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01 05:06:07", dt.datetime(2024, 1, 1, 5, 6, 7, tzinfo=UTC)),
    ("  2024-01-01  ", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("Mon, 01 Jan 2024 10:00:00 GMT", dt.datetime(2024, 1, 1, 10, tzinfo=UTC)),
    (dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, tzinfo=UTC)),
    (dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 1, 12, tzinfo=UTC)),
    (dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5))),
     dt.datetime(2024, 1, 1, 7, tzinfo=UTC)),
])
def test_to_utc(value: object, expected: dt.datetime) -> None:
    out = to_utc(value)
    assert out == expected
    assert out.tzinfo is not None and out.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("value", ["5", "May", "10:30", "1.2"])
def test_to_utc_rejects_partial_dates(value: str) -> None:
    # dateutil alone would fill the missing parts from today's date.
    with pytest.raises(ValueError, match="not a complete timestamp"):
        to_utc(value)


@pytest.mark.parametrize("value,message", [("", "empty"), ("not a date", "not an ISO-8601"),
                                           (1704067200, "expected a timestamp, got int"),
                                           (None, "got NoneType")])
def test_to_utc_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_utc(value)


def test_iso() -> None:
    assert iso(dt.datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00Z"
    assert iso(dt.datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC)) == "2024-01-01T00:00:00.000005Z"
    assert iso(dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) \
        == "2024-01-01T00:00:00Z"
    assert iso(None) is None


@pytest.mark.parametrize("text,expected", [
    ("PT6H", dt.timedelta(hours=6)),
    ("P1D", dt.timedelta(days=1)),
    ("P1W", dt.timedelta(weeks=1)),
    ("PT0S", dt.timedelta(0)),
    (" PT90M ", dt.timedelta(minutes=90)),
])
def test_parse_fixed_durations(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


def test_parse_calendar_durations() -> None:
    month = parse_duration("P1M")
    assert isinstance(month, relativedelta) and month.months == 1
    assert parse_duration("P1Y") == relativedelta(years=1)
    start = dt.datetime(2024, 1, 31, tzinfo=UTC)
    assert start + parse_duration("P1M") == dt.datetime(2024, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize("text,message", [("-PT1H", "negative"), ("1 day", "not an ISO-8601"),
                                          ("", "not an ISO-8601"), (3600, "got int")])
def test_parse_duration_errors(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)  # type: ignore[arg-type]


def test_utcnow_is_aware_and_whole_seconds() -> None:
    now = utcnow()
    assert now.utcoffset() == dt.timedelta(0) and now.microsecond == 0


def test_parse_iso_takes_iso_8601_only_and_says_when_a_plus_was_lost():
    from framework.timeutil import parse_iso

    utc = dt.timezone.utc
    assert parse_iso("2026-12-03T08:50:00+03:00") == dt.datetime(2026, 12, 3, 5, 50, tzinfo=utc)
    assert parse_iso("2026-12-03T05:50Z") == parse_iso("2026-12-03 05:50:00") == \
        dt.datetime(2026, 12, 3, 5, 50, tzinfo=utc)
    assert parse_iso("2026-12-03") == dt.datetime(2026, 12, 3, tzinfo=utc)
    for text in ("December 3 2026 05:50", "2024-W01", "2026-12", "tomorrow", "2026-02-30", ""):
        with pytest.raises(ValueError):
            parse_iso(text)
    with pytest.raises(ValueError, match="%2B"):
        parse_iso("2026-12-03T08:50:00 03:00")
    assert to_utc("December 3 2026 05:50") == dt.datetime(2026, 12, 3, 5, 50, tzinfo=utc)  # configs
