"""The quality step of one load: evidence at every commit, checks before and after.

The runtime calls two hooks and nothing else:

* :meth:`LoadQuality.before_commit` right before each target commit, with the staged
  windows about to be written. It gathers the schema evidence of every load (fields
  present, retyped, new) and, when the source has before-commit checks, judges the rows
  (:func:`framework.ops.quality.evaluate_before`). A failed ``fail`` check raises
  :class:`~framework.errors.QualityError`: the commit does not happen. Such sources
  commit a load's windows together (:attr:`LoadQuality.holds_commits`), so the checks
  see every row of the load and a refused load writes nothing (a FULL load keeps the
  old table).
* :meth:`LoadQuality.after_load` once the load's commits are done: ``unique`` on the
  target, and schema drift against the source's contract. A failed ``fail`` check
  raises :class:`~framework.errors.QualityError`: the load is ``FAILED_QUALITY`` and
  its control row ``FAILED`` (retried and notified like a failure), its rows stay.

Each hook appends its verdicts to ``metadata.api_quality_results`` and, when
``RESTLAKE_NOTIFICATIONS`` is set, notifies failures, warnings and drift at once.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Optional

from framework.config import SourceConfig
from framework.errors import QualityError
from framework.lake.tables import TableRef
from framework.ops import drift as schema_drift
from framework.ops import quality as q
from framework.ops.worksheet import Observed, contract_fields, declared_fields
from framework.schema import column_name
from framework.secrets import redact
from framework.timeutil import utcnow

log = logging.getLogger(__name__)

_UNSET: Any = object()


class LoadQuality:
    """The quality checks and drift evidence of one load.

    Args:
        spark: the SparkSession.
        store: the control store (audit and quality-results tables).
        cfg: the source.
        run_id: this run.
        state: the claimed control state (``load_id``, ``load_type``).
        writer: the load's target writer (reads the rows about to be written).
        emit: the run's event callback (``quality_checked``).
        notify: send the quality notifications (``RESTLAKE_NOTIFICATIONS``) of failed checks.
    """

    def __init__(self, spark: Any, store: Any, cfg: SourceConfig, run_id: str, state: Any,
                 writer: Any, emit: Optional[Callable[..., None]] = None,
                 notify: bool = True) -> None:
        self.spark, self.store, self.cfg, self.writer = spark, store, cfg, writer
        self.run_id, self.load_id = run_id, state.load_id
        self.load_type = state.load_type.value
        self.quality = cfg.quality
        self.emit = emit
        self.notify = notify
        self.columns: Any = _UNSET  # the target's data columns before this load's first commit
        self.present: set[str] = set()
        self.retyped: dict[str, str] = {}
        self.new: set[str] = set()
        self.new_keys: dict[str, set[str]] = {}  # a new field's column -> its payload keys
        self.rows = 0
        self.verdicts: list[q.CheckResult] = []

    def __repr__(self) -> str:
        checks = [n for n, _, _ in self.quality.checks(q.QUALITY_CHECKS)] if self.quality else []
        return f"LoadQuality({self.cfg.config_id}: {', '.join(checks) or 'drift only'})"

    @property
    def holds_commits(self) -> bool:
        """True when the load's windows must be committed together, after the checks."""
        return self.quality is not None and self.quality.gates_commit

    # --------------------------------------------------------- before the commit
    def before_commit(self, stages: list[Any], results: Iterable[Any] = (),
                      columns: Any = None) -> None:
        """Gather evidence from the windows about to be committed, and judge them.

        Args:
            stages: the staged windows (or page batch) of the commit.
            results: their window results (new and retyped fields, window order).
            columns: the target's data columns when the load started (None: no table).

        Raises:
            QualityError: a before-commit check of severity ``fail`` did not pass.
        """
        results = list(results)
        if self.columns is _UNSET:
            self.columns = dict(columns) if columns else None
        for stage in stages:
            self.present |= set(stage.tracker.columns)
            self.rows += stage.rows
        for r in results:
            self.new |= set(r.new_fields)
            for col, keys in r.new_keys.items():
                self.new_keys.setdefault(col, set()).update(keys)
            self.retyped.update(r.retyped)
        if not self.holds_commits:
            return
        verdicts = q.evaluate_before(self.quality, self._observe(stages, results, columns))
        self._record(verdicts)
        if any(v.blocks for v in verdicts):
            raise QualityError(q.failure_text(verdicts, q.BEFORE_COMMIT))

    def _observe(self, stages: list[Any], results: list[Any], columns: Any) -> q.RowsObserved:
        from framework.ops import quality_store as qs

        quality = self.quality
        rows = sum(s.rows for s in stages)
        seen: dict[str, Any] = {}
        if rows and (q.null_fields(quality) or quality.accepted_values is not None):
            # (no row: no null and no value to judge, and no Spark job to count none)
            seen = qs.observe_rows(self.writer.frame(stages, columns), quality)
        n = q.baseline_loads(quality)
        recent = qs.earlier_loads(self.store, self.cfg.config_id, self.load_type, n)
        return q.RowsObserved(
            load_type=self.load_type, rows=rows,
            window_rows=tuple(r.stage.rows for r in sorted(results, key=lambda r: r.index)),
            nulls=seen.get("nulls", {}), outside=seen.get("outside", {}),
            outside_sample=seen.get("outside_sample", {}),
            previous_rows=recent[0] if recent else None, recent_rows=tuple(recent),
            missing=seen.get("missing", frozenset()))

    # ------------------------------------------------------------ after commits
    def after_load(self) -> None:
        """Judge the target (``unique``) and the load's schema drift.

        Raises:
            QualityError: an after-commit check of severity ``fail`` did not pass.
        """
        verdicts: list[q.CheckResult] = []
        if self.quality is not None:
            for name, check, severity in self.quality.checks(q.Quality.AFTER_COMMIT):
                verdicts.append(self._unique(check.value, severity))
        try:
            verdicts += self._drift()
        except Exception as exc:  # noqa: BLE001 - drift only warns: it never fails a load
            log.warning("%s: schema drift could not be judged: %s", self.cfg.config_id,
                        redact(f"{type(exc).__name__}: {exc}"))
        self._record(verdicts)
        if any(v.blocks for v in verdicts):
            raise QualityError(q.failure_text(verdicts, q.AFTER_COMMIT))

    def _unique(self, fields: list[str], severity: str) -> q.CheckResult:
        from framework.ops import quality_store as qs

        found = qs.duplicate_keys(self.spark, self.store.warehouse, self.writer.ref,
                                  self.cfg.system, fields)
        return q.check_unique(fields, found["duplicates"], found["rows"], severity,
                              found["sample"], found["missing"])

    def _drift(self) -> list[q.CheckResult]:
        """Drift against the contract; nothing when the load had no rows or no target."""
        if not self.rows or not self.columns or self.columns is _UNSET:
            return []
        declared = {column_name(f) for f in declared_fields(self.cfg)}
        absent = schema_drift.absent_fields(self.columns, declared,
                                            self.present | set(self.retyped) | self.new)
        contract: set[str] = set()
        if absent:  # rare: only then is the contract read (the target and the audit)
            from framework.ops import quality_store as qs

            ref: TableRef = self.writer.ref
            filled = qs.filled_columns(self.spark, self.store.warehouse, ref, self.cfg.system,
                                       only=absent)
            earlier = qs.audit_drift(self.spark, self.store, [self.cfg.config_id])
            contract = contract_fields(self.cfg, Observed(
                tuple(filled), drift=tuple(earlier.get(self.cfg.config_id, ()))))
            contract = {column_name(f) for f in contract}
        retyped = {k: (self.columns[k].value, v) for k, v in self.retyped.items()
                   if k in self.columns}
        found = schema_drift.detect(new=self.new, retyped=retyped, absent=absent,
                                    contract=contract, sent_as=self.new_keys)
        if found:
            return found.results()
        return [schema_drift.no_drift(len(self.columns))] if self.quality is not None else []

    # ------------------------------------------------------------------ record
    def _record(self, verdicts: list[q.CheckResult]) -> None:
        if not verdicts:
            return
        self.verdicts += verdicts
        now = utcnow()
        rows = [v.as_row(config_id=self.cfg.config_id, load_id=self.load_id, run_id=self.run_id,
                         load_type=self.load_type, checked_at=now) for v in verdicts]
        try:
            self.store.append_quality_results(rows)
        except Exception as exc:  # noqa: BLE001 - a lost record must not change the load
            log.error("%s: could not append the quality results: %s", self.cfg.config_id,
                      redact(f"{type(exc).__name__}: {exc}"))
            return
        if self.emit is not None:
            self.emit("quality_checked", config_id=self.cfg.config_id,
                      verdict=q.verdict(verdicts),
                      failed=[r for r in verdicts if not r.passed])
        if self.notify and any(not v.passed for v in verdicts):
            from framework.ops.notify import notify_quality

            # a no-op unless RESTLAKE_NOTIFICATIONS names a notifications file
            notify_quality(self.store.warehouse, self.store.control_ref.catalog,
                           self.cfg.config_id, lambda: self.spark)
