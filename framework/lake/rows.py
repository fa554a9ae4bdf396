"""Small writes to restlake's own tables: row appends and guarded row merges.

The control plane writes a few rows at a time: a claim, a lease renewal, a finish, an
audit row, window-log and health-log rows. Through Spark each such commit is a Spark job
or several (about 0.9 s for a one-row append, 2.5-3 s for a one-row MERGE on this
2-core machine); through delta-rs (``deltalake``) the same commit takes 30-60 ms. So a
warehouse with a local root writes these rows with delta-rs; a metastore warehouse
(Unity Catalog on Databricks) with Spark. Either way the write means the same thing:

* :func:`append_rows` is a blind append (never conflicts with another append);
* :func:`merge_rows` updates each row of its key only while the row's guard columns
  still hold the values the caller read (null-safe equality), and optionally inserts
  rows whose key is absent. Delta's optimistic concurrency makes the guard atomic: of
  two writers that read the same row, one commit lands and the other conflicts (a
  :func:`framework.lake.commits.is_conflict` error its caller retries after re-reading)
  or matches nothing. delta-rs checks conflicts at serializable isolation, as Spark.

Values are data, never SQL text: they travel in the merge's source rows, and the
predicates name only columns, which are validated identifiers, quoted.

``RESTLAKE_SMALL_WRITES=spark`` sends a local warehouse's small writes through Spark too
(the path a metastore warehouse takes; tests run the control plane on both).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from framework.lake.commits import retry_conflicts
from framework.lake.tables import TableRef, Warehouse
from framework.timeutil import to_utc

#: Environment variable: ``spark`` writes a local warehouse's small writes with Spark.
ENGINE_ENV = "RESTLAKE_SMALL_WRITES"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EXPECT_PREFIX = "_expect_"


def uses_delta_rs(warehouse: Warehouse) -> bool:
    """Whether the small writes of ``warehouse`` go through delta-rs (a local root, and
    ``RESTLAKE_SMALL_WRITES`` not ``spark``)."""
    return warehouse.is_local and os.environ.get(ENGINE_ENV, "").strip().lower() != "spark"


@dataclass(frozen=True)
class Guarded:
    """One row of a guarded merge.

    Attributes:
        values: the key column and every column to write.
        expect: for each guard column, the value the row must still hold (``None``
            matches a null); empty for a row that is only inserted or written outright.
    """

    values: dict[str, Any]
    expect: dict[str, Any]


def append_rows(spark: Any, warehouse: Warehouse, ref: TableRef, schema: Any,
                records: Sequence[dict[str, Any]], what: str, *, merge_schema: bool = False) -> None:
    """Append ``records`` (dicts by column name; missing columns are null) in one commit.

    Args:
        schema: the table's Spark ``StructType`` (column names and types).
        merge_schema: add the columns of ``schema`` the table lacks (a table made by an
            older restlake).
    """
    if not records:
        return
    if uses_delta_rs(warehouse):
        retry_conflicts(lambda: _rs_append(warehouse.path(ref), schema, records, merge_schema),
                        f"append {what}")
        return
    data = [tuple(_value(r.get(f.name)) for f in schema.fields) for r in records]
    df = spark.createDataFrame(data, schema)
    writer = df.write.format("delta").mode("append")
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    retry_conflicts(lambda: warehouse.save(writer, ref), f"append {what}")


def merge_rows(spark: Any, warehouse: Warehouse, ref: TableRef, schema: Any, key: str,
               columns: Sequence[str], guard: Sequence[str], rows: Sequence[Guarded],
               *, insert: bool = False) -> int:
    """One MERGE on ``key``: each matched row whose ``guard`` columns still equal its
    ``expect`` values gets ``columns`` from ``values``; with ``insert``, a row whose key
    is absent is inserted (``columns`` plus the key). One attempt: a commit conflict is
    raised for the caller to retry after re-reading.

    Returns:
        how many target rows were updated or inserted (from the commit's metrics).

    Raises:
        ValueError: a column name that is not a plain identifier, or two rows of one key.
    """
    columns = [c for c in columns if c != key]
    for name in [key, *columns, *guard]:
        if not _IDENT.match(name):
            raise ValueError(f"not a column name: {name!r}")
    keys = [r.values.get(key) for r in rows]
    if len(set(keys)) < len(keys):
        raise ValueError(f"merge into {ref.name}: two rows with one {key}")
    if not rows:
        return 0
    types = {f.name: f.dataType for f in schema.fields}
    source_fields = ([(key, types[key])] + [(f"{EXPECT_PREFIX}{g}", types[g]) for g in guard]
                     + [(c, types[c]) for c in columns])
    data = [[_value(r.values.get(key))] + [_value(r.expect.get(g)) for g in guard]
            + [_value(r.values.get(c)) for c in columns] for r in rows]
    if uses_delta_rs(warehouse):
        return _rs_merge(warehouse.path(ref), source_fields, data, key, columns, guard, insert)
    return _spark_merge(spark, warehouse, ref, source_fields, data, key, columns, guard, insert)


def read_rows(spark: Any, warehouse: Warehouse, ref: TableRef,
              equal: Optional[dict[str, Any]] = None,
              columns: Optional[Iterable[str]] = None) -> list[dict[str, Any]]:
    """The rows of ``ref`` whose columns equal ``equal``'s values (a value that is a list
    or tuple: any of them), as dicts with UTC datetimes."""
    equal = equal or {}
    wanted = list(columns) if columns is not None else None
    if warehouse.is_local:
        import pyarrow.compute as pc

        from framework.lake.reader import delta_dataset, rows_of

        dataset = delta_dataset(warehouse.path(ref))
        where = None
        for name, v in equal.items():
            # A file delta-rs's MERGE wrote holds strings as string_view; the cast to the
            # table's type lets one filter read files of both kinds.
            column = pc.field(name).cast(dataset.schema.field(name).type)
            term = column.isin(list(v)) if isinstance(v, (list, tuple)) else column == v
            where = term if where is None else where & term
        return rows_of(dataset.to_table(columns=wanted, filter=where))
    from pyspark.sql import functions as F

    df = warehouse.read(spark, ref)
    for name, v in equal.items():
        df = df.where(F.col(name).isin(list(v)) if isinstance(v, (list, tuple))
                      else F.col(name) == F.lit(v))
    if wanted is not None:
        df = df.select(*wanted)
    return [{k: _value(v) for k, v in row.asDict(recursive=False).items()} for row in df.collect()]


def add_missing_columns(spark: Any, warehouse: Warehouse, ref: TableRef, schema: Any) -> list[str]:
    """Add the columns of ``schema`` that the existing table ``ref`` lacks (nullable, at the
    end): a table made earlier, e.g. a control table with only the seed's columns.

    Returns:
        the names of the columns added.
    """
    if warehouse.is_local:
        from deltalake import DeltaTable as RsTable

        present = {f.name.lower() for f in RsTable(warehouse.path(ref)).schema().fields}
    else:
        present = {c.lower() for c in warehouse.read(spark, ref).columns}
    lacking = [f for f in schema.fields if f.name.lower() not in present]
    if not lacking:
        return []
    if uses_delta_rs(warehouse):
        from deltalake import DeltaTable as RsTable
        from deltalake.schema import Field, PrimitiveType

        fields = [Field(f.name, PrimitiveType(_DELTA_TYPES[type(f.dataType).__name__]),
                        nullable=True) for f in lacking]
        retry_conflicts(lambda: RsTable(warehouse.path(ref)).alter.add_columns(fields),
                        f"add columns to {ref.name}")
    else:
        from framework.config import check_identifier, quote_identifier

        table = (f"delta.{_quote_path(warehouse.path(ref))}" if warehouse.is_local
                 else ref.quoted)
        columns = ", ".join(f"{quote_identifier(check_identifier(f.name))} "
                            f"{_DELTA_TYPES[type(f.dataType).__name__]}" for f in lacking)
        retry_conflicts(lambda: spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({columns})"),
                        f"add columns to {ref.name}")
    return [f.name for f in lacking]


#: Delta's name of each Spark column type restlake's own tables use
_DELTA_TYPES = {"StringType": "string", "LongType": "long", "IntegerType": "integer",
                "DoubleType": "double", "BooleanType": "boolean", "TimestampType": "timestamp",
                "DateType": "date"}


def _quote_path(path: str) -> str:
    return "`" + str(path).replace("`", "``") + "`"


# ------------------------------------------------------------------- delta-rs
def arrow_type(spark_type: Any) -> Any:
    """The Arrow type delta-rs writes for a Spark column type of restlake's tables."""
    import pyarrow as pa

    name = type(spark_type).__name__
    mapping = {"StringType": pa.string(), "LongType": pa.int64(), "IntegerType": pa.int32(),
               "DoubleType": pa.float64(), "BooleanType": pa.bool_(),
               "TimestampType": pa.timestamp("us", tz="UTC"), "DateType": pa.date32()}
    if name not in mapping:
        raise TypeError(f"no Arrow type for the column type {spark_type}")
    return mapping[name]


