"""Data quality checks: observed numbers in, one result row per check out (no Spark).

A source's ``quality:`` block (:class:`framework.config.Quality`) names its checks. The
load gathers the numbers at its edges (:mod:`framework.load.quality`) and these pure
functions judge them:

* before the target commit, on the rows about to be written: ``min_rows``,
  ``max_row_drop_pct`` (vs the previous successful load of the same kind),
  ``max_spike_pct`` (rows per window vs the median window, or rows vs the median of
  the last N loads), ``max_null_pct``, ``not_null``, ``accepted_values``;
* after the load's commits, on the target: ``unique``.

Row counts are the rows that passed shaping (records received minus those sent to
quarantine): what the load is about to write. Every result is a :class:`CheckResult`;
a failed check of severity ``fail`` before the commit refuses it, after the commit it
marks the load ``FAILED_QUALITY``. A check never changes loaded data.

Values that came from an API (sample bad values, duplicate keys) go to ``detail`` only,
never into ``message``: messages reach notifications, details are escaped where shown.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from framework.config import QUALITY_CHECKS, Quality

BEFORE_COMMIT = "before_commit"
AFTER_COMMIT = "after_commit"
PASSED, WARNED, FAILED = "PASSED", "WARNED", "FAILED"


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check on one load (one row of ``api_quality_results``)."""

    check: str
    field: Optional[str]
    observed: Optional[float]
    threshold: Optional[float]
    severity: str
    passed: bool
    message: str
    phase: str = BEFORE_COMMIT
    detail: Optional[dict[str, Any]] = None

    @property
    def blocks(self) -> bool:
        """True when this result fails its load (a failed ``fail`` check)."""
        return not self.passed and self.severity == "fail"

    def as_row(self, *, config_id: str, load_id: Optional[str], run_id: str,
               load_type: Optional[str], checked_at: dt.datetime) -> dict[str, Any]:
        """The results-table row of this verdict."""
        import json

        return {"ConfigId": config_id, "LoadId": load_id, "RunId": run_id, "LoadType": load_type,
                "Phase": self.phase, "CheckName": self.check, "Field": self.field,
                "ObservedValue": None if self.observed is None else float(self.observed),
                "Threshold": None if self.threshold is None else float(self.threshold),
                "Severity": self.severity, "Passed": self.passed, "Message": self.message,
                "Detail": json.dumps(self.detail, sort_keys=True, default=str) if self.detail else None,
                "CheckedAt": checked_at}

    def __repr__(self) -> str:
        where = f"[{self.field}]" if self.field else ""
        verdict = "ok" if self.passed else self.severity.upper()
        return f"CheckResult({self.check}{where} {verdict}: {self.message})"


@dataclass(frozen=True)
class RowsObserved:
    """What the load is about to write, and its baselines from earlier loads.

    Attributes:
        load_type: ``FULL_LOAD`` or ``INCREMENTAL``.
        rows: rows about to be written.
        window_rows: rows per window, in window order.
        nulls: field -> rows where it is null or absent.
        outside: field -> rows whose value is not among the accepted ones.
        outside_sample: field -> a few of those values (API text: detail only).
        previous_rows: rows of the previous successful load of the same kind (None: none).
        recent_rows: rows of the last successful loads of the same kind, newest first.
        missing: fields that are not columns of the rows about to be written.
    """

    load_type: str
    rows: int
    window_rows: tuple[int, ...] = ()
    nulls: Mapping[str, int] = field(default_factory=dict)
    outside: Mapping[str, int] = field(default_factory=dict)
    outside_sample: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    previous_rows: Optional[int] = None
    recent_rows: tuple[int, ...] = ()
    missing: frozenset[str] = frozenset()


SAMPLE_CHARS = 200  # of each value of the API a result's detail keeps


def _sample(value: Any) -> str:
    """A value the API sent, as a result's detail keeps it: text, cut after SAMPLE_CHARS."""
    text = str(value)
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "…"


def _pct(part: float, whole: float) -> float:
    # exact: a limit is judged on the share itself (1 null in a million rows is over 0 %)
    return 100.0 * part / whole if whole else 0.0


def _num(value: float, limit: float) -> str:
    """``value`` as a message shows it: short, yet never written as ``limit`` when it is not."""
    text = f"{value:g}"
    return f"{value:.15g}" if value != limit and text == f"{limit:g}" else text


