"""Load windows: half-open UTC ranges ``[start, end)`` and request placeholders."""

from __future__ import annotations

import datetime as dt
import re
import string
from dataclasses import dataclass
from typing import Any

from dateutil.relativedelta import relativedelta

from framework.timeutil import UTC, iso, parse_duration, to_utc

NAMED_WINDOWS: dict[str, dt.timedelta | relativedelta | None] = {
    "none": None,
    "hourly": dt.timedelta(hours=1),
    "daily": dt.timedelta(days=1),
    "weekly": dt.timedelta(weeks=1),
    "monthly": relativedelta(months=1),
}

PLACEHOLDERS = (
    "window_start", "window_end",
    "window_start_ms", "window_end_ms",
    "window_start_s", "window_end_s",
    "window_start_date", "window_end_date",
)

MAX_WINDOWS = 100_000


@dataclass(frozen=True, order=True)
class Window:
    """One half-open UTC range ``[start, end)`` of a load."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware UTC datetimes")
        # Aware bounds in another zone are normalized, so the *_date placeholders are UTC dates.
        object.__setattr__(self, "start", to_utc(self.start))
        object.__setattr__(self, "end", to_utc(self.end))
        if self.end <= self.start:
            raise ValueError(f"window end {iso(self.end)} is not after start {iso(self.start)}")

    @property
    def key(self) -> str:
        """Stable text key of the window (used in logs, idempotent write ids, file names)."""
        return f"{iso(self.start)}/{iso(self.end)}"

    def placeholders(self) -> dict[str, str]:
        """Values substituted for ``{window_start}`` and friends."""
        return {
            "window_start": iso(self.start),
            "window_end": iso(self.end),
            "window_start_ms": str(int(self.start.timestamp() * 1000)),
            "window_end_ms": str(int(self.end.timestamp() * 1000)),
            "window_start_s": str(int(self.start.timestamp())),
            "window_end_s": str(int(self.end.timestamp())),
            "window_start_date": self.start.date().isoformat(),
            "window_end_date": self.end.date().isoformat(),
        }

    def __repr__(self) -> str:
        return f"Window({self.key})"


def parse_window(spec: str) -> dt.timedelta | relativedelta | None:
    """Parse a window spec: ``none``, ``hourly``, ``daily``, ``weekly``, ``monthly`` or ISO-8601.

    Raises:
        ValueError: unknown name, bad or zero duration.
    """
    if not isinstance(spec, str):
        raise ValueError(f"expected text, got {type(spec).__name__}")
    name = spec.strip().lower()
    if name in NAMED_WINDOWS:
        return NAMED_WINDOWS[name]
    if not name.startswith("p"):
        raise ValueError(f"{spec!r} is not one of {', '.join(NAMED_WINDOWS)} "
                         "or an ISO-8601 duration (e.g. PT6H)")
    step = parse_duration(spec.strip().upper())
    probe = dt.datetime(2000, 1, 1, tzinfo=UTC)
    if probe + step <= probe:
        raise ValueError(f"{spec!r} is a zero-length window")
    return step


def split(start: dt.datetime, end: dt.datetime, spec: str) -> list[Window]:
    """Split ``[start, end)`` into consecutive windows of ``spec``; the last one is clipped.

    Raises:
        ValueError: ``end`` is not after ``start`` or the split would be absurdly large.
    """
    start, end = to_utc(start), to_utc(end)
    if end <= start:
        raise ValueError(f"load end {iso(end)} is not after load start {iso(start)}")
    step = parse_window(spec)
    if step is None:
        return [Window(start, end)]
    out: list[Window] = []
    i = 0
    lo = start
    while lo < end:
        i += 1
        # Step from the start each time so calendar months do not drift (Jan 31 + 1M...).
        hi = min(start + step * i if isinstance(step, dt.timedelta) else start + relativedelta(
            months=step.months * i, years=step.years * i, days=step.days * i, hours=step.hours * i,
            minutes=step.minutes * i, seconds=step.seconds * i), end)
        out.append(Window(lo, hi))
        lo = hi
        if len(out) > MAX_WINDOWS:
            raise ValueError(f"range {iso(start)}..{iso(end)} splits into more than {MAX_WINDOWS} "
                             f"windows of {spec}; use a larger window")
    return out


_FORMATTER = string.Formatter()
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders_in(text: str) -> list[str]:
    """Names of the ``{placeholders}`` used in ``text`` (``{{`` escapes a brace).

    Raises:
        ValueError: the braces are unbalanced.
    """
    names = []
    for _, field, spec, conv in _FORMATTER.parse(_ENV.sub("", text)):  # ${ENV} is not one
        if field is not None:
            names.append(field + (f"!{conv}" if conv else "") + (f":{spec}" if spec else ""))
    return names


def check_placeholders(value: Any) -> None:
    """Raise ``ValueError`` naming the first unknown placeholder found anywhere in ``value``."""
    if isinstance(value, str):
        try:
            names = placeholders_in(value)
        except ValueError as exc:
            raise ValueError(f"bad placeholder syntax in {value!r}: {exc}") from None
        for name in names:
            if name not in PLACEHOLDERS:
                raise ValueError(f"unknown placeholder {{{name}}}; valid: "
                                 + ", ".join("{" + p + "}" for p in PLACEHOLDERS))
    elif isinstance(value, dict):
        for item in value.values():
            check_placeholders(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_placeholders(item)


def render(value: Any, window: Window | None) -> Any:
    """Substitute window placeholders in strings anywhere inside ``value`` (dicts, lists)."""
    if isinstance(value, str):
        if "{" not in value and "}" not in value:
            return value
        mapping = window.placeholders() if window else {p: "" for p in PLACEHOLDERS}
        # ${NAME} stays as written: it is expanded at request time (framework.secrets).
        return _ENV.sub(lambda m: "${{" + m.group(1) + "}}", value).format_map(mapping)
    if isinstance(value, dict):
        return {k: render(v, window) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, window) for v in value]
    return value


def env_names(text: str) -> list[str]:
    """The ``${NAME}`` variables used in ``text``, in order."""
    return _ENV.findall(text or "")


def expand_env(text: str, environ: dict[str, str]) -> str:
    """Expand ``${NAME}`` from ``environ``.

    Raises:
        KeyError: a variable is not set (its name is the key).
    """
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in environ:
            raise KeyError(name)
        return environ[name]

    return _ENV.sub(sub, text)
