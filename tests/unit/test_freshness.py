"""The freshness rule (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.ops import freshness as fr

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("freq, expected", [
    ("hourly", dt.timedelta(hours=1)), ("daily", dt.timedelta(days=1)),
    ("weekly", dt.timedelta(weeks=1)), ("PT15M", dt.timedelta(minutes=15)),
    ("pt6h", dt.timedelta(hours=6)), ("once", None), (None, None), ("", None),
])
def test_cadence_of(freq, expected):
    assert fr.cadence_of(freq) == expected


def test_cadence_rejects_garbage():
    with pytest.raises(ValueError):
        fr.cadence_of("fortnightly")


def test_stale_only_past_one_and_a_half_cadences():
    fresh = fr.assess("a", "c.s.t", "PT15M", NOW - dt.timedelta(minutes=22), NOW)
    stale = fr.assess("a", "c.s.t", "PT15M", NOW - dt.timedelta(minutes=23), NOW)
    assert not fresh.stale and stale.stale
    assert stale.allowed == dt.timedelta(minutes=22, seconds=30)
    assert "stale: newest row is 23m old, PT15M cadence allows 22m" == stale.reason


def test_no_data_is_stale_and_once_never_is():
    assert fr.assess("a", "t", "daily", None, NOW).stale
    assert fr.assess("a", "t", "daily", None, NOW).reason == "no data collected yet"
    assert not fr.assess("a", "t", "once", NOW - dt.timedelta(days=400), NOW).stale


def test_assess_rows_skips_disabled_and_lists_stale_first():
    rows = [
        {"ConfigId": "b_fresh", "TargetCatalog": "c", "TargetSchema": "s", "TargetTable": "t1",
         "TriggerFrequency": "hourly"},
        {"ConfigId": "a_off", "TargetCatalog": "c", "TargetSchema": "s", "TargetTable": "t2",
         "TriggerFrequency": "hourly", "Enabled": False},
        {"ConfigId": "c_stale", "TargetCatalog": "c", "TargetSchema": "s", "TargetTable": "t3",
         "TriggerFrequency": "daily"},
    ]
    newest = {"c.s.t1": NOW - dt.timedelta(minutes=5), "c.s.t3": NOW - dt.timedelta(days=2)}
    out = fr.assess_rows(rows, newest, NOW)
    assert [(f.config_id, f.stale) for f in out] == [("c_stale", True), ("b_fresh", False)]
    row = out[0].as_row()
    assert row["AgeMinutes"] == 2880.0 and row["AllowedMinutes"] == 2160.0 and row["Stale"] is True


def test_naive_newest_is_utc_and_format_age():
    f = fr.assess("a", "t", "daily", dt.datetime(2024, 6, 1, 11), NOW)
    assert f.age == dt.timedelta(hours=1)
    assert fr.format_age(dt.timedelta(days=3, hours=4, minutes=5)) == "3d 4h"
    assert fr.format_age(dt.timedelta(minutes=125)) == "2h 5m"