# ------------------------------------------------------------------- checks
def check_min_rows(rows: int, minimum: int, severity: str) -> CheckResult:
    ok = rows >= minimum
    return CheckResult("min_rows", None, rows, minimum, severity, ok,
                       f"{rows} rows (at least {minimum})" if ok
                       else f"{rows} rows, fewer than the {minimum} required")


def check_row_drop(rows: int, previous: Optional[int], max_pct: float, severity: str,
                   load_type: str) -> CheckResult:
    if previous is None:
        return CheckResult("max_row_drop_pct", None, None, max_pct, severity, True,
                           f"no previous successful {load_type} load to compare with")
    drop = _pct(previous - rows, previous) if rows < previous else 0.0
    ok = drop <= max_pct
    verb = "fewer" if rows < previous else "not fewer"
    return CheckResult("max_row_drop_pct", None, drop, max_pct, severity, ok,
                       f"{_num(drop, max_pct)}% {verb} rows than the previous successful "
                       f"{load_type} load "
                       f"({previous} -> {rows}; at most {max_pct:g}% fewer)",
                       detail={"previous_rows": previous, "rows": rows})


def _above(rows: float, median: float) -> float:
    """% of ``rows`` above ``median``; a median under one row counts as one row, so the
    share grows with the rows (a million rows over loads of none is no 100 % spike)."""
    return max(_pct(rows - median, max(median, 1)), 0.0)


def _median(median: float) -> str:
    return f"{median:g}" + (", counted as 1 row" if median < 1 else "")


def check_spike_windows(window_rows: Iterable[int], max_pct: float, severity: str) -> CheckResult:
    counts = list(window_rows)
    if len(counts) < 3:
        return CheckResult("max_spike_pct", None, None, max_pct, severity, True,
                           f"{len(counts)} window(s): a spike needs at least 3 to compare")
    median = statistics.median(counts)
    worst = max(range(len(counts)), key=lambda i: counts[i])
    over = _above(counts[worst], median)
    ok = over <= max_pct
    return CheckResult("max_spike_pct", None, over, max_pct, severity, ok,
                       f"busiest window (#{worst + 1}) has {counts[worst]} rows, "
                       f"{_num(over, max_pct)}% above "
                       f"the median window ({_median(median)}; at most {max_pct:g}% above)",
                       detail={"baseline": "windows", "median": median, "window": worst})


def check_spike_loads(rows: int, recent: Iterable[int], max_pct: float, severity: str,
                      load_type: str) -> CheckResult:
    counts = list(recent)
    if not counts:
        return CheckResult("max_spike_pct", None, None, max_pct, severity, True,
                           f"no earlier successful {load_type} load to compare with")
    median = statistics.median(counts)
    over = _above(rows, median)
    ok = over <= max_pct
    return CheckResult("max_spike_pct", None, over, max_pct, severity, ok,
                       f"{rows} rows, {_num(over, max_pct)}% above the median of the last "
                       f"{len(counts)} "
                       f"{load_type} loads ({_median(median)}; at most {max_pct:g}% above)",
                       detail={"baseline": "loads", "median": median, "loads": len(counts)})


def check_null_pct(name: str, nulls: int, rows: int, max_pct: float, severity: str,
                   missing: bool = False) -> CheckResult:
    pct = _pct(nulls, rows)
    ok = pct <= max_pct
    absent = " (the field is in no row)" if missing else ""
    return CheckResult("max_null_pct", name, pct, max_pct, severity, ok,
                       f"{_num(pct, max_pct)}% of {rows} rows have no {name}{absent} "
                       f"(at most {max_pct:g}%)")


def check_not_null(name: str, nulls: int, rows: int, severity: str, missing: bool = False
                   ) -> CheckResult:
    ok = nulls == 0
    absent = " (the field is in no row)" if missing else ""
    return CheckResult("not_null", name, nulls, 0, severity, ok,
                       f"{nulls} of {rows} rows have no {name}{absent}" if not ok
                       else f"every one of {rows} rows has {name}")


