"""The scheduler of ``restlake scheduler`` and ``restlake serve --schedule``.

One long-lived process keeps ONE Spark session warm and runs three jobs on APScheduler
(each at most once at a time; a late one runs once, not once per missed time):

* **loads** — at each source's next scheduled instant, every ``poll`` and on a run
  request (:mod:`framework.service.agenda`): plan the due loads (the one ``generate --due``:
  :func:`control.generate.generate`, every row of the control table) and start claimable
  rows on the free load slots (``parallel`` of them), each through
  :func:`framework.load.runtime.run` on a slot's thread. The job returns once they
  started: a long load holds its slot, not the job, so the next poll fills the other
  slots. A load that ends while rows wait for a slot runs the job again at once. Claims
  and leases decide who loads a row, so two schedulers (or a scheduler and a Databricks
  job) on one warehouse never load it twice;
* **probes** — each source on its own ``health.interval``: the sources due together are
  probed concurrently (:func:`framework.ops.health.probe_many`, a bounded pool) and
  appended to the health log in one commit;
* **report** — the daily report at ``report.time`` (UTC).

The notifications of :mod:`framework.ops.notify` go out (once per incident) as each load
ends, after each probe round, and (stale sources, missed SLAs) from the loads job.
:meth:`Scheduler.stop` drains: no new job or claim, the jobs and loads in flight finish
(loads stop at their next commit or page checkpoint: their rows go back to PENDING,
audited ``INTERRUPTED``), then the health log is flushed; it says whether that happened
within the grace period.

Time comes from ``clock``. :meth:`Scheduler.start` hands the jobs to APScheduler;
:meth:`Scheduler.run_pending` runs what is due at ``clock()`` with the same triggers and
returns once the loads it started have ended, so a test drives the scheduler through
hours with an injected clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from apscheduler.triggers.base import BaseTrigger

from framework.service.agenda import Agenda, Source
from framework.timeutil import iso, utcnow

log = logging.getLogger(__name__)

JOBS = ("loads", "probes", "report")
DEFAULT_GRACE_S = 30.0


@dataclass(frozen=True)
class SchedulerSettings:
    """How the scheduler runs (``--service-config`` FILE's ``scheduler:``, ``report:`` and
    ``notifications:`` blocks; see :mod:`framework.service.settings`).

    Attributes:
        poll: how often the loads job looks for rows planned elsewhere.
        parallel: loads at once (the load slots: each run of the loads job claims rows
            for the free ones only).
        probe_workers: probes at once.
        lease: the lease of a claimed row (renewed while the load runs); ``None``: each
            source's ``limits.lease_s``.
        report_time: ``HH:MM`` UTC of the daily report (``None``: no report).
        report_out: the report folder.
        report_days: audit history the report shows.
        notifications: the ``notifications:`` block (``None``: none sent).
        stale_every: how often the loads job looks for stale sources.
    """

    poll: dt.timedelta = dt.timedelta(minutes=1)
    parallel: int = 2
    probe_workers: int = 64
    lease: Optional[dt.timedelta] = None
    report_time: Optional[str] = None
    report_out: Optional[str] = None
    report_days: int = 7
    notifications: Any = None
    stale_every: dt.timedelta = dt.timedelta(minutes=15)


@dataclass
class JobState:
    """What ``GET /health`` shows of one job."""

    next_run: Optional[dt.datetime] = None
    running: bool = False
    runs: int = 0
    last_started: Optional[dt.datetime] = None
    last_finished: Optional[dt.datetime] = None
    last_error: Optional[str] = None
    last_result: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"next_run": iso(self.next_run), "running": self.running, "runs": self.runs,
                "last_started": iso(self.last_started), "last_finished": iso(self.last_finished),
                "last_error": self.last_error, "last_result": self.last_result}


@dataclass
class LoadSlots:
    """The loads in flight on the load slots, and how the ended ones ended (``GET /health``).

    Attributes:
        running: config id -> (its run context, when it was started).
        waiting: claimable rows the last run of the loads job found no free slot for.
        finished: ended loads by status (``SUCCESS``, ``FAILED``, ``SKIPPED``: not claimed...).
        last_finished: the last load that ended: config id, status, when.
        last_error: the last load whose run raised instead of returning its outcome.
    """

    parallel: int
    running: dict[str, tuple[Any, dt.datetime]] = field(default_factory=dict)
    waiting: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    last_finished: Optional[dict[str, Any]] = None
    last_error: Optional[str] = None

    @property
    def free(self) -> int:
        return max(self.parallel - len(self.running), 0)

    def as_dict(self) -> dict[str, Any]:
        return {"parallel": self.parallel,
                "running": [{"config_id": cid, "started": iso(at)}
                            for cid, (_, at) in sorted(self.running.items())],
                "waiting": self.waiting, "finished": dict(self.finished),
                "last_finished": self.last_finished, "last_error": self.last_error}


class AgendaTrigger(BaseTrigger):
    """An APScheduler trigger whose fire times come from the :class:`Agenda`."""

    def __init__(self, next_fire: Callable[[Optional[dt.datetime], dt.datetime],
                                           Optional[dt.datetime]], name: str) -> None:
        self._next_fire, self.name = next_fire, name
        self.jitter = None

    def get_next_fire_time(self, previous_fire_time: Optional[dt.datetime],
                           now: dt.datetime) -> Optional[dt.datetime]:
        return self._next_fire(previous_fire_time, now)

    def __repr__(self) -> str:
        return f"AgendaTrigger({self.name})"


class Scheduler:
    """Loads on each source's cadence, probes on each source's health interval, the report.

    Args:
        spark: the session loads and appends use (kept warm for the process's life).
        store: the control store of the warehouse.
        settings: see :class:`SchedulerSettings`.
        clock: the current UTC time.
    """

    def __init__(self, spark: Any, store: Any, settings: SchedulerSettings = SchedulerSettings(),
                 *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        from framework.load.runtime import runner_id

        self.spark, self.store, self.settings, self.clock = spark, store, settings, clock
        self.warehouse = store.warehouse
        self._reader: Any = None  # the JVM-free read path, made on first use
        self.runner = runner_id()
        self.agenda = Agenda(clock(), settings.poll, settings.report_time)
        self.jobs = {name: JobState() for name in JOBS}
        self.configs: dict[str, Any] = {}
        self._triggers = {"loads": AgendaTrigger(lambda prev, now: self.agenda.next_load(prev), "loads"),
                          "probes": AgendaTrigger(lambda prev, now: self.agenda.next_probe(prev), "probes"),
                          "report": AgendaTrigger(self.agenda.next_report, "report")}
        self._funcs = {"loads": self.start_loads, "probes": self.probe_round,
                       "report": self.report_round}
        self._state = "created"
        self._started_at: Optional[dt.datetime] = None
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._notify_lock = threading.Lock()
        # the loads job runs again: a load was planned elsewhere (POST /run), or a slot
        # became free while claimable rows waited for one
        self._wanted = threading.Event()
        self.loads = LoadSlots(max(settings.parallel, 1))  # under _lock
        self._slots: Any = None  # the slots' threads, made on the first load
        self._aps: Any = None
        self._last_up: dict[str, bool] = {}
        self._last_stale_check: Optional[dt.datetime] = None

    def __repr__(self) -> str:
        return f"Scheduler({self._state}, {self.agenda!r}, runner {self.runner})"

    # ------------------------------------------------------------ the service protocol
    def state(self) -> dict[str, Any]:
        """What ``GET /health`` shows: state, runner, sources, each job, the load slots."""
        with self._lock:
            jobs = {name: job.as_dict() for name, job in self.jobs.items()}
            loads = self.loads.as_dict()
        if self._aps is not None:
            for job in self._aps.get_jobs():
                jobs[job.id]["next_run"] = iso(job.next_run_time)
        return {"attached": True, "state": self._state, "runner": self.runner,
                "spark": _spark_state(self.spark),
                "started_at": iso(self._started_at), "sources": len(self.agenda.sources),
                "probed_sources": sum(1 for s in self.agenda.sources.values() if s.probe_every),
                "jobs": jobs, "loads": loads}

    def request_run(self, config_id: str) -> None:
        """A load of ``config_id`` was planned elsewhere (``POST /run``): run it soon."""
        log.info("load of %s requested: the loads job runs now", config_id,
                 extra={"config_id": config_id})
        self._wanted.set()
        self._wake("loads", self.clock())

    def request_check(self, config_id: str) -> dict[str, Any]:
        """Probe ``config_id`` now, append the result to the health log and return it.

        Raises:
            ConfigError: no such control row, or the row is not a valid config.
        """
        from control.mapping import row_to_config
        from framework.errors import ConfigError
        from framework.ops.health import probe_many

        row = self.store.get(config_id)
        if row is None:
            raise ConfigError(f"no control row with ConfigId '{config_id}'")
        cfg = row_to_config(row)
        if cfg.is_push:
            raise ConfigError(f"{config_id} is a push source (webhook:): there is no API to probe")
        now = self.clock()
        [result] = probe_many([cfg], now=now, run_id=f"check-{self.runner}")
        self._append_checks([result])
        self.agenda.mark_probed([config_id], now)
        return result

    # ------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Read the sources and hand the jobs to APScheduler (background threads)."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.refresh()
        self._aps = BackgroundScheduler(
            timezone=dt.timezone.utc,
            executors={"default": ThreadPoolExecutor(2 * len(JOBS))},
            # A round may outlast the poll: the time that comes meanwhile finds the job
            # running and returns at once (_run_job), instead of a warning per poll.
            job_defaults={"coalesce": True, "max_instances": 2, "misfire_grace_time": None})
        for name in JOBS:
            if name == "report" and self.settings.report_time is None:
                continue
            self._aps.add_job(self._run_job, trigger=self._triggers[name], args=(name,), id=name,
                              name=name)
        self._aps.start()
        self._started_at, self._state = self.clock(), "running"
        log.info("scheduler started: %r", self)

    def prepare(self) -> None:
        """Read the sources and compute the first fire times, for :meth:`run_pending`."""
        self.refresh()
        now = self.clock()
        for name in JOBS:
            self.jobs[name].next_run = self._triggers[name].get_next_fire_time(None, now)
        self._started_at, self._state = now, "running"

    def run_pending(self) -> list[str]:
        """Run, in this thread, every job due at ``clock()``; returns their names in order.

        The loads the loads job started have ended when it returns (the job ran again
        each time a slot became free while rows waited for one).
        """
        now = self.clock()
        ran = []
        for name in JOBS:
            due = self.jobs[name].next_run
            if due is None or due > now or self._stop.is_set():
                continue
            self._run_job(name)
            if name == "loads":
                self._settle_loads()
            ran.append(name)
            self.jobs[name].next_run = self._triggers[name].get_next_fire_time(due, now)
        return ran

    def _settle_loads(self) -> None:
        while True:
            with self._lock:
                while self.loads.running:
                    self._lock.wait()
                waiting = self.loads.waiting
            if self._stop.is_set() or not waiting:
                return
            self._run_job("loads")

    def next_wakeup(self) -> Optional[dt.datetime]:
        """The earliest next fire time of the jobs (with :meth:`run_pending`)."""
        times = [j.next_run for j in self.jobs.values() if j.next_run is not None]
        return min(times) if times else None

    def request_stop(self) -> None:
        """Ask the scheduler to stop (safe in a signal handler: only sets a flag)."""
        self._stop.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until :meth:`request_stop`; True when asked to stop."""
        return self._stop.wait(timeout)

    def stop(self, grace_s: float = DEFAULT_GRACE_S) -> bool:
        """Drain: no new job or claim, the jobs and loads in flight finish, within
        ``grace_s`` seconds.

        Returns:
            True when every job and load finished in time (the health log is then flushed:
            each probe round appends before it ends, each load before it finishes).
        """
        self._stop.set()  # before the lock: a job starting loads sees it there (_fill_slots)
        self._state = "stopping"
        log.info("scheduler stopping: waiting up to %.0f s for the jobs in flight", grace_s)
        with self._lock:
            runs = {id(ctx): ctx for ctx, _ in self.loads.running.values()}
        for ctx in runs.values():  # in-flight loads stop at their next commit or page checkpoint
            ctx.request_stop("the scheduler is stopping")
        if self._aps is not None:
            self._aps.shutdown(wait=False)
        deadline = time.monotonic() + grace_s
        with self._lock:
            while self.loads.running or any(j.running for j in self.jobs.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    busy = [n for n, j in self.jobs.items() if j.running]
                    busy += [f"the load of {cid}" for cid in sorted(self.loads.running)]
                    log.error("scheduler stopped with %s still running after %.0f s",
                              ", ".join(busy), grace_s)
                    self._state = "stopped (grace exceeded)"
                    return False
                self._lock.wait(min(left, 0.5))
        if self._slots is not None:
            self._slots.shutdown(wait=False)
        self._state = "stopped"
        log.info("scheduler stopped: every job finished")
        return True

    def _wake(self, name: str, at: dt.datetime) -> None:
        if self._aps is not None:
            job = self._aps.get_job(name)
            if job is not None and (job.next_run_time is None or at < job.next_run_time):
                job.modify(next_run_time=at)
        elif self.jobs[name].next_run is None or at < self.jobs[name].next_run:
            self.jobs[name].next_run = at

    def _run_job(self, name: str) -> None:
        job = self.jobs[name]
        with self._lock:
            if self._stop.is_set() or job.running:
                return
            job.running, job.last_started = True, self.clock()
        try:
            job.last_result = self._funcs[name]() or {}
            job.last_error = None
        except Exception as exc:  # noqa: BLE001 - a failed round is logged; the next one runs
            from framework.load.runtime import sanitize_error

            job.last_error = sanitize_error(exc)
            log.error("%s round failed: %s", name, job.last_error)
        finally:
            with self._lock:
                job.running, job.last_finished = False, self.clock()
                job.runs += 1
                self._lock.notify_all()
            if name == "loads" and self._wanted.is_set() and self._aps is not None:
                # asked for while it ran, after its last look (an overlapping fire
                # returned at once): the job runs again now
                self._wake(name, self.clock())

    # --------------------------------------------------------------------- sources
    def refresh(self) -> dict[str, Any]:
        """Read the control rows: the enabled sources' configs, into the agenda."""
        from control.mapping import row_to_config
        from framework.errors import ConfigError

        configs = {}
        for row in self.store.rows():
            if row.get("Enabled") is False:
                continue
            try:
                configs[row["ConfigId"]] = row_to_config(row)
            except ConfigError as exc:
                log.error("%s: skipped: %s", row.get("ConfigId"), exc,
                          extra={"config_id": row.get("ConfigId")})
        self.configs = configs
        # Push sources (webhook:) have nothing to probe: their events come to the receiver.
        sources = [Source(c.config_id, c.schedule.time, c.schedule.frequency,
                          c.health_check.every if c.health_check.enabled and not c.is_push
                          else None)
                   for c in configs.values()]
        if self.agenda.update(sources):
            log.info("sources: %s", ", ".join(sorted(configs)) or "none")
            probed = [s for s in sources if s.probe_every is not None]
            if probed:
                last = self.jobs["probes"].last_started
                self._wake("probes", self.agenda.next_probe(last))
        return configs

    # ----------------------------------------------------------------------- loads
    def start_loads(self) -> dict[str, Any]:
        """Plan the due loads and start claimable rows on the free load slots; returns what
        it did. The loads run on the slots' threads: it returns once they started."""
        from control.generate import generate

        now = self.clock()
        self.refresh()  # the sources and their probe agenda
        planned = generate(self.store, due=True, now=now)  # the one generate --due
        started: list[str] = []
        while not self._stop.is_set():
            self._wanted.clear()
            started += self._fill_slots()
            if not self._wanted.is_set():
                break
        with self._lock:
            running, waiting = sorted(self.loads.running), self.loads.waiting
        result = {"at": iso(now), "planned": sum(1 for r in planned if r.action in ("created", "pending")),
                  "started": started, "running": running, "waiting": waiting}
        log.info("loads: %d planned, %d started%s, %d of %d slots busy, %d rows waiting for a slot",
                 result["planned"], len(started), f" ({', '.join(started)})" if started else "",
                 len(running), self.loads.parallel, waiting,
                 extra={"round": "loads", **{k: v for k, v in result.items() if k != "at"}})
        self._notify_stale(now)
        return result

    def _fill_slots(self) -> list[str]:
        """Start a load of each claimable row not in flight here, while a slot is free.

        The claim is the load's own (:func:`runtime.run` on the slot's thread), atomic as
        every claim: a row another runner took meanwhile ends ``SKIPPED`` and frees its slot.
        """
        from concurrent.futures import ThreadPoolExecutor

        from framework.load import runtime

        with self._lock:
            busy, free = set(self.loads.running), self.loads.free
        ids = [cid for cid in self.store.claimable_ids(self.clock()) if cid not in busy]
        take = ids[:free]
        with self._lock:
            self.loads.waiting = len(ids) - len(take)
        if not take:
            return []
        ctx = runtime.RunContext(self.spark, self.warehouse, self.store,
                                 runtime.staging_root(self.warehouse), runner=self.runner,
                                 lease=self.settings.lease)
        with self._lock:
            if self._stop.is_set():  # stop() came meanwhile: it drains what it saw, no more
                return []
            for cid in take:
                self.loads.running[cid] = (ctx, self.clock())
            if self._slots is None:
                self._slots = ThreadPoolExecutor(self.loads.parallel,
                                                 thread_name_prefix="restlake-load")
        for cid in take:
            self._slots.submit(self._load, runtime, ctx, cid)
        return take

    def _load(self, runtime: Any, ctx: Any, cid: str) -> None:
        """One load on its slot: claim, load, finish, audit (:func:`runtime.run`), its
        notifications; then the slot is free (and the loads job runs again at once when
        rows wait for one)."""
        outcomes: list[Any] = []
        error = None
        try:
            try:
                outcomes = runtime.run(ctx, [cid])
            except Exception as exc:  # noqa: BLE001 - logged and shown; the slot is freed
                error = f"{cid}: {runtime.sanitize_error(exc)}"
                log.error("load of %s failed: %s", cid, error, extra={"config_id": cid})
            try:
                self._notify_outcomes(outcomes, self.clock())
            except Exception as exc:  # noqa: BLE001 - a notification cannot take the slot down
                log.error("notifications of the load of %s failed: %s", cid,
                          runtime.sanitize_error(exc), extra={"config_id": cid})
        finally:
            with self._lock:
                self.loads.running.pop(cid, None)
                for o in outcomes:
                    self.loads.finished[o.status] = self.loads.finished.get(o.status, 0) + 1
                    self.loads.last_finished = {"config_id": o.config_id, "status": o.status,
                                                "at": iso(self.clock())}
                if error is not None:
                    self.loads.last_error = error
                again = self.loads.waiting > 0 and not self._stop.is_set()
                if again:
                    self._wanted.set()
                self._lock.notify_all()
        if again and self._aps is not None:  # run_pending runs it itself (_settle_loads)
            self._wake("loads", self.clock())

    # ---------------------------------------------------------------------- probes
    def probe_round(self) -> dict[str, Any]:
        """Probe the sources due now, concurrently; one health-log commit; notifications."""
        from framework.ops.health import probe_many

        now = self.clock()
        due = [cid for cid in self.agenda.probes_due(now) if cid in self.configs]
        if not due:
            return {"at": iso(now), "probed": 0}
        rows = probe_many([self.configs[c] for c in due], now=now,
                          run_id=f"probe-{now:%Y%m%dT%H%M%S}", workers=self.settings.probe_workers)
        self._append_checks(rows)
        self.agenda.mark_probed(due, now)
        down = sorted(r["ConfigId"] for r in rows if not r["Ok"])
        log.info("probe round: %d sources, %d down%s", len(rows), len(down),
                 f" ({', '.join(down)})" if down else "",
                 extra={"round": "probes", "probed": len(rows), "down": down})
        changed = [r["ConfigId"] for r in rows
                   if not r["Ok"] or self._last_up.get(r["ConfigId"]) is False]
        self._last_up.update({r["ConfigId"]: bool(r["Ok"]) for r in rows})
        if changed:
            self._notify_incidents(changed, now)
        return {"at": iso(now), "probed": len(rows), "down": down}

    def _append_checks(self, rows: list[dict[str, Any]]) -> None:
        from framework.ops.health_store import append_checks

        append_checks(self.spark, self.warehouse, rows, self.store.control_ref.catalog)

    # --------------------------------------------------------------- notifications
    def _notify(self, events: list[Any], now: dt.datetime) -> list[Any]:
        from framework.ops.notify import NotificationState, Notifier, state_path

        if not events or self.settings.notifications is None:
            return []
        with self._notify_lock:  # one state file; loads and a probe round may end at once
            state = NotificationState(state_path(self.warehouse))
            return Notifier(self.settings.notifications, state).notify(events, now)

    def _notify_outcomes(self, outcomes: list[Any], now: dt.datetime) -> None:
        """Failed loads and quality incidents of the loads that ended."""
        from framework.ops.notify import events_from_audit, quality_events

        config = self.settings.notifications
        if config is None:
            return
        events = []
        if "load_failed" in config.events:
            events += events_from_audit([o.audit for o in outcomes if o.audit])
        checked = [o.config_id for o in outcomes if o.audit]
        if checked and {"quality_failed", "quality_warned", "schema_drift"} & set(config.events):
            events += quality_events(self.queries(), now, config_ids=checked, sla=False)
        self._notify(events, now)

    def _notify_stale(self, now: dt.datetime) -> None:
        """Stale sources and missed SLAs, at most every ``stale_every`` (the loads job)."""
        from framework.ops.notify import events_from_freshness, quality_events

        config = self.settings.notifications
        last = self._last_stale_check
        if config is None or (last is not None and now - last < self.settings.stale_every):
            return
        self._last_stale_check = now
        events = []
        if "stale" in config.events:
            events += events_from_freshness(self.queries().freshness(now=now))
        if "sla_missed" in config.events:
            events += quality_events(self.queries(), now, checks=False)
        self._notify(events, now)

    def _notify_incidents(self, config_ids: list[str], now: dt.datetime) -> None:
        """Down (after ``down_after`` failed checks) and up, from the health log as of
        ``now`` (the scheduler's clock: a check after it does not count)."""
        from framework.ops.notify import outage_events

        config = self.settings.notifications
        if config is None or not {"down", "up"} & set(config.events):
            return
        self._notify(outage_events(self.queries(), now, config.down_after, config_ids), now)

    def queries(self) -> Any:
        """The read questions over the warehouse (:class:`framework.ops.queries.Queries`):
        delta-rs and DuckDB, cached by table version; Spark only without a local root."""
        from framework.lake.reader import TableReader
        from framework.ops.queries import Queries

        with self._lock:  # the loads job and the load slots ask at once
            if self._reader is None:
                self._reader = TableReader(self.warehouse, spark_factory=lambda: self.spark)
        return Queries(self._reader, self.store.control_ref.catalog, clock=self.clock)

    # ---------------------------------------------------------------------- report
    def report_round(self) -> dict[str, Any]:
        """Write the daily report to ``report_out``."""
        from framework.ops.monitoring import write_daily_report

        now = self.clock()
        _, paths = write_daily_report(self.queries(), self.settings.report_out or "ops",
                                      days=self.settings.report_days, now=now)
        log.info("daily report written: %s", ", ".join(str(p) for p in paths))
        return {"at": iso(now), "files": [str(p) for p in paths]}


def _spark_state(spark: Any) -> str:
    """``starting``, ``up`` or ``failed`` for a session starting in the background
    (:class:`~framework.lake.spark.SparkStarting`); ``up`` for a session given started."""
    if getattr(spark, "failure", None) is not None:
        return "failed"
    return "up" if getattr(spark, "ready", True) else "starting"
