"""Schemas of the control plane tables: one place for every column name and type."""

from __future__ import annotations

from pyspark.sql.types import (BooleanType, DoubleType, IntegerType, LongType, StringType,
                               StructField, StructType, TimestampType)

CONTROL_TABLE = "api_control_table"
AUDIT_TABLE = "api_audit_table"
WINDOW_LOG_TABLE = "api_window_log"
QUALITY_TABLE = "api_quality_results"
METADATA_SCHEMA = "metadata"


def _s(name: str, dtype, nullable: bool = True, comment: str = "") -> StructField:
    return StructField(name, dtype, nullable, {"comment": comment} if comment else {})


# The seed's columns first, in the seed's order, then restlake's extensions.
CONTROL_SCHEMA = StructType([
    _s("ConfigId", StringType(), False, "one row per source config"),
    _s("APIName", StringType(), False),
    _s("APIEndpoint", StringType()),
    _s("LoadType", StringType(), False, "FULL_LOAD | INCREMENTAL | PUSH"),
    _s("LoadStartTime", TimestampType(), comment="start of the range to load (UTC)"),
    _s("LoadEndTime", TimestampType(), comment="end of the range to load, exclusive (UTC)"),
    _s("RequestPayload", StringType(), comment="query params (JSON)"),
    _s("AuthMethod", StringType()),
    _s("LastLoadTime", TimestampType(), comment="watermark: end of the last successful range"),
    _s("TargetCatalog", StringType(), False),
    _s("TargetSchema", StringType(), False),
    _s("TargetTable", StringType(), False),
    _s("PrimaryColumn", StringType(), comment="comma-separated key fields, or a JSON list of them"),
    _s("DeltaColumn", BooleanType(), comment="true: FULL_LOAD -> INCREMENTAL after success"),
    _s("TriggerScheduleTime", StringType()),
    _s("TriggerFrequency", StringType()),
    _s("LoadStatus", StringType(), False, "PENDING | RUNNING | SUCCESS | FAILED"),
    _s("LastJobRunId", StringType()),
    _s("LastUpdatedTime", TimestampType()),
    # extensions
    _s("SourceSystem", StringType()),
    _s("HttpMethod", StringType()),
    _s("AllowPost", BooleanType()),
    _s("RequestBody", StringType(), comment="POST body (JSON)"),
    _s("RequestHeaders", StringType(), comment="extra headers (JSON), no secrets"),
    _s("AuthConfig", StringType(), comment="auth options (JSON): secret references only"),
    _s("PaginationConfig", StringType(), comment="JSON"),
    _s("DataPath", StringType()),
    _s("ParserName", StringType()),
    _s("ParserConfig", StringType(), comment="JSON"),
    _s("CursorField", StringType()),
    _s("WindowStrategy", StringType()),
    _s("Lookback", StringType()),
    _s("HistoryStartTime", TimestampType(), comment="config load_start"),
    _s("HistoryEndTime", TimestampType(), comment="config load_end (null: now)"),
    _s("RequiredFields", StringType()),
    _s("SchemaMode", StringType()),
    _s("Limits", StringType(), comment="JSON"),
    _s("Options", StringType(), comment="other config keys (JSON): archive, completeness, ..."),
    _s("Owner", StringType()),
    _s("Enabled", BooleanType()),
    _s("LoadId", StringType(), comment="the generation that set the current range"),
    _s("Attempt", IntegerType()),
    _s("ClaimedBy", StringType()),
    _s("LeaseExpiresAt", TimestampType()),
    _s("Checkpoint", StringType(), comment="JSON"),
    _s("ErrorMessage", StringType(), comment="last error, sanitized"),
    _s("GeneratedTime", TimestampType(), comment="when the current range was generated"),
    _s("ConfigHash", StringType()),
])