def check_accepted(name: str, outside: int, rows: int, accepted: list[Any], severity: str,
                   sample: Iterable[Any] = (), missing: bool = False) -> CheckResult:
    if missing:  # a misspelt field, or one the API stopped sending: nothing was judged
        return CheckResult("accepted_values", name, None, 0, severity, False,
                           f"{name} is in no row of {rows}: its values cannot be checked",
                           detail={"accepted": accepted})
    ok = outside == 0
    shown = sorted({_sample(v) for v in sample})
    return CheckResult("accepted_values", name, outside, 0, severity, ok,
                       f"{outside} of {rows} rows have a {name} outside the {len(accepted)} "
                       f"accepted values" if not ok else
                       f"every {name} of {rows} rows is an accepted value",
                       detail={"accepted": accepted, **({"sample": shown} if shown else {})})


def check_unique(names: list[str], duplicates: Optional[int], rows_involved: int, severity: str,
                 sample: Iterable[Any] = (), missing: Iterable[str] = ()) -> CheckResult:
    key = ",".join(names)
    lost = sorted(missing)
    if lost:
        return CheckResult("unique", key, None, 0, severity, False,
                           f"the target has no column {', '.join(lost)}: the key cannot be "
                           "checked", AFTER_COMMIT)
    ok = not duplicates
    shown = [_sample(v) for v in sample]
    return CheckResult("unique", key, duplicates or 0, 0, severity, ok,
                       f"{duplicates} key values appear more than once ({rows_involved} rows) "
                       f"in the target" if not ok else f"({key}) is unique in the target",
                       AFTER_COMMIT, detail={"sample": shown} if shown else None)


# --------------------------------------------------------------- evaluation
def evaluate_before(quality: Quality, seen: RowsObserved) -> list[CheckResult]:
    """Every configured before-commit check, judged on ``seen`` (in config order)."""
    out: list[CheckResult] = []
    for name, check, severity in quality.checks(Quality.BEFORE_COMMIT):
        if name == "min_rows":
            out.append(check_min_rows(seen.rows, check.value, severity))
        elif name == "max_row_drop_pct":
            out.append(check_row_drop(seen.rows, seen.previous_rows, check.value, severity,
                                      seen.load_type))
        elif name == "max_spike_pct":
            out.append(check_spike_windows(seen.window_rows, check.value, severity)
                       if check.baseline == "windows" else
                       check_spike_loads(seen.rows, seen.recent_rows[:check.loads], check.value,
                                         severity, seen.load_type))
        elif name == "max_null_pct":
            out += [check_null_pct(f, seen.nulls.get(f, seen.rows), seen.rows, pct, severity,
                                   f in seen.missing) for f, pct in check.value.items()]
        elif name == "not_null":
            out += [check_not_null(f, seen.nulls.get(f, seen.rows), seen.rows, severity,
                                   f in seen.missing) for f in check.value]
        elif name == "accepted_values":
            out += [check_accepted(f, seen.outside.get(f, 0), seen.rows, values, severity,
                                   seen.outside_sample.get(f, ()), f in seen.missing)
                    for f, values in check.value.items()]
    return out


def null_fields(quality: Quality) -> list[str]:
    """Fields whose nulls a before-commit check counts."""
    names: list[str] = []
    if quality.max_null_pct is not None:
        names += list(quality.max_null_pct.value)
    if quality.not_null is not None:
        names += quality.not_null.value
    return list(dict.fromkeys(names))


def baseline_loads(quality: Quality) -> int:
    """How many earlier successful loads the checks compare with (0: none)."""
    n = 1 if quality.max_row_drop_pct is not None else 0
    spike = quality.max_spike_pct
    if spike is not None and spike.baseline == "loads":
        n = max(n, spike.loads)
    return n


def verdict(results: Iterable[CheckResult]) -> str:
    """``FAILED`` (a ``fail`` check did not pass), ``WARNED`` (a ``warn`` one) or ``PASSED``."""
    results = list(results)
    if any(r.blocks for r in results):
        return FAILED
    if any(not r.passed for r in results):
        return WARNED
    return PASSED


def failure_text(results: Iterable[CheckResult], phase: str) -> str:
    """The error of a load that a ``fail`` check stopped (control row, audit, messages)."""
    failed = [r for r in results if r.blocks]
    where = ("before the commit (nothing was written)" if phase == BEFORE_COMMIT
             else "after the commit")
    parts = [f"{r.check}" + (f" {r.field}" if r.field else "") + f": {r.message}" for r in failed]
    return f"quality checks failed {where}: " + "; ".join(parts)


