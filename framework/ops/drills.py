"""Break/fix drills (seed 000): force a failure on the bundled demo API and check the fix works.

* ``auth`` — the source sends a wrong token: the load FAILS with a 401, and the error in
  the audit row, the control row and the run log is sanitized (the token never appears);
* ``timeout`` — the API stalls on two requests: the client times out, backs off and
  retries, the load succeeds, and the retries and timeouts show in the audit telemetry
  (``Retries``, ``HttpStatusCounts``) and in the health log;
* ``reject`` — records lose a required field (``priority``): they are rejected to
  ``<target>_quarantine`` with the reason, counted in the audit row (``RejectedRows``),
  and the good records still load;
* ``quality`` — after a healthy full load, the API quietly serves 40 % fewer records and
  nulls ``state`` (a 200 with wrong data): ``max_row_drop_pct`` and ``not_null`` (severity
  ``fail``) refuse the commit, the load is ``FAILED_QUALITY``, the target keeps its
  version and rows, and ``api_quality_results`` holds every check.

Drills use their own control catalog (``drills`` by default), so their rows and health
checks never mix with the real sources of the warehouse. Each drill returns a
:class:`DrillResult` listing every check with its evidence.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets as pysecrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from framework.config import parse_source
from framework.secrets import RedactingFilter

DRILLS = ("auth", "timeout", "reject", "quality")
DRILL_CATALOG = "drills"
START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
END = dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc)


@dataclass
class DrillResult:
    """The checks of one drill: ``(what, passed, evidence)``."""

    name: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    log_file: str = ""

    def check(self, what: str, passed: bool, evidence: Any = "") -> None:
        self.checks.append((what, bool(passed), str(evidence)))

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def __repr__(self) -> str:
        return f"DrillResult({self.name}: {'PASS' if self.passed else 'FAIL'}, {len(self.checks)} checks)"


def _config(api_url: str, name: str, **extra: Any) -> Any:
    raw = {
        "config_id": f"drill_{name}", "api_name": "DrillApi", "source_system": "drill",
        "endpoint": f"{api_url}/api/offset/issues",
        "params": {"since": "{window_start}", "until": "{window_end}"},
        "pagination": {"style": "offset", "page_size": 25, "total_path": "total"},
        "data_path": "data", "primary_key": ["id"], "load_start": START.isoformat(),
        "load_end": END.isoformat(), "window": "none",
        "target": {"catalog": "raw_data", "schema": "drills", "table": f"drill_{name}"},
        "limits": {"timeout_s": 5, "max_retries": 2, "backoff_base_s": 0.2, "backoff_max_s": 1,
                   "concurrency": 1},
        "schedule": {"frequency": "once"},
    }
    raw.update(extra)
    return parse_source(raw)


def _run(spark: Any, warehouse: Any, store: Any, cfg: Any) -> Any:
    from framework.load import runtime

    store.generate([cfg])
    row = store.get(cfg.config_id)
    if row and row.get("LoadStatus") == "FAILED":  # an earlier run of the drill
        store.retry(cfg.config_id)
    # a drill's failure is staged: it must not page on-call (RESTLAKE_NOTIFICATIONS)
    ctx = runtime.RunContext(spark, warehouse, store, runtime.staging_root(warehouse),
                             notify=False)
    [outcome] = runtime.run(ctx, [cfg.config_id])
    return outcome


def _health_rows(spark: Any, warehouse: Any, run_id: str) -> list[dict[str, Any]]:
    from pyspark.sql import functions as F

    from framework.ops.health_store import read_checks

    df = read_checks(spark, warehouse, DRILL_CATALOG).where(F.col("RunId") == F.lit(run_id))
    return [r.asDict() for r in df.collect()]


def drill_auth(spark: Any, warehouse: Any, store: Any, log_text: Callable[[], str]) -> DrillResult:
    from framework.demoapi import DemoApi

    result = DrillResult("auth")
    good, wrong = pysecrets.token_urlsafe(16), "wrong-" + pysecrets.token_urlsafe(16)
    os.environ["RESTLAKE_DRILL_TOKEN"] = wrong
    with DemoApi(seed=5, records_per_resource=60, start=START, end=END,
                 auth={"method": "bearer", "token": good}) as api:
        cfg = _config(api.base_url, "auth", auth={"method": "bearer", "secret": "env:RESTLAKE_DRILL_TOKEN"})
        outcome = _run(spark, warehouse, store, cfg)
    audit_text = json.dumps(outcome.audit, default=str)
    row = store.get(cfg.config_id) or {}
    text = log_text()
    result.check("the load FAILED", outcome.status == "FAILED", outcome.status)
    result.check("the audit error names the 401", "401" in (outcome.audit.get("ErrorMessage") or ""),
                 outcome.audit.get("ErrorMessage"))
    result.check("the token is not in the audit row", wrong not in audit_text, "searched every column")
    result.check("the token is not in the control row", wrong not in json.dumps(row, default=str),
                 row.get("ErrorMessage"))
    result.check("the run log records the failure", "load failed" in text and "401" in text,
                 next((ln for ln in text.splitlines() if "load failed" in ln), "no log line"))
    result.check("the token is not in the run log", wrong not in text, f"{len(text)} chars searched")
    return result


def drill_timeout(spark: Any, warehouse: Any, store: Any, log_text: Callable[[], str]) -> DrillResult:
    from framework.demoapi import DemoApi

    result = DrillResult("timeout")
    with DemoApi(seed=5, records_per_resource=60, start=START, end=END) as api:
        api.faults.add("timeout", times=2, path="/api/offset/issues", delay_s=2.5)
        cfg = _config(api.base_url, "timeout",
                      limits={"timeout_s": 1, "max_retries": 3, "backoff_base_s": 0.3,
                              "backoff_max_s": 1, "concurrency": 1})
        outcome = _run(spark, warehouse, store, cfg)
        served = [e["fault"] for e in api.request_log if e["path"] == "/api/offset/issues"]
    audit = outcome.audit
    statuses = json.loads(audit.get("HttpStatusCounts") or "{}")
    result.check("the load succeeded after retrying", outcome.status == "SUCCESS",
                 outcome.error or outcome.status)
    result.check("two attempts timed out", statuses.get("timeout") == 2, statuses)
    result.check("the audit row counts the retries", (audit.get("Retries") or 0) >= 2,
                 f"Retries={audit.get('Retries')}, Requests={audit.get('Requests')}")
    result.check("the API saw the page sent again after each timeout",
                 served[:3] == ["timeout", "timeout", None], f"first requests: {served[:3]}")
    health = _health_rows(spark, warehouse, audit["RunId"])
    timeouts = [h for h in health if h["ErrorKind"] == "timeout"]
    result.check("the health log records the timeouts", len(timeouts) == 2,
                 f"{len(health)} health rows, {len(timeouts)} timeouts")
    return result


def drill_reject(spark: Any, warehouse: Any, store: Any, log_text: Callable[[], str]) -> DrillResult:
    from pyspark.sql import functions as F

    from framework.demoapi import DemoApi
    from framework.lake.tables import TableRef

    result = DrillResult("reject")
    with DemoApi(seed=5, records_per_resource=60, start=START, end=END) as api:
        # only the first page still carries `priority`: the upstream transform dropped it after
        api.faults.add("schema_drift", times=1, path="/api/offset/issues")
        cfg = _config(api.base_url, "reject", required_fields=["id", "priority"])
        outcome = _run(spark, warehouse, store, cfg)
        total = len(api.dataset.records_in(START, END))
    audit = outcome.audit
    ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
    q = (warehouse.read(spark, ref.suffixed("_quarantine"))
         .where(F.col("_run_id") == F.lit(audit["RunId"])))
    reasons = {r["reason"] for r in q.select("reason").distinct().collect()}
    loaded = warehouse.read(spark, ref).count()
    rejected = audit.get("RejectedRows") or 0
    result.check("the load succeeded with the good records", outcome.status == "SUCCESS" and loaded > 0,
                 f"{outcome.status}, {loaded} rows in {ref.name}")
    result.check("records without the field were rejected", rejected > 0 and rejected + loaded == total,
                 f"RejectedRows={rejected}, loaded={loaded}, source={total}")
    result.check("they are in the quarantine table", q.count() == rejected,
                 f"{q.count()} rows in {ref.name}_quarantine")
    result.check("the quarantine names the missing field",
                 reasons == {"required field 'priority' is missing"}, sorted(reasons))
    return result


def drill_quality(spark: Any, warehouse: Any, store: Any, log_text: Callable[[], str]) -> DrillResult:
    from framework.demoapi import DemoApi
    from framework.lake.tables import TableRef

    result = DrillResult("quality")
    checks = {"max_row_drop_pct": {"value": 10, "severity": "fail"},
              "not_null": {"value": ["state"], "severity": "fail"},
              "max_null_pct": {"closed_at": 100}, "unique": ["id"]}
    with DemoApi(seed=5, records_per_resource=120, start=START, end=END) as api:
        cfg = _config(api.base_url, "quality", quality=checks)
        ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
        healthy = _run(spark, warehouse, store, cfg)
        version, rows = warehouse.version(spark, ref), warehouse.read(spark, ref).count()
        api.dataset.degrade(drop_pct=40, null_field="state")  # a 200 with the wrong data
        served = len(api.dataset.records_in(START, END))
        degraded = _run(spark, warehouse, store, cfg)
    results = {(r["CheckName"], r["Field"]): r for r in store.quality_results([cfg.config_id])
               if r["RunId"] == degraded.audit.get("RunId")}
    drop = results.get(("max_row_drop_pct", None), {})
    nulls = results.get(("not_null", "state"), {})
    row = store.get(cfg.config_id) or {}
    result.check("the healthy load succeeded", healthy.status == "SUCCESS",
                 healthy.error or f"{healthy.status}, {rows} rows")
    result.check("the degraded load is FAILED_QUALITY", degraded.status == "FAILED_QUALITY",
                 degraded.error or degraded.status)
    result.check("the commit was refused: same table version and rows",
                 warehouse.version(spark, ref) == version and warehouse.read(spark, ref).count() == rows,
                 f"version {warehouse.version(spark, ref)} (was {version}), "
                 f"{warehouse.read(spark, ref).count()} rows (was {rows}); the API served {served}")
    result.check("max_row_drop_pct caught the drop", drop.get("Passed") is False,
                 drop.get("Message", "no result row"))
    result.check("not_null caught the nulled field", nulls.get("Passed") is False,
                 nulls.get("Message", "no result row"))
    result.check("the control row is FAILED, naming the checks",
                 row.get("LoadStatus") == "FAILED" and "max_row_drop_pct" in (row.get("ErrorMessage") or ""),
                 row.get("ErrorMessage"))
    result.check("api_quality_results holds every check of the refused load",
                 set(results) == {("max_row_drop_pct", None), ("not_null", "state"),
                                  ("max_null_pct", "closed_at")},
                 ", ".join(sorted(f"{c}{' ' + f if f else ''}" for c, f in results)))
    return result


RUNNERS = {"auth": drill_auth, "timeout": drill_timeout, "reject": drill_reject,
           "quality": drill_quality}


def run_drills(spark: Any, warehouse: Any, names: list[str], log_dir: Path) -> list[DrillResult]:
    """Run drills on their own control catalog; each writes a sanitized run log."""
    from control.store import ControlStore

    unknown = sorted(set(names) - set(DRILLS))
    if unknown:
        raise ValueError(f"unknown drill {unknown[0]!r}; drills: {', '.join(DRILLS)}")
    store = ControlStore(spark, warehouse, DRILL_CATALOG)
    store.init()
    log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    root = logging.getLogger()
    for name in names:
        path = log_dir / f"drill_{name}_{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}.log"
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
        try:
            def text(path: Path = path, handler: logging.Handler = handler) -> str:
                handler.flush()
                return path.read_text(encoding="utf-8")

            result = RUNNERS[name](spark, warehouse, store, text)
        finally:
            root.removeHandler(handler)
            handler.close()
        result.log_file = str(path)
        results.append(result)
    return results
