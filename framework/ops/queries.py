"""Read-only questions over the warehouse, answered without a JVM.

``restlake status``/``audit``/``status --stale``, the report, the worksheet and the
service ask them here; :class:`framework.lake.reader.TableReader` reads the Delta
tables (delta-rs, Arrow, DuckDB) and caches answers by the tables' versions.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from framework.lake.reader import TableReader
from framework.lake.tables import TableRef

METADATA_SCHEMA = "metadata"
CONTROL_TABLE = "api_control_table"
AUDIT_TABLE = "api_audit_table"
WINDOW_LOG_TABLE = "api_window_log"
HEALTH_TABLE = "api_health_log"


class Queries:
    """The questions, over one warehouse's control catalog.

    Args:
        reader: the table reader (its caches are shared by every question).
        catalog: the catalog of the ``metadata`` schema.
    """

    def __init__(self, reader: TableReader, catalog: str = "main") -> None:
        self.reader = reader
        self.catalog = catalog
        self.control_ref = TableRef(catalog, METADATA_SCHEMA, CONTROL_TABLE)
        self.audit_ref = TableRef(catalog, METADATA_SCHEMA, AUDIT_TABLE)
        self.window_ref = TableRef(catalog, METADATA_SCHEMA, WINDOW_LOG_TABLE)
        self.health_ref = TableRef(catalog, METADATA_SCHEMA, HEALTH_TABLE)

    def __repr__(self) -> str:
        return f"Queries({self.catalog} via {self.reader!r})"

    def control_version(self) -> Optional[int]:
        return self.reader.version(self.control_ref)

    # ------------------------------------------------------------------ control
    def control_rows(self, config_ids: Optional[Iterable[str]] = None) -> list[dict[str, Any]]:
        """Control rows (all, or those of ``config_ids``), sorted by ConfigId; ``[]`` when the
        control table does not exist."""
        rows = self.reader.cached(("control_rows",), [self.control_ref], self._control_rows)
        if config_ids is None:
            return [dict(r) for r in rows]
        wanted = set(config_ids)
        return [dict(r) for r in rows if r["ConfigId"] in wanted]

    def _control_rows(self) -> list[dict[str, Any]]:
        table = self.reader.table(self.control_ref)
        if table is None:
            return []
        return sorted(plain_rows(table), key=lambda r: r["ConfigId"])


def plain_rows(table: Any) -> list[dict[str, Any]]:
    """An Arrow table's rows as dicts, datetimes in UTC."""
    import datetime as dt

    from framework.timeutil import to_utc

    rows = table.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dt.datetime):
                row[key] = to_utc(value)
    return rows