def arrow_schema(schema: Any) -> Any:
    """The Arrow schema of a Spark ``StructType`` (nullability kept)."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, arrow_type(f.dataType), f.nullable)
                      for f in schema.fields])


def _rs_append(path: str, schema: Any, records: Sequence[dict[str, Any]],
               merge_schema: bool) -> None:
    import pyarrow as pa
    from deltalake import DeltaTable as RsTable
    from deltalake import write_deltalake

    table = RsTable(path)
    present = set(table.schema().to_arrow().names)
    lacking = [f.name for f in schema.fields if f.name not in present]
    if lacking and not merge_schema:
        raise ValueError(f"table {path} lacks the columns {lacking}")
    target = arrow_schema(schema)
    data = pa.Table.from_pylist([{f.name: _value(r.get(f.name)) for f in schema.fields}
                                 for r in records], schema=target)
    write_deltalake(table, data, mode="append", schema_mode="merge" if lacking else None)


def _rs_merge(path: str, fields: list[tuple[str, Any]], data: list[list[Any]], key: str,
              columns: list[str], guard: Sequence[str], insert: bool) -> int:
    import pyarrow as pa
    from deltalake import DeltaTable as RsTable

    schema = pa.schema([pa.field(n, arrow_type(t)) for n, t in fields])
    source = pa.Table.from_pylist([dict(zip(schema.names, row)) for row in data], schema=schema)
    on = f"t.{_q(key)} = s.{_q(key)}"
    still = " AND ".join(f"(t.{_q(g)} IS NOT DISTINCT FROM s.{_q(EXPECT_PREFIX + g)})"
                         for g in guard) or None
    merger = (RsTable(path).merge(source, on, source_alias="s", target_alias="t")
              .when_matched_update({c: f"s.{_q(c)}" for c in columns}, predicate=still))
    if insert:
        merger = merger.when_not_matched_insert({c: f"s.{_q(c)}" for c in [key, *columns]})
    metrics = merger.execute()
    counts = [metrics.get(k) for k in ("num_target_rows_updated", "num_target_rows_inserted")]
    if any(c is None for c in counts):
        from framework.errors import LoadError

        raise LoadError(f"the MERGE returned no updated/inserted row counts (metrics: {metrics})")
    return sum(int(c) for c in counts)


def _q(name: str) -> str:
    """A validated column name, quoted for delta-rs predicates (DataFusion SQL)."""
    if not _IDENT.match(name):
        raise ValueError(f"not a column name: {name!r}")
    return f'"{name}"'


# ---------------------------------------------------------------------- Spark
def _spark_merge(spark: Any, warehouse: Warehouse, ref: TableRef, fields: list[tuple[str, Any]],
                 data: list[list[Any]], key: str, columns: list[str], guard: Sequence[str],
                 insert: bool) -> int:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    from framework.lake.metrics import merge_counts

    source = spark.createDataFrame([tuple(row) for row in data],
                                   StructType([StructField(n, t) for n, t in fields]))
    still = None
    for g in guard:
        term = F.col(f"t.{g}").eqNullSafe(F.col(f"s.{EXPECT_PREFIX}{g}"))
        still = term if still is None else still & term
    merger = (warehouse.delta(spark, ref).alias("t")
              .merge(source.alias("s"), F.col(f"t.{key}") == F.col(f"s.{key}"))
              .whenMatchedUpdate(condition=still, set={c: F.col(f"s.{c}") for c in columns}))
    if insert:
        merger = merger.whenNotMatchedInsert(values={c: F.col(f"s.{c}") for c in [key, *columns]})
    counts = merge_counts(merger.execute())
    return counts.updated + counts.inserted


def _value(value: Any) -> Any:
    return to_utc(value) if isinstance(value, dt.datetime) else value
