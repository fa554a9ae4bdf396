# Databricks notebook source
# MAGIC %md
# MAGIC # restlake: generate control rows
# MAGIC
# MAGIC Validates the source configs, upserts one control row per `ConfigId` in
# MAGIC `<control_catalog>.metadata.api_control_table` and marks due loads `PENDING` with the
# MAGIC window range to load. Run `02_run` next (or use the bundle's job, which chains both).
# MAGIC
# MAGIC * **config_path**: YAML files or folders (comma-separated), e.g. `/Workspace/Shared/restlake/conf/monitoring`;
# MAGIC   their configs are upserted. Leave empty to plan rows already in the control table.
# MAGIC * **config_id**: with an empty `config_path`, plan only these rows (comma-separated).
# MAGIC * **due_only**: `true` plans only rows whose schedule fired: with no `config_id`, every row of the
# MAGIC   control table (rows added by hand with SQL included); `false` plans the named configs or rows now.
# MAGIC
# MAGIC The same function runs behind `restlake generate` and the `restlake-generate` wheel task. A control
# MAGIC row that does not validate is listed with its error (naming the column) and fails this notebook
# MAGIC after the other rows are planned.
# MAGIC * **control_catalog**: the catalog holding the `metadata` schema.
# MAGIC * **warehouse**: leave empty on Databricks (Unity Catalog); a folder for local runs.

# COMMAND ----------

dbutils.widgets.text("config_path", "", "Config files or folders")
dbutils.widgets.text("config_id", "", "ConfigIds (control table)")
dbutils.widgets.dropdown("due_only", "true", ["true", "false"], "Only due rows")
dbutils.widgets.text("control_catalog", "main", "Control catalog")
dbutils.widgets.text("warehouse", "", "Local warehouse (empty on Databricks)")

# COMMAND ----------

from framework.cli import jobs
from framework.logs import setup_logging
from framework.secrets import set_dbutils_provider

# The same logging as the CLI: secrets are masked in every log line.
setup_logging("INFO")

# `databricks:SCOPE/KEY` secret references resolve through this notebook's dbutils.
set_dbutils_provider(lambda: dbutils)

config_paths = [p for p in dbutils.widgets.get("config_path").split(",") if p.strip()]
config_ids = [c.strip() for c in dbutils.widgets.get("config_id").split(",") if c.strip()]
results = jobs.generate(
    spark,
    config_paths=config_paths,
    config_ids=config_ids,
    due=dbutils.widgets.get("due_only") == "true",
    warehouse=dbutils.widgets.get("warehouse") or None,
    control_catalog=dbutils.widgets.get("control_catalog"),
)

# COMMAND ----------

generated = spark.createDataFrame(
    [(r.config_id, r.action, r.detail) for r in results],
    "ConfigId string, action string, detail string")
display(generated)

# COMMAND ----------

invalid = [r for r in results if r.action == "invalid"]
if invalid:
    raise ValueError("control rows that do not validate (the others are planned): "
                     + "; ".join(f"{r.config_id}: {r.detail}" for r in invalid))
