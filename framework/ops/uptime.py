"""The uptime metrics of the health log, written once and rendered for two SQL engines.

Each metric is one SQL text. :func:`view_sql` renders it for Spark SQL (the views
``api_uptime``, ``api_response_times``, ``api_incidents``, ``api_health_summary`` that
:mod:`framework.ops.health_store` registers for SQL users) or for DuckDB (the JVM-free
read path of the CLI, the report and the service, which binds ``$now``). Only function
names and "now" differ between the two; no value is ever formatted into the text.

* ``api_uptime`` — per source: uptime % and check counts over 24 h, 7 d and 30 d;
* ``api_response_times`` — per source, last 7 d: min / avg / max / p95 response ms;
* ``api_incidents`` — spans of consecutive failed checks of the whole log, as of "now"
  (no later check counts): start, end (first success after; null while ongoing),
  duration, failed checks, last error;
* ``api_health_summary`` — one row: sources up/down, overall uptime, p95, open incidents;
* ``uptime_buckets`` (DuckDB only, the dashboard's sparklines) — per source and hour or
  day: checks and uptime %.
"""

from __future__ import annotations

SPARK = "spark"
DUCKDB = "duckdb"

_DIALECTS = {
    SPARK: {"now": "current_timestamp()", "p95": "percentile", "epoch_us": "unix_micros"},
    DUCKDB: {"now": "CAST($now AS TIMESTAMPTZ)", "p95": "quantile_cont", "epoch_us": "epoch_us"},
}

_UPTIME = """
SELECT ConfigId,
       max(SourceSystem) AS SourceSystem,
       round(100 * avg(CASE WHEN CheckedAt >= {now} - INTERVAL 24 HOURS
                            THEN CAST(Ok AS INT) END), 3) AS uptime_pct_24h,
       count(CASE WHEN CheckedAt >= {now} - INTERVAL 24 HOURS THEN 1 END) AS checks_24h,
       round(100 * avg(CASE WHEN CheckedAt >= {now} - INTERVAL 7 DAYS
                            THEN CAST(Ok AS INT) END), 3) AS uptime_pct_7d,
       count(CASE WHEN CheckedAt >= {now} - INTERVAL 7 DAYS THEN 1 END) AS checks_7d,
       round(100 * avg(CAST(Ok AS INT)), 3) AS uptime_pct_30d,
       count(*) AS checks_30d,
       max(CheckedAt) AS last_checked_at,
       max_by(Ok, CheckedAt) AS last_ok
FROM {src}
WHERE CheckedAt >= {now} - INTERVAL 30 DAYS
GROUP BY ConfigId
"""

_RESPONSE = """
SELECT ConfigId,
       count(*) AS responses_7d,
       round(min(ElapsedMs), 3) AS min_ms,
       round(avg(ElapsedMs), 3) AS avg_ms,
       round(max(ElapsedMs), 3) AS max_ms,
       round({p95}(ElapsedMs, 0.95), 3) AS p95_ms
FROM {src}
WHERE StatusCode IS NOT NULL AND CheckedAt >= {now} - INTERVAL 7 DAYS
GROUP BY ConfigId
"""

# gaps and islands: a new group starts whenever Ok flips; failed groups are incidents,
# ended by the first check of the next group. Over the whole log (an outage longer than
# any window keeps its first check), as of "now": a check after it (a caller whose clock
# is behind the log's) neither ends an outage nor starts one.
_INCIDENTS = """
WITH ordered AS (
  SELECT ConfigId, CheckedAt, Ok, coalesce(ErrorMessage, ErrorKind) AS err,
         CASE WHEN Ok = lag(Ok) OVER (PARTITION BY ConfigId ORDER BY CheckedAt, Ok DESC)
              THEN 0 ELSE 1 END AS flipped
  FROM {src}
  WHERE CheckedAt <= {now}
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
       round(({epoch_us}(coalesce(n.started_at, {now}))
              - {epoch_us}(f.started_at)) / 1e6, 3) AS duration_s,
       f.checks AS failed_checks,
       f.last_error
FROM spans f LEFT JOIN spans n ON n.ConfigId = f.ConfigId AND n.grp = f.grp + 1
WHERE NOT f.ok
"""

_SUMMARY = """
WITH latest AS (
  SELECT ConfigId, max_by(Ok, CheckedAt) AS up FROM {src} GROUP BY ConfigId
), day AS (
  SELECT * FROM {src} WHERE CheckedAt >= {now} - INTERVAL 24 HOURS
)
SELECT (SELECT count(*) FROM latest) AS sources,
       (SELECT count(*) FROM latest WHERE up) AS sources_up,
       (SELECT count(*) FROM latest WHERE NOT up) AS sources_down,
       (SELECT round(100 * avg(CAST(Ok AS INT)), 3) FROM day) AS uptime_pct_24h,
       (SELECT count(*) FROM day) AS checks_24h,
       (SELECT round(avg(ElapsedMs), 3) FROM day WHERE StatusCode IS NOT NULL) AS avg_ms_24h,
       (SELECT round({p95}(ElapsedMs, 0.95), 3) FROM day
         WHERE StatusCode IS NOT NULL) AS p95_ms_24h,
       (SELECT count(*) FROM {incidents} WHERE ongoing) AS open_incidents,
       (SELECT max(CheckedAt) FROM {src}) AS last_checked_at
"""

# DuckDB only: $since and $bucket_s (3600 or 86400) are bound.
_BUCKETS = """
SELECT ConfigId,
       CAST(to_timestamp(floor(epoch(CheckedAt) / $bucket_s) * $bucket_s) AS TIMESTAMPTZ)
         AS bucket_start,
       count(*) AS checks,
       round(100 * avg(CAST(Ok AS INT)), 3) AS uptime_pct
FROM {src}
WHERE CheckedAt >= $since
GROUP BY 1, 2
ORDER BY 1, 2
"""

VIEW_NAMES = ("api_uptime", "api_response_times", "api_incidents", "api_health_summary")


def view_sql(source: str, incidents: str, dialect: str = SPARK) -> dict[str, str]:
    """The four views' SELECT texts over ``source`` (a validated, quoted name).

    Args:
        source: the health log's name in the query.
        incidents: the name (or a parenthesised query) the summary counts open incidents of.
        dialect: :data:`SPARK` or :data:`DUCKDB` (binds ``$now``).
    """
    words = _DIALECTS[dialect]
    return {
        "api_uptime": _UPTIME.format(src=source, **words),
        "api_response_times": _RESPONSE.format(src=source, **words),
        "api_incidents": _INCIDENTS.format(src=source, **words),
        "api_health_summary": _SUMMARY.format(src=source, incidents=incidents, **words),
    }


def duckdb_sql(source: str = "api_health_log") -> dict[str, str]:
    """Every metric for DuckDB over the registered Arrow table ``source`` (the summary counts
    the incidents of its own rendering of ``api_incidents``)."""
    out = view_sql(source, "", DUCKDB)
    out["api_health_summary"] = view_sql(source, f"({out['api_incidents']})", DUCKDB)[
        "api_health_summary"]
    out["uptime_buckets"] = _BUCKETS.format(src=source)
    return out
