"""The Spark + Delta session: Databricks' active one, or a local one built here.

Local sessions resolve the Delta jars from Maven Central at first start
(``spark.jars.packages`` via ``configure_spark_with_delta_pip``). Offline, point
``RESTLAKE_SPARK_JARS`` at local jars (comma-separated paths) and they are used with
``spark.jars`` instead.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Small metadata tables: Delta's defaults (50 snapshot partitions) cost seconds per commit.
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.databricks.delta.stateReconstructionValidation.enabled": "false",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    "spark.databricks.delta.merge.repartitionBeforeWrite.enabled": "false",
    # Adaptive execution submits every shuffle stage as a job of its own: a one-row control
    # MERGE took 13 jobs with it, 6 without (bench/README.md). It only re-plans (partition
    # coalescing, join strategy), never changes a result; locally, with few shuffle
    # partitions, it has little to re-plan.
    "spark.sql.adaptive.enabled": "false",
}


def on_databricks() -> bool:
    """True inside a Databricks runtime (notebook, job or wheel task)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def get_spark(app_name: str = "restlake", *, master: str | None = None,
              conf: dict[str, Any] | None = None) -> Any:
    """Return the active SparkSession, or build a local Spark + Delta session.

    Args:
        app_name: the application name of a new local session.
        master: Spark master of a new local session (default ``RESTLAKE_SPARK_MASTER``
            or ``local[*]``).
        conf: extra Spark settings for a new local session.

    ``RESTLAKE_SPARK_JAVA_OPTIONS`` adds JVM options to a new local session's driver (for
    example ``-XX:TieredStopAtLevel=1 -XX:+UseSerialGC`` for one-shot commands: half the JVM's
    CPU at start; longer processes are faster with the default JIT).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if on_databricks():
        return SparkSession.builder.getOrCreate()

    # PySpark turns naive datetimes into local time; restlake's timestamps are UTC.
    os.environ["TZ"] = "UTC"
    time.tzset()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", _python())

    builder = SparkSession.builder.appName(app_name).master(
        master or os.environ.get("RESTLAKE_SPARK_MASTER", "local[*]"))
    for key, value in local_settings(conf, os.environ).items():
        builder = builder.config(key, value)
    jars = os.environ.get("RESTLAKE_SPARK_JARS")
    if jars:
        builder = builder.config("spark.jars", jars)
    else:
        from delta import configure_spark_with_delta_pip

        builder = configure_spark_with_delta_pip(builder)
    started = time.monotonic()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("RESTLAKE_SPARK_LOG_LEVEL", "ERROR"))
    log.info("local Spark %s started in %.1fs", spark.version, time.monotonic() - started)
    return spark


def local_settings(conf: dict[str, Any] | None, environ: Any) -> dict[str, str]:
    """The settings of a new local session: the defaults, then ``conf``, then the JVM
    options of ``RESTLAKE_SPARK_JAVA_OPTIONS`` appended to the driver's."""
    settings = dict(DEFAULT_CONF)
    settings.update({k: str(v) for k, v in (conf or {}).items()})
    java_options = environ.get("RESTLAKE_SPARK_JAVA_OPTIONS", "").strip()
    if java_options:
        key = "spark.driver.extraJavaOptions"
        settings[key] = f"{settings.get(key, '')} {java_options}".strip()
    return settings


def _python() -> str:
    import sys

    return sys.executable
