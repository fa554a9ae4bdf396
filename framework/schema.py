"""Record shaping without Spark: column types, rescue of unknown fields, contract columns.

A parsed record (a JSON object) becomes a target row:

* keys become columns (names made safe for Delta: ``[A-Za-z0-9_]``);
* with a known target schema, a key the target lacks, or a value whose type does not
  fit its column (an integer beyond a long, or beyond what a double holds exactly for a
  double column), goes to ``_rescued_data`` (a JSON object) unless ``schema_mode`` is
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
from typing import Any, Callable, Iterable, Optional

from framework.errors import RecordRejected, SchemaDriftError, WindowError
from framework.native import shape_direct as native_shape_direct
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
#: RESERVED in lower case: Delta's column names ignore case, so ``Source_System`` is one too
_RESERVED_LOWER = frozenset(c.lower() for c in RESERVED)
_SAFE = re.compile(r"[^A-Za-z0-9_]")


@functools.lru_cache(maxsize=8192)  # the same few keys come back on every record
def column_name(key: str) -> str:
    """A Delta-safe column name for a JSON key (``user.login`` -> ``user_login``)."""
    name = _SAFE.sub("_", str(key)) or "_"
    if name[0].isdigit():
        name = "_" + name
    return name[:255]


_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class NonFinite(float):
    """``NaN``, ``Infinity`` or ``-Infinity`` as an API's JSON text wrote it (not JSON, but
    some APIs send it, and :func:`framework.http.client.parse_json` reads it).

    The canonical JSON writes it as that token, as the staged row does, so it lands in a
    double column as itself and hashes apart from ``null`` (orjson writes a plain NaN
    as ``null``; it refuses this subclass, and the standard library writes the token).
    """

    __slots__ = ()

    @classmethod
    def parse(cls, token: str) -> "NonFinite":
        """The value of a ``NaN``/``Infinity``/``-Infinity`` token (json's ``parse_constant``)."""
        return cls(token)


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
    if isinstance(value, float):  # NonFinite: the standard library writes its token
        raise TypeError("a non-finite float")
    if isinstance(value, (dt.datetime, dt.date)):
        return iso(value) if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


#: the keywords of canonical_json_bytes' orjson call, for the compiled direct path
_CANONICAL_KWNAMES = ("default", "option")
_CANONICAL_KWVALUES = (_json_default, _ORJSON_OPTIONS)


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
        # an integer a double cannot hold exactly would lose digits silently
        return isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)
                                            and -MAX_EXACT_INT <= value <= MAX_EXACT_INT)
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
#: The largest integer up to which a double holds every integer exactly (2**53 - 1): an
#: integer beyond it (either sign) bound for a double column is rescued, never rounded.
MAX_EXACT_INT = 2 ** 53 - 1
_FAST_TYPES: dict[type, Any] = {bool: ColumnType.BOOLEAN, int: ColumnType.LONG, float: ColumnType.DOUBLE,
                                str: ColumnType.STRING, dict: ColumnType.STRING,
                                list: ColumnType.STRING}


