"""The audit row of a run, built in one place for every kind of run (no Spark).

A load (``restlake run``, wheel tasks, notebooks, the service), a replay
(``restlake replay``) and a flush of pushed events (``LoadType = PUSH``) each append
exactly one row to ``metadata.api_audit_table``; :func:`audit_record` builds it from
the control row of the source, what the run did (:class:`LoadProgress`) and the HTTP
telemetry, so every kind carries the same columns with the same meanings: ``LoadId``
and ``Attempt`` say which load and which try, and ``ErrorMessage`` is ``None`` unless
the run failed.

Each load's row also says where its time went (:data:`PHASE_COLUMNS`): seconds spent
claiming the row, waiting for windows to be fetched (and, inside that, staging their
rows), committing to the target, and on the rest (the bookkeeping).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

from framework.secrets import redact
from framework.timeutil import utcnow


def current_user() -> str:
    """Who runs this process (the audit's ``LoadedBy``)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


#: The audit column of each phase of a load (seconds).
#:
#: * ``claim``: claiming the control row (a share of the batch claim with ``run --all``);
#: * ``fetch``: wall time the load waited for its windows (requests, parsing, staging);
#: * ``stage``: the part of the windows' time spent parsing pages and writing rows to
#:   staging files, summed over the windows (with ``limits.concurrency`` > 1 it can
#:   exceed ``fetch``: windows stage in parallel);
#: * ``write``: target commits (MERGE, overwrite or append), quarantine and raw-page archive;
#: * ``bookkeeping``: everything else of the load's duration: control, window-log,
#:   health-log and quality reads and writes, the target's row count. The audit append
#:   itself comes after the duration is measured.
PHASE_COLUMNS = {"claim": "ClaimSeconds", "fetch": "FetchSeconds", "stage": "StageSeconds",
                 "write": "WriteSeconds", "bookkeeping": "BookkeepingSeconds"}


@dataclass
class LoadProgress:
    """What a run has done so far: windows, records, rows written, the target version."""

    windows_total: int = 0
    windows_loaded: int = 0
    windows_skipped: int = 0
    source_rows: int = 0
    rows_written: int = 0
    rejected: int = 0
    rescued: int = 0
    expected: Optional[int] = None
    schema_changes: set[str] = field(default_factory=set)
    version: Optional[int] = None
    quality_failed: bool = False  # a quality check of severity fail stopped the load
    phases: dict[str, float] = field(default_factory=dict)  # PHASE_COLUMNS keys -> seconds
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_time(self, phase: str, seconds: float) -> None:
        """Add ``seconds`` to ``phase`` (one of :data:`PHASE_COLUMNS`); thread-safe."""
        if phase not in PHASE_COLUMNS:
            raise ValueError(f"unknown phase {phase!r}")
        with self._lock:
            self.phases[phase] = self.phases.get(phase, 0.0) + max(0.0, seconds)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Count the wall time of the ``with`` block in ``phase`` (also when it raises)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add_time(phase, time.perf_counter() - t0)

    def settle_phases(self, duration_s: float) -> None:
        """Put what the measured phases do not cover of ``duration_s`` in ``bookkeeping``
        (claim and stage are not part of the duration: claim precedes it, stage is
        inside fetch)."""
        with self._lock:
            covered = self.phases.get("fetch", 0.0) + self.phases.get("write", 0.0)
            for phase in PHASE_COLUMNS:
                self.phases.setdefault(phase, 0.0)
            self.phases["bookkeeping"] = max(0.0, duration_s - covered)

    def __repr__(self) -> str:
        return (f"LoadProgress(windows={self.windows_loaded}/{self.windows_total} "
                f"records={self.source_rows} rows={self.rows_written})")


def audit_record(control_row: Mapping[str, Any], *, load_type: str, status: str,
                 error: Optional[str], run_id: str, load_id: Optional[str],
                 attempt: Optional[int], load_start: Optional[dt.datetime],
                 load_end: Optional[dt.datetime], started_at: dt.datetime, duration_s: float,
                 loaded_by: str, progress: LoadProgress, telemetry: Mapping[str, Any],
                 total_rows: Optional[int], extra: Optional[Mapping[str, Any]] = None
                 ) -> dict[str, Any]:
    """The audit row of one run.

    Args:
        control_row: the source's control row (identity, endpoint, target).
        load_type: ``FULL_LOAD`` | ``INCREMENTAL`` | ``REPLAY``.
        status: ``SUCCESS`` | ``FAILED`` | ``PARTIAL``.
        error: the sanitized error, ``None`` on success.
        telemetry: :meth:`framework.http.telemetry.Telemetry.as_dict` of the run.
        total_rows: rows in the target after the run (``None`` if unknown).
        extra: the columns of one kind of run only (``EventsReceived`` of a push flush).
    """
    row = control_row
    return {
        "ConfigId": row.get("ConfigId"), "APIName": row.get("APIName"),
        "APIEndpoint": redact(row.get("APIEndpoint")), "LoadType": load_type,
        "TargetCatalog": row.get("TargetCatalog"), "TargetSchema": row.get("TargetSchema"),
        "TargetTable": row.get("TargetTable"),
        "SourceRowCount": progress.source_rows, "TargetRowCount": progress.rows_written,
        "TargetTotalRowCount": total_rows, "RunId": run_id, "LoadStatus": status,
        "ErrorMessage": error, "LoadStartTime": load_start, "LoadEndTime": load_end,
        "RunDuration": round(duration_s, 3), "LoggedAt": utcnow(), "LoadedBy": loaded_by,
        "LoadId": load_id, "Attempt": attempt, "SourceSystem": row.get("SourceSystem"),
        "RunStartedAt": started_at,
        "WindowsTotal": progress.windows_total, "WindowsLoaded": progress.windows_loaded,
        "WindowsSkipped": progress.windows_skipped, "Pages": telemetry.get("pages", 0),
        "Requests": telemetry.get("requests", 0), "Retries": telemetry.get("retries", 0),
        "HttpStatusCounts": json.dumps(telemetry.get("status_counts", {}), sort_keys=True),
        "BytesReceived": telemetry.get("bytes_received", 0), "RejectedRows": progress.rejected,
        "RescuedRows": progress.rescued,
        "SchemaChanges": (json.dumps(sorted(progress.schema_changes))
                          if progress.schema_changes else None),
        "ExpectedRowCount": progress.expected, "TargetVersion": progress.version,
        "DetailRequests": telemetry.get("detail_requests", 0),
        **{column: (round(progress.phases[phase], 3) if phase in progress.phases else None)
           for phase, column in PHASE_COLUMNS.items()},
        **(extra or {}),
    }
