"""The demo API's dataset: deterministic, GitHub-issue-like records that tests can mutate.

Records are ordered by ``(updated_at, id)``, the order every endpoint pages in
(``has_more`` re-sorts its window by ``id``). Timestamps are whole seconds in UTC
and serialized as ISO-8601 with ``Z``, so the string a client sees is exactly the
value the server filtered on.

Records are never mutated in place: :meth:`Dataset.touch` replaces a record with
a new dict. A page being serialized by one thread therefore never sees a record
half-changed by another, and :meth:`Dataset.select` need not copy anything.

:meth:`Dataset.degrade` makes every endpoint serve quietly worse data (fewer records,
a field nulled or gone) with consistent totals and pages, as an upstream bug would,
until :meth:`Dataset.restore`: the "green load with wrong data" of the quality drills.
"""

from __future__ import annotations

import base64
import bisect
import copy
import json
import random
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

UTC = timezone.utc
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)

_VERBS = ["Fix", "Add", "Remove", "Improve", "Document", "Refactor", "Investigate", "Support",
          "Deprecate", "Speed up"]
_NOUNS = ["pagination", "retry logic", "the login page", "CSV export", "rate limiting",
          "OAuth refresh", "dark mode", "search results", "the audit log", "webhooks",
          "timezone handling", "the Delta writer", "memory usage", "error messages"]
_QUALIFIERS = ["", "", "on Windows", "for large accounts", "in the API", "after upgrade",
               "under load", "for EU customers", "in nightly builds"]
_LABELS = ["bug", "enhancement", "documentation", "performance", "security", "good first issue",
           "wontfix", "needs-triage", "api", "ui"]
_USERS = [("octocat", 583231), ("mona", 4127), ("hubot", 480938), ("ada-l", 90210),
          ("grace-h", 31337), ("linus-t", 1024), ("margaret-h", 77001), ("alan-t", 1912),
          ("barbara-l", 52001), ("ken-t", 1943), ("dennis-r", 1941), ("katherine-j", 1918)]


def to_iso(value: datetime) -> str:
    """Format an aware datetime as ISO-8601 UTC with ``Z`` (whole seconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | datetime | None, *, field: str = "time") -> datetime | None:
    """Parse an ISO-8601 string (``Z`` or offset; naive means UTC) or pass a datetime through.

    Raises:
        ValueError: the text is not ISO-8601; the message names ``field``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{field}: expected an ISO-8601 timestamp, got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _second(value: datetime) -> datetime:
    # Whole seconds keep the served string and the filtered value identical.
    return value.astimezone(UTC).replace(microsecond=0)


def encode_token(state: dict[str, Any]) -> str:
    """Encode paging state as an opaque URL-safe base64 token (no padding)."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    """Decode a token made by :func:`encode_token`.

    Raises:
        ValueError: the token is not one of ours.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
    except (ValueError, TypeError):
        raise ValueError(f"invalid page token {token[:40]!r}") from None
    if not isinstance(state, dict):
        raise ValueError(f"invalid page token {token[:40]!r}")
    return state


