"""Tests of framework.http.retry: the backoff sequence, checked without sleeping."""

from datetime import datetime, timedelta, timezone

import pytest

from framework.http.retry import RetryPolicy, backoff_seconds, is_retriable_status, parse_retry_after

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retriable(status):
    assert is_retriable_status(status)
    assert RetryPolicy().is_retriable_status(status)


@pytest.mark.parametrize("status", [None, 200, 400, 401, 403, 404, 501])
def test_other_statuses_are_not(status):
    assert not is_retriable_status(status)


def test_defaults():
    p = RetryPolicy()
    assert (p.max_retries, p.backoff_base_s, p.backoff_max_s, p.jitter) == (5, 0.5, 30, True)
    assert p.max_attempts == 6


def test_backoff_doubles_up_to_the_cap_without_jitter():
    p = RetryPolicy(max_retries=8, backoff_base_s=0.5, backoff_max_s=30, jitter=False)
    assert p.backoff_sequence() == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_full_jitter_scales_the_cap():
    p = RetryPolicy(max_retries=4, backoff_base_s=1, backoff_max_s=5)
    assert p.backoff_sequence(rand=lambda: 0.5) == [0.5, 1, 2, 2.5]
    assert p.wait_seconds(3, rand=lambda: 0.0) == 0.0


def test_huge_attempt_numbers_do_not_overflow():
    assert backoff_seconds(10_000, 0.5, 30, jitter=False) == 30


def test_attempt_is_one_based():
    with pytest.raises(ValueError):
        RetryPolicy().wait_seconds(0)


def test_retry_after_wins_over_backoff_and_is_capped():
    p = RetryPolicy(retry_after_max_s=300)
    assert p.wait_seconds(1, retry_after=7, rand=lambda: 0.9) == 7
    assert p.wait_seconds(1, retry_after=10_000) == 300
    assert p.wait_seconds(1, retry_after=-3) == 0


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), ("1.5", 1.5), (" 3 ", 3.0), ("-5", 0.0), ("99999", 300.0),
    (None, None), ("", None), ("soon", None),
])
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_http_date():
    later = "Fri, 01 Mar 2024 12:00:42 GMT"
    assert parse_retry_after(later, NOW) == 42.0
    assert parse_retry_after("Fri, 01 Mar 2024 11:00:00 GMT", NOW) == 0.0  # in the past
    assert parse_retry_after("Sat, 02 Mar 2024 12:00:00 GMT", NOW) == 300.0  # capped
    naive_now = NOW.replace(tzinfo=None) + timedelta(seconds=2)
    assert parse_retry_after(later, naive_now) == 40.0


def test_policy_parse_uses_its_cap():
    assert RetryPolicy(retry_after_max_s=10).parse_retry_after("60", NOW) == 10


@pytest.mark.parametrize("kwargs", [
    {"max_retries": -1}, {"max_retries": 1.5}, {"backoff_base_s": -1},
    {"backoff_base_s": 5, "backoff_max_s": 1}, {"max_retries": True},
])
def test_bad_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_policy_is_a_frozen_value():
    p = RetryPolicy()
    with pytest.raises(AttributeError):
        p.max_retries = 1  # type: ignore[misc]
    assert p == RetryPolicy() and "max_retries=5" in repr(p)