AUDIT_SCHEMA = StructType([
    _s("ConfigId", StringType(), False),
    _s("APIName", StringType()),
    _s("APIEndpoint", StringType()),
    _s("LoadType", StringType()),
    _s("TargetCatalog", StringType()),
    _s("TargetSchema", StringType()),
    _s("TargetTable", StringType()),
    _s("SourceRowCount", LongType(), comment="records received from the API"),
    _s("TargetRowCount", LongType(), comment="rows inserted or updated in the target"),
    _s("TargetTotalRowCount", LongType(), comment="rows in the target after the run"),
    _s("RunId", StringType()),
    _s("LoadStatus", StringType(), comment="SUCCESS | FAILED | PARTIAL | FAILED_QUALITY | LEASE_LOST | INTERRUPTED"),
    _s("ErrorMessage", StringType()),
    _s("LoadStartTime", TimestampType()),
    _s("LoadEndTime", TimestampType()),
    _s("RunDuration", DoubleType(), comment="seconds"),
    _s("LoggedAt", TimestampType()),
    _s("LoadedBy", StringType()),
    # telemetry
    _s("LoadId", StringType()),
    _s("Attempt", IntegerType()),
    _s("SourceSystem", StringType()),
    _s("RunStartedAt", TimestampType()),
    _s("WindowsTotal", IntegerType()),
    _s("WindowsLoaded", IntegerType()),
    _s("WindowsSkipped", IntegerType(), comment="already committed by an earlier attempt"),
    _s("Pages", LongType()),
    _s("Requests", LongType()),
    _s("Retries", LongType()),
    _s("HttpStatusCounts", StringType(), comment="JSON {status: count}"),
    _s("BytesReceived", LongType()),
    _s("RejectedRows", LongType(), comment="rows sent to the quarantine table"),
    _s("RescuedRows", LongType(), comment="rows with fields in _rescued_data"),
    _s("SchemaChanges", StringType(), comment="JSON list of fields seen that the target lacks"),
    _s("ExpectedRowCount", LongType(), comment="total reported by the API, when it reports one"),
    _s("TargetVersion", LongType()),
    # push sources (LoadType PUSH): one row per flush
    _s("EventsReceived", LongType(), comment="PUSH: webhook events in this flush"),
    _s("DuplicateRows", LongType(), comment="PUSH: records that changed nothing (an event "
                                            "delivered again, or superseded in the flush)"),
    _s("DetailRequests", LongType(), comment="of Requests, those sent for detail fan-out (detail:)"),
    # where a load's time went (framework.load.audit.PHASE_COLUMNS); null for pushes and replays
    _s("ClaimSeconds", DoubleType(), comment="claiming the control row (share of a batch claim)"),
    _s("FetchSeconds", DoubleType(), comment="waiting for windows: requests, parsing, staging"),
    _s("StageSeconds", DoubleType(), comment="parsing pages and writing staging files, summed "
                                             "over windows (part of FetchSeconds)"),
    _s("WriteSeconds", DoubleType(), comment="target commits, quarantine, raw-page archive"),
    _s("BookkeepingSeconds", DoubleType(), comment="the rest of RunDuration: control plane, "
                                                   "window/health logs, quality, counts"),
])

WINDOW_LOG_SCHEMA = StructType([
    _s("ConfigId", StringType(), False),
    _s("LoadId", StringType(), False),
    _s("RunId", StringType()),
    _s("WindowStart", TimestampType(), False),
    _s("WindowEnd", TimestampType(), False),
    _s("Status", StringType(), False, "SUCCESS | FAILED"),
    _s("Rows", LongType()),
    _s("Pages", LongType()),
    _s("Requests", LongType()),
    _s("Retries", LongType()),
    _s("TargetVersion", LongType()),
    _s("Checkpoint", StringType(), comment="JSON: last committed page cursor"),
    _s("ErrorMessage", StringType()),
    _s("LoggedAt", TimestampType()),
])

QUALITY_SCHEMA = StructType([
    _s("ConfigId", StringType(), False),
    _s("LoadId", StringType(), comment="the load (range) the check judged"),
    _s("RunId", StringType()),
    _s("LoadType", StringType(), comment="FULL_LOAD | INCREMENTAL"),
    _s("Phase", StringType(), False, "before_commit | after_commit"),
    _s("CheckName", StringType(), False, "min_rows | max_row_drop_pct | max_spike_pct | max_null_pct | "
       "not_null | accepted_values | unique | schema_drift"),
    _s("Field", StringType(), comment="the field checked (null for row counts)"),
    _s("ObservedValue", DoubleType(), comment="what the load showed (rows, %, count)"),
    _s("Threshold", DoubleType(), comment="the limit it was held to"),
    _s("Severity", StringType(), False, "warn | fail"),
    _s("Passed", BooleanType(), False),
    _s("Message", StringType(), comment="what was found, sanitized"),
    _s("Detail", StringType(), comment="JSON: e.g. the drift kind or sample values"),
    _s("CheckedAt", TimestampType(), False),
])

CONTROL_COLUMNS = [f.name for f in CONTROL_SCHEMA.fields]
AUDIT_COLUMNS = [f.name for f in AUDIT_SCHEMA.fields]
