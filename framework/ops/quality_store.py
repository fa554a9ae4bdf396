"""What the quality checks of a load observe in Delta (the Spark edge of a load).

* :func:`observe_rows` — one aggregate over the rows about to be written: nulls per
  field, values outside the accepted ones (and a few of them);
* :func:`earlier_loads` — rows of the last successful loads of the same kind (audit);
* :func:`duplicate_keys` — keys that appear more than once in the target;
* :func:`filled_columns`, :func:`audit_drift` — the source's contract as the worksheet
  defines it (:func:`framework.ops.worksheet.contract_fields`), for the columns a load
  lacked: the baseline of removed fields. Spark scans only those columns (a load's
  target may be large); the worksheet asks the same of the JVM-free reader
  (:meth:`framework.ops.queries.Queries.observe_contract`).

Everything returned is plain Python. The results table itself
(``metadata.api_quality_results``) belongs to the control store
(:meth:`control.store.ControlStore.append_quality_results`); reading it (status, the
report, ``restlake quality``, notifications) goes through :class:`~framework.ops.queries.Queries`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from typing import Any, Iterable, Optional

from framework.config import Quality
from framework.lake.tables import TableRef, Warehouse
from framework.schema import RESERVED, column_name
from framework.timeutil import to_utc

log = logging.getLogger(__name__)

SAMPLE = 5  # values of the API shown per failed check (in Detail, escaped where printed)


# ---------------------------------------------------------- rows to be written
def _accepted_literals(values: list[Any], dtype: Any) -> list[Any]:
    """The accepted values in the column's type (values of another type can never match)."""
    from pyspark.sql import types as T

    out: list[Any] = []
    for v in values:
        if isinstance(dtype, T.BooleanType):
            if isinstance(v, bool):
                out.append(v)
            elif isinstance(v, str) and v.lower() in ("true", "false"):
                out.append(v.lower() == "true")
        elif isinstance(dtype, (T.LongType, T.IntegerType, T.DoubleType, T.DecimalType)):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(v)
            elif isinstance(v, str):  # "200" in YAML is the number 200 of the API
                number = _number(v)
                if number is not None:
                    out.append(number)
        elif isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
            try:
                out.append(to_utc(v))
            except (ValueError, TypeError):
                pass
        elif v is not None:
            out.append(str(v).lower() if isinstance(v, bool) else str(v))
    return out


def field_columns(fields: Iterable[str], columns: Iterable[str]) -> dict[str, str]:
    """The column of ``columns`` that holds each of ``fields`` (those that have one).

    A field's column is :func:`~framework.schema.column_name` of it, whatever its case:
    Delta's column names ignore case, and so does the load (``State`` lands in the
    target's column ``state``), so a check of ``state`` judges the column ``State``.
    """
    have = list(columns)
    lower: dict[str, str] = {}
    for c in have:
        lower.setdefault(c.lower(), c)
    out = {}
    for f in fields:
        col = column_name(f)
        found = col if col in have else lower.get(col.lower())
        if found is not None:
            out[f] = found
    return out


