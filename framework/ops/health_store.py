"""The health log on Delta and the uptime SQL views over it.

Table ``<control catalog>.metadata.api_health_log`` (append-only): one row per probe
or per ingestion request attempt (see :mod:`framework.ops.health`).

Views (names are a public contract, documented in the README):

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
from typing import Any, Iterable

from pyspark.sql.types import (BooleanType, DoubleType, IntegerType, StringType, StructField,
                               StructType, TimestampType)

from framework.lake.commits import retry_conflicts
from framework.config import check_identifier
from framework.lake.tables import TableRef, Warehouse
from framework.timeutil import to_utc

log = logging.getLogger(__name__)

HEALTH_TABLE = "api_health_log"
METADATA_SCHEMA = "metadata"
VIEW_NAMES = ("api_uptime", "api_response_times", "api_incidents", "api_health_summary")

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
    """Append health rows in one commit; returns how many."""
    rows = list(rows)
    if not rows:
        return 0
    ensure_table(spark, warehouse, catalog)
    data = [tuple(_value(r.get(f.name)) for f in HEALTH_SCHEMA.fields) for r in rows]
    df = spark.createDataFrame(data, HEALTH_SCHEMA)
    ref = health_ref(catalog)
    retry_conflicts(lambda: warehouse.save(df.write.format("delta").mode("append"), ref),
                    "append health log")
    return len(rows)


def read_checks(spark: Any, warehouse: Warehouse, catalog: str = "main") -> Any:
    """The health log as a DataFrame (empty when it does not exist yet)."""
    ref = health_ref(catalog)
    if not warehouse.exists(spark, ref):
        return spark.createDataFrame([], HEALTH_SCHEMA)
    return warehouse.read(spark, ref)


def _value(value: Any) -> Any:
    import datetime as dt

    return to_utc(value) if isinstance(value, dt.datetime) else value


# ------------------------------------------------------------------------- views
_UPTIME = """
SELECT ConfigId,
       max(SourceSystem) AS SourceSystem,
       round(100 * avg(CASE WHEN CheckedAt >= current_timestamp() - INTERVAL 24 HOURS
                            THEN CAST(Ok AS INT) END), 3) AS uptime_pct_24h,
       count(CASE WHEN CheckedAt >= current_timestamp() - INTERVAL 24 HOURS THEN 1 END) AS checks_24h,
       round(100 * avg(CASE WHEN CheckedAt >= current_timestamp() - INTERVAL 7 DAYS
                            THEN CAST(Ok AS INT) END), 3) AS uptime_pct_7d,
       count(CASE WHEN CheckedAt >= current_timestamp() - INTERVAL 7 DAYS THEN 1 END) AS checks_7d,
       round(100 * avg(CAST(Ok AS INT)), 3) AS uptime_pct_30d,
       count(*) AS checks_30d,
       max(CheckedAt) AS last_checked_at,
       max_by(Ok, CheckedAt) AS last_ok
FROM {src}
WHERE CheckedAt >= current_timestamp() - INTERVAL 30 DAYS
GROUP BY ConfigId
"""

_RESPONSE = """
SELECT ConfigId,
       count(*) AS responses_7d,
       round(min(ElapsedMs), 3) AS min_ms,
       round(avg(ElapsedMs), 3) AS avg_ms,
       round(max(ElapsedMs), 3) AS max_ms,
       round(percentile_approx(ElapsedMs, 0.95), 3) AS p95_ms
FROM {src}
WHERE StatusCode IS NOT NULL AND CheckedAt >= current_timestamp() - INTERVAL 7 DAYS
GROUP BY ConfigId
"""

# gaps and islands: a new group starts whenever Ok flips; failed groups are incidents,
# ended by the first check of the next group.
_INCIDENTS = """
WITH ordered AS (
  SELECT ConfigId, CheckedAt, Ok, coalesce(ErrorMessage, ErrorKind) AS err,
         CASE WHEN Ok = lag(Ok) OVER (PARTITION BY ConfigId ORDER BY CheckedAt, Ok DESC)
              THEN 0 ELSE 1 END AS flipped
  FROM {src}
), grouped AS (
  SELECT *, sum(flipped) OVER (PARTITION BY ConfigId ORDER BY CheckedAt, Ok DESC
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS grp
  FROM ordered
), spans AS (
  SELECT ConfigId, grp, min(Ok) AS ok, min(CheckedAt) AS started_at, count(*) AS checks,
         max_by(err, CheckedAt) AS last_error
  FROM grouped GROUP BY ConfigId, grp
)
SELECT f.ConfigId,
       f.started_at,
       n.started_at AS ended_at,
       n.started_at IS NULL AS ongoing,
       round((unix_micros(coalesce(n.started_at, current_timestamp()))
              - unix_micros(f.started_at)) / 1e6, 3) AS duration_s,
       f.checks AS failed_checks,
       f.last_error
FROM spans f LEFT JOIN spans n ON n.ConfigId = f.ConfigId AND n.grp = f.grp + 1
WHERE NOT f.ok
"""

_SUMMARY = """
WITH latest AS (
  SELECT ConfigId, max_by(Ok, CheckedAt) AS up FROM {src} GROUP BY ConfigId
), day AS (
  SELECT * FROM {src} WHERE CheckedAt >= current_timestamp() - INTERVAL 24 HOURS
)
SELECT (SELECT count(*) FROM latest) AS sources,
       (SELECT count(*) FROM latest WHERE up) AS sources_up,
       (SELECT count(*) FROM latest WHERE NOT up) AS sources_down,
       (SELECT round(100 * avg(CAST(Ok AS INT)), 3) FROM day) AS uptime_pct_24h,
       (SELECT count(*) FROM day) AS checks_24h,
       (SELECT round(avg(ElapsedMs), 3) FROM day WHERE StatusCode IS NOT NULL) AS avg_ms_24h,
       (SELECT round(percentile_approx(ElapsedMs, 0.95), 3) FROM day
         WHERE StatusCode IS NOT NULL) AS p95_ms_24h,
       (SELECT count(*) FROM {incidents} WHERE ongoing) AS open_incidents,
       (SELECT max(CheckedAt) FROM {src}) AS last_checked_at
"""


def view_sql(source: str, incidents: str) -> dict[str, str]:
    """The views' SELECT texts over ``source`` (a validated, quoted name)."""
    return {
        "api_uptime": _UPTIME.format(src=source),
        "api_response_times": _RESPONSE.format(src=source),
        "api_incidents": _INCIDENTS.format(src=source),
        "api_health_summary": _SUMMARY.format(src=source, incidents=incidents),
    }


def _quoted(*parts: str) -> str:
    return ".".join(f"`{check_identifier(p)}`" for p in parts)


def register_views(spark: Any, warehouse: Warehouse, catalog: str = "main") -> list[str]:
    """Create the health log if needed and (re)create the uptime views; returns their names.

    Local warehouse: temp views of this session (``api_health_log``, ``api_uptime``, ...).
    Unity Catalog: ``<catalog>.metadata.<view>`` persistent views.
    """
    ensure_table(spark, warehouse, catalog)
    ref = health_ref(catalog)
    if warehouse.is_local:
        warehouse.read(spark, ref).createOrReplaceTempView(HEALTH_TABLE)
        source = _quoted(HEALTH_TABLE)
        names = {v: _quoted(v) for v in VIEW_NAMES}
        kind = "TEMPORARY VIEW"
    else:
        source = ref.quoted
        names = {v: _quoted(catalog, METADATA_SCHEMA, v) for v in VIEW_NAMES}
        kind = "VIEW"
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
