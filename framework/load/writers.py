"""Writing staged windows to the target Delta table (the Spark edge of the data plane).

* FULL_LOAD: every window is staged first, then one ``overwrite`` commit replaces the
  table, so readers never see a half-loaded table and a failed load leaves the old
  table as it was. A table shared by several source systems (the monitoring caches)
  has only this source's rows replaced, by one MERGE that also deletes its vanished rows.
* INCREMENTAL with a primary key: MERGE on the key after keeping one row per key
  (latest by ``cursor_field``, else last seen). Rows whose ``payload_hash`` did not
  change are not rewritten, so rerunning an unchanged window commits no data files.
  MERGE makes a window written twice (crash between the target commit and the window
  log) idempotent.
* INCREMENTAL without a key: appends with Delta's idempotent-write options
  ``txnAppId``/``txnVersion``. The app id is the load (``restlake:<ConfigId>:<LoadId>``),
  so each new load starts its own sequence; the version is a pure function of the
  batch's window indices (:mod:`framework.load.batching`), so a batch re-sent by a rerun
  of the same load (a crash between the target commit and the window log) is skipped.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from framework.lake.commits import retry_conflicts
from framework.lake.metrics import merge_counts
from framework.config import SourceConfig
from framework.errors import LoadError, SchemaDriftError
from framework.schema import (CONTRACT_COLUMNS, SEQ_COLUMN, ColumnType, SchemaTracker,
                              column_name, data_columns, reshape)
from framework.load.staging import WindowStage, keys_distinct
from framework.load.warmup import mark_warm
from framework.lake.tables import TableRef, Warehouse

log = logging.getLogger(__name__)


def spark_type(ctype: ColumnType) -> Any:
    from pyspark.sql import types as T

    return {ColumnType.BOOLEAN: T.BooleanType(), ColumnType.LONG: T.LongType(),
            ColumnType.DOUBLE: T.DoubleType(), ColumnType.STRING: T.StringType(),
            ColumnType.TIMESTAMP: T.TimestampType()}[ctype]


def column_type(dtype: Any) -> ColumnType:
    """restlake's view of a Spark type (complex types are held as JSON text)."""
    from pyspark.sql import types as T

    if isinstance(dtype, T.BooleanType):
        return ColumnType.BOOLEAN
    if isinstance(dtype, (T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        return ColumnType.LONG
    if isinstance(dtype, (T.FloatType, T.DoubleType, T.DecimalType)):
        return ColumnType.DOUBLE
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType, T.DateType)):
        return ColumnType.TIMESTAMP
    return ColumnType.STRING


_DELTA_LONGS = frozenset({"byte", "short", "integer", "long"})
_DELTA_TIMES = frozenset({"timestamp", "timestamp_ntz", "date"})


def delta_column_type(dtype: Any) -> ColumnType:
    """restlake's view of a Delta type as delta-rs reads it from the log (the same mapping
    as :func:`column_type` for Spark's types; complex types are held as JSON text)."""
    name = getattr(dtype, "type", "")  # "long", "decimal(10,2)", ...; "array", "struct", "map"
    if name == "boolean":
        return ColumnType.BOOLEAN
    if name in _DELTA_LONGS:
        return ColumnType.LONG
    if name in ("float", "double") or name.startswith("decimal"):
        return ColumnType.DOUBLE
    if name in _DELTA_TIMES:
        return ColumnType.TIMESTAMP
    return ColumnType.STRING


def _wide_in_double(tracker: SchemaTracker, columns: dict[str, ColumnType]) -> bool:
    """Whether a double column of ``columns`` was staged with an integer a double cannot
    hold exactly (on a first load, or a column ``evolve`` adds): its rows are re-shaped so
    that the integer is rescued instead of rounded."""
    if not tracker.wide:
        return False
    doubles = {k.lower() for k, v in columns.items() if v == ColumnType.DOUBLE}
    return any(w.lower() in doubles for w in tracker.wide)


