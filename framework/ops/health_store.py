"""The health log on Delta and the uptime SQL views over it.

Table ``<control catalog>.metadata.api_health_log`` (append-only): one row per probe
or per ingestion request attempt (see :mod:`framework.ops.health`).

Views (names are a public contract, documented in the README; their SQL is defined once in
:mod:`framework.ops.uptime`, which also renders it for the JVM-free read path):

* ``api_uptime`` — per source: uptime % and check counts over 24 h, 7 d and 30 d;
* ``api_response_times`` — per source, last 7 d: min / avg / max / p95 response ms;
* ``api_incidents`` — spans of consecutive failed checks: start, end (first success
  after; null while ongoing), duration, failed checks, last error;
* ``api_health_summary`` — one row: sources up/down, overall uptime, p95, open incidents.

Locally the warehouse has no metastore: :func:`register_views` registers the log as the
temp view ``api_health_log`` and the four views as temp views of the current session.
On Unity Catalog it runs ``CREATE OR REPLACE VIEW <catalog>.metadata.<view>``. The SQL
texts hold only constant, validated and back-quoted identifiers; no value is formatted in.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterable

from pyspark.sql.types import (BooleanType, DoubleType, IntegerType, StringType, StructField,
                               StructType, TimestampType)

from framework.lake.commits import retry_conflicts
from framework.lake.groupcommit import GroupCommit
from framework.lake.rows import append_rows
from framework.ops import uptime
from framework.ops.health import new_check_id
from framework.config import check_identifier
from framework.lake.tables import TableRef, Warehouse

log = logging.getLogger(__name__)

HEALTH_TABLE = "api_health_log"
METADATA_SCHEMA = "metadata"
VIEW_NAMES = uptime.VIEW_NAMES

HEALTH_SCHEMA = StructType([
    StructField("ConfigId", StringType(), False),
    StructField("SourceSystem", StringType()),
    StructField("CheckKind", StringType(), False, {"comment": "probe | ingest"}),
    StructField("CheckedAt", TimestampType(), False),
    StructField("Method", StringType()),
    StructField("Url", StringType(), True, {"comment": "redacted, without query"}),
    StructField("StatusCode", IntegerType()),
    StructField("Ok", BooleanType(), False),
    StructField("ElapsedMs", DoubleType()),
    StructField("ErrorKind", StringType(), True,
                {"comment": "timeout | connection_error | http_status | unexpected_status | config"}),
    StructField("ErrorMessage", StringType(), True, {"comment": "sanitized"}),
    StructField("RunId", StringType()),
    StructField("CheckId", StringType(), True,
                {"comment": "unique per row: orders the checks of one instant (a log made by an "
                            "older restlake has none in its earlier rows)"}),
])


def health_ref(catalog: str = "main") -> TableRef:
    return TableRef(catalog, METADATA_SCHEMA, HEALTH_TABLE)


def ensure_table(spark: Any, warehouse: Warehouse, catalog: str = "main") -> bool:
    """Create the health log if missing (append-only); True when created."""
    ref = health_ref(catalog)
    return retry_conflicts(lambda: warehouse.create_if_not_exists(
        spark, ref, HEALTH_SCHEMA, {"delta.appendOnly": "true"},
        comment="restlake health log: probes and ingestion request outcomes"), f"create {ref.name}")


def append_checks(spark: Any, warehouse: Warehouse, rows: Iterable[dict[str, Any]],
                  catalog: str = "main") -> int:
    """Append health rows in one commit, shared with the appends of concurrent loads
    (:class:`~framework.lake.groupcommit.GroupCommit`); returns how many once they landed."""
    rows = list(rows)
    if not rows:
        return 0
    key = (id(spark), str(warehouse.root), catalog)
    with _GROUPS_LOCK:
        group = _GROUPS.get(key)
        if group is None:
            group = _GROUPS[key] = GroupCommit(
                lambda batches: _append_batches(spark, warehouse, catalog, batches),
                f"health log {catalog}")
    return group.submit(rows)


def with_check_id(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with a ``CheckId`` (a new one when it has none)."""
    return row if row.get("CheckId") else dict(row, CheckId=new_check_id())


