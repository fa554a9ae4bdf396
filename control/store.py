"""The control plane on Delta: control, audit and window-log tables.

Every change is a guarded MERGE or a blind append (:mod:`framework.lake.rows`: delta-rs
for a local warehouse, Spark for a metastore one), with values carried as data, never
as SQL text. Each change is conditional on the state that was read (its status,
attempt, run and lease: optimistic concurrency at row level) or, for a claimed row's
renewal, finish and release, on the row still being RUNNING under that exact claim
(runner, run id, attempt): a runner that lost its claim writes nothing. Delta commit
conflicts are retried with backoff (:func:`framework.lake.commits.retry_conflicts`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Optional

from control import mapping, states
from control.schemas import (AUDIT_SCHEMA, AUDIT_TABLE, CONTROL_COLUMNS, CONTROL_SCHEMA,
                             CONTROL_TABLE, METADATA_SCHEMA, QUALITY_SCHEMA, QUALITY_TABLE,
                             WINDOW_LOG_SCHEMA, WINDOW_LOG_TABLE)
from control.states import ControlState, LoadStatus, LoadType
from framework.lake.commits import retry_conflicts
from framework.lake.groupcommit import GroupCommit
from framework.lake.rows import (Guarded, add_missing_columns, append_rows, merge_rows,
                                 read_rows, uses_delta_rs)
from framework.config import SourceConfig
from framework.errors import ConfigError, LeaseLostError
from framework.lake.tables import TableRef, Warehouse
from framework.timeutil import to_utc, utcnow

log = logging.getLogger(__name__)

#: why :meth:`ControlStore.claim_many` did not claim an id the control table has no row for
NO_SUCH_ROW = "no such control row"
#: what ``claim_many`` says of a row whose state columns hold no state (edited by hand)
INVALID_ROW = "invalid control row"
#: why a disabled row is not claimed, even when named by id
_DISABLED = "it is disabled (restlake enable --config-id {cid})"
#: the action of a config or row that ``generate`` could not upsert or plan
INVALID = "invalid"

DEFAULT_CONTROL_CATALOG = "main"
#: What a change proposed from a row as read requires to be unchanged.
GUARD_COLUMNS = ("LoadStatus", "Attempt", "LastJobRunId", "LeaseExpiresAt")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class GenerateResult:
    """What ``generate`` did to one config."""

    config_id: str
    action: str  # created | pending | unchanged | skipped | invalid
    detail: str = ""
    #: for ``invalid``: the error, naming its field
    error: Optional[ConfigError] = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"GenerateResult({self.config_id}: {self.action} {self.detail})"


@dataclass(frozen=True)
class Claim:
    """A control row this runner holds: the claim is (runner, run id, attempt).

    Attributes:
        lease: how long each claim or renewal holds the row.
    """

    config_id: str
    runner: str
    run_id: str
    state: ControlState
    row: dict[str, Any]
    lease: dt.timedelta = dt.timedelta(hours=1)
    claim_seconds: float = 0.0  # what claiming took (a share of it, for a batch claim)

    @property
    def attempt(self) -> int:
        return self.state.attempt

    def __repr__(self) -> str:
        return (f"Claim({self.config_id} by {self.runner} run={self.run_id} "
                f"attempt={self.attempt} lease={self.lease})")


def _lost(claim: Claim, row: Optional[dict[str, Any]]) -> str:
    """Why ``claim`` no longer holds ``row`` (for the audit row and the log)."""
    if row is None:
        return f"lease lost: control row {claim.config_id} no longer exists"
    status = row.get("LoadStatus")
    holder = (f" by {row.get('ClaimedBy')} (run {row.get('LastJobRunId')}, attempt "
              f"{row.get('Attempt')})") if status == LoadStatus.RUNNING.value else ""
    return (f"lease lost: control row {claim.config_id} is {status}{holder}; this runner's "
            f"claim (run {claim.run_id}, attempt {claim.attempt}) ended")


class ControlStore:
    """Reads and changes the control plane tables of one warehouse.

    Args:
        spark: the SparkSession, or ``None`` with ``spark_factory``.
        warehouse: where tables live.
        catalog: the catalog that holds the ``metadata`` schema (default ``main``).
        spark_factory: starts a SparkSession when one is first needed. On a local
            warehouse the control plane reads and writes without Spark (delta-rs), so
            ``generate``, ``retry`` and ``enable`` start none; creating a table does.
    """

    def __init__(self, spark: Any, warehouse: Warehouse, catalog: str = DEFAULT_CONTROL_CATALOG,
                 *, spark_factory: Optional[Any] = None) -> None:
        if spark is None and spark_factory is None:
            raise ValueError("ControlStore needs a SparkSession or a spark_factory")
        self._spark = spark
        self._spark_factory = spark_factory
        self.warehouse = warehouse
        self.control_ref = TableRef(catalog, METADATA_SCHEMA, CONTROL_TABLE)
        self.audit_ref = TableRef(catalog, METADATA_SCHEMA, AUDIT_TABLE)
        self.window_ref = TableRef(catalog, METADATA_SCHEMA, WINDOW_LOG_TABLE)
        self.quality_ref = TableRef(catalog, METADATA_SCHEMA, QUALITY_TABLE)
        # One control-table MERGE at a time in this process: every MERGE rewrites the file
        # holding its row, so two at once (parallel loads, heartbeats) would conflict and
        # back off; other processes' commits are still retried (retry_conflicts).
        self._control_lock = threading.RLock()
        #: table name -> the columns the last :meth:`init` added to it (a table made
        #: earlier, e.g. a control table with only the seed's columns)
        self.added: dict[str, list[str]] = {}
        # Concurrent loads share commits (each caller still waits for its own to land).
        self._finishes: GroupCommit = GroupCommit(self._write_held_many, "control finish")
        self._audits: GroupCommit = GroupCommit(self._append_audits, "audit")
        self._window_logs: GroupCommit = GroupCommit(self._append_window_logs, "window log")

    def __repr__(self) -> str:
        return f"ControlStore({self.control_ref.catalog} in {self.warehouse!r})"

    @property
    def spark(self) -> Any:
        """The SparkSession (started now when the store was given a factory)."""
        if self._spark is None:
            self._spark = self._spark_factory()
        return self._spark

    def _reads_spark(self) -> Any:
        """What the reads of :mod:`framework.lake.rows` need: no Spark on a local warehouse."""
        return None if self.warehouse.is_local else self.spark

    def _writes_spark(self) -> Any:
        """What the small writes need: no Spark when they go through delta-rs."""
        return None if uses_delta_rs(self.warehouse) else self.spark

    def _exists(self, ref: TableRef) -> bool:
        return self.warehouse.exists(self._reads_spark(), ref)

    # ------------------------------------------------------------------ tables
    def init(self) -> list[str]:
        """Create the control, audit, window-log and quality-results tables; idempotent.
        A table that exists gains the columns it lacks (see :attr:`added`).

        Returns:
            the names of the tables created by this call.
        """
        created = []
        self.added = {}
        specs = [
            (self.control_ref, CONTROL_SCHEMA, {}, "restlake control table: one row per ConfigId"),
            (self.audit_ref, AUDIT_SCHEMA, {"delta.appendOnly": "true"},
             "restlake audit table: one row per run (append-only)"),
            (self.window_ref, WINDOW_LOG_SCHEMA, {"delta.appendOnly": "true"},
             "restlake window log: one row per window attempt (append-only)"),
            (self.quality_ref, QUALITY_SCHEMA, {"delta.appendOnly": "true"},
             "restlake quality results: one row per check per load (append-only)"),
        ]
        for ref, schema, props, comment in specs:
            if self._exists(ref):
                added = add_missing_columns(self._writes_spark(), self.warehouse, ref, schema)
                if added:
                    self.added[ref.name] = added
                continue
            made = retry_conflicts(
                lambda ref=ref, schema=schema, props=props, comment=comment:
                self.warehouse.create_if_not_exists(self.spark, ref, schema, props, comment=comment),
                f"create {ref.name}")
            if made:
                created.append(ref.name)
        return created

    def is_initialized(self) -> bool:
        return self._exists(self.control_ref)

    def require_control(self) -> None:
        """Raise a :class:`ConfigError` naming the control table when it does not exist
        (nothing was generated there yet, or the control catalog is not the one meant)."""
        if not self.is_initialized():
            raise ConfigError(f"control table {self.control_ref.name} does not exist; "
                              "run 'restlake init' and 'restlake generate' first")

    # ------------------------------------------------------------------- reads
    def rows(self, config_ids: Optional[Iterable[str]] = None) -> list[dict[str, Any]]:
        """Control rows (all, or those of ``config_ids``), sorted by ConfigId."""
        ids = list(config_ids) if config_ids is not None else None
        if ids is not None and not ids:
            return []
        self.require_control()
        rows = read_rows(self._reads_spark(), self.warehouse, self.control_ref,
                         {"ConfigId": ids} if ids is not None else None)
        return sorted(rows, key=lambda r: r["ConfigId"])

    def get(self, config_id: str) -> Optional[dict[str, Any]]:
        rows = self.rows([config_id])
        return rows[0] if rows else None

    def audit_rows(self, config_id: Optional[str] = None, limit: Optional[int] = 20, *,
                   equal: Optional[dict[str, Any]] = None,
                   columns: Optional[Iterable[str]] = None) -> list[dict[str, Any]]:
        """The newest ``limit`` audit rows (of ``config_id``; ``None``: all), newest first
        (none before the audit table exists).

        Args:
            equal: further columns the rows must equal (see :func:`read_rows`).
            columns: the columns to read (``LoggedAt`` is added: it orders the rows).
        """
        if not self._exists(self.audit_ref):
            return []
        wanted = None if columns is None else list(dict.fromkeys(["LoggedAt", *columns]))
        rows = read_rows(self._reads_spark(), self.warehouse, self.audit_ref,
                         {**({"ConfigId": config_id} if config_id else {}), **(equal or {})},
                         wanted)
        rows.sort(key=lambda r: r.get("LoggedAt") or _EPOCH, reverse=True)
        return rows if limit is None else rows[:limit]

    def committed_windows(self, config_id: str, load_id: str) -> set[tuple[dt.datetime, dt.datetime]]:
        """Windows of ``load_id`` that the window log marks SUCCESS (skipped on a rerun)."""
        rows = read_rows(self._reads_spark(), self.warehouse, self.window_ref,
                         {"ConfigId": config_id, "LoadId": load_id, "Status": "SUCCESS"},
                         ["WindowStart", "WindowEnd"])
        return {(r["WindowStart"], r["WindowEnd"]) for r in rows}

    def window_checkpoints(self, config_id: str, load_id: str) -> dict[tuple[dt.datetime, dt.datetime], dict]:
        """The latest page-batch checkpoint of each window of ``load_id`` (Status CHECKPOINT)."""
        rows = read_rows(self._reads_spark(), self.warehouse, self.window_ref,
                         {"ConfigId": config_id, "LoadId": load_id, "Status": "CHECKPOINT"},
                         ["WindowStart", "WindowEnd", "Checkpoint"])
        latest: dict[tuple[dt.datetime, dt.datetime], dict] = {}
        for r in rows:
            key = (r["WindowStart"], r["WindowEnd"])
            point = json.loads(r["Checkpoint"])
            if key not in latest or point["segment"] > latest[key]["segment"]:
                latest[key] = point
        return latest

    # ---------------------------------------------------------------- generate
    def generate(self, configs: Iterable[SourceConfig], *, now: Optional[dt.datetime] = None,
                 due_only: bool = False) -> list[GenerateResult]:
        """Upsert one control row per config and mark due loads PENDING with their range.

        With ``due_only`` a row is planned only when its schedule fired since its last
        generation; otherwise every given config is planned (a config given by name is
        wanted now). A FULL_LOAD row that FAILED stays FAILED until ``retry``.
        """
        configs = list(configs)
        if not configs:
            return []
        results = retry_conflicts(lambda: self._generate_once(configs, now or utcnow(), due_only),
                               "generate")
        return results

    def _generate_once(self, configs: list[SourceConfig], now: dt.datetime,
                       due_only: bool) -> list[GenerateResult]:
        existing = {r["ConfigId"]: r for r in self.rows([c.config_id for c in configs])}
        out_rows, results = [], []
        for cfg in configs:
            cols = mapping.config_to_row(cfg)
            prev = existing.get(cfg.config_id)
            try:
                state = mapping.row_to_state(prev) if prev else ControlState()
            except ConfigError as exc:  # the row names it; the others are still planned
                results.append(GenerateResult(cfg.config_id, INVALID, str(exc), exc))
                continue
            planned: Optional[ControlState] = None
            moved = None if cfg.is_push or prev is None else self._moved(prev, cfg)
            refused = None if moved or prev is None else self._refused_change(prev, cfg, state)
            if refused is not None:  # the row is left as it is
                results.append(GenerateResult(cfg.config_id, INVALID, str(refused), refused))
                continue
            full = states.plan_full(state, mapping.policy_of(cfg), now) if moved else None
            # a load running into the old table would leave it the watermark: the move
            # (and its full load) waits for the next generate
            hold = bool(moved) and state.load_type == LoadType.INCREMENTAL and (
                state.load_status == LoadStatus.RUNNING)
            if hold:
                cols.update({c: prev[c] for c in ("TargetCatalog", "TargetSchema", "TargetTable")})
            if cfg.is_push:
                planned = states.register_push(state, now)
                detail = "push source: loaded by the webhook receiver"
            elif full is not None:
                # planned even when disabled or not due: the new table is empty until it is
                planned = full
                detail = (f"target changed from {moved} to {cfg.target.name}, a table that does "
                          f"not exist yet: full load; {moved} is left as it is")
            elif not cfg.enabled and prev is not None:
                detail = "disabled" if prev.get("Enabled") is False else \
                    "disabled by its config (enabled: false)"
            elif due_only and prev and not states.is_due(state, cfg.schedule.time,
                                                          cfg.schedule.frequency, now):
                detail = "not due"
            else:
                planned = states.plan_next(state, mapping.policy_of(cfg), now)
                detail = "" if planned else _why_unchanged(state)
            if hold:
                detail = (f"already RUNNING into {moved}: the move to {cfg.target.name} waits "
                          "for the next generate")
            new_state = planned or state
            if prev is None and planned is None:
                results.append(GenerateResult(cfg.config_id, "skipped", detail))
                continue
            row = {c: None for c in CONTROL_COLUMNS}
            if prev:
                row.update(prev)
            row.update(cols)
            row.update(mapping.state_to_columns(new_state))
            row["LastUpdatedTime"] = now
            out_rows.append(Guarded(row, _as_read(prev)))
            if prev is None:
                action = "created"
            else:
                action = "pending" if planned else "unchanged"
            rng = (f"{planned.load_type.value} {planned.load_start:%Y-%m-%dT%H:%M:%SZ}.."
                   f"{planned.load_end:%Y-%m-%dT%H:%M:%SZ}") if planned and not cfg.is_push \
                else detail
            if full is not None:
                rng += f" ({detail})"
            if prev is None and not cfg.enabled:
                # a new source whose file says enabled: false: its row (status shows it,
                # ``enable`` finds it) holds its first load, which no run claims until then
                rng += f"; disabled: no run claims it until restlake enable --config-id {cfg.config_id}"
            if prev is not None and prev.get("Enabled") is False and cfg.enabled:
                # a disable (CLI or API) undone by the config: said, not done silently
                rng = "; ".join(p for p in (rng, "enabled again: the row was disabled and its "
                                            "config does not say enabled: false") if p)
            results.append(GenerateResult(cfg.config_id, action, rng))

        if not out_rows:
            return results
        # A lease renewed since the read must not be written back to its older value.
        with self._control_lock:
            self._merge_control(out_rows, CONTROL_COLUMNS, insert=True)
        return results

    def _moved(self, prev: dict[str, Any], cfg: SourceConfig) -> Optional[str]:
        """The row's old target when ``cfg`` points it at another table that does not
        exist yet (its history is all in the old one), else ``None``. Names are compared
        as written: where they ignore case (a metastore) the new one exists, and where
        they do not (the local warehouse's folders) it is another table."""
        old = ".".join(str(prev.get(c)) for c in ("TargetCatalog", "TargetSchema", "TargetTable"))
        if old == cfg.target.name:
            return None
        ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
        return None if self._exists(ref) else old

    def _refused_change(self, prev: dict[str, Any], cfg: SourceConfig,
                        state: ControlState) -> Optional[ConfigError]:
        """Why ``cfg`` cannot replace the row ``prev`` (a change its target's rows or its
        unfinished load would not survive), naming the field; ``None`` when it can."""
        incremental = not cfg.is_push and state.load_type == LoadType.INCREMENTAL
        why = self._rekeyed(prev, cfg) if incremental else None
        if why:
            return ConfigError(why, source=cfg.config_id, field="primary_key")
        if incremental and not cfg.primary_key and state.load_status != LoadStatus.SUCCESS:
            # its load finishes on its own windows
            why = self._regridded(prev, cfg, state.load_id)
            if why:
                return ConfigError(why, source=cfg.config_id, field="window")
        why = self._renamed_system(prev, cfg)
        return ConfigError(why, source=cfg.config_id, field="source_system") if why else None

    def _rekeyed(self, prev: dict[str, Any], cfg: SourceConfig) -> Optional[str]:
        """Why ``cfg``'s primary key cannot replace the row's, or ``None``: the MERGE of an
        incremental load into a target holding rows would join on the new key, and update
        every row sharing a value of it. The same fields spelled otherwise are no change."""
        from framework.config import field_list
        from framework.schema import column_name

        try:  # the bracket form for names holding a comma
            old = list(field_list(prev.get("PrimaryColumn") or ""))
        except ValueError:
            return None  # a row that does not validate runs nothing either
        if [column_name(k).lower() for k in old] == [column_name(k).lower()
                                                     for k in cfg.primary_key]:
            return None
        ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
        if not self._exists(ref):
            return None
        was, now = ", ".join(old), ", ".join(cfg.primary_key)
        held = f"rows merged on {was}" if old else "rows appended without a key"
        harm = (f"a MERGE on {now} would update every row sharing a {now} value" if now else
                "incremental loads without a key would append again the records they re-read")
        return (f"changed from {was or 'no key'} to {now or 'no key'} while {cfg.target.name} "
                f"holds {held}: {harm} (point the source at a new target table, which gets a "
                "full load)")

    def _regridded(self, prev: dict[str, Any], cfg: SourceConfig,
                   load_id: Optional[str]) -> Optional[str]:
        """Why ``cfg``'s windows cannot replace the row's while its keyless incremental load
        ``load_id`` has committed windows, or ``None``. Its rerun skips the windows the log
        marks committed and appends each batch under a version made of window indices
        (idempotent writes): on another grid no committed window matches, every record of
        them would be appended again, and versions already spent would skip new batches."""
        try:
            old = mapping.row_to_config(prev)  # what its load runs with (defaults filled in)
        except ConfigError:
            return None  # a row that does not validate runs nothing either
        was = (old.window, old.limits.windows_per_commit, old.limits.pages_per_commit)
        now = (cfg.window, cfg.limits.windows_per_commit, cfg.limits.pages_per_commit)
        if was == now or not load_id or not self.committed_windows(cfg.config_id, load_id):
            return None
        names = ("window", "limits.windows_per_commit", "limits.pages_per_commit")
        changed = ", ".join(f"{n} {a} -> {b}" for n, a, b in zip(names, was, now) if a != b)
        return (f"{changed} while load {load_id} of this source without a primary_key has "
                "committed windows: its rerun would append their records again and could skip "
                "the rest (let the load finish on its windows, or retry it, then change them)")

    def _renamed_system(self, prev: dict[str, Any], cfg: SourceConfig) -> Optional[str]:
        """Why ``cfg``'s ``source_system`` cannot replace the row's, or ``None``: the target
        holds the source's rows under the old one, and every write of the source is scoped
        to its system (a full load replaces that system's rows, a MERGE matches on it), so
        the old rows would stay beside the same records written again under the new one."""
        old = prev.get("SourceSystem")
        if not old or old == cfg.system:
            return None
        ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
        if not self._exists(ref):
            return None
        return (f"changed from {old} to {cfg.system} while {cfg.target.name} holds the "
                f"source's rows as {old}: every record would be written again beside them as "
                f"{cfg.system} (point the source at a new target table, which gets a full load, "
                f"or keep {old})")

    # ------------------------------------------------------------------ claims
    def claim(self, config_id: str, runner: str, run_id: str,
              lease: Optional[dt.timedelta] = None,
              now: Optional[dt.datetime] = None) -> Optional[Claim]:
        """Atomically take a claimable row; ``None`` when it is not claimable or another runner won.

        The update is conditional on the row's status, holder and attempt as read, so of
        two runners that read the same PENDING row, one commit changes it and the other
        either conflicts (retried: it then reads RUNNING) or matches nothing.

        Args:
            lease: how long the claim holds; ``None`` takes the row's ``limits.lease_s``.
        """
        t0 = time.perf_counter()

        def attempt() -> Optional[Claim]:
            row = self.get(config_id)
            if row is None:
                return None
            if row.get("Enabled") is False:
                log.info("%s: not claimed: %s", config_id, _DISABLED.format(cid=config_id))
                return None
            try:
                state = mapping.row_to_state(row)
            except ConfigError as exc:
                log.warning("%s: not claimed: %s", config_id, exc)
                return None
            at = now or utcnow()
            held_for = lease if lease is not None else mapping.lease_of(row)
            try:
                new_state = states.claim(state, runner, run_id, at, held_for)
            except states.InvalidTransition as exc:
                log.info("%s: not claimed: %s", config_id, exc)
                return None
            self._update_if_unchanged(row, new_state, at)
            fresh = self.get(config_id)
            if fresh and fresh.get("ClaimedBy") == runner and fresh.get("LastJobRunId") == run_id \
                    and fresh.get("LoadStatus") == LoadStatus.RUNNING.value:
                return Claim(config_id, runner, run_id, mapping.row_to_state(fresh), fresh, held_for,
                             claim_seconds=time.perf_counter() - t0)
            return None

        return retry_conflicts(attempt, f"claim {config_id}")

    def claim_many(self, config_ids: Iterable[str], runner: str, run_id: str,
                   lease: Optional[dt.timedelta] = None, now: Optional[dt.datetime] = None
                   ) -> tuple[list[Claim], dict[str, str]]:
        """Claim every claimable row of ``config_ids`` in one commit (``run`` of many rows).

        One read of the rows, one MERGE that takes each row only if its status, holder,
        attempt and lease are still as read (so of two runners that read the same PENDING
        row, one commit takes it and the other conflicts, is retried, and then reads it
        RUNNING), and one read back: a row is claimed when it is RUNNING under this runner,
        run id and the attempt this MERGE wrote. Exactly one runner per row, as with
        :meth:`claim`.

        Returns:
            the claims, in the order of ``config_ids``, and for each row not claimed why.
        """
        ids = list(dict.fromkeys(config_ids))
        if not ids:
            return [], {}
        t0 = time.perf_counter()

        def attempt() -> tuple[list[Claim], dict[str, str]]:
            at = now or utcnow()
            rows = {r["ConfigId"]: r for r in self.rows(ids)}
            why: dict[str, str] = {}
            wanted: list[tuple[dict[str, Any], ControlState, dt.timedelta]] = []
            for cid in ids:
                row = rows.get(cid)
                if row is None:
                    why[cid] = NO_SUCH_ROW
                    continue
                if row.get("Enabled") is False:  # named by id too (a job naming its sources)
                    why[cid] = _DISABLED.format(cid=cid)
                    continue
                held_for = lease if lease is not None else mapping.lease_of(row)
                try:
                    wanted.append((row, states.claim(mapping.row_to_state(row), runner, run_id,
                                                     at, held_for), held_for))
                except states.InvalidTransition as exc:
                    log.info("%s: not claimed: %s", cid, exc)
                    why[cid] = _not_claimed(row)
                except ConfigError as exc:
                    why[cid] = f"{INVALID_ROW}: {exc}"
            if not wanted:
                return [], why
            self._claim_rows([(row, new) for row, new, _ in wanted], at)
            fresh = {r["ConfigId"]: r for r in self.rows([row["ConfigId"] for row, _, _ in wanted])}
            claims = []
            for row, new, held_for in wanted:
                cid = row["ConfigId"]
                got = fresh.get(cid)
                if got and got.get("LoadStatus") == LoadStatus.RUNNING.value \
                        and got.get("ClaimedBy") == runner and got.get("LastJobRunId") == run_id \
                        and got.get("Attempt") == new.attempt:
                    claims.append(Claim(cid, runner, run_id, mapping.row_to_state(got), got,
                                        held_for))
                else:
                    why[cid] = _not_claimed(got) if got else NO_SUCH_ROW
            return claims, why

        claims, why = retry_conflicts(attempt, f"claim {len(ids)} rows")
        share = (time.perf_counter() - t0) / max(1, len(claims))
        return [replace(c, claim_seconds=share) for c in claims], why

    def _claim_rows(self, planned: list[tuple[dict[str, Any], ControlState]], at: dt.datetime) -> None:
        """One MERGE writing each planned state into its row if the row is still as read."""
        names = list(mapping.state_to_columns(planned[0][1])) + ["LastUpdatedTime"]
        rows = [Guarded({"ConfigId": row["ConfigId"], **mapping.state_to_columns(new),
                         "LastUpdatedTime": at}, _as_read(row)) for row, new in planned]
        with self._control_lock:
            self._merge_control(rows, names)

    def claimable_ids(self, now: Optional[dt.datetime] = None) -> list[str]:
        """ConfigIds of enabled rows that are PENDING, or RUNNING with an expired lease."""
        at = now or utcnow()
        out = []
        for row in self.rows():
            if row.get("Enabled") is False:
                continue
            try:
                state = mapping.row_to_state(row)
            except ConfigError as exc:  # generate and run --config-id report it
                log.warning("%s: not claimable: %s", row.get("ConfigId"), exc)
                continue
            if states.is_claimable(state, at):
                out.append(row["ConfigId"])
        return out

    def renew_lease(self, claim: Claim, now: Optional[dt.datetime] = None) -> Claim:
        """Extend the lease of a row this claim holds, by ``claim.lease`` from ``now``.

        One conditional write (no read first): it matches only while the row is RUNNING
        under this exact claim, so a renewal never revives a row another runner took over.

        Returns:
            the claim with the renewed state (``state.lease_expires_at`` is the new end).

        Raises:
            LeaseLostError: the row is no longer held by this claim.
        """
        at = now or utcnow()
        renewed = states.renew_lease(claim.state, claim.runner, at, claim.lease)
        if not self._write_held(claim, {"LeaseExpiresAt": renewed.lease_expires_at,
                                        "LastUpdatedTime": at}, "renew the lease of"):
            raise LeaseLostError(self.lost_reason(claim))
        return replace(claim, state=renewed)

    def finish(self, claim: Claim, new_state: ControlState, checkpoint: Optional[dict] = None,
               on_commit: Optional[Any] = None) -> bool:
        """Write the final state of a held row; False (nothing written) when it is no longer
        this claim's.

        Args:
            on_commit: called when the MERGE holding this finish starts (finishes of
                concurrent loads share one MERGE, so a finish may wait for a turn first).
        """
        cols = {**mapping.state_to_columns(new_state), "LastUpdatedTime": utcnow()}
        if checkpoint is not None:
            cols["Checkpoint"] = json.dumps(checkpoint, default=str)
        if not self._finishes.submit((claim, cols), on_commit):
            log.warning("%s: row was taken over by another runner; not updated", claim.config_id)
            return False
        return True

    def release(self, claim: Claim, on_commit: Optional[Any] = None) -> bool:
        """RUNNING -> PENDING for a stopped load (same range, LoadId and attempt count).

        Args:
            on_commit: as for :meth:`finish`.

        Returns:
            False when the row is no longer this claim's (nothing was written).
        """
        released = states.release(claim.state, claim.runner)
        return self._finishes.submit((claim, {**mapping.state_to_columns(released),
                                              "LastUpdatedTime": utcnow()}), on_commit)

    def lost_reason(self, claim: Claim) -> str:
        """Why ``claim`` no longer holds its row, as the row reads now."""
        return _lost(claim, self.get(claim.config_id))

    def _write_held_many(self, items: list[tuple[Claim, dict[str, Any]]]) -> list[bool]:
        """Write each ``(claim, cols)`` into its row while the row is RUNNING under that
        claim, in one MERGE per set of columns (finishes and releases of concurrent loads).

        Returns:
            for each item, whether it was written (False: the row is not that claim's).
        """
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, (_, cols) in enumerate(items):
            groups.setdefault(tuple(sorted(cols)), []).append(i)
        written = [False] * len(items)
        for names, members in groups.items():
            if len({items[i][0].config_id for i in members}) < len(members):
                for i in members:  # two writes for one row: one at a time
                    written[i] = self._write_held(items[i][0], items[i][1], "finish")
                continue
            if len(members) == 1:  # a one-row MERGE's count says whether it was written
                written[members[0]] = self._write_held(*items[members[0]], "finish")
                continue
            # Which rows of a partly matched batch were written is read back: each carries
            # this batch's LastUpdatedTime, to the microsecond.
            stamp = dt.datetime.now(dt.timezone.utc)
            rows = [Guarded({"ConfigId": items[i][0].config_id, **items[i][1],
                             "LastUpdatedTime": stamp}, _held_by(items[i][0])) for i in members]
            columns = sorted({*names, "LastUpdatedTime"})

            def merge(rows: list[Guarded] = rows, columns: list[str] = columns) -> int:
                with self._control_lock:
                    return self._merge_control(rows, columns)

            updated = retry_conflicts(merge, f"finish {len(members)} control rows")
            if updated == len(members):
                for i in members:
                    written[i] = True
                continue
            now = {r["ConfigId"]: r for r in self.rows([items[i][0].config_id for i in members])}
            for i in members:
                claim = items[i][0]
                row = now.get(claim.config_id) or {}
                written[i] = (row.get("LastJobRunId") == claim.run_id
                              and row.get("Attempt") == claim.attempt
                              and _same(row.get("LastUpdatedTime"), stamp))
        return written

    def _write_held(self, claim: Claim, cols: dict[str, Any], what: str) -> bool:
        """Write ``cols`` into the row only while it is RUNNING under ``claim``.

        Returns:
            True when the row matched (and was written), False when it is not this claim's.
        """
        def write() -> bool:
            with self._control_lock:
                return self._merge_control(
                    [Guarded({"ConfigId": claim.config_id, **cols}, _held_by(claim))], cols) == 1

        return retry_conflicts(write, f"{what} {claim.config_id}")

    def retry(self, config_id: str, now: Optional[dt.datetime] = None) -> ControlState:
        """FAILED -> PENDING (same range and LoadId).

        Raises:
            ConfigError: no such row.
            states.InvalidTransition: the row is not FAILED.
        """
        def attempt() -> ControlState:
            row = self.get(config_id)
            if row is None:
                raise ConfigError(f"no control row with ConfigId '{config_id}'")
            at = now or utcnow()
            new_state = states.retry(mapping.row_to_state(row), at)
            self._update_if_unchanged(row, new_state, at)
            return new_state

        return retry_conflicts(attempt, f"retry {config_id}")

    def set_enabled(self, config_id: str, enabled: bool, now: Optional[dt.datetime] = None) -> bool:
        """Enable or disable a source (its ``Enabled`` column); False when there is no such row.

        A disabled row is neither planned nor claimed; a load already RUNNING finishes.

        Raises:
            ConfigError: enabling a row whose target and ``source_system`` another enabled
                source writes (a disabled row clashes with no one, so another source may
                have taken its target over, e.g. its config_id renamed); names the other.
        """
        def attempt() -> bool:
            row = self.get(config_id)
            if row is None:
                return False
            if enabled and row.get("Enabled") is False:
                why = self._clash_of(row)
                if why:
                    raise ConfigError(f"not enabled: {why}", source=config_id, field="target")
            with self._control_lock:
                self._merge_control([Guarded({"ConfigId": config_id, "Enabled": bool(enabled),
                                              "LastUpdatedTime": now or utcnow()}, {})],
                                    ["Enabled", "LastUpdatedTime"])
            return True

        return retry_conflicts(attempt, f"{'enable' if enabled else 'disable'} {config_id}")

    def _clash_of(self, row: dict[str, Any]) -> Optional[str]:
        """Why the source of ``row`` may not write its target beside the enabled rows, or
        ``None`` (also for a row that does not validate: it runs nothing)."""
        from framework.config import shared_targets

        try:
            cfg = mapping.row_to_config({**row, "Enabled": True})
        except ConfigError:
            return None
        others = []
        for other in self.rows():
            if other["ConfigId"] == row["ConfigId"] or other.get("Enabled") is False:
                continue
            try:
                others.append(mapping.row_to_config(other))
            except ConfigError:
                continue
        return shared_targets([cfg], others).get(cfg.config_id)

    def _update_if_unchanged(self, row: dict[str, Any], new_state: ControlState, now: dt.datetime,
                             extra: Optional[dict[str, Any]] = None) -> bool:
        """Write ``new_state`` into the row if its status, attempt, run and lease are still
        as read; True when it was written."""
        cols = mapping.state_to_columns(new_state)
        cols["LastUpdatedTime"] = now
        cols.update(extra or {})
        with self._control_lock:
            return self._merge_control([Guarded({"ConfigId": row["ConfigId"], **cols},
                                                _as_read(row))], cols) == 1

    def _merge_control(self, rows: list[Guarded], columns: Iterable[str],
                       insert: bool = False) -> int:
        """One guarded MERGE into the control table (:func:`framework.lake.rows.merge_rows`;
        every row guards the same columns); returns the rows written."""
        self.require_control()
        guard = list(rows[0].expect) if rows else []
        if any(list(r.expect) != guard for r in rows):
            raise ValueError("one control MERGE guards the same columns in every row")
        return merge_rows(self._writes_spark(), self.warehouse, self.control_ref, CONTROL_SCHEMA, "ConfigId",
                          list(columns), guard, rows, insert=insert)

    # -------------------------------------------------------------- append logs
    def append_audit(self, record: dict[str, Any]) -> None:
        """Append one audit row (blind append: never conflicts).

        An audit table made by an older restlake gains the newer columns on this append.
        """
        self._audits.submit(record)

    def _append_audits(self, records: list[dict[str, Any]]) -> list[None]:
        self._append(self.audit_ref, AUDIT_SCHEMA, records, "audit", merge_schema=True)
        return [None] * len(records)

    def append_window_log(self, records: list[dict[str, Any]]) -> None:
        """Append window-log rows (blind append)."""
        if records:
            self._window_logs.submit(list(records))

    def _append_window_logs(self, batches: list[list[dict[str, Any]]]) -> list[None]:
        self._append(self.window_ref, WINDOW_LOG_SCHEMA, [r for b in batches for r in b],
                     "window log")
        return [None] * len(batches)

    def append_quality_results(self, records: list[dict[str, Any]]) -> None:
        """Append quality-check rows (blind append); creates the table for warehouses
        initialized before it existed."""
        if not records:
            return
        if not self._exists(self.quality_ref):
            retry_conflicts(lambda: self.warehouse.create_if_not_exists(
                self.spark, self.quality_ref, QUALITY_SCHEMA, {"delta.appendOnly": "true"}),
                f"create {self.quality_ref.name}")
        self._append(self.quality_ref, QUALITY_SCHEMA, records, "quality results")

    def quality_results(self, config_ids: Optional[Iterable[str]] = None,
                        since: Optional[dt.datetime] = None,
                        limit: Optional[int] = None) -> list[dict[str, Any]]:
        """Quality-check rows, newest first (empty when the table does not exist yet)."""
        if not self._exists(self.quality_ref):
            return []
        ids = list(config_ids) if config_ids is not None else None
        if ids is not None and not ids:
            return []
        rows = read_rows(self._reads_spark(), self.warehouse, self.quality_ref,
                         {"ConfigId": ids} if ids is not None else None)
        if since is not None:
            rows = [r for r in rows if r["CheckedAt"] >= to_utc(since)]
        rows.sort(key=lambda r: (r["CheckName"], r.get("Field") or ""))
        rows.sort(key=lambda r: r["CheckedAt"], reverse=True)
        return rows if limit is None else rows[:limit]

    def _append(self, ref: TableRef, schema: Any, records: list[dict[str, Any]], what: str,
                merge_schema: bool = False) -> None:
        append_rows(self._writes_spark(), self.warehouse, ref, schema, records, what,
                    merge_schema=merge_schema)


def _same(read: Any, written: Any) -> bool:
    """A value read back equals the value written (datetimes compared in UTC)."""
    if isinstance(read, dt.datetime) and isinstance(written, dt.datetime):
        return to_utc(read) == to_utc(written)
    return read == written


def _as_read(row: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The guard of a change proposed from ``row`` as read (``None``: the row was absent):
    its status, attempt, run and lease must not have changed since."""
    return {c: (row or {}).get(c) for c in GUARD_COLUMNS}


def _held_by(claim: Claim) -> dict[str, Any]:
    """The guard of a write by ``claim``'s holder: the row is RUNNING under that claim."""
    return {"LoadStatus": LoadStatus.RUNNING.value, "ClaimedBy": claim.runner,
            "LastJobRunId": claim.run_id, "Attempt": claim.attempt}


def _not_claimed(row: dict[str, Any]) -> str:
    """Why a row was not claimed, as it reads now."""
    status = row.get("LoadStatus")
    held = f" (held by {row.get('ClaimedBy')})" if status == LoadStatus.RUNNING.value else ""
    return f"it is {status}{held}"


def _why_unchanged(state: ControlState) -> str:
    if state.load_status == LoadStatus.FAILED:
        return "FAILED full load: run 'restlake retry' to load it again"
    if state.load_status in (LoadStatus.PENDING, LoadStatus.RUNNING):
        return f"already {state.load_status.value}"
    return "nothing new to load yet"