@dataclass
class WriteResult:
    """What one target commit did."""

    rows_written: int = 0  # inserted + updated (or appended)
    version: Optional[int] = None
    schema_changes: tuple[str, ...] = ()
    rows_rejected: int = 0
    #: staged rows that re-shaping for the commit gave a ``_rescued_data`` (a first load's
    #: wide integer in a double column, a value its column's final type cannot hold); rows
    #: the shaper rescued are counted by the load already
    rows_rescued: int = 0


QUARANTINE_SUFFIX = "_quarantine"


def _warms(write: Any) -> Any:
    """A target write that finished has warmed this process's JVM: no later load of the
    process warms it up (:mod:`framework.load.warmup`), whoever wrote (a load, a webhook
    flush, a replay)."""
    @functools.wraps(write)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = write(self, *args, **kwargs)
        mark_warm()
        return result
    return wrapper
#: a MERGE batch of up to this many staged rows has its (key, payload_hash) pairs broadcast
#: when the unchanged rows are taken out (about 10 MB of pairs: Spark's own threshold)
BROADCAST_ROWS = 100_000
RESCUED = "_rescued_data"


def _row_changed() -> Any:
    """When a staged row ``s`` differs from the target's row ``t`` of its key: its record
    (``payload_hash``), or how the contract shapes it (``_rescued_data``: the same record
    shaped against ``schema_mode: evolve`` or a retyped column rescues less)."""
    from pyspark.sql import functions as F

    return ~(F.col("t.payload_hash").eqNullSafe(F.col("s.payload_hash"))
             & F.col(f"t.{RESCUED}").eqNullSafe(F.col(f"s.{RESCUED}")))