_GROUPS: dict[tuple, GroupCommit] = {}
_GROUPS_LOCK = threading.Lock()


def _append_batches(spark: Any, warehouse: Warehouse, catalog: str,
                    batches: list[list[dict[str, Any]]]) -> list[int]:
    ensure_table(spark, warehouse, catalog)
    # merge_schema: a log made by an older restlake gains the CheckId column
    append_rows(spark, warehouse, health_ref(catalog), HEALTH_SCHEMA,
                [with_check_id(r) for b in batches for r in b], "health log", merge_schema=True)
    return [len(b) for b in batches]


def read_checks(spark: Any, warehouse: Warehouse, catalog: str = "main") -> Any:
    """The health log as a DataFrame (empty when it does not exist yet)."""
    ref = health_ref(catalog)
    if not warehouse.exists(spark, ref):
        return spark.createDataFrame([], HEALTH_SCHEMA)
    return warehouse.read(spark, ref)


# ------------------------------------------------------------------------- views
def view_sql(source: str, incidents: str) -> dict[str, str]:
    """The views' Spark SQL SELECT texts over ``source`` (a validated, quoted name); the
    metrics themselves are defined once, in :mod:`framework.ops.uptime`."""
    return uptime.view_sql(source, incidents, uptime.SPARK)


def _quoted(*parts: str) -> str:
    return ".".join(f"`{check_identifier(p)}`" for p in parts)


def register_views(spark: Any, warehouse: Warehouse, catalog: str = "main") -> list[str]:
    """Create the health log if needed and (re)create the uptime views; returns their names.

    Local warehouse: temp views of this session (``api_health_log``, ``api_uptime``, ...).
    Unity Catalog: ``<catalog>.metadata.<view>`` persistent views.
    """
    from control.store import CONTROL_TABLE

    ensure_table(spark, warehouse, catalog)
    ref = health_ref(catalog)
    control = TableRef(catalog, METADATA_SCHEMA, CONTROL_TABLE)
    has_control = warehouse.exists(spark, control)
    if warehouse.is_local:
        warehouse.read(spark, ref).createOrReplaceTempView(HEALTH_TABLE)
        if has_control:
            warehouse.read(spark, control).createOrReplaceTempView(CONTROL_TABLE)
        log_name, control_name = _quoted(HEALTH_TABLE), _quoted(CONTROL_TABLE)
        names = {v: _quoted(v) for v in VIEW_NAMES}
        kind = "TEMPORARY VIEW"
    else:
        log_name, control_name = ref.quoted, control.quoted
        names = {v: _quoted(catalog, METADATA_SCHEMA, v) for v in VIEW_NAMES}
        kind = "VIEW"
    # the metrics count the checks of enabled sources (Queries._monitored: the same rule)
    source = (f"(SELECT h.* FROM {log_name} h LEFT ANTI JOIN {control_name} c "
              "ON h.ConfigId = c.ConfigId AND c.Enabled = false) AS monitored"
              if has_control else log_name)
    for view, select in view_sql(source, names["api_incidents"]).items():
        spark.sql(f"CREATE OR REPLACE {kind} {names[view]} AS {select}")
    created = [HEALTH_TABLE] + list(VIEW_NAMES) if warehouse.is_local else \
        [f"{catalog}.{METADATA_SCHEMA}.{v}" for v in VIEW_NAMES]
    log.info("health views registered: %s", ", ".join(created))
    return created


def flush_load_health(spark: Any, warehouse: Warehouse, recorder: Any, catalog: str = "main") -> int:
    """Append a load's request outcomes in one batch; never raises (health is best effort)."""
    try:
        if recorder.dropped:
            log.info("%s: %d request outcomes beyond the bound were not logged",
                     recorder.config_id, recorder.dropped)
        return append_checks(spark, warehouse, recorder.rows(), catalog)
    except Exception as exc:  # noqa: BLE001 - a health-log problem must not fail the load
        from framework.secrets import redact

        log.warning("%s: could not append to the health log: %s", recorder.config_id,
                    redact(f"{type(exc).__name__}: {exc}")[:500])
        return 0
