"""The audit row of a run, built in one place for every kind of run (no Spark).

A load (``restlake run``, wheel tasks, notebooks, the service), a replay
(``restlake replay``) and a flush of pushed events (``LoadType = PUSH``) each append
exactly one row to ``metadata.api_audit_table``; :func:`audit_record` builds it from
the control row of the source, what the run did (:class:`LoadProgress`) and the HTTP
telemetry, so every kind carries the same columns with the same meanings: ``LoadId``
and ``Attempt`` say which load and which try, and ``ErrorMessage`` is ``None`` unless
the run failed.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from framework.secrets import redact
from framework.timeutil import utcnow


def current_user() -> str:
    """Who runs this process (the audit's ``LoadedBy``)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


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
        **(extra or {}),
    }
