"""Record shaping without Spark: column types, rescue of unknown fields, contract columns.

A parsed record (a JSON object) becomes a target row:

* keys become columns (names made safe for Delta: ``[A-Za-z0-9_]``);
* with a known target schema, a key the target lacks, or a value whose type does not
  fit its column, goes to ``_rescued_data`` (a JSON object) unless ``schema_mode`` is
  ``evolve`` (the column is added) or ``fail``;
* nested objects and lists in string columns are kept as JSON text;
* every row carries the cache contract (``source_system``, ``collected_at_utc``,
  ``entity_key``, ``payload_hash``) and lineage (``_run_id``, ``_window_start``,
  ``_window_end``).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
import json
import operator

import orjson
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from framework.errors import RecordRejected, SchemaDriftError, WindowError
from framework.timeutil import iso


class ColumnType(str, enum.Enum):
    BOOLEAN = "boolean"
    LONG = "long"
    DOUBLE = "double"
    STRING = "string"
    TIMESTAMP = "timestamp"


CONTRACT_COLUMNS: dict[str, ColumnType] = {
    "source_system": ColumnType.STRING,
    "collected_at_utc": ColumnType.TIMESTAMP,
    "entity_key": ColumnType.STRING,
    "payload_hash": ColumnType.STRING,
    "_run_id": ColumnType.STRING,
    "_window_start": ColumnType.TIMESTAMP,
    "_window_end": ColumnType.TIMESTAMP,
    "_rescued_data": ColumnType.STRING,
}
SEQ_COLUMN = "_seq"  # staging only: arrival order, for "last seen wins"
RESERVED = set(CONTRACT_COLUMNS) | {SEQ_COLUMN}
_SAFE = re.compile(r"[^A-Za-z0-9_]")


@functools.lru_cache(maxsize=8192)  # the same few keys come back on every record
def column_name(key: str) -> str:
    """A Delta-safe column name for a JSON key (``user.login`` -> ``user_login``)."""
    name = _SAFE.sub("_", str(key)) or "_"
    if name[0].isdigit():
        name = "_" + name
    return name[:255]


_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def canonical_json_bytes(value: Any) -> bytes:
    """Canonical JSON (sorted keys, compact, UTF-8) used for hashes and rescued data.

    orjson does the work (the per-record hot path); integers beyond 64 bits, which it
    refuses, fall back to the standard library with the same output format.
    """
    try:
        return orjson.dumps(value, default=_json_default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=_json_default).encode("utf-8")


def canonical_json(value: Any) -> str:
    """:func:`canonical_json_bytes` as text."""
    return canonical_json_bytes(value).decode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return iso(value) if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def payload_hash(record: dict[str, Any]) -> str:
    """sha256 of the record's canonical JSON."""
    return hashlib.sha256(canonical_json_bytes(record)).hexdigest()


def infer_type(value: Any) -> Optional[ColumnType]:
    """The column type a JSON value suggests (``None`` for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ColumnType.BOOLEAN
    if isinstance(value, int):
        return ColumnType.LONG if -(2 ** 63) <= value < 2 ** 63 else ColumnType.STRING
    if isinstance(value, float):
        return ColumnType.DOUBLE
    if isinstance(value, dt.datetime):
        return ColumnType.TIMESTAMP
    return ColumnType.STRING


def merge_types(a: Optional[ColumnType], b: Optional[ColumnType]) -> Optional[ColumnType]:
    """The type that holds both (long + double -> double; other conflicts -> string)."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if {a, b} == {ColumnType.LONG, ColumnType.DOUBLE}:
        return ColumnType.DOUBLE
    return ColumnType.STRING