class TargetWriter:
    """Writes the staged windows of one load to its target table.

    ``primary_key`` and ``cursor_field`` name record fields; the writer uses their
    columns (:func:`framework.schema.column_name`: ``updated-at`` -> ``updated_at``),
    the same mapping the row shaper applies to every field.
    """

    def __init__(self, spark: Any, warehouse: Warehouse, cfg: SourceConfig, ref: TableRef,
                 run_id: str, config_id: str, load_id: Optional[str] = None) -> None:
        self.spark = spark
        self.warehouse = warehouse
        self.cfg = cfg
        self.ref = ref
        self.run_id = run_id
        self.config_id = config_id
        self.keys = [column_name(k) for k in cfg.primary_key]
        self.cursor = column_name(cfg.cursor_field) if cfg.cursor_field else None
        self.load_id = load_id or run_id  # the idempotent-append identity: one per load

    def __repr__(self) -> str:
        return f"TargetWriter({self.config_id} -> {self.ref.name})"

    # ---------------------------------------------------------------- schema
    def current_columns(self) -> Optional[dict[str, ColumnType]]:
        """The target's data columns, or ``None`` when the table does not exist.

        On a local warehouse the schema is read from the Delta log with delta-rs: a load
        learns it before its fetch, and Spark (still starting, for ``run``) is not needed.
        """
        if not self.warehouse.exists(self.spark, self.ref):
            return None
        if self.warehouse.is_local:
            from deltalake import DeltaTable

            fields = DeltaTable(self.warehouse.path(self.ref)).schema().fields
            return data_columns((f.name, delta_column_type(f.type)) for f in fields)
        schema = self.warehouse.read(self.spark, self.ref).schema
        return data_columns((f.name, column_type(f.dataType)) for f in schema.fields)

    def _struct(self, columns: dict[str, ColumnType], with_seq: bool) -> Any:
        from pyspark.sql import types as T

        fields = [T.StructField(k, spark_type(v)) for k, v in columns.items()]
        fields += [T.StructField(k, spark_type(v)) for k, v in CONTRACT_COLUMNS.items()]
        if with_seq:
            fields.append(T.StructField(SEQ_COLUMN, T.LongType()))
        return T.StructType(fields)

    def _plan_columns(self, stages: list[WindowStage], staged_with: Optional[dict[str, ColumnType]]
                      ) -> tuple[dict[str, ColumnType], list[str], bool]:
        """Decide the write schema: (columns, new columns, whether rows need re-shaping)."""
        current = self.current_columns()
        tracker = SchemaTracker()
        for stage in stages:
            tracker.merge(stage.tracker)
        seen = {k: v for k, v in tracker.resolved().items()}
        if current is None:
            return seen, [], ((staged_with is not None and staged_with != seen)
                              or _wide_in_double(tracker, seen))
        new = [k for k in seen if k not in current and k.lower() not in {c.lower() for c in current}]
        if new and self.cfg.schema_mode == "fail":
            raise SchemaDriftError(f"fields {', '.join(sorted(new))} are not in target "
                                   f"{self.ref.name} (schema_mode: fail)")
        columns = dict(current)
        if self.cfg.schema_mode == "evolve":
            columns.update({k: seen[k] for k in new})
        return columns, new, staged_with != columns or _wide_in_double(tracker, columns)

    def _reshape_files(self, stages: list[WindowStage], columns: dict[str, ColumnType]
                       ) -> tuple[list[str], int]:
        """Re-shape rows staged against another schema; returns the files to read and the
        rows that re-shaping rescued a value of (rows staged with none)."""
        out: list[str] = []
        rescued = 0
        new_fields: set[str] = set()
        keys = frozenset(column_name(k).lower() for k in self.cfg.primary_key)
        for stage in stages:
            for path in stage.files:
                target = path.with_suffix(".shaped.jsonl")
                with path.open(encoding="utf-8") as src, target.open("w", encoding="utf-8") as dst:
                    for line in src:
                        staged = json.loads(line)
                        row = reshape(staged, columns, self.cfg.schema_mode, new_fields, keys)
                        rescued += bool(row["_rescued_data"] and not staged.get("_rescued_data"))
                        dst.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                        dst.write("\n")
                out.append(str(target))
        return out, rescued

    def _frame(self, stages: list[WindowStage], staged_with: Optional[dict[str, ColumnType]]
               ) -> tuple[Any, dict[str, ColumnType], list[str], bool, int]:
        """(rows, columns, new columns, whether the rows were re-shaped on the way, rows
        that re-shaping rescued a value of)."""
        columns, new, needs_reshape = self._plan_columns(stages, staged_with)
        files, rescued = (self._reshape_files(stages, columns) if needs_reshape
                          else ([str(p) for s in stages for p in s.files], 0))
        if not files:
            return (self.spark.createDataFrame([], self._struct(columns, with_seq=True)), columns,
                    new, needs_reshape, rescued)
        return self._read_staged(files, columns), columns, new, needs_reshape, rescued

    def _read_staged(self, files: list[str], columns: dict[str, ColumnType]) -> Any:
        """Staged JSON lines read against ``columns`` (and the contract and ``_seq``)."""
        return (self.spark.read.schema(self._struct(columns, with_seq=True))
                .option("mode", "FAILFAST").json(files))

    def warm_up(self, stage: WindowStage, staged_with: Optional[dict[str, ColumnType]],
                path: Path) -> bool:
        """Write ``stage``'s rows as the target write would read them, to a throwaway Delta
        table at ``path`` (never the target; see :mod:`framework.load.warmup`). Reads the
        staged files only: rows that would need re-shaping are not warmed with.

        Returns:
            whether it wrote (``False``: nothing to warm with).
        """
        columns, _, reshape = self._plan_columns([stage], staged_with)
        if reshape or not stage.files:
            return False
        df = self._read_staged([str(p) for p in stage.files], columns).drop(SEQ_COLUMN)
        df.write.format("delta").mode("overwrite").save(str(path))
        return True

    def frame(self, stages: list[WindowStage], staged_with: Optional[dict[str, ColumnType]]) -> Any:
        """The rows of ``stages`` as the next commit would write them (before the one-row-
        per-key dedupe); reading them commits nothing."""
        return self._frame(stages, staged_with)[0].drop(SEQ_COLUMN)

    def _check_keys(self, df: Any) -> None:
        have = {c.lower() for c in df.columns}
        for field, col in zip(self.cfg.primary_key, self.keys):
            if col.lower() not in have:
                raise LoadError(f"primary_key field {field} (column {col}) is in neither the "
                                f"staged rows nor target {self.ref.name}")

    def _dedupe(self, df: Any, stages: list[WindowStage], reshaped: bool) -> Any:
        """One row per primary key: latest by cursor_field, else last seen.

        When the staging proved every key of ``stages`` distinct (``keys_distinct``) the
        rows are returned as they are, without the window (a shuffle of every row, most of
        a small load's write). Re-shaped rows are not proved: re-shaping may move a key
        value to ``_rescued_data``.
        """
        from pyspark.sql import Window as W
        from pyspark.sql import functions as F

        self._check_keys(df)
        if not reshaped and keys_distinct(stages):
            return df
        keys = [F.col(k) for k in self.keys]
        order = []
        cursor = {c.lower(): c for c in df.columns}.get(self.cursor.lower()) if self.cursor else None
        if cursor is not None:
            order.append(F.col(cursor).desc_nulls_last())
        elif self.cursor:
            log.warning("%s: cursor_field %s (column %s) is not in the rows; the last row seen "
                        "wins among duplicate keys", self.config_id, self.cfg.cursor_field,
                        self.cursor)
        order.append(F.col(SEQ_COLUMN).desc())
        ranked = df.withColumn("_rank", F.row_number().over(W.partitionBy(*keys).orderBy(*order)))
        return ranked.where(F.col("_rank") == 1).drop("_rank")

    def _evolve(self, columns: dict[str, ColumnType], new: list[str]) -> None:
        if not new or self.cfg.schema_mode != "evolve" or not self.warehouse.exists(self.spark, self.ref):
            return
        empty = self.spark.createDataFrame([], self._struct(columns, with_seq=False))
        writer = empty.write.format("delta").mode("append").option("mergeSchema", "true")
        retry_conflicts(lambda: self.warehouse.save(writer, self.ref), f"evolve {self.ref.name}")

    # ----------------------------------------------------------------- writes
    @_warms
    def overwrite(self, stages: list[WindowStage], staged_with: Optional[dict[str, ColumnType]]
                  ) -> WriteResult:
        """FULL_LOAD: replace the table with every staged window in one commit.

        A load that staged no row into a target that does not exist yet writes nothing
        (:meth:`_no_rows_no_target`).
        """
        if self._no_rows_no_target(stages):
            return WriteResult(0, None)
        df, columns, new, reshaped, rescued = self._frame(stages, staged_with)
        if self.cfg.primary_key:
            df = self._dedupe(df, stages, reshaped)
        df = df.drop(SEQ_COLUMN)
        if self._shared_with_other_sources():
            result = self._replace_source(df, columns, new)
            result.rows_rescued = rescued
            return result
        writer = df.write.format("delta").mode("overwrite")
        if self.cfg.schema_mode == "evolve":
            writer = writer.option("mergeSchema", "true")
        retry_conflicts(lambda: self.warehouse.save(writer, self.ref), f"overwrite {self.ref.name}")
        # the rows written are in the commit's metrics: no count job before the write
        version = self.warehouse.version(self.spark, self.ref)
        return WriteResult(self._count_version_rows(version), version, tuple(new),
                           rows_rescued=rescued)

    def _shared_with_other_sources(self) -> bool:
        """True when the target holds rows of another source system (a shared cache table)."""
        from pyspark.sql import functions as F

        if not self.warehouse.exists(self.spark, self.ref):
            return False
        only = self._only_source_in_stats()
        if only is not None:
            return not only
        df = self.warehouse.read(self.spark, self.ref)
        if "source_system" not in df.columns:
            return False
        other = ~F.col("source_system").eqNullSafe(F.lit(self.cfg.system))
        return bool(df.where(other).limit(1).count())

    def _only_source_in_stats(self) -> Optional[bool]:
        """From the Delta log's file statistics (delta-rs, no Spark job): True when every
        row of the target is this source's, False when another's may be there, None when
        the statistics cannot tell (not a local table, no statistics of the column)."""
        if not self.warehouse.is_local:
            return None
        try:
            from deltalake import DeltaTable as RsTable

            table = RsTable(self.warehouse.path(self.ref))
            if "source_system" not in [f.name for f in table.schema().fields]:
                return True
            stats = table.get_add_actions(flatten=True)
            if stats.num_rows == 0:
                return True
            names = stats.column_names
            if "min.source_system" not in names or "null_count.source_system" not in names:
                return None
            lows = stats.column("min.source_system").to_pylist()
            highs = stats.column("max.source_system").to_pylist()
            nulls = stats.column("null_count.source_system").to_pylist()
        except Exception as exc:  # noqa: BLE001 - Spark answers instead
            log.debug("%s: no file statistics: %s", self.ref.name, exc)
            return None
        if any(n is None for n in nulls) or any(n for n in nulls):
            return None if any(n is None for n in nulls) else False
        system = self.cfg.system
        if all(lo == hi == system for lo, hi in zip(lows, highs)):
            return True
        return None  # truncated or mixed statistics: Spark looks at the rows

    def _replace_source(self, df: Any, columns: dict[str, ColumnType], new: list[str]) -> WriteResult:
        """FULL_LOAD into a shared table: replace this source's rows only, in one MERGE.

        Rows of this source that the load no longer returns are deleted; rows of other
        source systems are left alone.
        """
        from pyspark.sql import functions as F

        if not self.cfg.primary_key:
            raise LoadError(f"target {self.ref.name} holds rows of other source systems: a full "
                            f"load of '{self.cfg.system}' needs primary_key to replace only its "
                            "own rows")
        self._evolve(columns, new)
        system = F.lit(self.cfg.system)
        cond = F.col("t.source_system") == F.col("s.source_system")
        for key in self.keys:
            cond = cond & (F.col(f"t.{key}") == F.col(f"s.{key}"))

        def do_merge() -> Any:
            target = self.warehouse.delta(self.spark, self.ref)
            return (target.alias("t").merge(df.alias("s"), cond)
                    .whenMatchedUpdateAll(condition=_row_changed())
                    .whenNotMatchedInsertAll()
                    .whenNotMatchedBySourceDelete(condition=F.col("t.source_system") == system)
                    .execute())

        metrics = retry_conflicts(do_merge, f"replace {self.cfg.system} rows in {self.ref.name}")
        return WriteResult(merge_counts(metrics).written, self.warehouse.version(self.spark, self.ref),
                           tuple(new))

    def merge(self, stages: list[WindowStage], staged_with: Optional[dict[str, ColumnType]],
              batch_version: int) -> WriteResult:
        """INCREMENTAL: MERGE on the primary key (or idempotent append without one).

        Windows that staged no row, into a target that exists, write nothing and start no
        Spark job: a MERGE of no rows commits nothing, yet plans and runs its jobs (seconds
        in a fresh JVM, the whole write of a quiet 15-minute load). An append of no rows
        is not committed either, so its ``txnVersion`` is not spent: the batch, fetched
        again with rows in it, still lands.

        Args:
            batch_version: the ``txnVersion`` of an append (:mod:`framework.load.batching`);
                an append at or below the load's last version is skipped by Delta.
        """
        if self._no_rows_no_target(stages):
            return WriteResult(0, None)
        if not any(stage.rows for stage in stages):
            return WriteResult(0, self.warehouse.version(self.spark, self.ref))
        return self._merge_staged(stages, staged_with, batch_version)

    def _no_rows_no_target(self, stages: list[WindowStage]) -> bool:
        """True when nothing was staged and the target does not exist: then nothing is
        written. A table created from no record would lack the record's columns (the key
        among them, with a type no record has told), and a later load in the default
        ``schema_mode`` would rescue every field of its rows; the first load with a row
        creates the table instead. Rejected records still go to the quarantine."""
        return not any(stage.rows for stage in stages) and not self.warehouse.exists(
            self.spark, self.ref)

    @_warms
    def _merge_staged(self, stages: list[WindowStage],
                      staged_with: Optional[dict[str, ColumnType]], batch_version: int
                      ) -> WriteResult:
        df, columns, new, reshaped, rescued = self._frame(stages, staged_with)
        if not self.warehouse.exists(self.spark, self.ref):
            result = self._create(df, columns, new, batch_version, stages, reshaped)
        else:
            self._evolve(columns, new)
            if not self.cfg.primary_key:
                result = self._append(df, new, batch_version)
            else:
                deduped = self._dedupe(df, stages, reshaped).drop(SEQ_COLUMN)
                result = self._merge(self._changed(df, deduped, stages), new)
        result.rows_rescued = rescued
        return result

    def _changed(self, staged: Any, deduped: Any, stages: list[WindowStage]) -> Any:
        """The rows of ``deduped`` that are new or changed: not in the target with the same
        primary key, ``payload_hash`` and ``_rescued_data``. The same record shaped against
        a fixed contract (``schema_mode: evolve``, a column retyped by the user) no longer
        rescues what it did: it changed, so a rerun or a ``replay`` puts it in its columns.

        MERGE rewrites every file holding a matched row (its WHEN MATCHED condition does
        not spare a file), so rows whose payload_hash is unchanged must not reach it at
        all. When none are left, Delta's MERGE of an empty source commits nothing: an
        unchanged rerun leaves the table version as is.

        The target's (key, hash) pairs equal to one of the batch's are found first, by
        streaming the target past the batch's pairs, and only those few are then taken
        out of the batch: the target is read once, and of its rows only the pairs it shares
        with the batch are ever gathered, however large it is. A batch of up to
        :data:`BROADCAST_ROWS` rows is broadcast to both joins (no shuffle of the target);
        a larger one leaves the plan to Spark.
        """
        from pyspark.sql import functions as F

        on = [*self.keys, "payload_hash", RESCUED]

        def equal(a: Any, b: Any) -> Any:
            # null-safe: _rescued_data is null on nearly every row
            return functools.reduce(operator.and_, (a[c].eqNullSafe(b[c]) for c in on))

        # every staged pair, before the one-row-per-key window: a superset of the deduped
        # rows' pairs, so the same rows are taken out, without computing the window twice
        pairs = staged.select(*on)
        current = self.warehouse.read(self.spark, self.ref).select(*on)
        small = sum(s.rows for s in stages) <= BROADCAST_ROWS
        pairs = F.broadcast(pairs) if small else pairs
        same = current.join(pairs, equal(current, pairs), how="left_semi")
        same = F.broadcast(same) if small else same
        return deduped.join(same, equal(deduped, same), how="left_anti")

    def _merge(self, source: Any, new: list[str]) -> WriteResult:
        from pyspark.sql import functions as F

        cond = None
        for key in self.keys:
            part = F.col(f"t.{key}") == F.col(f"s.{key}")
            cond = part if cond is None else cond & part

        replaces = self._replaces(source)

        def do_merge() -> Any:
            target = self.warehouse.delta(self.spark, self.ref)
            return (target.alias("t").merge(source.alias("s"), cond)
                    .whenMatchedUpdateAll(condition=replaces)
                    .whenNotMatchedInsertAll()
                    .execute())

        metrics = retry_conflicts(do_merge, f"merge into {self.ref.name}")
        written = merge_counts(metrics).written
        return WriteResult(written, self.warehouse.version(self.spark, self.ref), tuple(new))

    def _replaces(self, source: Any) -> Any:
        """When a staged row ``s`` replaces the target's row ``t`` of its key (the MERGE's
        one WHEN MATCHED condition): its ``payload_hash`` differs and, with a
        ``cursor_field``, its cursor is not older than the target's. The cursor is the
        record's version: a replay of an older run, or an API answering with an older
        version of a record, never puts it back over a newer one (a null cursor on either
        side does not block the update). A row whose ``_rescued_data`` differs changed too
        (see :meth:`_changed`)."""
        from pyspark.sql import functions as F

        changed = _row_changed()
        cursor = {c.lower(): c for c in source.columns}.get(self.cursor.lower()) if self.cursor else None
        if cursor is None:
            return changed
        t, s = F.col(f"t.{cursor}"), F.col(f"s.{cursor}")
        return changed & (t.isNull() | s.isNull() | (s >= t))

    def _create(self, df: Any, columns: dict[str, ColumnType], new: list[str],
                batch_version: int, stages: list[WindowStage], reshaped: bool) -> WriteResult:
        if self.cfg.primary_key:
            df = self._dedupe(df, stages, reshaped)
        df = df.drop(SEQ_COLUMN)
        writer = (df.write.format("delta").mode("append")
                  .option("txnAppId", self._app_id()).option("txnVersion", batch_version))
        retry_conflicts(lambda: self.warehouse.save(writer, self.ref), f"create {self.ref.name}")
        version = self.warehouse.version(self.spark, self.ref)
        return WriteResult(self._count_version_rows(version), version, tuple(new))

    def _append(self, df: Any, new: list[str], batch_version: int) -> WriteResult:
        df = df.drop(SEQ_COLUMN)
        writer = (df.write.format("delta").mode("append")
                  .option("txnAppId", self._app_id()).option("txnVersion", batch_version))
        before = self.warehouse.version(self.spark, self.ref)
        retry_conflicts(lambda: self.warehouse.save(writer, self.ref), f"append to {self.ref.name}")
        after = self.warehouse.version(self.spark, self.ref)
        return WriteResult(self._count_version_rows(after) if after != before else 0, after,
                           tuple(new))

    def _app_id(self) -> str:
        return f"restlake:{self.config_id}:{self.load_id}"

    def _count_version_rows(self, version: Optional[int] = None) -> int:
        """Rows the commit ``version`` (default: the latest) wrote, from its metrics."""
        metrics = self.warehouse.commit_metrics(self.spark, self.ref, version)
        return int(metrics.get("numOutputRows", 0))

    def total_rows(self) -> Optional[int]:
        """Rows in the target now (from the Delta log's file statistics where it can)."""
        return self.warehouse.row_count(self.spark, self.ref)

    # ------------------------------------------------------------ quarantine
    def quarantine(self, stages: Iterable[WindowStage], txn: Optional[tuple[str, int]] = None
                   ) -> int:
        """Append rejected records to ``<target>_quarantine``; returns how many.

        Args:
            txn: ``(app id, version)`` makes the append idempotent (Delta ``txnAppId``/
                ``txnVersion``), for a batch that may be written again after a crash.
        """
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        files = [str(s.quarantine_file) for s in stages if s.quarantine_file is not None]
        if not files:
            return 0
        schema = T.StructType([
            T.StructField("reason", T.StringType()), T.StructField("raw_payload", T.StringType()),
            T.StructField("window_start", T.TimestampType()),
            T.StructField("window_end", T.TimestampType()),
            T.StructField("collected_at_utc", T.TimestampType()),
        ])
        df = (self.spark.read.schema(schema).json(files)
              .withColumn("config_id", F.lit(self.config_id))
              .withColumn("source_system", F.lit(self.cfg.system))
              .withColumn("_run_id", F.lit(self.run_id))).cache()
        try:
            count = df.count()
            writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
            if txn is not None:
                writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
            retry_conflicts(lambda: self.warehouse.save(writer, self.ref.suffixed(QUARANTINE_SUFFIX)),
                            "append quarantine")
        finally:
            df.unpersist()
        return count