@dataclass(frozen=True)
class Degradation:
    """How a degraded dataset serves its records.

    Attributes:
        drop_pct: share of records left out (the same ones on every request: chosen by a
            hash of their ``id``, so every pagination style and total agree).
        null_field: a field served as null in every record.
        remove_field: a field missing from every record.
    """

    drop_pct: float = 0.0
    null_field: str | None = None
    remove_field: str | None = None

    def drops(self, record_id: int) -> bool:
        return zlib.crc32(str(record_id).encode()) % 10_000 < self.drop_pct * 100

    def serve(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.null_field is None and self.remove_field is None:
            return record
        out = dict(record)
        if self.null_field is not None:
            out[self.null_field] = None
        if self.remove_field is not None:
            out.pop(self.remove_field, None)
        return out


class Dataset:
    """Issue records with ``updated_at`` spread over ``[start, end)``.

    Args:
        seed: seed of the random generator; the same seed gives the same records.
        size: number of records generated.
        start: earliest ``updated_at`` (aware datetime).
        end: ``updated_at`` is strictly before this.

    Example:
        >>> ds = Dataset(seed=7, size=10)
        >>> len(ds.records_in()) == 10
        True
    """

    def __init__(self, seed: int = 7, size: int = 500, start: datetime = DEFAULT_START,
                 end: datetime | None = None) -> None:
        start = parse_time(start, field="start")
        end = parse_time(end, field="end") if end is not None else start + timedelta(days=60)
        if end <= start:
            raise ValueError(f"end must be after start, got start={to_iso(start)} end={to_iso(end)}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.seed, self.start, self.end = seed, start, end
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._rows: dict[int, dict[str, Any]] = {}
        self._stamps: dict[int, datetime] = {}
        self._order: list[tuple[datetime, int]] | None = None  # cache, rebuilt on change
        self._degraded: Degradation | None = None
        self._next_id = 1_000_000
        self._next_number = 1
        span = max(int((end - start).total_seconds()), 1)
        for _ in range(size):
            self._insert(start + timedelta(seconds=self._rng.randrange(span)))

    def __repr__(self) -> str:
        return (f"Dataset(seed={self.seed}, records={len(self)}, "
                f"start={to_iso(self.start)}, end={to_iso(self.end)})")

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def _insert(self, updated: datetime) -> int:
        rng = self._rng
        # Ids grow with gaps, like real autoincrement ids shared across repositories.
        record_id = self._next_id + rng.randrange(1, 50)
        self._next_id = record_id
        number = self._next_number
        self._next_number += 1
        updated = _second(updated)
        created = updated - timedelta(seconds=rng.randrange(0, 90 * 86400))
        login, user_id = rng.choice(_USERS)
        title = " ".join(p for p in (rng.choice(_VERBS), rng.choice(_NOUNS),
                                     rng.choice(_QUALIFIERS)) if p)
        state = "open" if rng.random() < 0.7 else "closed"
        self._rows[record_id] = {
            "id": record_id,
            "number": number,
            "title": title,
            "state": state,
            "closed_at": to_iso(updated) if state == "closed" else None,
            "labels": sorted(rng.sample(_LABELS, rng.choice([0, 1, 1, 2, 3]))),
            "user": {"login": login, "id": user_id},
            "created_at": to_iso(created),
            "updated_at": to_iso(updated),
            "comments": int(rng.expovariate(1 / 4)),
            "score": round(rng.uniform(0, 100), 2),
        }
        self._stamps[record_id] = updated
        self._order = None
        return record_id

    # -- mutations used by incremental-load tests ---------------------------------

    def touch(self, ids: Iterable[int], at: datetime | None = None) -> None:
        """Edit records: flip ``state``, bump the title revision and set ``updated_at``.

        Args:
            ids: ids of existing records.
            at: the new ``updated_at`` (default: now), truncated to the second.

        Raises:
            KeyError: an id is unknown (nothing is changed then).
        """
        stamp = _second(parse_time(at, field="at") or datetime.now(UTC))
        with self._lock:
            ids = list(ids)
            missing = [i for i in ids if i not in self._rows]
            if missing:
                raise KeyError(f"unknown record ids: {missing}")
            for record_id in ids:
                old = self._rows[record_id]
                title, _, rev = old["title"].partition(" [rev ")
                revision = int(rev.rstrip("]")) + 1 if rev else 2
                state = "closed" if old["state"] == "open" else "open"
                new = dict(old, title=f"{title} [rev {revision}]", state=state,
                           closed_at=to_iso(stamp) if state == "closed" else None,
                           updated_at=to_iso(stamp))
                self._rows[record_id] = new  # replace, never mutate: see module docstring
                self._stamps[record_id] = stamp
            self._order = None

    def add(self, n: int, at: datetime | None = None) -> list[int]:
        """Create ``n`` records updated (and created) at ``at`` (default: now); return their ids."""
        stamp = _second(parse_time(at, field="at") or datetime.now(UTC))
        with self._lock:
            ids = [self._insert(stamp) for _ in range(n)]
            for record_id in ids:
                self._rows[record_id]["created_at"] = to_iso(stamp)
            return ids

    def degrade(self, drop_pct: float = 0.0, null_field: str | None = None,
                remove_field: str | None = None) -> Degradation:
        """Serve quietly worse data until :meth:`restore` (records are kept, not changed).

        Args:
            drop_pct: percent of records every endpoint (and every total) leaves out.
            null_field: a field served as null in every record.
            remove_field: a field left out of every record.

        Raises:
            ValueError: ``drop_pct`` outside 0-100, or nothing to degrade.
        """
        if not 0 <= drop_pct <= 100:
            raise ValueError(f"drop_pct must be within 0-100, got {drop_pct}")
        if not (drop_pct or null_field or remove_field):
            raise ValueError("give drop_pct, null_field or remove_field")
        with self._lock:
            self._degraded = Degradation(drop_pct, null_field, remove_field)
            self._order = None
            return self._degraded

    def restore(self) -> None:
        """Serve the records as they are again (undo :meth:`degrade`)."""
        with self._lock:
            self._degraded = None
            self._order = None

    # -- reads --------------------------------------------------------------------

    def _sorted(self) -> list[tuple[datetime, int]]:
        if self._order is None:
            bad = self._degraded
            self._order = sorted((ts, i) for i, ts in self._stamps.items()
                                 if bad is None or not bad.drops(i))
        return self._order

    def _bounds(self, order: list[tuple[datetime, int]], since: datetime | None,
                until: datetime | None) -> tuple[int, int]:
        lo = bisect.bisect_left(order, (since, -1)) if since else 0
        hi = bisect.bisect_left(order, (until, -1)) if until else len(order)
        return lo, max(lo, hi)

    def select(self, since: datetime | None = None, until: datetime | None = None, *,
               after: tuple[datetime, int] | None = None, offset: int = 0,
               limit: int | None = None) -> list[dict[str, Any]]:
        """Records with ``since <= updated_at < until`` in ``(updated_at, id)`` order.

        Args:
            since: inclusive lower bound, ``None`` for unbounded.
            until: exclusive upper bound, ``None`` for unbounded.
            after: only records strictly after this ``(updated_at, id)`` position.
            offset: skip this many of them.
            limit: at most this many (a page costs its size, not the window's).

        Returns:
            The shared record dicts (treat them as read-only).
        """
        with self._lock:
            order = self._sorted()
            lo, hi = self._bounds(order, since, until)
            if after is not None:
                lo = max(lo, bisect.bisect_right(order, after))
            lo += max(0, offset)
            if limit is not None:
                hi = min(hi, lo + max(0, limit))
            if self._degraded is not None:
                return [self._degraded.serve(self._rows[i]) for _, i in order[lo:hi]]
            return [self._rows[i] for _, i in order[lo:hi]]

    def count(self, since: datetime | None = None, until: datetime | None = None) -> int:
        """How many records have ``since <= updated_at < until``."""
        with self._lock:
            lo, hi = self._bounds(self._sorted(), since, until)
            return hi - lo

    def records_in(self, since: str | datetime | None = None,
                   until: str | datetime | None = None) -> list[dict[str, Any]]:
        """The ground truth of a window ``[since, until)``: deep copies sorted by (updated_at, id)."""
        rows = self.select(parse_time(since, field="since"), parse_time(until, field="until"))
        return copy.deepcopy(rows)

    def get(self, record_id: int) -> dict[str, Any]:
        """A copy of one record.

        Raises:
            KeyError: the id is unknown.
        """
        with self._lock:
            return copy.deepcopy(self._rows[record_id])

    def ids(self) -> list[int]:
        """All ids in ascending order."""
        with self._lock:
            return sorted(self._rows)