def fits(value: Any, ctype: ColumnType) -> bool:
    """True when ``value`` can be stored in a column of ``ctype`` without changing meaning."""
    if value is None:
        return True
    if ctype == ColumnType.STRING:
        return isinstance(value, (str, dict, list))
    if ctype == ColumnType.BOOLEAN:
        return isinstance(value, bool)
    if ctype == ColumnType.LONG:
        return (isinstance(value, int) and not isinstance(value, bool)
                and -(2 ** 63) <= value < 2 ** 63)
    if ctype == ColumnType.DOUBLE:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ctype == ColumnType.TIMESTAMP:
        if isinstance(value, dt.datetime):
            return True
        if isinstance(value, str):
            try:
                from framework.timeutil import to_utc

                to_utc(value)
                return True
            except ValueError:
                return False
    return False


def encode(value: Any, ctype: ColumnType) -> Any:
    """The JSON value staged for a column of ``ctype`` (nested values become JSON text)."""
    if value is None:
        return None
    if ctype == ColumnType.STRING and isinstance(value, (dict, list)):
        return canonical_json(value)
    if ctype == ColumnType.TIMESTAMP:
        from framework.timeutil import to_utc

        return to_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if ctype == ColumnType.DOUBLE and isinstance(value, int):
        return float(value)
    return value


_SLOW = object()  # "look closer": types that need infer_type (ints may not fit a long)
_MIN_LONG, _MAX_LONG = -(2 ** 63), 2 ** 63 - 1
_FAST_TYPES: dict[type, Any] = {bool: ColumnType.BOOLEAN, int: ColumnType.LONG, float: ColumnType.DOUBLE,
                                str: ColumnType.STRING, dict: ColumnType.STRING,
                                list: ColumnType.STRING}


@dataclass
class SchemaTracker:
    """Columns seen in records, in first-seen order, with their merged types."""

    columns: dict[str, Optional[ColumnType]] = field(default_factory=dict)
    #: (keys, value types) of rows already observed -> getter of their int values (or None).
    _seen: dict[tuple[tuple[str, ...], tuple[type, ...]], Any] = field(
        default_factory=dict, repr=False, compare=False)

    def observe(self, row: dict[str, Any]) -> None:
        # A column's type depends only on the Python types of its values (and whether an
        # int fits a long). A row with the keys and value types of one already observed
        # therefore changes nothing, unless one of its ints is out of range: the hot path
        # is one tuple lookup per row instead of a type check per value.
        types = tuple(map(type, row.values()))
        signature = (tuple(row), types)
        ints = self._seen.get(signature, _SLOW)
        if ints is None:
            return
        if ints is not _SLOW:
            values = ints(row)
            if _MIN_LONG <= min(values) and max(values) <= _MAX_LONG:
                return
        self._observe_each(row)
        if ints is _SLOW and len(self._seen) < 1024:
            int_keys = [key for key, t in zip(row, types) if t is int]
            # itemgetter of one key returns the value itself: keep a tuple either way.
            self._seen[signature] = (None if not int_keys else
                                     operator.itemgetter(*int_keys, *int_keys[:1]))

    def _observe_each(self, row: dict[str, Any]) -> None:
        columns = self.columns
        for key, value in row.items():
            # Fast path: a value of the type already recorded (or a null) changes nothing.
            current = columns.get(key, _SLOW)
            if value is None and current is not _SLOW:
                continue
            kind = _FAST_TYPES.get(type(value), _SLOW)
            if kind is ColumnType.LONG and not _MIN_LONG <= value <= _MAX_LONG:
                kind = _SLOW
            if kind is current and kind is not _SLOW:
                continue
            if key in RESERVED:
                continue
            inferred = infer_type(value)
            columns[key] = merge_types(current, inferred) if current is not _SLOW else inferred

    def merge(self, other: "SchemaTracker") -> None:
        for key, ctype in other.columns.items():
            self.columns[key] = merge_types(self.columns.get(key), ctype) if key in self.columns else ctype

    def resolved(self) -> dict[str, ColumnType]:
        """Types with all-null columns defaulted to string."""
        return {k: (v or ColumnType.STRING) for k, v in self.columns.items()}


