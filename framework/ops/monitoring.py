"""Monitoring data from the warehouse for the daily report: cache tables, audit, health,
quality.

Everything is read through :class:`framework.ops.queries.Queries` (delta-rs, Arrow and
DuckDB: no JVM); what is returned is plain Python (rows as dicts), ready for
:mod:`framework.ops.report`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from typing import Any, Optional

from framework.lake.tables import TableRef
from framework.ops import freshness as fr
from framework.ops.queries import FAILED_STATUSES, Queries, target_ref
from framework.ops.report import Chart, Report, Section
from framework.secrets import redact
from framework.timeutil import to_utc, utcnow

log = logging.getLogger(__name__)
#: The most bars a per-source chart shows (the largest values).
CHART_BARS = 25

CACHE_PREFIX = "cache_"
SEVERITY_COLUMNS = ("severity", "severitylevel", "severity_level", "priority", "level")
STATUS_COLUMNS = ("status", "state")
CLOSED_STATES = ("closed", "resolved", "ok", "healthy", "up", "inactive")
DOWN_STATES = ("down", "offline", "unhealthy", "critical", "unreachable", "failed")
SEVERITY_RANK = {"critical": 0, "blocker": 0, "p1": 0, "high": 1, "major": 1, "error": 1, "p2": 1,
                 "medium": 2, "warning": 2, "warn": 2, "p3": 2, "low": 3, "minor": 3, "info": 4}
TEXT_COLUMNS = ("title", "name", "displayname", "display_name", "description", "summary", "message")
SCORE_COLUMNS = ("score", "impact", "value")


def cache_tables(rows: list[dict[str, Any]]) -> dict[str, TableRef]:
    """Cache tables (targets named ``cache_*``) by table name."""
    return {r["TargetTable"]: target_ref(r) for r in rows
            if str(r.get("TargetTable", "")).startswith(CACHE_PREFIX)}


def _pick(columns: list[str], candidates: tuple[str, ...]) -> Optional[str]:
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    return None


def _cache_rows(q: Queries, ref: TableRef) -> list[dict[str, Any]]:
    from framework.lake.reader import rows_of

    table = q.reader.table(ref)
    return [] if table is None else rows_of(table)


def _text(value: Any) -> str:
    return "" if value is None else str(value).lower()


def top_alerts(q: Queries, refs: list[TableRef], limit: int = 15) -> list[dict[str, Any]]:
    """Open alerts of the alert cache tables, most severe (then highest score, newest) first."""
    out: list[dict[str, Any]] = []
    for ref in refs:
        rows = _cache_rows(q, ref)
        if not rows:
            continue
        cols = list(rows[0])
        sev, status = _pick(cols, SEVERITY_COLUMNS), _pick(cols, STATUS_COLUMNS)
        text, score = _pick(cols, TEXT_COLUMNS), _pick(cols, SCORE_COLUMNS)
        if status:
            rows = [d for d in rows if d.get(status) is None or _text(d[status]) not in CLOSED_STATES]

        def order(d: dict[str, Any]) -> tuple:
            rank = SEVERITY_RANK.get(_text(d.get(sev)), 9) if sev else 0
            value = float(d[score]) if score and _is_number(d.get(score)) else None
            collected = d.get("collected_at_utc")
            return (rank, value is None, -(value or 0.0),
                    -(to_utc(collected).timestamp() if collected else 0.0))

        for d in sorted(rows, key=order)[:limit]:
            out.append({
                "Table": ref.name, "EntityKey": d.get("entity_key"),
                "Alert": d.get(text) if text else None,
                "Severity": str(d.get(sev)) if sev and d.get(sev) is not None else None,
                "Status": str(d.get(status)) if status and d.get(status) is not None else None,
                "Score": float(d[score]) if score and _is_number(d.get(score)) else None,
                "SourceSystem": d.get("source_system"),
                "CollectedAt": to_utc(d["collected_at_utc"]) if d.get("collected_at_utc") else None,
            })
    return out[:limit]


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return value is not None and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False


def down_cache_rows(q: Queries, refs: list[TableRef]) -> list[dict[str, Any]]:
    """Resources that node/instance cache tables report down."""
    out = []
    for ref in refs:
        rows = _cache_rows(q, ref)
        status = _pick(list(rows[0]), STATUS_COLUMNS) if rows else None
        if not status:
            continue
        text = _pick(list(rows[0]), TEXT_COLUMNS)
        down = [d for d in rows if _text(d.get(status)) in DOWN_STATES]
        down.sort(key=lambda d: to_utc(d["collected_at_utc"]), reverse=True)
        for d in down[:100]:
            out.append({"Resource": d.get(text) or d.get("entity_key"), "Kind": ref.table,
                        "Status": str(d.get(status)), "Since": to_utc(d["collected_at_utc"]),
                        "Detail": ref.name})
    return out


# ---------------------------------------------------------------------- report
def build_report(q: Queries, *, days: int = 7, now: Optional[dt.datetime] = None,
                 top: int = 15) -> Report:
    """Gather every section of the daily ops report (no JVM)."""
    now = now or utcnow()
    rows = q.control_rows()
    caches = cache_tables(rows)
    alert_refs = [ref for name, ref in caches.items() if "alert" in name]
    node_refs = [ref for name, ref in caches.items() if "node" in name or "instance" in name]

    alerts = top_alerts(q, alert_refs, top)
    views = q.health_metrics(now)
    stale = q.freshness(rows, now)
    audit = q.audit_since(now - dt.timedelta(days=days))
    quality = list(q.quality_states(now=now).values())

    down = [{"Resource": i["ConfigId"], "Kind": "API source", "Status": "down",
             "Since": i["started_at"], "Detail": redact(i.get("last_error") or "")}
            for i in views["api_incidents"] if i["ongoing"]]
    down += down_cache_rows(q, node_refs)

    rt = {r["ConfigId"]: r for r in views["api_response_times"]}
    health_rows = []
    for u in sorted(views["api_uptime"], key=lambda r: r["ConfigId"]):
        t = rt.get(u["ConfigId"], {})
        health_rows.append({
            "ConfigId": u["ConfigId"], "Up": bool(u["last_ok"]), "LastCheckedAt": u["last_checked_at"],
            "Uptime24hPct": u["uptime_pct_24h"], "Uptime7dPct": u["uptime_pct_7d"],
            "Uptime30dPct": u["uptime_pct_30d"], "Checks24h": u["checks_24h"],
            "AvgMs": t.get("avg_ms"), "P95Ms": t.get("p95_ms"), "MaxMs": t.get("max_ms"),
        })

    by_source: dict[str, Counter] = defaultdict(Counter)
    for a in audit:
        c = by_source[a["ConfigId"]]
        c["loads"] += 1
        c[a["LoadStatus"] or "UNKNOWN"] += 1
        if a["LoadStatus"] == "FAILED_QUALITY":
            c["FAILED"] += 1
        c["rows"] += a["TargetRowCount"] or 0
        c["rejected"] += a["RejectedRows"] or 0
        c["retries"] += a["Retries"] or 0
        c["duration"] += a["RunDuration"] or 0.0
    summary_rows = [{
        "ConfigId": cid, "Loads": c["loads"], "Success": c["SUCCESS"], "Failed": c["FAILED"],
        "Partial": c["PARTIAL"], "RowsWritten": c["rows"], "RejectedRows": c["rejected"],
        "Retries": c["retries"], "AvgDurationS": round(c["duration"] / c["loads"], 2) if c["loads"] else None,
    } for cid, c in sorted(by_source.items())]
    failures = [dict(a, ErrorMessage=redact(a["ErrorMessage"] or "")) for a in audit
                if a["LoadStatus"] in FAILED_STATUSES]

    stale_rows = [f.as_row() for f in stale if f.stale]  # every source's age: the chart
    n_stale = len(stale_rows)
    summary = views["api_health_summary"][0] if views["api_health_summary"] else {}
    sections = [
        Section("critical_alerts", "Top critical alerts",
                [("Alert", "str"), ("Severity", "str"), ("Status", "str"), ("Score", "float"),
                 ("EntityKey", "str"), ("SourceSystem", "str"), ("CollectedAt", "datetime"),
                 ("Table", "str")], alerts,
                note=(f"open alerts from {', '.join(r.name for r in alert_refs)}, most severe first"
                      if alert_refs else "no alert cache table (a control row targeting cache_*alerts*)"),
                severity="bad" if alerts else "ok"),
        Section("down_resources", "Down resources",
                [("Resource", "str"), ("Kind", "str"), ("Status", "str"), ("Since", "datetime"),
                 ("Detail", "str")], down,
                note="API sources whose latest checks fail (ongoing incidents) and resources "
                     "node/instance cache tables report down", severity="bad" if down else "ok"),
        Section("instance_health", "Instance health snapshot",
                [("ConfigId", "str"), ("Up", "bool"), ("LastCheckedAt", "datetime"),
                 ("Uptime24hPct", "float"), ("Uptime7dPct", "float"), ("Uptime30dPct", "float"),
                 ("Checks24h", "int"), ("AvgMs", "float"), ("P95Ms", "float"), ("MaxMs", "float")],
                health_rows, note="per source, from the api_uptime and api_response_times views "
                                  "(probes and ingestion requests)",
                severity="warn" if any(not h["Up"] for h in health_rows) else "ok"),
        Section("stale_data", "Stale data warnings",
                [("ConfigId", "str"), ("Target", "str"), ("Frequency", "str"),
                 ("NewestCollectedAt", "datetime"), ("AgeMinutes", "float"),
                 ("AllowedMinutes", "float"), ("Reason", "str")], stale_rows,
                note=f"{n_stale} of {len(stale)} sources stale: newest collected_at_utc older "
                     f"than {fr.DEFAULT_TOLERANCE:g} x the source's cadence (TriggerFrequency); "
                     f"the freshness chart shows the {CHART_BARS} oldest for their cadence",
                severity="warn" if n_stale else "ok"),
        Section("data_quality", "Data quality (latest checked load, SLA)",
                [("ConfigId", "str"), ("State", "str"), ("CheckedAt", "datetime"),
                 ("Failed", "str"), ("Warned", "str"), ("SlaDeadline", "datetime"),
                 ("SlaMet", "bool"), ("Sla", "str")], [s.as_row() for s in quality],
                note="per source: checks of its latest checked load (api_quality_results: "
                     "failed fail checks, failed warn checks and schema drift) and its "
                     "freshness_sla at the latest deadline",
                severity=("bad" if any(s.level == "bad" for s in quality) else
                          "warn" if any(s.level == "warn" for s in quality) else "ok")),
        Section("ingestion_summary", f"Ingestion health, last {days} days",
                [("ConfigId", "str"), ("Loads", "int"), ("Success", "int"), ("Failed", "int"),
                 ("Partial", "int"), ("RowsWritten", "int"), ("RejectedRows", "int"),
                 ("Retries", "int"), ("AvgDurationS", "float")], summary_rows,
                note="loads by status per source, from the audit table (Failed counts "
                     "FAILED_QUALITY loads too)",
                severity="bad" if failures else "ok"),
        Section("ingestion_failures", "Failed loads (sanitized errors)",
                [("LoggedAt", "datetime"), ("ConfigId", "str"), ("LoadType", "str"),
                 ("LoadStatus", "str"), ("Retries", "int"), ("RunDuration", "float"),
                 ("ErrorMessage", "str"), ("RunId", "str")], failures,
                severity="bad" if failures else "ok"),
        Section("ingestion_runs", "Recent loads",
                [("LoggedAt", "datetime"), ("ConfigId", "str"), ("LoadType", "str"),
                 ("LoadStatus", "str"), ("SourceRowCount", "int"), ("TargetRowCount", "int"),
                 ("RejectedRows", "int"), ("Requests", "int"), ("Retries", "int"),
                 ("RunDuration", "float")], audit[:200]),
    ]
    per_day: Counter = Counter()
    for a in audit:
        per_day[a["LoggedAt"].strftime("%m-%d")] += a["TargetRowCount"] or 0
    days_sorted = sorted(per_day)
    charts = [
        Chart("rows_per_day", "Rows written per day", days_sorted, [per_day[d] for d in days_sorted],
              unit="rows"),
        Chart("failures_per_source", "Failed / partial loads per source",
              [r["ConfigId"] for r in summary_rows],
              [r["Failed"] + r["Partial"] for r in summary_rows], horizontal=True, unit="loads",
              colors=["#dc2626" if r["Failed"] + r["Partial"] else "#16a34a" for r in summary_rows]
              ).top(CHART_BARS),
        Chart("freshness", "Data age / allowed age (> 1 is stale)",
              [f.config_id for f in stale if f.allowed is not None],
              [round(min(f.age / f.allowed, 5.0), 2) if f.age is not None else 5.0
               for f in stale if f.allowed is not None],
              horizontal=True, unit="x allowed age", threshold=1.0,
              colors=["#d97706" if f.stale else "#16a34a" for f in stale if f.allowed is not None]
              ).top(CHART_BARS),
    ]
    headline = {
        "loads": len(audit),
        "failed loads": len(failures),
        "stale sources": n_stale,
        "sources down": len([d for d in down if d["Kind"] == "API source"]),
        "uptime 24h": (f"{summary['uptime_pct_24h']:.2f}%" if summary.get("uptime_pct_24h") is not None
                       else "n/a"),
        "open alerts": len(alerts),
        "quality failures": sum(1 for s in quality if s.level == "bad"),
    }
    warehouse = q.reader.warehouse
    return Report(now, str(warehouse.root or "metastore"), sections, charts, headline)


def write_daily_report(q: Queries, out: Any, *, days: int = 7, top: int = 15,
                       now: Optional[dt.datetime] = None) -> tuple[Report, list[Any]]:
    """Write the daily ops report (``restlake report`` and the scheduler's daily job).

    Writes ``OUT/output/monitoring_daily.html`` and ``.xlsx``, and the run log
    ``OUT/logs/monitoring_run_YYYYMMDD.log`` (redacted, like every log).

    Returns:
        the report and the paths of the HTML page, the workbook and the run log.
    """
    from pathlib import Path

    from framework.errors import ConfigError
    from framework.ops.report import render_html, write_xlsx
    from framework.secrets import RedactingFilter

    out = Path(out)
    (out / "output").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    now = (now or utcnow()).replace(microsecond=0)
    log_path = out / "logs" / f"monitoring_run_{now:%Y%m%d}.log"
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    handler.setLevel(logging.INFO)
    run_log = logging.getLogger("restlake.report")
    run_log.setLevel(logging.INFO)
    run_log.propagate = False  # the file only; the caller shows the summary
    run_log.addHandler(handler)
    try:
        run_log.info("report run started: out=%s days=%d", out, days)
        if not q.is_initialized():
            raise ConfigError("the control table does not exist; run 'restlake init' first")
        report = build_report(q, days=days, top=top, now=now)
        for s in report.sections:
            run_log.info("section %s: %d rows", s.key, len(s.rows))
        for label, value in report.headline.items():
            run_log.info("%s: %s", label, value)
        html = out / "output" / "monitoring_daily.html"
        html.write_text(render_html(report), encoding="utf-8")
        xlsx = write_xlsx(report, out / "output" / "monitoring_daily.xlsx")
        run_log.info("wrote %s and %s", html, xlsx)
    except Exception as exc:
        run_log.error("report run failed: %s: %s", type(exc).__name__, exc)
        raise
    finally:
        run_log.removeHandler(handler)
        handler.close()
    return report, [html, xlsx, log_path]

