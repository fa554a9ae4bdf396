# Databricks notebook source
# MAGIC %md
# MAGIC # restlake: operations
# MAGIC
# MAGIC The questions an on-call engineer asks, as SQL over the control plane. The cells read
# MAGIC the temp views `api_control`, `api_audit`, `api_window_log` and `api_quality`, which
# MAGIC point at `<control_catalog>.metadata.api_control_table`, `.api_audit_table`,
# MAGIC `.api_window_log` and `.api_quality_results` (on Databricks you can query those tables
# MAGIC directly with the same SQL), and `recent_audit`, the audit rows of the last `days` days.

# COMMAND ----------

dbutils.widgets.text("control_catalog", "main", "Control catalog")
dbutils.widgets.text("warehouse", "", "Local warehouse (empty on Databricks)")
dbutils.widgets.text("stale_hours", "24", "A source is stale after (hours)")
dbutils.widgets.text("days", "7", "Look back (days)")

# COMMAND ----------

from pyspark.sql import functions as F

from framework.cli import jobs
from framework.logs import setup_logging

# The same logging as the CLI: secrets are masked in every log line.
setup_logging("INFO")

# Reports on what exists: a missing control table (a mistyped catalog) is an error, never
# a new empty one.
store = jobs.open_store(spark, dbutils.widgets.get("warehouse") or None,
                        dbutils.widgets.get("control_catalog"), create=False)
views = jobs.register_views(spark, store)
stale_hours = int(dbutils.widgets.get("stale_hours"))
days = int(dbutils.widgets.get("days"))
# Widget values are applied with the DataFrame API, never pasted into SQL text.
since = F.current_timestamp() - F.make_interval(days=F.lit(days))
spark.table("api_audit").where(F.col("LoggedAt") >= since).createOrReplaceTempView("recent_audit")

# COMMAND ----------

# MAGIC %md ## Failures today

# COMMAND ----------

failures_today = spark.sql("""
    SELECT ConfigId, LoadType, LoadStatus, ErrorMessage, WindowsLoaded, WindowsTotal, RunId, LoggedAt
    FROM api_audit
    WHERE LoadStatus IN ('FAILED', 'PARTIAL', 'FAILED_QUALITY')
      AND LoggedAt >= date_trunc('DAY', current_timestamp())
    ORDER BY LoggedAt DESC
""")
display(failures_today)

# COMMAND ----------

# MAGIC %md ## Rows per load, last `days` days (expected = the total the API reported)

# COMMAND ----------

rows_per_load = spark.sql("""
    SELECT ConfigId, RunId, LoadType, LoadStatus, SourceRowCount, ExpectedRowCount,
           TargetRowCount, TargetTotalRowCount, RejectedRows, RescuedRows, LoggedAt
    FROM recent_audit
    ORDER BY LoggedAt DESC
""")
display(rows_per_load)

# COMMAND ----------

# MAGIC %md ## Durations (last `days` days)

# COMMAND ----------

durations = spark.sql("""
    SELECT ConfigId, count(*) AS runs,
           round(avg(RunDuration), 1) AS avg_s,
           round(percentile_approx(RunDuration, 0.95), 1) AS p95_s,
           round(max(RunDuration), 1) AS max_s,
           max(LoggedAt) AS last_run,
           sum(Requests) AS requests, sum(Retries) AS retries
    FROM recent_audit
    GROUP BY ConfigId
    ORDER BY max_s DESC
""")
display(durations)

# COMMAND ----------

# MAGIC %md ## Stale sources (enabled, and no successful load for `stale_hours`)

# COMMAND ----------

stale_sources = spark.sql("""
    SELECT c.ConfigId, c.SourceSystem, c.TargetCatalog, c.TargetSchema, c.TargetTable,
           c.LoadStatus, c.LastLoadTime AS watermark, s.last_success, c.TriggerFrequency, c.Owner,
           round((unix_timestamp(current_timestamp()) - unix_timestamp(s.last_success)) / 3600, 1)
               AS hours_since_success
    FROM api_control c
    LEFT JOIN (SELECT ConfigId, max(LoggedAt) AS last_success
               FROM api_audit WHERE LoadStatus = 'SUCCESS' GROUP BY ConfigId) s
      ON c.ConfigId = s.ConfigId
    WHERE coalesce(c.Enabled, true)
    ORDER BY s.last_success NULLS FIRST
""").where(F.col("hours_since_success").isNull()
           | (F.col("hours_since_success") >= F.lit(stale_hours)))
display(stale_sources)

# COMMAND ----------

# MAGIC %md ## Data quality: checks that did not pass (last `days` days)

# COMMAND ----------

quality_failures = (spark.table("api_quality").where(F.col("CheckedAt") >= since)
                    .where(~F.col("Passed"))
                    .select("CheckedAt", "ConfigId", "LoadId", "Phase", "CheckName", "Field",
                            "ObservedValue", "Threshold", "Severity", "Message")
                    .orderBy(F.col("CheckedAt").desc()))
display(quality_failures)

# COMMAND ----------

# MAGIC %md ## Schema drift seen (fields the targets lack)

# COMMAND ----------

schema_drift = spark.sql("""
    SELECT ConfigId, SchemaChanges, RescuedRows, LoggedAt
    FROM api_audit
    WHERE SchemaChanges IS NOT NULL
    ORDER BY LoggedAt DESC
""")
display(schema_drift)
