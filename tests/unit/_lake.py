"""Small Delta tables written with delta-rs (no JVM), for tests of the read path."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

import pyarrow as pa
from deltalake import write_deltalake

from framework.lake.tables import TableRef, Warehouse
from framework.ops.queries import HEALTH_COLUMNS

UTC = dt.timezone.utc
TS = pa.timestamp("us", tz="UTC")
HEALTH_TYPES = {"CheckedAt": TS, "StatusCode": pa.int32(), "Ok": pa.bool_(), "ElapsedMs": pa.float64()}
CONTROL_TYPES = {"LoadStartTime": TS, "LoadEndTime": TS, "LastLoadTime": TS, "LastUpdatedTime": TS,
                 "Enabled": pa.bool_(), "Attempt": pa.int32()}
AUDIT_TYPES = {"LoggedAt": TS, "SourceRowCount": pa.int64(), "TargetRowCount": pa.int64(),
               "TargetTotalRowCount": pa.int64(), "RunDuration": pa.float64()}


def write(warehouse: Warehouse, ref: TableRef, rows: list[dict[str, Any]], types: dict[str, Any],
          columns: Iterable[str], *, append_only: bool = False, mode: str = "append") -> None:
    cols = list(columns)
    schema = pa.schema([(c, types.get(c, pa.string())) for c in cols])
    table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows], schema=schema)
    write_deltalake(warehouse.path(ref), table, mode=mode,
                    configuration={"delta.appendOnly": "true"} if append_only else None)


def health_rows(config_id: str, start: dt.datetime, oks: list[bool], step=dt.timedelta(minutes=10),
                elapsed: float = 20.0) -> list[dict[str, Any]]:
    return [{"ConfigId": config_id, "SourceSystem": "demo", "CheckKind": "probe",
             "CheckedAt": start + i * step, "StatusCode": 200 if ok else 503, "Ok": ok,
             "ElapsedMs": elapsed + i, "ErrorKind": None if ok else "http_status",
             "ErrorMessage": None if ok else f"HTTP 503 #{i}", "RunId": f"r{i:04d}"}
            for i, ok in enumerate(oks)]


def write_health(warehouse: Warehouse, rows: list[dict[str, Any]], catalog: str = "main") -> None:
    write(warehouse, TableRef(catalog, "metadata", "api_health_log"), rows, HEALTH_TYPES,
          HEALTH_COLUMNS, append_only=True)


CONTROL_COLUMNS = ("ConfigId", "APIName", "LoadType", "LoadStatus", "LoadStartTime", "LoadEndTime",
                   "LastLoadTime", "TargetCatalog", "TargetSchema", "TargetTable", "TriggerFrequency",
                   "Enabled", "Attempt", "ErrorMessage", "AuthMethod", "AuthConfig", "APIEndpoint",
                   "HistoryStartTime", "SourceSystem")
AUDIT_COLUMNS = ("ConfigId", "RunId", "LoadType", "LoadStatus", "LoggedAt", "SourceRowCount",
                 "TargetRowCount", "TargetTotalRowCount", "RunDuration", "ErrorMessage")