def describe(quality: Optional[Quality]) -> list[str]:
    """The checks of a ``quality:`` block as short phrases (worksheet, ``restlake quality``)."""
    if quality is None:
        return []
    out = []
    for name, check, severity in quality.checks(QUALITY_CHECKS):
        value = check.value
        if name == "min_rows":
            text = f"min_rows >= {value}"
        elif name in ("max_row_drop_pct", "max_spike_pct"):
            text = f"{name} <= {value:g}%"
            if name == "max_spike_pct":
                text += (" vs median window" if check.baseline == "windows"
                         else f" vs median of last {check.loads} loads")
        elif name == "max_null_pct":
            text = "max_null_pct " + ", ".join(f"{f} <= {p:g}%" for f, p in value.items())
        elif name == "accepted_values":
            text = "accepted_values " + ", ".join(
                f"{f} in [{', '.join(str(v) for v in vs)}]" for f, vs in value.items())
        elif name == "freshness_sla":
            text = f"freshness_sla {value} UTC"
        elif name == "unique":
            text = f"unique ({', '.join(value)})"
        else:
            text = f"{name} {', '.join(value)}"
        out.append(f"{text} ({severity})")
    return out


# ------------------------------------------------------------ state per source
@dataclass(frozen=True)
class SourceQuality:
    """The latest quality state of one source: its latest checked load, and its SLA."""

    config_id: str
    state: str  # PASSED | WARNED | FAILED, or "" when nothing was checked
    checked_at: Optional[dt.datetime] = None
    run_id: Optional[str] = None
    failed: tuple[str, ...] = ()
    warned: tuple[str, ...] = ()
    sla: Any = None  # framework.ops.sla.SlaStatus

    @property
    def text(self) -> str:
        """One cell: ``FAILED: max_row_drop_pct; SLA 03:00 missed``."""
        parts = []
        if self.state:
            names = self.failed or self.warned
            parts.append(self.state + (f": {', '.join(names)}" if names else ""))
        if self.sla is not None:
            parts.append(f"SLA {self.sla.sla} {'met' if self.sla.met else 'missed'}")
        return "; ".join(parts)

    @property
    def level(self) -> str:
        """``bad``, ``warn`` or ``ok`` (the report's colours)."""
        sla_bad = self.sla is not None and not self.sla.met
        if self.state == FAILED or (sla_bad and self.sla.severity == "fail"):
            return "bad"
        if self.state == WARNED or sla_bad:
            return "warn"
        return "ok"

    def as_row(self) -> dict[str, Any]:
        return {"ConfigId": self.config_id, "State": self.state or None,
                "CheckedAt": self.checked_at, "RunId": self.run_id,
                "Failed": ", ".join(self.failed) or None, "Warned": ", ".join(self.warned) or None,
                "SlaDeadline": self.sla.deadline if self.sla else None,
                "SlaMet": self.sla.met if self.sla else None,
                "Sla": self.sla.message if self.sla else None}


def _label(row: Mapping[str, Any]) -> str:
    return row["CheckName"] + (f" {row['Field']}" if row.get("Field") else "")


def summarize(latest_rows: Iterable[Mapping[str, Any]], slas: Iterable[Any] = ()
              ) -> dict[str, SourceQuality]:
    """The state of each source from the rows of its latest checked run, and its SLA."""
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for row in latest_rows:
        by_source.setdefault(row["ConfigId"], []).append(row)
    sla_of = {s.config_id: s for s in slas}
    out = {}
    for cid in sorted(set(by_source) | set(sla_of)):
        rows = by_source.get(cid, [])
        failed = tuple(_label(r) for r in rows if not r["Passed"] and r["Severity"] == "fail")
        warned = tuple(_label(r) for r in rows if not r["Passed"] and r["Severity"] != "fail")
        state = "" if not rows else FAILED if failed else WARNED if warned else PASSED
        out[cid] = SourceQuality(cid, state, max((r["CheckedAt"] for r in rows), default=None),
                                 rows[0]["RunId"] if rows else None, failed, warned,
                                 sla_of.get(cid))
    return out
