# Databricks notebook source
# MAGIC %md
# MAGIC # restlake: run the pending loads
# MAGIC
# MAGIC Claims `PENDING` control rows (one runner per row), loads their windows into the
# MAGIC target Delta tables and appends one audit row per load. The notebook fails when a
# MAGIC load failed, so a job run shows it.
# MAGIC
# MAGIC On a cluster, rows are staged as JSON-lines under `RESTLAKE_STAGING` before the
# MAGIC Delta write; set it to a Unity Catalog Volume path the executors can read
# MAGIC (`/Volumes/<catalog>/<schema>/<volume>/staging`), e.g. in the cluster's Spark environment variables.

# COMMAND ----------

dbutils.widgets.text("config_id", "", "ConfigIds (empty: every PENDING row)")
dbutils.widgets.text("control_catalog", "main", "Control catalog")
dbutils.widgets.text("warehouse", "", "Local warehouse (empty on Databricks)")
dbutils.widgets.text("staging", "", "RESTLAKE_STAGING (a /Volumes/... path)")

# COMMAND ----------

import os

from framework.cli import jobs
from framework.logs import setup_logging
from framework.secrets import set_dbutils_provider

# The same logging as the CLI: secrets are masked in every log line.
setup_logging("INFO")

set_dbutils_provider(lambda: dbutils)
if dbutils.widgets.get("staging"):
    os.environ["RESTLAKE_STAGING"] = dbutils.widgets.get("staging")

config_ids = [c.strip() for c in dbutils.widgets.get("config_id").split(",") if c.strip()]
outcomes = jobs.run(
    spark,
    config_ids=config_ids,
    warehouse=dbutils.widgets.get("warehouse") or None,
    control_catalog=dbutils.widgets.get("control_catalog"),
)

# COMMAND ----------

summary = spark.createDataFrame(
    [(o.config_id, o.status, o.source_rows, o.rows_written, o.error) for o in outcomes],
    "ConfigId string, status string, records long, rows_written long, error string")
display(summary)

failed = [o.config_id for o in outcomes if o.failed]
if failed:
    raise RuntimeError(f"loads failed: {', '.join(failed)} (see the audit table)")