@dataclass
class SchemaTracker:
    """Columns seen in records, in first-seen order, with their merged types, and the
    columns that held an integer a double cannot hold exactly (:attr:`wide`)."""

    columns: dict[str, Optional[ColumnType]] = field(default_factory=dict)
    #: columns that held an integer beyond +-:data:`MAX_EXACT_INT`: if such a column is
    #: a double one, its rows must be re-shaped (the integer rescued, not rounded)
    wide: set[str] = field(default_factory=set)
    #: (keys, value types) of rows already observed -> getter of their int values (or None).
    _seen: dict[tuple[tuple[str, ...], tuple[type, ...]], Any] = field(
        default_factory=dict, repr=False, compare=False)

    def observe(self, row: dict[str, Any], signature: Any = None) -> None:
        """Record the columns and value types of ``row``.

        Args:
            row: a staged row.
            signature: a hashable standing for the row's keys and value types (rows given
                the same one have the same keys and types); computed from the row when
                absent.
        """
        # A column's type depends only on the Python types of its values (and whether an
        # int fits a long). A row with the keys and value types of one already observed
        # therefore changes nothing, unless one of its ints is out of range: the hot path
        # is one tuple lookup per row instead of a type check per value.
        self.observe_all(((row, signature),))

    def observe_all(self, observed: Iterable[tuple[dict[str, Any], Any]]) -> None:
        """:meth:`observe` of each ``(row, signature)`` (a page's rows in one call)."""
        seen = self._seen
        for row, signature in observed:
            if signature is None:
                signature = (tuple(row), tuple(map(type, row.values())))
            ints = seen.get(signature, _SLOW)
            if ints is None:
                continue
            if ints is not _SLOW:
                values = ints(row)
                if -MAX_EXACT_INT <= min(values) and max(values) <= MAX_EXACT_INT:
                    continue
            self._observe_each(row)
            if ints is _SLOW and len(seen) < 1024:
                int_keys = [key for key, value in row.items() if type(value) is int]
                # itemgetter of one key returns the value itself: keep a tuple either way.
                seen[signature] = (None if not int_keys else
                                   operator.itemgetter(*int_keys, *int_keys[:1]))

    def _observe_each(self, row: dict[str, Any]) -> None:
        columns = self.columns
        for key, value in row.items():
            # Fast path: a value of the type already recorded (or a null) changes nothing.
            current = columns.get(key, _SLOW)
            if value is None and current is not _SLOW:
                continue
            kind = _FAST_TYPES.get(type(value), _SLOW)
            if kind is ColumnType.LONG and not -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
                if key not in RESERVED:
                    self.wide.add(key)
                if not _MIN_LONG <= value <= _MAX_LONG:
                    kind = _SLOW
            if kind is current and kind is not _SLOW:
                continue
            if key in RESERVED:
                continue
            inferred = infer_type(value)
            columns[key] = merge_types(current, inferred) if current is not _SLOW else inferred

    def merge(self, other: "SchemaTracker") -> None:
        self.wide |= other.wide
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
    #: each new field's column -> the payload keys that make it ("_" <- "ü", "é")
    new_keys: dict[str, set[str]] = field(default_factory=dict)
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
        self._layouts: dict[tuple[tuple[str, ...], tuple[type, ...]], _Layout] = {}
        #: the direct layouts the compiled path takes records of (``framework.native``):
        #: (keys, types) -> (layout, key fields or None, long fields, keys exact, the
        #: fields that must be neither null nor empty, int fields bound for double columns)
        self._fast: dict[tuple[tuple[str, ...], tuple[type, ...]], tuple[Any, ...]] = {}

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
        # the column each key would take (None: rescued, as a reserved name or, in rescue
        # mode, a field the target lacks)
        wants: list[Optional[str]] = []
        for key in keys:
            col = column_name(key)
            if col.lower() in _RESERVED_LOWER:
                wants.append(None)
            elif self.columns is None:
                wants.append(col)
            else:
                target_col = col if col in self.columns else self._lower.get(col.lower())
                if target_col is None:
                    if self.schema_mode == "fail":
                        raise SchemaDriftError(f"field '{key}' is not in the target table "
                                               "(schema_mode: fail)")
                    self._new(col, key)
                    target_col = col if self.schema_mode == "evolve" else None
                wants.append(target_col)
        # Delta's column names ignore case: of keys wanting one column, a declared field
        # (primary_key, required_fields) as written takes it, else the key spelled as the
        # column (the target's, or on a first load a declared field's), else the first
        # one; the others are rescued. {"ID": 99, "id": 5} puts 5 in id.
        spelled = set(self.columns) if self.columns is not None else {
            column_name(name) for name in self._needed}

        def rank(key: str, target_col: str) -> int:
            if key in self._needed:
                return 2
            return 1 if column_name(key) == target_col and target_col in spelled else 0

        owner: dict[str, tuple[int, str]] = {}
        for key, target_col in zip(keys, wants):
            if target_col is None:
                continue
            low, mine = target_col.lower(), rank(key, target_col)
            if low not in owner or mine > owner[low][0]:
                owner[low] = (mine, key)
        for key, target_col in zip(keys, wants):
            if target_col is None or owner[target_col.lower()][1] != key:
                if target_col is not None and self.columns is not None:
                    self._new(column_name(key), key)  # a field the target lacks
                plan.append((key, None, None))
            elif self.columns is None or target_col not in self.columns:
                plan.append((key, target_col, None))
            else:
                plan.append((key, target_col, self.columns[target_col]))
        if len(self._plans) < 1024:
            self._plans[keys] = plan
        return plan

    def _new(self, col: str, key: str) -> None:
        self.new_fields.add(col)
        self.new_keys.setdefault(col, set()).add(key)

    def _layout(self, keys: tuple[str, ...], types: tuple[type, ...]) -> "_Layout":
        """How records with these keys and value types become rows (computed once each).

        A value's fate depends on its column's type and, nearly always, only on the
        value's Python type: copied as it is, encoded (nested value -> JSON text, int ->
        float, timestamp text -> UTC), or rescued. Only two checks need the value itself:
        a long's range and whether a text parses as a timestamp.

        Raises:
            SchemaDriftError: a new field while ``schema_mode`` is ``fail``.
        """
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plan(keys)
        cols: list[str] = []
        copied: list[str] = []
        fixes: list[tuple[str, str, int]] = []
        rescued: list[tuple[str, Optional[str]]] = []
        needs, key_fields = self._lookup(keys) if self._needed else ((), ())
        # A primary-key value is never rescued: the MERGE joins on its column. A string
        # column takes a number's JSON text; a value no column conversion keeps is refused.
        key_set = set(key_fields) if self.primary_key else set()
        key_cols: set[str] = set()
        refuse: Optional[str] = None
        text_keys = False
        for (key, col, ctype), value_type in zip(plan, types):
            kind = _kind_of(value_type, ctype)
            if key in key_set and col is not None:
                key_cols.add(col)
                if kind == _MISFIT:
                    if ctype == ColumnType.STRING and issubclass(value_type, (int, float)):
                        kind, text_keys = _NESTED, True
                    elif refuse is None:
                        refuse = (f"primary_key field '{key}' is a {_json_kind(value_type)}, "
                                  f"which its column {col} ({ctype.value}) cannot hold")
            if col is None:
                rescued.append((key, None))
            elif kind == _MISFIT:
                rescued.append((key, col))
            else:
                cols.append(col)
                copied.append(key)
                if kind != _COPY:
                    fixes.append((key, col, kind))
        # Direct: every field lands in the column of its own name, so the row's JSON is
        # the record's canonical JSON (computed for the hash) with the contract columns
        # added, whatever the target's types: the staged rows are read by Spark's JSON
        # reader against the target's schema, which renders a nested value read into a
        # string column as its JSON text (canonical, since the line is) and an int read
        # into a double column as that double. So a first load and a load into the
        # target it made stage the same line for the same record. Only a long's range,
        # and an int's bound for a double column (within +-MAX_EXACT_INT), need
        # checking. Values of other types (datetimes of a custom parser) are rendered by
        # the row encoder, not the canonical one, and timestamp texts may not parse:
        # those take the general path.
        longs = [key for key, _, kind in fixes if kind == _LONG]
        doubles = [key for key, _, kind in fixes if kind == _FLOAT]  # ints into doubles
        direct = (bool(cols) and not rescued and all(kind in _AS_STAGED for _, _, kind in fixes)
                  and tuple(cols) == keys and all(t in _JSON_TYPES for t in types)
                  and not text_keys)
        layout = _Layout(tuple(cols), _getter(copied), tuple(fixes), tuple(rescued), needs,
                         _key_of(key_fields) if self.primary_key else None, direct,
                         _getter(longs) if direct and longs else None,
                         _getter(doubles) if direct and doubles else None,
                         self._keys_exact(keys, types, plan, key_fields),
                         frozenset(key_cols), refuse,
                         any(issubclass(t, NonFinite) for t in types))
        if len(self._layouts) < 1024:
            self._layouts[(keys, types)] = layout
            if direct and refuse is None and all(key is not None for _, key in needs) and (
                    not self.primary_key or None not in key_fields):
                self._fast[(keys, types)] = (
                    layout, tuple(key_fields) if self.primary_key else None, tuple(longs),
                    layout.keys_exact, tuple(key for _, key in needs), tuple(doubles))
        return layout

    def _keys_exact(self, keys: tuple[str, ...], types: tuple[type, ...],
                    plan: list[tuple[str, Optional[str], Optional[ColumnType]]],
                    key_fields: tuple[Optional[str], ...]) -> bool:
        """Whether records of this layout stage each primary-key value unchanged in the
        key's own column, as a ``str`` or an ``int`` (see :attr:`ShapedPage.keys`)."""
        if not self.primary_key:
            return False
        where = {key: (col, ctype, kind) for (key, col, ctype), kind in zip(plan, types)}
        for name, key in zip(self.primary_key, key_fields):
            if key is None or key not in where:
                return False
            col, ctype, kind = where[key]
            if col is None or col.lower() != column_name(name).lower():
                return False  # rescued, or in another column than the one deduped on
            if kind is not str and kind is not int:
                return False  # bool, float, nested, datetime: Spark may equate distinct texts
            if ctype is not None and _kind_of(kind, ctype) not in (_COPY, _LONG):
                return False  # converted (int -> double) or not fitting its column
        return True

    def _misfit(self, col: str, value: Any) -> None:
        self.retyped[col] = merge_types(self.retyped.get(col), infer_type(value)) or ColumnType.STRING

    def shape_page(self, records: Iterable[Any], *, run_id: str, window_start: dt.datetime,
                   window_end: dt.datetime, collected_at: dt.datetime, seq: int
                   ) -> "ShapedPage":
        """Shape the records of one page (the hot path of every load).

        Each record takes the next sequence number after ``seq``, rejected ones too.

        Raises:
            SchemaDriftError: a new field while ``schema_mode`` is ``fail``.
        """
        page = ShapedPage(keys=[] if self.primary_key else None)
        lines, observed, rejects, hashes = page.lines, page.observed, page.rejects, page.keys
        layouts = self._layouts
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        source_system, collected = self.source_system, self._stamp(collected_at)
        start, end = self._stamp(window_start), self._stamp(window_end)
        # the contract columns every row of the page shares, as staged JSON
        shared = b"".join((b',"_rescued_data":null,"source_system":', dumps(source_system),
                           b',"collected_at_utc":', dumps(collected), b',"_run_id":', dumps(run_id),
                           b',"_window_start":', dumps(start), b',"_window_end":', dumps(end),
                           b',"payload_hash":"'))
        sha256 = hashlib.sha256
        records = records if isinstance(records, list) else list(records)
        fast, native = self._fast, native_shape_direct
        count, index = len(records), 0
        while index < count:
            if native is not None and fast:
                # the compiled direct path takes every record it can, from here on; it
                # stops at the first one this loop must shape (or reject)
                index, seq, exact = native(records, index, fast, shared, seq, lines,
                                           observed, hashes, dumps, _CANONICAL_KWNAMES,
                                           _CANONICAL_KWVALUES)
                if not exact:
                    hashes = page.keys = None
                if index >= count:
                    break
            record = records[index]
            index += 1
            seq += 1
            if not isinstance(record, dict):
                rejects.append((RecordRejected(f"record is a {type(record).__name__}, "
                                               "not a JSON object"), record))
                continue
            keys = tuple(record)
            types = tuple(map(type, record.values()))
            layout = layouts.get((keys, types))
            if layout is None:
                # the required fields are checked before the key set is planned: a record
                # that lacks one is rejected even when it also has a field schema_mode: fail
                # refuses
                missing = self._missing(record, self._lookup(keys)[0] if self._needed else ())
                if missing is not None:
                    rejects.append((missing, record))
                    continue
                layout = self._layout(keys, types)
            elif layout.needs:
                missing = self._missing(record, layout.needs)
                if missing is not None:
                    rejects.append((missing, record))
                    continue
            if layout.refuse is not None:
                rejects.append((RecordRejected(layout.refuse), record))
                continue
            canonical = canonical_json_bytes(record)
            digest = sha256(canonical).hexdigest()
            if layout.direct and (layout.longs is None or _in_long_range(layout.longs(record))) \
                    and (layout.doubles is None or _exact_in_double(layout.doubles(record))):
                # The row holds the record's fields in their own columns: its JSON is the
                # record's canonical JSON plus the contract columns.
                entity_key = layout.key(record) if layout.key is not None else digest
                lines.append(b"".join((
                    canonical[:-1], shared, digest.encode(), b'","entity_key":',
                    dumps(entity_key), b',"_seq":', str(seq).encode(), b"}\n")))
                observed.append((record, layout))
                if hashes is not None:
                    if layout.keys_exact:
                        hashes.append(hash(entity_key))
                    else:
                        hashes = page.keys = None
                continue
            row = dict(zip(layout.cols, layout.getter(record)))
            signature: Any = layout  # rows of one layout share keys and value types
            rescued: Optional[dict[str, Any]] = None
            refused: Optional[str] = None
            for key, col, kind in layout.fixes:
                value = row[col]
                if kind == _NESTED:
                    row[col] = canonical_json(value)
                    continue
                if kind == _FLOAT:
                    if -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
                        row[col] = float(value)
                        continue
                    misfit = f"an integer its column {col} (double) cannot hold exactly"
                elif kind == _LONG:
                    if _MIN_LONG <= value <= _MAX_LONG:
                        continue
                    misfit = f"beyond its column {col} (long)"
                else:  # _TIMESTAMP
                    try:
                        row[col] = encode(value, ColumnType.TIMESTAMP)
                        continue
                    except ValueError:
                        misfit = f"not a timestamp its column {col} can hold"
                if col in layout.key_cols:
                    refused = f"primary_key field '{key}' is {misfit}"
                    break
                # the value is rescued, and the row's keys and types are no longer its
                # layout's
                del row[col]
                signature = None
                rescued = rescued if rescued is not None else {}
                rescued[key] = value
                self._misfit(col, value)
            if refused is not None:
                rejects.append((RecordRejected(refused), record))
                continue
            if layout.rescued:
                rescued = rescued if rescued is not None else {}
                for key, col in layout.rescued:
                    value = rescued[key] = record[key]
                    if col is not None:
                        self._misfit(col, value)
            if rescued:
                self.rescued_rows += 1
                row["_rescued_data"] = canonical_json(rescued)
            else:
                row["_rescued_data"] = None
            row["source_system"] = source_system
            row["collected_at_utc"] = collected
            row["payload_hash"] = digest
            row["entity_key"] = layout.key(record) if layout.key is not None else digest
            if hashes is not None:
                if layout.keys_exact and signature is not None:  # no key value taken out
                    hashes.append(hash(row["entity_key"]))
                else:
                    hashes = page.keys = None
            row["_run_id"] = run_id
            row["_window_start"] = start
            row["_window_end"] = end
            row[SEQ_COLUMN] = seq
            if layout.non_finite:  # NaN / Infinity as the tokens Spark's JSON reader takes
                lines.append(json.dumps(row, default=str, ensure_ascii=False,
                                        separators=(",", ":")).encode("utf-8") + b"\n")
            else:
                lines.append(dumps(row, default=str, option=newline))
            observed.append((row, signature))
        return page

    @staticmethod
    def _missing(record: dict[str, Any], needs: tuple[tuple[str, Optional[str]], ...]
                 ) -> Optional[RecordRejected]:
        for name, key in needs:
            if key is None:
                return RecordRejected(f"required field '{name}' is missing", field=name)
            value = record[key]
            if value is None or value == "":
                return RecordRejected(f"required field '{name}' is null or empty", field=name)
        return None

    def shape(self, record: Any, *, run_id: str, window_start: dt.datetime,
              window_end: dt.datetime, collected_at: dt.datetime, seq: int) -> dict[str, Any]:
        """Shape one record (:meth:`shape_page` of one record): the row as staged.

        Raises:
            RecordRejected: not an object, or a required / primary-key field is missing.
            SchemaDriftError: a new field while ``schema_mode`` is ``fail``.
        """
        page = self.shape_page((record,), run_id=run_id, window_start=window_start,
                               window_end=window_end, collected_at=collected_at, seq=seq - 1)
        if page.rejects:
            raise page.rejects[0][0]
        return orjson.loads(page.lines[0])


