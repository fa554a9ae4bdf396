"""Distributed fetch: the windows of one load become Spark tasks fetched on the executors.

For loads that outgrow one driver. ``spark.range(n, numPartitions=n)`` gives one
partition per window, and ``mapInArrow`` runs the same :func:`~framework.load.fetch.fetch_window`
as the threaded fetch inside each task: the window's rows stream to the run's staging
folder, and the task returns one small stats row (counts, staged files, schema seen,
telemetry, or the window's error). The driver turns those rows back into
:class:`~framework.load.fetch.WindowResult` objects, so the writer path (overwrite, MERGE in
window order, window log, quarantine) is exactly the threaded fetch's.

Rate budget: a task cannot share a token bucket with tasks in other processes, so each
task owns ``requests_per_second / slots`` where ``slots`` is how many tasks can run at
once (``min(windows, executor cores)``); the tasks together never exceed the budget. A
429 pauses the task that received it (the others slow down through their own shares).

Requirements:

* the staging root (``RESTLAKE_STAGING``) is storage that the driver and the executors
  share: any local folder on ``local[N]``; a Unity Catalog volume (``/Volumes/...``) or
  DBFS path on a Databricks cluster;
* secret references resolve on the executors (``env:`` variables set on the cluster,
  ``file:`` paths on shared storage);
* custom parsers are importable on the executors (installed with the wheel).

Spark is imported lazily: this module is safe to import without pyspark.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from framework import errors
from framework.http.auth import build_auth
from framework.config import SourceConfig
from framework.errors import RestlakeError, WindowError
from framework.load.fetch import WindowResult, fetch_window
from framework.http.client import HttpClient, source_session
from framework.http.ratelimit import RateLimiter
from framework.http.retry import RetryPolicy
from framework.schema import ColumnType, RowShaper, SchemaTracker
from framework.load.staging import RunStaging, WindowStage
from framework.http.telemetry import Telemetry
from framework.windows import Window

#: The stats row each task returns (one per window).
RESULT_SCHEMA = "index long, outcome string"

Outcome = tuple[int, Window, Future]


class WindowFetcher:
    """Fetches windows of one load into staging: one pooled session, auth and limiter.

    The composition the runtime's threaded fetch uses (client, shaper, staging per
    window), reusable where there is no runtime: inside a Spark task, in benchmarks.
    Thread-safe: call it from several threads.

    Args:
        cfg: the source.
        run_id: lineage of the staged rows.
        staging: the run's staging folder.
        columns: the target's data columns (``None`` when it does not exist yet).
        limiter: the rate budget to draw from (``None``: unlimited).
        pool_size: connections kept to the host (match the number of threads).
    """

    def __init__(self, cfg: SourceConfig, run_id: str, staging: RunStaging,
                 columns: Optional[dict[str, ColumnType]], limiter: Optional[RateLimiter],
                 pool_size: int = 4) -> None:
        self.cfg, self.run_id, self.staging, self.columns = cfg, run_id, staging, columns
        self.limiter = limiter
        self.pool_size = pool_size
        self.session = source_session(pool_size)
        self.auth = build_auth(cfg.auth.model_dump(exclude_none=True), self.session)
        self.policy = RetryPolicy(max_retries=cfg.limits.max_retries,
                                  backoff_base_s=cfg.limits.backoff_base_s,
                                  backoff_max_s=cfg.limits.backoff_max_s)

    def __call__(self, index: int, window: Window) -> WindowResult:
        cfg = self.cfg
        client = HttpClient(self.auth, self.policy, cfg.limits.timeout_s, self.limiter, Telemetry(),
                            self.session, cfg.limits.max_body_bytes, allow_post=cfg.allow_post,
                            pool_size=self.pool_size)
        shaper = RowShaper(cfg.system, tuple(cfg.primary_key), tuple(cfg.required_fields),
                           self.columns, cfg.schema_mode)
        return fetch_window(cfg, client, shaper, window, index, self.staging.window(index),
                            self.run_id)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "WindowFetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WindowFetcher({self.cfg.config_id} -> {self.staging.folder}, {self.limiter!r})"


# ---------------------------------------------------------------- stats rows (no Spark)

def result_to_json(result: WindowResult) -> str:
    """The stats of a fetched window, as the task sends them to the driver."""
    stage = result.stage
    return json.dumps({
        "records": result.records, "pages": result.pages, "expected": result.expected,
        "new_fields": sorted(result.new_fields), "rescued_rows": result.rescued_rows,
        "retyped": result.retyped,
        "checkpoint": result.checkpoint,
        "telemetry": result.telemetry.as_dict() if result.telemetry is not None else None,
        "stage": {"folder": str(stage.folder), "files": [str(p) for p in stage.files],
                  "rows": stage.rows, "rejected": stage.rejected,
                  "columns": {k: (v.value if v else None) for k, v in stage.tracker.columns.items()}},
    }, default=str)


def error_to_json(exc: BaseException) -> str:
    """A window's failure, keeping its error class for the driver."""
    if isinstance(exc, RestlakeError):
        kind, message = type(exc).__name__, exc.message if hasattr(exc, "message") else str(exc)
    else:
        kind, message = "WindowError", f"{type(exc).__name__}: {exc}"
    return json.dumps({"error": {"type": kind, "message": str(message),
                                 "status": getattr(exc, "status", None)}})


