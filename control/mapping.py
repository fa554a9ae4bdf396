"""Config <-> control row, 1:1 (no Spark).

The control row is the source of truth at run time: a data engineer may add or edit
a row by hand, so :func:`row_to_config` validates it with the same rules as YAML and
names the control column in its errors.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from control.states import ControlState, LoadPolicy, LoadStatus, LoadType
from framework.config import SourceConfig, field_list_text, parse_source
from framework.errors import ConfigError
from framework.timeutil import parse_duration, to_utc

# config key -> control column (for error messages on hand-edited rows)
KEY_TO_COLUMN = {
    "config_id": "ConfigId", "api_name": "APIName", "source_system": "SourceSystem",
    "endpoint": "APIEndpoint", "method": "HttpMethod", "allow_post": "AllowPost",
    "params": "RequestPayload", "body": "RequestBody", "headers": "RequestHeaders",
    "auth": "AuthConfig", "pagination": "PaginationConfig", "data_path": "DataPath",
    "parser": "ParserName", "parser_options": "ParserConfig", "primary_key": "PrimaryColumn",
    "delta_column": "DeltaColumn", "cursor_field": "CursorField", "load_start": "HistoryStartTime",
    "load_end": "HistoryEndTime", "window": "WindowStrategy", "lookback": "Lookback",
    "target": "TargetCatalog/TargetSchema/TargetTable", "schedule": "TriggerScheduleTime/TriggerFrequency",
    "limits": "Limits", "required_fields": "RequiredFields", "schema_mode": "SchemaMode",
    "owner": "Owner", "enabled": "Enabled", "webhook": "Options",
}
OPTION_KEYS = ("archive", "completeness", "description", "health", "webhook", "allowed_hosts",
               "quality", "detail")
KEY_TO_COLUMN.update({k: "Options" for k in OPTION_KEYS})
# nested fields kept in a column of their own
FIELD_TO_COLUMN = {
    "auth.method": "AuthMethod", "target.catalog": "TargetCatalog", "target.schema": "TargetSchema",
    "target.table": "TargetTable", "schedule.time": "TriggerScheduleTime",
    "schedule.frequency": "TriggerFrequency", **{k: "Options" for k in OPTION_KEYS},
}
JSON_COLUMNS = ("RequestPayload", "RequestBody", "RequestHeaders", "AuthConfig",
                "PaginationConfig", "ParserConfig", "Limits", "Options")


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_to_row(cfg: SourceConfig) -> dict[str, Any]:
    """The config columns of a control row (state columns are set by the state machine)."""
    dump = cfg.model_dump(mode="json", by_alias=True)
    auth = dict(dump["auth"])
    method = auth.pop("method")
    options = {k: _without_nulls(dump[k]) for k in OPTION_KEYS if dump.get(k) not in (None, [])}
    row = {
        "ConfigId": cfg.config_id,
        "APIName": cfg.api_name,
        "SourceSystem": cfg.system,
        "APIEndpoint": cfg.endpoint,
        "HttpMethod": cfg.method,
        "AllowPost": cfg.allow_post,
        "RequestPayload": _json(dump["params"]),
        "RequestBody": _json(dump["body"]),
        "RequestHeaders": _json(dump["headers"]),
        "AuthMethod": method,
        "AuthConfig": _json({k: v for k, v in auth.items() if v is not None}),
        "PaginationConfig": _json({k: v for k, v in dump["pagination"].items() if v is not None}),
        "DataPath": cfg.data_path,
        "ParserName": cfg.parser,
        "ParserConfig": _json(dump["parser_options"]),
        "PrimaryColumn": field_list_text(cfg.primary_key),
        "DeltaColumn": cfg.delta_column,
        "CursorField": cfg.cursor_field,
        "WindowStrategy": cfg.window,
        "Lookback": cfg.lookback,
        "HistoryStartTime": cfg.load_start,
        "HistoryEndTime": cfg.load_end,
        "TargetCatalog": cfg.target.catalog,
        "TargetSchema": cfg.target.schema_,
        "TargetTable": cfg.target.table,
        "TriggerScheduleTime": cfg.schedule.time,
        "TriggerFrequency": cfg.schedule.frequency,
        "Limits": _json(dump["limits"]),
        "RequiredFields": field_list_text(cfg.required_fields),
        "SchemaMode": cfg.schema_mode,
        "Owner": cfg.owner,
        "Enabled": cfg.enabled,
        "Options": _json(options),
    }
    row["ConfigHash"] = hashlib.sha256(_json({k: v for k, v in row.items()}).encode()).hexdigest()[:16]
    return row


def _without_nulls(value: Any) -> Any:
    """A JSON value without null members (unset optional keys), recursively."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _load_json(row: dict[str, Any], column: str, cid: str) -> Any:
    text = row.get(column)
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise ConfigError(f"expected JSON text, got {type(text).__name__}",
                          source=cid, field=f"control row column {column}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"is not valid JSON ({exc.msg} at position {exc.pos})",
                          source=cid, field=f"control row column {column}") from None