# How a value reaches its column, by the value's Python type and the column's type.
_COPY, _NESTED, _FLOAT, _LONG, _TIMESTAMP, _MISFIT = range(6)
_JSON_TYPES = frozenset({str, int, float, bool, type(None), dict, list})
#: kinds a direct row stages as the record has them: Spark's JSON reader makes a nested
#: value in a string column its JSON text and an int in a double column a double (what
#: :func:`encode` stages on the general path); a long is staged once its range is checked
_AS_STAGED = frozenset({_LONG, _NESTED, _FLOAT})


def _in_long_range(values: tuple[Any, ...]) -> bool:
    return _MIN_LONG <= min(values) and max(values) <= _MAX_LONG


def _exact_in_double(values: tuple[Any, ...]) -> bool:
    return -MAX_EXACT_INT <= min(values) and max(values) <= MAX_EXACT_INT


def _kind_of(kind: type, ctype: Optional[ColumnType]) -> int:
    """The treatment of values of type ``kind`` in a column of ``ctype`` (``None``: no
    target schema, kept as they are), following :func:`fits` and :func:`encode`."""
    if ctype is None or kind is type(None):
        return _COPY
    is_bool = issubclass(kind, bool)
    if ctype == ColumnType.STRING:
        return (_NESTED if issubclass(kind, (dict, list)) else
                _COPY if issubclass(kind, str) else _MISFIT)
    if ctype == ColumnType.BOOLEAN:
        return _COPY if is_bool else _MISFIT
    if ctype == ColumnType.LONG:
        return _LONG if issubclass(kind, int) and not is_bool else _MISFIT
    if ctype == ColumnType.DOUBLE:
        if is_bool:
            return _MISFIT
        return _FLOAT if issubclass(kind, int) else _COPY if issubclass(kind, float) else _MISFIT
    if ctype == ColumnType.TIMESTAMP:
        return _TIMESTAMP if issubclass(kind, (dt.datetime, str)) else _MISFIT
    return _MISFIT


