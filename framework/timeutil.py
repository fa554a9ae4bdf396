"""UTC timestamps and ISO-8601 durations (python-dateutil and isodate, no Spark)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import isodate
from dateutil import parser as dtparser
from dateutil.relativedelta import relativedelta

UTC = dt.timezone.utc


def utcnow() -> dt.datetime:
    """The current time, UTC, microseconds dropped (Delta stores microseconds; logs read better)."""
    return dt.datetime.now(UTC).replace(microsecond=0)


def to_utc(value: Any) -> dt.datetime:
    """Parse a timestamp (datetime, date, ISO-8601 text) into an aware UTC datetime.

    Naive values are taken as UTC: a control table column or a YAML value without an
    offset means UTC in restlake.

    Raises:
        ValueError: the value is not a timestamp.
    """
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty timestamp")
        try:
            out = dtparser.isoparse(text)
        except (ValueError, OverflowError):
            try:
                # dateutil fills a missing year/month/day from its default ("5", "May",
                # "10:30"): parsing against two defaults tells a complete date from a partial one.
                out = dtparser.parse(text, default=dt.datetime(2000, 1, 1))
                other = dtparser.parse(text, default=dt.datetime(1999, 12, 28))
            except (ValueError, OverflowError) as exc:
                raise ValueError(f"{value!r} is not an ISO-8601 timestamp") from exc
            if other.date() != out.date():
                raise ValueError(f"{value!r} is not a complete timestamp (year, month and day)")
    else:
        raise ValueError(f"expected a timestamp, got {type(value).__name__}")
    if out.tzinfo is None:
        return out.replace(tzinfo=UTC)
    return out.astimezone(UTC)


#: An ISO-8601 calendar date, with an optional time and offset (RFC 3339 and its date alone).
ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}"
                           r"(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?")
#: A time followed by a space and an offset's digits: a '+' that a query string turned into a space.
_LOST_PLUS = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)? \d{2}:?\d{2}$")


def parse_iso(text: str) -> dt.datetime:
    """Parse ISO-8601 timestamp text strictly (``2024-01-01``, ``2024-01-01T06:00:00Z``,
    ``2024-01-01T08:00:00+02:00``) into an aware UTC datetime; naive values are UTC.

    Unlike :func:`to_utc`, no other spelling is guessed at (``December 3 2026``, week dates).

    Raises:
        ValueError: anything else; the message says when a ``+`` of an offset was lost
            to URL decoding (it arrives as a space).
    """
    value = text.strip() if isinstance(text, str) else text
    if not isinstance(value, str) or not ISO_TIMESTAMP.fullmatch(value):
        hint = (" (a '+' in a URL query is read as a space: send the offset's '+' as %2B)"
                if isinstance(value, str) and _LOST_PLUS.search(value) else "")
        raise ValueError(f"{text!r} is not an ISO-8601 timestamp{hint}")
    try:
        out = dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:  # the shape is right, a value is out of range (25:00, 02-30)
        raise ValueError(f"{text!r} is not a valid timestamp ({exc})") from None
    return to_utc(out)


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 UTC text with a ``Z`` suffix (``2024-01-01T00:00:00Z``)."""
    if value is None:
        return None
    value = to_utc(value)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_duration(text: str) -> dt.timedelta | relativedelta:
    """Parse an ISO-8601 duration (``PT6H``, ``P1D``, ``P1M``).

    Returns a ``timedelta`` for fixed durations and a ``relativedelta`` when months or
    years are involved (calendar arithmetic).

    Raises:
        ValueError: not a valid, positive-or-zero ISO-8601 duration.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO-8601 duration such as PT6H, got {type(text).__name__}")
    try:
        value = isodate.parse_duration(text.strip())
    except (isodate.ISO8601Error, ValueError) as exc:
        raise ValueError(f"{text!r} is not an ISO-8601 duration (e.g. PT6H, P1D, P1M)") from exc
    if isinstance(value, isodate.Duration):
        months = int(value.years * 12 + value.months)
        rd = relativedelta(months=months) + relativedelta(seconds=value.tdelta.total_seconds())
        if months < 0 or value.tdelta.total_seconds() < 0:
            raise ValueError(f"{text!r} is negative")
        return rd
    if value.total_seconds() < 0:
        raise ValueError(f"{text!r} is negative")
    return value
