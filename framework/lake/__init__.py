"""The Delta lake edge: the Spark session, where tables live, and commit-conflict retries.

``Warehouse`` resolves ``catalog.schema.table`` to a local Delta folder or a Unity
Catalog name; ``get_spark`` returns Databricks' session or builds a local one.
"""

from framework.lake.commits import retry_conflicts
from framework.lake.spark import get_spark, on_databricks
from framework.lake.tables import TableRef, Warehouse

__all__ = ["TableRef", "Warehouse", "get_spark", "on_databricks", "retry_conflicts"]