def row_to_config(row: dict[str, Any]) -> SourceConfig:
    """Rebuild and validate the config of a control row.

    Raises:
        ConfigError: naming the row (ConfigId) and the control column.
    """
    cid = str(row.get("ConfigId") or "?")
    # A NULL column is left out, so that a required one is reported as "is required".
    target = {k: v for k, v in (("catalog", row.get("TargetCatalog")),
                                ("schema", row.get("TargetSchema")),
                                ("table", row.get("TargetTable"))) if v is not None}
    raw: dict[str, Any] = {k: v for k, v in (
        ("config_id", row.get("ConfigId")),
        ("api_name", row.get("APIName")),
        ("endpoint", row.get("APIEndpoint")),
        ("load_start", row.get("HistoryStartTime") or row.get("LoadStartTime")),
    ) if v is not None}
    raw["target"] = target
    optional = {
        "source_system": row.get("SourceSystem"),
        "method": row.get("HttpMethod"),
        "allow_post": row.get("AllowPost"),
        "params": _load_json(row, "RequestPayload", cid),
        "body": _load_json(row, "RequestBody", cid),
        "headers": _load_json(row, "RequestHeaders", cid),
        "pagination": _load_json(row, "PaginationConfig", cid),
        "data_path": row.get("DataPath"),
        "parser": row.get("ParserName"),
        "parser_options": _load_json(row, "ParserConfig", cid),
        "primary_key": row.get("PrimaryColumn"),
        "delta_column": _bool(row.get("DeltaColumn")),
        "cursor_field": row.get("CursorField"),
        "load_end": row.get("HistoryEndTime"),
        "window": row.get("WindowStrategy"),
        "lookback": row.get("Lookback"),
        "limits": _load_json(row, "Limits", cid),
        "required_fields": row.get("RequiredFields"),
        "schema_mode": row.get("SchemaMode"),
        "owner": row.get("Owner"),
        "enabled": row.get("Enabled"),
    }
    auth = _load_json(row, "AuthConfig", cid) or {}
    if not isinstance(auth, dict):
        raise ConfigError("expected a JSON object", source=cid, field="control row column AuthConfig")
    auth_method = row.get("AuthMethod") or "none"
    # The seed wrote "apikey"/"oauth"; accept those spellings from hand-made rows.
    auth_method = {"apikey": "api_key", "oauth": "oauth2_client_credentials"}.get(auth_method, auth_method)
    raw["auth"] = {"method": auth_method, **auth}
    schedule = {k: v for k, v in (("time", row.get("TriggerScheduleTime")),
                                  ("frequency", row.get("TriggerFrequency"))) if v}
    if schedule:
        raw["schedule"] = schedule
    options = _load_json(row, "Options", cid) or {}
    if not isinstance(options, dict):
        raise ConfigError("expected a JSON object", source=cid, field="control row column Options")
    raw.update(options)
    raw.update({k: v for k, v in optional.items() if v is not None})
    try:
        return parse_source(raw)
    except ConfigError as exc:
        field = exc.field or ""
        top = field.split(".")[0]
        column = FIELD_TO_COLUMN.get(field) or KEY_TO_COLUMN.get(top) or FIELD_TO_COLUMN.get(top)
        named = field != top or top in OPTION_KEYS
        where = f"control row column {column}" + (f" ({field})" if column and named else "") \
            if column else (field or None)
        # exc.message is "source '<id>': <field>: <message>": keep only the message.
        prefix = "".join(f"{part}: " for part in (
            f"source '{exc.source}'" if exc.source else None, exc.field) if part)
        msg = exc.message[len(prefix):] if exc.message.startswith(prefix) else exc.message
        raise ConfigError(msg, source=cid, field=where) from None