def _number(text: str) -> Optional[float]:
    """The number a text writes (``"200"``, ``" 2.5 "``), or None (``"n/a"``, ``"nan"``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def observe_rows(df: Any, quality: Quality) -> dict[str, Any]:
    """Nulls and non-accepted values of the checked fields, in one aggregate over ``df``.

    Returns:
        ``rows``, ``nulls`` (field -> count), ``outside`` (field -> count),
        ``outside_sample`` (field -> a few values), ``missing`` (fields with no column).
    """
    from pyspark.sql import functions as F

    from framework.ops.quality import null_fields

    types = {f.name: f.dataType for f in df.schema.fields}
    null_names = null_fields(quality)
    accepted = dict(quality.accepted_values.value) if quality.accepted_values else {}
    where = field_columns([*null_names, *accepted], types)
    missing = {f for f in [*null_names, *accepted] if f not in where}
    aggs = [F.count(F.lit(1)).alias("rows")]
    bad: dict[str, Any] = {}
    for i, name in enumerate(null_names):
        if name not in missing:
            aggs.append(F.sum(F.when(F.col(where[name]).isNull(), 1).otherwise(0))
                        .alias(f"n{i}"))
    for i, (name, values) in enumerate(accepted.items()):
        if name in missing:
            continue
        col = F.col(where[name])
        bad[name] = col.isNotNull() & ~col.isin(_accepted_literals(values, types[where[name]]))
        aggs.append(F.sum(F.when(bad[name], 1).otherwise(0)).alias(f"a{i}"))
    row = df.agg(*aggs).first()
    nulls = {name: int(row[f"n{i}"] or 0) for i, name in enumerate(null_names) if name not in missing}
    outside = {name: int(row[f"a{i}"] or 0) for i, name in enumerate(accepted) if name in bad}
    sample = {}
    for name, count in outside.items():
        if count:
            values = df.where(bad[name]).select(where[name]).distinct().limit(SAMPLE).collect()
            sample[name] = tuple(str(r[0]) for r in values)
    return {"rows": int(row["rows"]), "nulls": nulls, "outside": outside,
            "outside_sample": sample, "missing": frozenset(missing)}


def earlier_loads(store: Any, config_id: str, load_type: str, n: int) -> list[int]:
    """Rows of the last ``n`` successful, complete loads of this kind, newest first.

    A load's rows are its records minus those sent to quarantine (the rows it wrote).
    Loads that resumed an earlier attempt (windows skipped) are not baselines. Read as
    the store reads its tables: with delta-rs on a local warehouse (no Spark job, so a
    quiet window of a checked source starts none), with Spark otherwise.
    """
    if n <= 0:
        return []
    rows = store.audit_rows(config_id, None, equal={"LoadType": load_type, "LoadStatus": "SUCCESS"},
                            columns=["WindowsLoaded", "WindowsSkipped", "SourceRowCount",
                                     "RejectedRows"])
    complete = [r for r in rows if _or(r["WindowsLoaded"], 1) > 0 and not r["WindowsSkipped"]]
    return [_or(r["SourceRowCount"], 0) - _or(r["RejectedRows"], 0) for r in complete[:n]]


def _or(value: Optional[int], default: int) -> int:
    return default if value is None else int(value)


# ----------------------------------------------------------------- the target
def _source_rows(spark: Any, warehouse: Warehouse, ref: TableRef, system: str) -> Any:
    from pyspark.sql import functions as F

    df = warehouse.read(spark, ref)
    if "source_system" in df.columns:
        df = df.where(F.col("source_system") == F.lit(system))
    return df


def duplicate_keys(spark: Any, warehouse: Warehouse, ref: TableRef, system: str,
                   fields: list[str]) -> dict[str, Any]:
    """Key values of this source that appear more than once in the target (rows whose
    key fields are all null have no key and are not judged).

    Returns:
        ``duplicates`` (key values), ``rows`` (rows holding them), ``sample`` (a few
        keys), ``missing`` (key fields the target has no column for).
    """
    from pyspark.sql import functions as F

    if not warehouse.exists(spark, ref):
        return {"duplicates": 0, "rows": 0, "sample": (), "missing": ()}
    df = _source_rows(spark, warehouse, ref, system)
    where = field_columns(fields, df.columns)
    missing = tuple(f for f in fields if f not in where)
    if missing:
        return {"duplicates": None, "rows": 0, "sample": (), "missing": missing}
    keys = [where[f] for f in fields]
    # a row whose key fields are all null has no key (as SQL's UNIQUE sees it): not judged
    has_key = functools.reduce(lambda a, b: a | b, [F.col(k).isNotNull() for k in keys])
    dups = df.where(has_key).groupBy(*keys).count().where(F.col("count") > 1)
    row = dups.agg(F.count(F.lit(1)).alias("d"), F.sum("count").alias("r")).first()
    sample = ()
    if row["d"]:
        sample = tuple(json.dumps([r[k] for k in keys], default=str)
                       for r in dups.limit(SAMPLE).collect())
    return {"duplicates": int(row["d"] or 0), "rows": int(row["r"] or 0), "sample": sample,
            "missing": ()}


def filled_columns(spark: Any, warehouse: Warehouse, ref: TableRef, system: str,
                   only: Optional[Iterable[str]] = None) -> list[str]:
    """Data columns of the target that hold values of this source (``only``: among these)."""
    from pyspark.sql import functions as F

    if not warehouse.exists(spark, ref):
        return []
    df = _source_rows(spark, warehouse, ref, system)
    data = [c for c in df.columns if c not in RESERVED]
    if only is not None:
        wanted = set(only)
        data = [c for c in data if c in wanted]
    if not data:
        return []
    counts = df.select([F.count(F.col(f"`{c}`")).alias(c) for c in data]).first()
    return [c for c in data if counts[c]]


def audit_drift(spark: Any, store: Any, config_ids: Optional[list[str]] = None
                ) -> dict[str, set[str]]:
    """Fields the audit reported as schema changes after each config's first successful
    load (which set its contract)."""
    from pyspark.sql import functions as F

    if not store.warehouse.exists(spark, store.audit_ref):
        return {}
    df = (store.warehouse.read(spark, store.audit_ref)
          .where(F.col("LoadStatus") == F.lit("SUCCESS")))
    if config_ids is not None:
        df = df.where(F.col("ConfigId").isin(list(config_ids)))
    drift: dict[str, set[str]] = {}
    for r in df.select("ConfigId", "SchemaChanges", "LoggedAt").orderBy("LoggedAt").collect():
        if r["ConfigId"] not in drift:
            drift[r["ConfigId"]] = set()
        elif r["SchemaChanges"]:
            drift[r["ConfigId"]].update(json.loads(r["SchemaChanges"]))
    return drift
