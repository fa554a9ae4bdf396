"""Where tables live: a local warehouse folder, or Unity Catalog names on Databricks.

``catalog.schema.table`` is the Delta table at ``DIR/catalog/schema/table`` in local
mode and the Unity Catalog table of that name otherwise. Identifiers are validated
before they reach a path or a SQL text, and quoted with back-quotes in SQL.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from framework.config import check_identifier, quote_identifier
from framework.errors import ConfigError

DEFAULT_WAREHOUSE = "./warehouse"


@dataclass(frozen=True)
class TableRef:
    """A validated three-part table name."""

    catalog: str
    schema: str
    table: str

    def __post_init__(self) -> None:
        for part in (self.catalog, self.schema, self.table):
            check_identifier(part)

    @classmethod
    def parse(cls, name: str) -> "TableRef":
        parts = name.split(".")
        if len(parts) != 3:
            raise ValueError(f"{name!r} is not a catalog.schema.table name")
        return cls(*parts)

    @property
    def name(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"

    @property
    def quoted(self) -> str:
        return ".".join(quote_identifier(p) for p in (self.catalog, self.schema, self.table))

    def suffixed(self, suffix: str) -> "TableRef":
        """A sibling table, e.g. ``<table>_quarantine``."""
        return TableRef(self.catalog, self.schema, self.table + suffix)

    def __str__(self) -> str:
        return self.name


class Warehouse:
    """Resolves table names to Delta tables (local folder, or the metastore)."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = Path(root).resolve() if root is not None else None
        if self.root is not None and "%" in str(self.root):
            # delta-rs reads a '%' in a table's path as an escape ("a%20b" is "a b"), so
            # every JVM-free read would look for another folder than Spark wrote.
            raise ConfigError(f"warehouse folder {str(self.root)!r}: a path with '%' is not "
                              "supported (delta-rs reads '%' as an escape); choose a folder "
                              "without it")

    @classmethod
    def from_env(cls, explicit: str | None = None) -> "Warehouse":
        """``--warehouse``, else ``RESTLAKE_WAREHOUSE``, else metastore on Databricks, else ./warehouse."""
        from framework.lake.spark import on_databricks

        root = explicit or os.environ.get("RESTLAKE_WAREHOUSE")
        if root is None and not on_databricks():
            root = DEFAULT_WAREHOUSE
        return cls(root)

    @property
    def is_local(self) -> bool:
        return self.root is not None

    def path(self, ref: TableRef) -> str:
        if self.root is None:
            raise ValueError("no local warehouse: tables are metastore names")
        return str(self.root / ref.catalog / ref.schema / ref.table)

    def exists(self, spark: Any, ref: TableRef) -> bool:
        """Whether ``ref`` is a Delta table. A path table is one when its ``_delta_log``
        holds a commit or a checkpoint (a look at the folder: no Spark job)."""
        if self.root is not None:
            log = Path(self.path(ref), "_delta_log")
            if not log.is_dir():
                return False
            return any(p.name.endswith((".json", ".checkpoint.parquet")) and p.name[:20].isdigit()
                       for p in log.iterdir())
        return bool(spark.catalog.tableExists(ref.name))

    def delta(self, spark: Any, ref: TableRef) -> Any:
        from delta.tables import DeltaTable

        if self.root is not None:
            return DeltaTable.forPath(spark, self.path(ref))
        return DeltaTable.forName(spark, ref.quoted)

    def read(self, spark: Any, ref: TableRef) -> Any:
        if self.root is not None:
            return spark.read.format("delta").load(self.path(ref))
        return spark.read.table(ref.quoted)

    def save(self, writer: Any, ref: TableRef) -> None:
        """Finish a ``DataFrameWriter`` (format and mode already set) at ``ref``."""
        if self.root is not None:
            writer.save(self.path(ref))
        else:
            writer.saveAsTable(ref.quoted)

    def version(self, spark: Any, ref: TableRef) -> int | None:
        """The latest committed version of ``ref`` (None when it does not exist)."""
        if self.root is not None:
            # A path table's latest version is its highest commit file: no Spark job.
            log = Path(self.path(ref), "_delta_log")
            versions = [int(p.name[:-5]) for p in log.glob("*.json") if p.name[:-5].isdigit()]
            return max(versions) if versions else None
        if not self.exists(spark, ref):
            return None
        row = self.delta(spark, ref).history(1).select("version").collect()
        return int(row[0][0]) if row else None

    def commit_metrics(self, spark: Any, ref: TableRef, version: int | None = None) -> dict[str, str]:
        """The ``operationMetrics`` of commit ``version`` (default: the latest) of ``ref``.

        A path table's commit file is read directly (no Spark job); a metastore table's
        through ``DESCRIBE HISTORY``.
        """
        if self.root is not None:
            version = self.version(spark, ref) if version is None else version
            if version is None:
                return {}
            path = Path(self.path(ref), "_delta_log", f"{version:020d}.json")
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if '"commitInfo"' in line:
                        return dict(json.loads(line)["commitInfo"].get("operationMetrics") or {})
            return {}
        from pyspark.sql import functions as F

        table = self.delta(spark, ref)
        hist = (table.history(1) if version is None else
                table.history().where(F.col("version") == F.lit(int(version)))).limit(1).collect()
        return dict(hist[0]["operationMetrics"] or {}) if hist else {}

    def row_count(self, spark: Any, ref: TableRef) -> int | None:
        """Rows in ``ref`` now (None when it does not exist).

        A path table's count is the sum of the row counts its Delta log keeps for each
        data file (read with delta-rs: no Spark job); a table whose files lack those
        statistics, or that has deletion vectors, is counted by Spark.
        """
        if not self.exists(spark, ref):
            return None
        if self.root is not None:
            try:
                from deltalake import DeltaTable as RsTable

                table = RsTable(self.path(ref))
                features = set(table.protocol().reader_features or ())
                if "deletionVectors" not in features:
                    counts = table.get_add_actions(flatten=True).column("num_records").to_pylist()
                    if all(c is not None for c in counts):
                        return int(sum(counts))
            except ImportError:  # pragma: no cover - deltalake is a restlake dependency
                pass
        return self.read(spark, ref).count()

    def create_if_not_exists(self, spark: Any, ref: TableRef, schema: Any,
                             properties: dict[str, str] | None = None,
                             partition_by: Iterable[str] = (), comment: str | None = None) -> bool:
        """Create an empty Delta table with ``schema``; returns True when it was created."""
        from delta.tables import DeltaTable

        if self.exists(spark, ref):
            return False
        if self.root is None:
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(ref.catalog)}."
                      f"{quote_identifier(ref.schema)}")
        builder = DeltaTable.createIfNotExists(spark)
        builder = builder.location(self.path(ref)) if self.root is not None else builder.tableName(ref.quoted)
        builder = builder.addColumns(schema)
        for key, value in (properties or {}).items():
            builder = builder.property(key, value)
        if partition_by:
            builder = builder.partitionedBy(*partition_by)
        if comment:
            builder = builder.comment(comment)
        builder.execute()
        return True

    def __repr__(self) -> str:
        return f"Warehouse({self.root or 'metastore'})"