def _getter(keys: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function returning the values of ``keys`` of a record, as a tuple."""
    if not keys:
        return lambda record: ()
    if len(keys) == 1:
        only = keys[0]
        return lambda record: (record[only],)
    return operator.itemgetter(*keys)


def _key_of(fields: tuple[Optional[str], ...]) -> Callable[[dict[str, Any]], str]:
    """``entity_key`` of a record: its primary-key values as text, joined by ``|``."""
    if len(fields) == 1:
        only = fields[0]
        return lambda record: str(record[only])
    return lambda record: "|".join([str(record[k]) for k in fields])


@dataclass
class ShapedPage:
    """One page shaped: its rows as staged JSON lines, and its rejected records."""

    lines: list[bytes] = field(default_factory=list)  # one JSON object and newline per row
    #: per row: its data fields (a dict holding at least its data columns) and what stands
    #: for their keys and value types, for :meth:`SchemaTracker.observe`; the compiled
    #: direct path gives of a run of rows of one layout whose ints are all within
    #: +-MAX_EXACT_INT only the first (the others tell the tracker nothing new)
    observed: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    rejects: list[tuple[RecordRejected, Any]] = field(default_factory=list)  # (reason, record)
    #: per row, ``hash(entity_key)`` when every row's primary-key values are staged as
    #: they came (``str`` or ``int``, each in its own column); ``None`` otherwise or
    #: without a primary key. Then two rows with the same key columns have the same
    #: ``entity_key``, so distinct hashes prove the page's keys distinct (equal hashes
    #: prove nothing: the writer then dedupes as always).
    keys: Optional[list[int]] = None

    def __repr__(self) -> str:
        return f"ShapedPage(rows={len(self.lines)} rejected={len(self.rejects)})"


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a tracker signature
class _Layout:
    """How records of one key set and value types become rows (see ``RowShaper._layout``)."""

    cols: tuple[str, ...]  # columns holding a value, in the record's key order
    getter: Callable[[dict[str, Any]], tuple[Any, ...]]  # their values, same order
    fixes: tuple[tuple[str, str, int], ...]  # (key, column, kind) of values to encode or check
    rescued: tuple[tuple[str, Optional[str]], ...]  # (key, column whose type it misses, if any)
    needs: tuple[tuple[str, Optional[str]], ...]  # required / key field -> the record's key
    key: Optional[Callable[[dict[str, Any]], str]]  # entity_key (None: the payload hash)
    direct: bool = False  # the row is the record's canonical JSON plus the contract columns
    longs: Optional[Callable[[dict[str, Any]], tuple[Any, ...]]] = None  # values to range-check
    #: ints bound for double columns, checked to be within +-MAX_EXACT_INT
    doubles: Optional[Callable[[dict[str, Any]], tuple[Any, ...]]] = None
    #: every primary-key value is a str or an int that lands unchanged in its own column,
    #: so distinct ``entity_key`` texts mean distinct key columns (see ``ShapedPage.keys``)
    keys_exact: bool = False
    key_cols: frozenset = frozenset()  # the columns of the primary-key fields
    refuse: Optional[str] = None  # why every record of this layout is rejected, if it is
    non_finite: bool = False  # a value is NaN or +-Infinity (NonFinite): staged as its token


def _json_kind(value_type: type) -> str:
    """What a value of ``value_type`` is, in JSON's words."""
    if issubclass(value_type, bool):
        return "boolean"
    if issubclass(value_type, (int, float)):
        return "number"
    if issubclass(value_type, str):
        return "string"
    if issubclass(value_type, (dict, list)):
        return "object" if issubclass(value_type, dict) else "array"
    return value_type.__name__


def reshape(row: dict[str, Any], columns: dict[str, ColumnType], schema_mode: str,
            new_fields: set[str], keys: frozenset = frozenset()) -> dict[str, Any]:
    """Re-shape a row staged without a schema (``columns=None``) against ``columns``.

    A value of a primary-key column (``keys``, lower case) is never rescued: a string column takes a
    number's JSON text (rows staged against no schema resolve a key seen both as numbers
    and as text to a string column)."""
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
        elif (target_col.lower() in keys and columns[target_col] == ColumnType.STRING
              and isinstance(value, (int, float))):
            out[target_col] = canonical_json(value)
        else:
            rescued[key] = value
    out["_rescued_data"] = canonical_json(rescued) if rescued else None
    return out


def data_columns(names_and_types: Iterable[tuple[str, ColumnType]]) -> dict[str, ColumnType]:
    """Data columns only (contract and staging columns removed)."""
    return {k: v for k, v in names_and_types if k not in RESERVED}