@dataclass
class RowShaper:
    """Turns parsed records into staged rows for one load.

    Field names in ``primary_key`` and ``required_fields`` name a record field either as
    the parser produces it (``updated-at``) or as its column (``updated_at``): both
    mean the field whose :func:`column_name` is the same.

    Args:
        source_system: the contract's ``source_system``.
        primary_key: record fields forming ``entity_key`` (and the MERGE key).
        required_fields: records lacking any of them are rejected.
        columns: the target's data columns and types, or ``None`` when the target does
            not exist yet (every key becomes a column).
        schema_mode: ``rescue`` | ``evolve`` | ``fail``.
    """

    source_system: str
    primary_key: tuple[str, ...] = ()
    required_fields: tuple[str, ...] = ()
    columns: Optional[dict[str, ColumnType]] = None
    schema_mode: str = "rescue"
    new_fields: set[str] = field(default_factory=set)
    rescued_rows: int = 0
    #: target column -> the type of values that did not fit it (rescued: schema drift)
    retyped: dict[str, ColumnType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lower = {k.lower(): k for k in (self.columns or {})}
        self._stamps: dict[dt.datetime, str] = {}
        self._plans: dict[tuple[str, ...], list[tuple[str, Optional[str], Optional[ColumnType]]]] = {}
        self._needed = tuple(dict.fromkeys(self.required_fields + self.primary_key))
        self._lookups: dict[tuple[str, ...], tuple[tuple[tuple[str, Optional[str]], ...],
                                                   tuple[Optional[str], ...]]] = {}
        self._keys_found = not self.primary_key

    def _lookup(self, keys: tuple[str, ...]) -> tuple[tuple[tuple[str, Optional[str]], ...],
                                                        tuple[Optional[str], ...]]:
        """For a record's key set: the key holding each required / primary-key field."""
        found = self._lookups.get(keys)
        if found is None:
            by_column: dict[str, str] = {}
            for key in keys:
                by_column.setdefault(column_name(key), key)
            where = {name: (name if name in keys else by_column.get(column_name(name)))
                     for name in self._needed}
            found = (tuple(where.items()), tuple(where[name] for name in self.primary_key))
            if len(self._lookups) < 1024:
                self._lookups[keys] = found
        return found

    def check_keys(self, records: list[Any]) -> None:
        """Fail when a primary-key field is in none of the records of a window's first page.

        A parser that never produces the key would otherwise send every record to
        quarantine and leave the MERGE nothing to join on; this stops the window before
        anything of it is written. Pages after one that had every key are not checked.

        Raises:
            WindowError: names the missing field and the fields the records have.
        """
        if self._keys_found or not records:
            return
        seen: dict[str, None] = {}
        for record in records:
            if isinstance(record, dict):
                seen.update(dict.fromkeys(record))
        columns = {column_name(k) for k in seen}
        missing = [k for k in self.primary_key if k not in seen and column_name(k) not in columns]
        if missing:
            shown = ", ".join(list(seen)[:40]) + (", ..." if len(seen) > 40 else "")
            raise WindowError(f"primary_key field {missing[0]} is not in the parsed records "
                              f"(fields seen: {shown or 'none'})")
        self._keys_found = True

    def _stamp(self, value: dt.datetime) -> str:
        # Window bounds and a page's collected_at repeat on every row: format them once.
        text = self._stamps.get(value)
        if text is None:
            if len(self._stamps) > 64:
                self._stamps.clear()
            text = self._stamps[value] = encode(value, ColumnType.TIMESTAMP)
        return text

    def _plan(self, keys: tuple[str, ...]) -> list[tuple[str, Optional[str], Optional[ColumnType]]]:
        """Where each key of a record goes: (key, column or None to rescue, type to check).

        Records of one API nearly always share their keys, so the plan is computed once per
        key set and reused (the per-record hot path only follows it).

        Raises:
            SchemaDriftError: a new field while ``schema_mode`` is ``fail``.
        """
        plan: list[tuple[str, Optional[str], Optional[ColumnType]]] = []
        seen_lower: set[str] = set()
        for key in keys:
            col = column_name(key)
            if col in RESERVED or col.lower() in seen_lower:
                plan.append((key, None, None))
                continue
            if self.columns is None:
                plan.append((key, col, None))
                seen_lower.add(col.lower())
                continue
            target_col = col if col in self.columns else self._lower.get(col.lower())
            if target_col is None:
                if self.schema_mode == "fail":
                    raise SchemaDriftError(f"field '{key}' is not in the target table "
                                           "(schema_mode: fail)")
                self.new_fields.add(col)
                if self.schema_mode == "evolve":
                    plan.append((key, col, None))
                    seen_lower.add(col.lower())
                else:
                    plan.append((key, None, None))
                continue
            plan.append((key, target_col, self.columns[target_col]))
            seen_lower.add(target_col.lower())
        if len(self._plans) < 1024:
            self._plans[keys] = plan
        return plan

    def shape(self, record: Any, *, run_id: str, window_start: dt.datetime,
              window_end: dt.datetime, collected_at: dt.datetime, seq: int) -> dict[str, Any]:
        """Shape one record.

        Raises:
            RecordRejected: not an object, or a required / primary-key field is missing.
            SchemaDriftError: a new field while ``schema_mode`` is ``fail``.
        """
        if not isinstance(record, dict):
            raise RecordRejected(f"record is a {type(record).__name__}, not a JSON object")
        keys = tuple(record)
        needs, key_fields = self._lookup(keys) if self._needed else ((), ())
        for name, key in needs:
            if key is None or record[key] in (None, ""):
                raise RecordRejected(f"required field '{name}' is missing", field=name)
        row: dict[str, Any] = {}
        rescued: dict[str, Any] = {}
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plan(keys)
        for key, col, ctype in plan:
            value = record[key]
            if col is None:
                rescued[key] = value
            elif ctype is None:
                row[col] = value
            elif fits(value, ctype):
                row[col] = encode(value, ctype)
            else:
                rescued[key] = value
                self.retyped[col] = merge_types(self.retyped.get(col), infer_type(value)) \
                    or ColumnType.STRING
        if rescued:
            self.rescued_rows += 1
        row["_rescued_data"] = canonical_json(rescued) if rescued else None
        row["source_system"] = self.source_system
        row["collected_at_utc"] = self._stamp(collected_at)
        row["payload_hash"] = payload_hash(record)
        row["entity_key"] = ("|".join(str(record[k]) for k in key_fields)
                             if self.primary_key else row["payload_hash"])
        row["_run_id"] = run_id
        row["_window_start"] = self._stamp(window_start)
        row["_window_end"] = self._stamp(window_end)
        row[SEQ_COLUMN] = seq
        return row


def reshape(row: dict[str, Any], columns: dict[str, ColumnType], schema_mode: str,
            new_fields: set[str]) -> dict[str, Any]:
    """Re-shape a row staged without a schema (``columns=None``) against ``columns``."""
    out = {k: row[k] for k in RESERVED if k in row}
    rescued = json.loads(row["_rescued_data"]) if row.get("_rescued_data") else {}
    lower = {k.lower(): k for k in columns}
    for key, value in row.items():
        if key in RESERVED:
            continue
        target_col = key if key in columns else lower.get(key.lower())
        if target_col is None:
            if schema_mode == "fail":
                raise SchemaDriftError(f"field '{key}' is not in the target table (schema_mode: fail)")
            new_fields.add(key)
            rescued[key] = value
        elif fits(value, columns[target_col]):
            out[target_col] = encode(value, columns[target_col])
        else:
            rescued[key] = value
    out["_rescued_data"] = canonical_json(rescued) if rescued else None
    return out


def data_columns(names_and_types: Iterable[tuple[str, ColumnType]]) -> dict[str, ColumnType]:
    """Data columns only (contract and staging columns removed)."""
    return {k: v for k, v in names_and_types if k not in RESERVED}
