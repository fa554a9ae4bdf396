"""Read-only questions over the warehouse, answered without a JVM.

``restlake status``/``audit``/``status --stale``/``quality``, the daily report,
notifications, the worksheet and the service ask them here. :class:`framework.lake.reader.TableReader` reads
the Delta tables (delta-rs into Arrow; DuckDB for sorting and aggregation) and caches each
answer by the versions of the tables it read. Answers that depend on the time (uptime over
the last 24 h, freshness) are also recomputed when the clock enters a new ``ttl_s`` slot.

The uptime metrics are the SQL of :mod:`framework.ops.uptime` (the same text as the Spark
views); freshness is :mod:`framework.ops.freshness`'s rule.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable, Optional, Sequence

from framework.lake.reader import TableReader
from framework.lake.tables import TableRef
from framework.ops import freshness as fr
from framework.ops import uptime
from framework.timeutil import to_utc, utcnow

METADATA_SCHEMA = "metadata"
CONTROL_TABLE = "api_control_table"
AUDIT_TABLE = "api_audit_table"
WINDOW_LOG_TABLE = "api_window_log"
HEALTH_TABLE = "api_health_log"
QUALITY_TABLE = "api_quality_results"
DEFAULT_TTL_S = 10.0
#: The audit statuses of a failed load: what ``load_counts`` counts as failed, the report's
#: failures and the service's ``failed=true``.
FAILED_STATUSES = ("FAILED", "PARTIAL", "FAILED_QUALITY")

#: The health-log columns the metrics read (Arrow types, for an empty log too).
HEALTH_COLUMNS = ("ConfigId", "SourceSystem", "CheckKind", "CheckedAt", "StatusCode", "Ok",
                  "ElapsedMs", "ErrorKind", "ErrorMessage", "RunId", "CheckId")
#: A row's ``CheckId``; rows of a log made by an older restlake, which have none, are told
#: apart by a digest of their values (identical rows of such a log stay indistinguishable).
CHECK_ID_SQL = """coalesce(CheckId, md5(concat_ws('|', ConfigId, CheckKind, CAST(CheckedAt AS VARCHAR),
    coalesce(CAST(StatusCode AS VARCHAR), '-'), CAST(Ok AS VARCHAR),
    coalesce(CAST(ElapsedMs AS VARCHAR), '-'), coalesce(ErrorKind, '-'),
    coalesce(ErrorMessage, '-'), coalesce(RunId, '-'), coalesce(SourceSystem, '-'))))"""


def _health_schema() -> Any:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    types = {"CheckedAt": ts, "StatusCode": pa.int32(), "Ok": pa.bool_(), "ElapsedMs": pa.float64()}
    return pa.schema([(c, types.get(c, pa.string())) for c in HEALTH_COLUMNS])


class Queries:
    """The questions, over one warehouse's control catalog.

    Args:
        reader: the table reader (its caches are shared by every question).
        catalog: the catalog of the ``metadata`` schema.
        clock: the current UTC time.
        ttl_s: how long an answer that depends on the time is reused.
        background: recompute the health metrics in the background, answering with the
            previous answer meanwhile (a service: no request waits for an aggregation over
            the whole health log; a one-shot command computes them in the call).
    """

    def __init__(self, reader: TableReader, catalog: str = "main",
                 clock: Callable[[], dt.datetime] = utcnow, ttl_s: float = DEFAULT_TTL_S,
                 background: bool = False) -> None:
        self.reader = reader
        self.catalog = catalog
        self.clock = clock
        self.ttl_s = ttl_s
        self.background = background
        self.control_ref = TableRef(catalog, METADATA_SCHEMA, CONTROL_TABLE)
        self.audit_ref = TableRef(catalog, METADATA_SCHEMA, AUDIT_TABLE)
        self.window_ref = TableRef(catalog, METADATA_SCHEMA, WINDOW_LOG_TABLE)
        self.health_ref = TableRef(catalog, METADATA_SCHEMA, HEALTH_TABLE)
        self.quality_ref = TableRef(catalog, METADATA_SCHEMA, QUALITY_TABLE)

    def __repr__(self) -> str:
        return f"Queries({self.catalog} via {self.reader!r})"

    def slot(self, now: Optional[dt.datetime] = None) -> int:
        """The time slot of ``now`` (default: the clock): answers that depend on the time are
        reused within one slot of ``ttl_s`` seconds."""
        at = to_utc(now or self.clock())
        return int(at.timestamp() // self.ttl_s) if self.ttl_s > 0 else id(object())

    # ------------------------------------------------------------------ control
    def control_version(self) -> Optional[int]:
        return self.reader.version(self.control_ref)

    def is_initialized(self) -> bool:
        return self.control_version() is not None

    def control_rows(self, config_ids: Optional[Iterable[str]] = None) -> list[dict[str, Any]]:
        """Control rows (all, or those of ``config_ids``), sorted by ConfigId; ``[]`` when the
        control table does not exist."""
        rows = self.reader.cached(("control_rows", self.catalog), [self.control_ref],
                                  self._control_rows)
        if config_ids is None:
            return [dict(r) for r in rows]
        wanted = set(config_ids)
        return [dict(r) for r in rows if r["ConfigId"] in wanted]

    def control_row(self, config_id: str) -> Optional[dict[str, Any]]:
        rows = self.control_rows([config_id])
        return rows[0] if rows else None

    def _control_rows(self) -> list[dict[str, Any]]:
        table = self.reader.table(self.control_ref)
        if table is None:
            return []
        return sorted(plain_rows(table), key=lambda r: r["ConfigId"])

    # -------------------------------------------------------------------- audit
    def audit_rows(self, config_id: Optional[str] = None, limit: Optional[int] = 20, *,
                   statuses: Optional[Sequence[str]] = None, since: Optional[dt.datetime] = None,
                   after: Optional[Sequence[Any]] = None) -> list[dict[str, Any]]:
        """Audit rows, newest first (``LoggedAt``, then ``RunId``, ``ConfigId`` descending).

        Args:
            config_id: only this source.
            limit: at most this many rows (None: all).
            statuses: only rows of these ``LoadStatus`` values.
            since: only rows logged at or after this time.
            after: the sort key ``(LoggedAt, RunId, ConfigId)`` of the last row of the
                previous page (see :func:`audit_key`).
        """
        after_at, after_run, after_cid = (list(after) + [None, None, None])[:3] if after else (None,) * 3
        statuses = tuple(statuses) if statuses is not None else None
        key = ("audit", self.catalog, config_id, limit, statuses, since, after_at, after_run, after_cid)

        def compute() -> list[dict[str, Any]]:
            table = self.reader.table(self.audit_ref)
            if table is None:
                return []
            sql = """
                SELECT * FROM audit
                WHERE ($cid IS NULL OR ConfigId = $cid)
                  AND ($statuses IS NULL OR list_contains(CAST($statuses AS VARCHAR[]), LoadStatus))
                  AND ($since IS NULL OR LoggedAt >= CAST($since AS TIMESTAMPTZ))
                  AND ($at IS NULL
                       OR coalesce(LoggedAt, TIMESTAMPTZ '1970-01-01 00:00:00+00')
                          < CAST($at AS TIMESTAMPTZ)
                       OR (coalesce(LoggedAt, TIMESTAMPTZ '1970-01-01 00:00:00+00')
                           = CAST($at AS TIMESTAMPTZ)
                           AND (coalesce(RunId, '') < $run
                                OR (coalesce(RunId, '') = $run AND ConfigId < $after_cid))))
                ORDER BY LoggedAt DESC NULLS LAST, RunId DESC NULLS LAST, ConfigId DESC"""
            params = {"cid": config_id, "statuses": list(statuses) if statuses is not None else None,
                      "since": to_utc(since) if since else None,
                      "at": to_utc(after_at) if after_at else None, "run": after_run or "",
                      "after_cid": after_cid or ""}
            if limit is not None:
                sql += "\nLIMIT $limit"
                params["limit"] = int(limit)
            return self.reader.query(sql, {"audit": table}, params)

        return [dict(r) for r in self.reader.cached(key, [self.audit_ref], compute)]

    def audit_since(self, since: dt.datetime) -> list[dict[str, Any]]:
        """Every audit row logged at or after ``since``, newest first."""
        return self.audit_rows(limit=None, since=since)

    def load_counts(self, hours: int = 24, now: Optional[dt.datetime] = None) -> dict[str, Any]:
        """Loads logged in the last ``hours``: ``{"loads": n, "failed": n, "since": t}``
        (failed: of :data:`FAILED_STATUSES`; ``since``: the start of the span counted)."""
        at = to_utc(now or self.clock())

        def compute() -> dict[str, Any]:
            since = at - dt.timedelta(hours=hours)
            table = self.reader.table(self.audit_ref, ["LoggedAt", "LoadStatus"])
            if table is None:
                return {"loads": 0, "failed": 0, "since": since}
            [row] = self.reader.query("""
                SELECT count(*) AS loads,
                       count(*) FILTER (WHERE list_contains(CAST($failed AS VARCHAR[]), LoadStatus))
                           AS failed
                FROM audit WHERE LoggedAt >= CAST($since AS TIMESTAMPTZ)""",
                {"audit": table}, {"since": since, "failed": list(FAILED_STATUSES)})
            return {"loads": int(row["loads"]), "failed": int(row["failed"]), "since": since}

        return dict(self.reader.cached(("load_counts", self.catalog, hours), [self.audit_ref],
                                       compute, slot=self.slot(at)))

    def latest_loads(self, status: Optional[str] = None) -> dict[str, dict[str, Any]]:
        """The newest audit row of each source (ConfigId -> row), of ``status`` only if given."""
        def compute() -> dict[str, dict[str, Any]]:
            table = self.reader.table(self.audit_ref)
            if table is None:
                return {}
            rows = self.reader.query("""
                SELECT * FROM audit
                WHERE $status IS NULL OR LoadStatus = $status
                QUALIFY row_number() OVER (PARTITION BY ConfigId
                                           ORDER BY LoggedAt DESC NULLS LAST, RunId DESC) = 1""",
                                     {"audit": table}, {"status": status})
            return {r["ConfigId"]: r for r in rows}

        return self.reader.cached(("latest_loads", self.catalog, status), [self.audit_ref], compute)

    # ------------------------------------------------------------------- health
    def _health(self) -> Any:
        import pyarrow as pa

        present = set(self.reader.schema_names(self.health_ref))
        if not present:
            return _health_schema().empty_table()
        table = self.reader.table(self.health_ref, [c for c in HEALTH_COLUMNS if c in present])
        if table is None:
            return _health_schema().empty_table()
        for name in HEALTH_COLUMNS:  # a log made by an older restlake lacks CheckId
            if name not in present:
                field = _health_schema().field(name)
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        return table

    def _monitored(self) -> Any:
        """The health log of the sources that are monitored: a disabled source's checks
        (it is no longer probed) count in no metric, so its last failure is no incident
        that stays open and no source down (the raw log, :meth:`checks`, keeps them)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        table = self._health()
        disabled = [r["ConfigId"] for r in self.control_rows() if r.get("Enabled") is False]
        if not disabled or table.num_rows == 0:
            return table
        return table.filter(pc.invert(pc.is_in(table["ConfigId"],
                                               value_set=pa.array(disabled, pa.string()))))

    def health_metric(self, name: str, now: Optional[dt.datetime] = None) -> list[dict[str, Any]]:
        """The rows of one uptime metric (a name of :data:`framework.ops.uptime.VIEW_NAMES`),
        over the checks of enabled sources (:meth:`_monitored`), at ``now`` (default: the
        clock; the incidents are as of it, see :meth:`_incident_rows`)."""
        at = to_utc(now or self.clock())
        sqls = uptime.duckdb_sql(HEALTH_TABLE)
        if name == "api_incidents":
            return self._incident_rows(at)

        def compute() -> list[dict[str, Any]]:
            tables = {HEALTH_TABLE: self._monitored()}
            if name == "api_health_summary":
                import pyarrow as pa

                found = self.health_metric("api_incidents", at)
                tables["api_incidents"] = pa.Table.from_pylist(found) if found else \
                    pa.table({"ongoing": pa.array([], pa.bool_())})
                sql = uptime.view_sql(HEALTH_TABLE, "api_incidents", uptime.DUCKDB)[name]
            else:
                sql = sqls[name]
            return self.reader.query(sql, tables, {"now": at} if "$now" in sql else {})

        rows = self.reader.cached(("health", self.catalog, name),
                                  [self.health_ref, self.control_ref], compute,
                                  slot=self.slot(at), background=self.background)
        return [dict(r) for r in rows]

    def _incident_rows(self, at: dt.datetime) -> list[dict[str, Any]]:
        """``api_incidents`` as of ``at``: no check after ``at`` counts.

        The incidents of the whole log do not depend on the time (only an ongoing one's
        duration does, measured up to ``at`` here): they are recomputed only when the log
        grows. A caller whose clock is behind the log's newest check (an injected clock,
        another host's clock a little ahead) gets them recomputed as of its own time.
        """
        import pyarrow.compute as pc

        sql = uptime.duckdb_sql(HEALTH_TABLE)["api_incidents"]
        refs = [self.health_ref, self.control_ref]

        def whole_log() -> tuple[Optional[dt.datetime], list[dict[str, Any]]]:
            table = self._monitored()
            newest = pc.max(table["CheckedAt"]).as_py() if table.num_rows else None
            rows = self.reader.query(sql, {HEALTH_TABLE: table}, {"now": newest or at})
            return (to_utc(newest) if newest is not None else None), rows

        newest, rows = self.reader.cached(("health", self.catalog, "api_incidents"), refs,
                                          whole_log, background=self.background)
        if newest is not None and at < newest:
            rows = self.reader.cached(
                ("health", self.catalog, "api_incidents", at), refs,
                lambda: self.reader.query(sql, {HEALTH_TABLE: self._monitored()}, {"now": at}))
        rows = [dict(r) for r in rows]
        for r in rows:
            if r["ongoing"]:
                r["duration_s"] = round((at - to_utc(r["started_at"])).total_seconds(), 3)
        return rows

    def incidents(self, config_ids: Optional[Iterable[str]] = None,
                  now: Optional[dt.datetime] = None) -> list[Any]:
        """The ``api_incidents`` metric as :class:`framework.ops.health.Incident` values, as
        of ``now`` (default: the clock), in time order per source: over the whole log, so an
        outage longer than any window keeps its first check."""
        from framework.ops.health import Incident

        wanted = set(config_ids) if config_ids is not None else None
        rows = sorted((r for r in self.health_metric("api_incidents", now)
                       if wanted is None or r["ConfigId"] in wanted),
                      key=lambda r: (r["ConfigId"], to_utc(r["started_at"])))
        return [Incident(r["ConfigId"], to_utc(r["started_at"]),
                         to_utc(r["ended_at"]) if r["ended_at"] is not None else None,
                         r["failed_checks"], r["last_error"]) for r in rows]

    def health_metrics(self, now: Optional[dt.datetime] = None) -> dict[str, list[dict[str, Any]]]:
        """Every uptime metric, as the report reads them."""
        return {name: self.health_metric(name, now) for name in uptime.VIEW_NAMES}

    def uptime_buckets(self, hours: int = 24, bucket_s: int = 3600,
                       now: Optional[dt.datetime] = None) -> dict[str, list[dict[str, Any]]]:
        """Per source, the checks and uptime % of each bucket of the last ``hours`` (the
        sparklines), oldest first; buckets without checks are absent."""
        at = to_utc(now or self.clock())
        since = at - dt.timedelta(hours=hours)

        def compute() -> dict[str, list[dict[str, Any]]]:
            sql = uptime.duckdb_sql(HEALTH_TABLE)["uptime_buckets"]
            out: dict[str, list[dict[str, Any]]] = {}
            for r in self.reader.query(sql, {HEALTH_TABLE: self._monitored()},
                                       {"since": since, "bucket_s": bucket_s}):
                out.setdefault(r.pop("ConfigId"), []).append(r)
            return out

        return self.reader.cached(("buckets", self.catalog, hours, bucket_s),
                                  [self.health_ref, self.control_ref], compute, slot=self.slot(at), background=self.background)

    def checks(self, config_id: Optional[str] = None, limit: Optional[int] = 100, *,
               since: Optional[dt.datetime] = None, after: Optional[Sequence[Any]] = None
               ) -> list[dict[str, Any]]:
        """Health-log rows, newest first (``CheckedAt``, then ``CheckId`` descending: one
        order, in which no two rows tie).

        Args:
            after: the sort key ``(CheckedAt, CheckId)`` of the last row of the previous page
                (see :func:`check_key`).
        """
        after_at, after_id = (list(after) + [None, None])[:2] if after else (None, None)
        key = ("checks", self.catalog, config_id, limit, since, after_at, after_id)

        def compute() -> list[dict[str, Any]]:
            sql = f"""
                WITH log AS (SELECT * REPLACE ({CHECK_ID_SQL} AS CheckId) FROM api_health_log
                             WHERE ($cid IS NULL OR ConfigId = $cid))
                SELECT * FROM log
                WHERE ($since IS NULL OR CheckedAt >= CAST($since AS TIMESTAMPTZ))
                  AND ($at IS NULL OR CheckedAt < CAST($at AS TIMESTAMPTZ)
                       OR (CheckedAt = CAST($at AS TIMESTAMPTZ) AND CheckId < $check_id))
                ORDER BY CheckedAt DESC, CheckId DESC"""
            params = {"cid": config_id, "since": to_utc(since) if since else None,
                      "at": to_utc(after_at) if after_at else None, "check_id": after_id or ""}
            if limit is not None:
                sql += "\nLIMIT $limit"
                params["limit"] = int(limit)
            return self.reader.query(sql, {HEALTH_TABLE: self._health()}, params)

        return [dict(r) for r in self.reader.cached(key, [self.health_ref], compute)]

    # ---------------------------------------------------------------- freshness
    def newest_collected(self, ref: TableRef) -> Optional[dt.datetime]:
        """The newest ``collected_at_utc`` of a target (None: missing, empty or no such column).

        Read from the files' statistics when every file has them, else from the column.
        """
        def compute() -> Optional[dt.datetime]:
            if "collected_at_utc" not in self.reader.schema_names(ref):
                return None
            stats = self.reader.file_stats(ref)
            if stats is not None and "max.collected_at_utc" in stats.column_names:
                values = stats.column("max.collected_at_utc").to_pylist()
                counts = stats.column("num_records").to_pylist()
                nulls = (stats.column("null_count.collected_at_utc").to_pylist()
                         if "null_count.collected_at_utc" in stats.column_names else [None] * len(values))
                known = [v for v, n, z in zip(values, counts, nulls) if v is not None]
                if all(v is not None or (n is not None and z is not None and n == z)
                       for v, n, z in zip(values, counts, nulls)):
                    return to_utc(max(known)) if known else None
            data = self.reader.dataset(ref)
            [row] = self.reader.query("SELECT max(collected_at_utc) AS newest FROM target",
                                      {"target": data})
            return to_utc(row["newest"]) if row["newest"] is not None else None

        return self.reader.cached(("newest", ref.name), [ref], compute)

    def freshness(self, rows: Optional[list[dict[str, Any]]] = None,
                  now: Optional[dt.datetime] = None) -> list[fr.Freshness]:
        """The freshness rule applied to every enabled control row (all rows by default)."""
        rows = self.control_rows() if rows is None else rows
        newest = {}
        for row in rows:
            if row.get("Enabled") is False:
                continue
            newest[fr.target_name(row)] = self.newest_collected(target_ref(row))
        return fr.assess_rows(rows, newest, to_utc(now or self.clock()))


    # ------------------------------------------------------------------ quality
    def quality_results(self, config_ids: Optional[Iterable[str]] = None,
                        since: Optional[dt.datetime] = None, limit: Optional[int] = None
                        ) -> list[dict[str, Any]]:
        """Rows of ``api_quality_results``, newest first (``[]`` while the table is missing)."""
        ids = sorted(set(config_ids)) if config_ids is not None else None
        key = ("quality", self.catalog, tuple(ids) if ids is not None else None, since, limit)

        def compute() -> list[dict[str, Any]]:
            table = self.reader.table(self.quality_ref)
            if table is None or (ids is not None and not ids):
                return []
            sql = """
                SELECT * FROM quality
                WHERE ($ids IS NULL OR list_contains($ids, ConfigId))
                  AND ($since IS NULL OR CheckedAt >= CAST($since AS TIMESTAMPTZ))
                ORDER BY CheckedAt DESC, RunId DESC NULLS LAST, CheckName, Field NULLS FIRST"""
            params = {"ids": ids, "since": to_utc(since) if since else None}
            if limit is not None:
                sql += "\nLIMIT $limit"
                params["limit"] = int(limit)
            return self.reader.query(sql, {"quality": table}, params)

        return [dict(r) for r in self.reader.cached(key, [self.quality_ref], compute)]

    def latest_quality(self, config_ids: Optional[Iterable[str]] = None, days: int = 30,
                       now: Optional[dt.datetime] = None) -> list[dict[str, Any]]:
        """The result rows of each source's latest checked run (of the last ``days``)."""
        since = to_utc(now or self.clock()) - dt.timedelta(days=days)
        rows = self.quality_results(config_ids, since=since)
        latest: dict[str, Any] = {}
        for r in rows:  # newest first: a source's first row names its latest run
            latest.setdefault(r["ConfigId"], r["RunId"])
        return sorted((r for r in rows if latest[r["ConfigId"]] == r["RunId"]),
                      key=lambda r: (r["ConfigId"], r["Phase"], r["CheckName"], r["Field"] or ""))

    def sla_statuses(self, rows: Optional[list[dict[str, Any]]] = None,
                     now: Optional[dt.datetime] = None) -> list[Any]:
        """The SLA (:class:`framework.ops.sla.SlaStatus`) of every enabled control row whose
        config has ``quality.freshness_sla``, judged at ``now`` from the audit."""
        from control.mapping import row_to_config
        from framework.errors import ConfigError
        from framework.ops.sla import assess_sla

        at = to_utc(now or self.clock())
        slas: dict[str, tuple[str, str]] = {}
        for row in (self.control_rows() if rows is None else rows):
            if row.get("Enabled") is False:
                continue
            try:
                quality = row_to_config(row).quality
            except ConfigError:
                continue  # a broken row is reported by the commands that load it
            if quality is not None and quality.freshness_sla is not None:
                slas[row["ConfigId"]] = (quality.freshness_sla.value,
                                         quality.freshness_sla.severity or quality.severity)
        if not slas:
            return []
        table = self.reader.table(self.audit_ref, ["ConfigId", "LoggedAt", "LoadStatus"])
        seen: dict[str, dict[str, Any]] = {}
        if table is not None:
            seen = {r["ConfigId"]: r for r in self.reader.query("""
                SELECT ConfigId, min(LoggedAt) AS first,
                       list(LoggedAt) FILTER (WHERE LoadStatus = 'SUCCESS'
                                              AND LoggedAt >= CAST($since AS TIMESTAMPTZ)) AS done
                FROM audit WHERE list_contains($ids, ConfigId) GROUP BY ConfigId""",
                {"audit": table}, {"ids": sorted(slas), "since": at - dt.timedelta(days=2)})}
        out = []
        for cid, (sla, severity) in sorted(slas.items()):
            r = seen.get(cid, {})
            status = assess_sla(cid, sla, r.get("done") or [], r.get("first"), at, severity)
            if status is not None:
                out.append(status)
        return out

    def quality_states(self, config_ids: Optional[Iterable[str]] = None,
                       now: Optional[dt.datetime] = None) -> dict[str, Any]:
        """The latest quality state per source (:class:`framework.ops.quality.SourceQuality`):
        its latest checked load and its SLA."""
        from framework.ops.quality import summarize

        ids = list(config_ids) if config_ids is not None else None
        rows = self.control_rows(ids)
        return summarize(self.latest_quality(ids, now=now), self.sla_statuses(rows, now))

    # ----------------------------------------------------------------- contract
    def observe_contract(self, configs: Sequence[Any]) -> dict[str, Any]:
        """What each config's target, audit and quality rows show (the worksheet's
        :class:`framework.ops.worksheet.Observed`, also the baseline of schema drift).

        Each target is scanned once, for the non-null count of every column and the keys
        found in ``_rescued_data`` (of this source's rows in a shared table).
        """
        import json

        from framework.ops.worksheet import Observed
        from framework.schema import RESERVED

        reader = self.reader
        ids = [cfg.config_id for cfg in configs]
        # The first successful load of a config sets its contract (in a shared table its
        # fields arrive as schema changes); changes reported after it are drift.
        drift: dict[str, set[str]] = {}
        audit = reader.table(self.audit_ref, ["ConfigId", "SchemaChanges", "LoggedAt", "LoadStatus"])
        if audit is not None:
            for r in reader.query("SELECT ConfigId, SchemaChanges FROM audit "
                                  "WHERE LoadStatus = 'SUCCESS' AND list_contains($ids, ConfigId) "
                                  "ORDER BY LoggedAt", {"audit": audit}, {"ids": ids}):
                if r["ConfigId"] not in drift:
                    drift[r["ConfigId"]] = set()
                elif r["SchemaChanges"]:
                    drift[r["ConfigId"]].update(json.loads(r["SchemaChanges"]))
        removed = self.removed_fields(ids)
        out = {}
        for cfg in configs:
            ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
            names = reader.schema_names(ref)
            columns: list[str] = []
            rescued: list[str] = []
            if names:
                data = reader.dataset(ref)
                where, params = ("WHERE source_system = $system", {"system": cfg.system}) \
                    if "source_system" in names else ("", {})
                fields = [c for c in names if c not in RESERVED]
                if fields:
                    counts = ", ".join(f"count({duck_name(c)}) AS {duck_name(c)}" for c in fields)
                    [row] = reader.query(f"SELECT {counts} FROM target {where}", {"target": data},
                                         params)
                    columns = [c for c in fields if row[c]]
                if "_rescued_data" in names:
                    cond = f"{where} AND" if where else "WHERE"
                    rescued = [r["k"] for r in reader.query(
                        f"SELECT DISTINCT unnest(json_keys(_rescued_data)) AS k FROM target "
                        f"{cond} _rescued_data IS NOT NULL", {"target": data}, params)]
            out[cfg.config_id] = Observed(tuple(columns), tuple(rescued),
                                          tuple(sorted(drift.get(cfg.config_id, ()))),
                                          tuple(sorted(removed.get(cfg.config_id, ()))))
        return out

    def removed_fields(self, config_ids: Iterable[str], days: int = 90) -> dict[str, set[str]]:
        """Fields the latest drifted load of each config (last ``days``) lacked in every record."""
        import json

        since = to_utc(self.clock()) - dt.timedelta(days=days)
        latest: dict[str, tuple[Any, set[str]]] = {}
        for r in self.quality_results(config_ids, since=since):  # newest first
            if r["CheckName"] != "schema_drift" or r["Passed"]:
                continue
            run, fields = latest.setdefault(r["ConfigId"], (r["RunId"], set()))
            if r["RunId"] == run and json.loads(r["Detail"] or "{}").get("change") == "removed":
                fields.add(r["Field"])
        return {cid: fields for cid, (_, fields) in latest.items()}


def duck_name(name: str) -> str:
    """A column name as a DuckDB identifier (double quotes, doubled inside)."""
    return '"' + name.replace('"', '""') + '"'


def target_ref(row: dict[str, Any]) -> TableRef:
    """The target table of a control row."""
    return TableRef(row["TargetCatalog"], row["TargetSchema"], row["TargetTable"])


def check_key(row: dict[str, Any]) -> tuple[Any, Any]:
    """The sort key of a health-log row of :meth:`Queries.checks` (the ``after`` of the next page)."""
    return (row.get("CheckedAt"), row.get("CheckId"))


def audit_key(row: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The sort key of an audit row (the ``after`` of the next page)."""
    return (row.get("LoggedAt"), row.get("RunId"), row.get("ConfigId"))


def plain_rows(table: Any) -> list[dict[str, Any]]:
    """An Arrow table's rows as dicts, datetimes in UTC."""
    from framework.lake.reader import rows_of

    return rows_of(table)