def _bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def row_to_state(row: dict[str, Any]) -> ControlState:
    """The state columns of a control row as a :class:`ControlState`.

    Raises:
        ConfigError: a state column holds no state (``LoadType = 'INCREMENTALL'``),
            naming the row and the column.
    """
    def ts(name: str) -> dt.datetime | None:
        value = row.get(name)
        return to_utc(value) if value is not None else None

    return ControlState(
        load_type=_state_enum(row, "LoadType", LoadType) or LoadType.FULL_LOAD,
        load_status=_state_enum(row, "LoadStatus", LoadStatus),
        load_start=ts("LoadStartTime"),
        load_end=ts("LoadEndTime"),
        last_load_time=ts("LastLoadTime"),
        load_id=row.get("LoadId"),
        attempt=int(row.get("Attempt") or 0),
        claimed_by=row.get("ClaimedBy"),
        lease_expires_at=ts("LeaseExpiresAt"),
        run_id=row.get("LastJobRunId"),
        error=row.get("ErrorMessage"),
        generated_at=ts("GeneratedTime"),
    )


def _state_enum(row: dict[str, Any], column: str, kind: Any) -> Any:
    """The state value of ``column`` (as written by hand too: ``incremental``), or None.

    Raises:
        ConfigError: naming the row and the column, when the value is not one of ``kind``.
    """
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return kind(str(value).strip().upper())
    except ValueError:
        raise ConfigError(f"{value!r} is not one of {', '.join(k.value for k in kind)}",
                          source=row.get("ConfigId"),
                          field=f"control row column {column}") from None


def state_to_columns(state: ControlState) -> dict[str, Any]:
    """The control columns that hold ``state``."""
    return {
        "LoadType": state.load_type.value,
        "LoadStatus": state.load_status.value if state.load_status else None,
        "LoadStartTime": state.load_start,
        "LoadEndTime": state.load_end,
        "LastLoadTime": state.last_load_time,
        "LoadId": state.load_id,
        "Attempt": state.attempt,
        "ClaimedBy": state.claimed_by,
        "LeaseExpiresAt": state.lease_expires_at,
        "LastJobRunId": state.run_id,
        "ErrorMessage": state.error,
        "GeneratedTime": state.generated_at,
    }


def lease_of(row: dict[str, Any]) -> dt.timedelta:
    """How long a claim of ``row`` holds: its ``limits.lease_s``.

    A row whose ``Limits`` cannot be read gets the default lease; its load then fails on
    that column with the column named, and the claim still records the failure.
    """
    from framework.config import Limits

    try:
        limits = json.loads(row.get("Limits") or "{}")
        return dt.timedelta(seconds=Limits(**limits).lease_s)
    except Exception:  # noqa: BLE001 - reported by row_to_config when the load starts
        return dt.timedelta(seconds=Limits().lease_s)


def policy_of(cfg: SourceConfig) -> LoadPolicy:
    """The range policy the state machine needs from a config."""
    return LoadPolicy(history_start=cfg.load_start, history_end=cfg.load_end,
                      delta_column=cfg.delta_column, lookback=parse_duration(cfg.lookback))