def result_from_json(index: int, window: Window, text: str) -> WindowResult:
    """Rebuild a :class:`WindowResult` from a task's stats (raises the window's error)."""
    data = json.loads(text)
    if "error" in data:
        raise rebuild_error(data["error"])
    st = data["stage"]
    tracker = SchemaTracker({k: (ColumnType(v) if v else None) for k, v in st["columns"].items()})
    stage = WindowStage.completed(index, Path(st["folder"]), [Path(p) for p in st["files"]],
                                  rows=st["rows"], rejected=st["rejected"], tracker=tracker)
    return WindowResult(index, window, stage, records=data["records"], pages=data["pages"],
                        expected=data["expected"], new_fields=set(data["new_fields"]),
                        rescued_rows=data["rescued_rows"], retyped=data.get("retyped") or {},
                        checkpoint=data["checkpoint"],
                        telemetry=telemetry_from_dict(data["telemetry"] or {}))


def rebuild_error(info: dict[str, Any]) -> RestlakeError:
    """The driver-side exception of a window that failed on an executor."""
    cls = getattr(errors, str(info.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, RestlakeError)):
        cls = WindowError
    message = str(info.get("message"))
    try:
        if info.get("status") is not None and issubclass(cls, errors.HttpError):
            return cls(message, status=info["status"])
        return cls(message)
    except TypeError:
        return WindowError(message)


def telemetry_from_dict(data: dict[str, Any]) -> Telemetry:
    tel = Telemetry()
    for name in Telemetry._COUNTERS:
        setattr(tel, name, int(data.get(name, 0) or 0))
    tel.status_counts = dict(data.get("status_counts") or {})
    return tel


def task_share(requests_per_second: Optional[float], slots: int) -> Optional[float]:
    """Each task's rate budget: the load's budget split over the tasks running at once."""
    if not requests_per_second:
        return None
    return requests_per_second / max(1, slots)


# ---------------------------------------------------------------- Spark edge

def task_slots(spark: Any) -> int:
    """How many tasks the cluster runs at once (``local[N]`` → N)."""
    try:
        sc = spark.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return int(spark.conf.get("spark.default.parallelism", "8"))
    match = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", sc.master or "")
    if match:
        return os.cpu_count() or 1 if match.group(1) == "*" else int(match.group(1))
    if sc.master == "local":
        return 1
    return max(1, sc.defaultParallelism)


def _fetch_task(cfg: SourceConfig, todo: list[tuple[int, Window]], run_id: str, staging: RunStaging,
                columns: Optional[dict[str, ColumnType]], share: Optional[float]
                ) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function each task runs: fetch its windows, yield one stats row per window."""

    def fetch(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        limiter = RateLimiter(share)
        with WindowFetcher(cfg, run_id, staging, columns, limiter, pool_size=1) as fetcher:
            for batch in batches:
                positions = batch.column(0).to_pylist()
                indexes, outcomes = [], []
                for pos in positions:
                    index, window = todo[pos]
                    try:
                        outcome = result_to_json(fetcher(index, window))
                    except Exception as exc:  # noqa: BLE001 - sent to the driver, raised there
                        outcome = error_to_json(exc)
                    indexes.append(index)
                    outcomes.append(outcome)
                yield pa.RecordBatch.from_arrays([pa.array(indexes, pa.int64()),
                                                  pa.array(outcomes, pa.string())],
                                                 names=["index", "outcome"])

    return fetch


def fetch_windows_distributed(spark: Any, cfg: SourceConfig, todo: list[tuple[int, Window]],
                              run_id: str, staging: RunStaging,
                              columns: Optional[dict[str, ColumnType]],
                              slots: Optional[int] = None) -> list[Outcome]:
    """Fetch ``todo`` (``(index, window)`` pairs) on the executors, one task per window.

    Returns:
        ``(index, window, future)`` in ``todo`` order, every future already done: its
        result is the window's :class:`WindowResult` (staged like the threaded fetch's),
        or it raises the window's error. The runtime's commit loop consumes them as it
        consumes the thread pool's futures.

    Raises:
        Exception: Spark itself failed (a task crashed outside the fetch); the load fails.
    """
    if not todo:
        return []
    slots = slots or task_slots(spark)
    share = task_share(cfg.limits.requests_per_second, min(len(todo), slots))
    frame = spark.range(len(todo), numPartitions=len(todo))
    stats = frame.mapInArrow(_fetch_task(cfg, todo, run_id, staging, columns, share),
                             RESULT_SCHEMA).collect()
    by_index = {row["index"]: row["outcome"] for row in stats}
    outcomes: list[Outcome] = []
    for index, window in todo:
        future: Future = Future()
        text = by_index.get(index)
        try:
            if text is None:
                raise WindowError(f"window {window.key}: no result came back from the executors")
            future.set_result(result_from_json(index, window, text))
        except Exception as exc:  # noqa: BLE001 - delivered through the future
            future.set_exception(exc)
        outcomes.append((index, window, future))
    return outcomes
