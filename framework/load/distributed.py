"""Distributed fetch: the windows of one load become Spark tasks fetched on the executors.

For loads that outgrow one driver. ``spark.range(n, numPartitions=n)`` gives one
partition per window, and ``mapInArrow`` runs the load's fetch stack
(:class:`~framework.load.fetch.WindowFetcher`, the one the threaded runtime uses) inside
each task: the window's rows, raw pages (``archive: true``) and page batches
(``limits.pages_per_commit``) stream to the run's staging folder, and the task returns
one small stats row per window. The driver turns those rows back into the pieces the
runtime's commit loop consumes, in window order, exactly as it consumes the thread pool's:

* a :class:`~framework.load.fetch.StagedSegment` per page batch, which the driver
  commits with its checkpoint before the rest of its window (a task stages its batches;
  only the driver commits);
* then the window's :class:`~framework.load.fetch.WindowResult`, or its error (a window
  that failed after some batches still has those batches committed first, so a rerun
  resumes after them, as on the threaded path).

The request outcomes a task's health recorder saw travel back in the same row; the
driver takes them into the load's recorder, which appends them to the health log once
per load (:func:`framework.ops.health_store.flush_load_health`). The completeness check
runs inside the fetch, so ``completeness: strict`` fails the window on either path.

What the distributed path cannot do: commit a page batch while its window is still
being read (batches are committed when the task is done, so a driver crash loses the
batches staged since its last commit and the rerun reads them again), and crash
points (``RESTLAKE_CRASH_AT``) inside a task.

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
from framework.config import SourceConfig
from framework.errors import RestlakeError, WindowError
from framework.http.ratelimit import RateLimiter
from framework.http.telemetry import Telemetry
from framework.load.fetch import StagedSegment, WindowFetcher, WindowResult
from framework.load.staging import RunStaging, WindowStage
from framework.schema import ColumnType, SchemaTracker
from framework.windows import Window

#: The stats row each task returns (one per window).
RESULT_SCHEMA = "index long, outcome string"

Piece = tuple[int, Window, Future]


# ---------------------------------------------------------------- stats rows (no Spark)

def stage_to_dict(stage: WindowStage) -> dict[str, Any]:
    """A closed stage, as a task sends it to the driver."""
    return {"folder": str(stage.folder), "files": [str(p) for p in stage.files],
            "rows": stage.rows, "rejected": stage.rejected,
            "columns": {k: (v.value if v else None) for k, v in stage.tracker.columns.items()},
            "wide": sorted(stage.tracker.wide)}


def stage_from_dict(index: int, data: dict[str, Any]) -> WindowStage:
    """The driver's handle on a stage a task wrote (its files are not touched)."""
    tracker = SchemaTracker({k: (ColumnType(v) if v else None) for k, v in data["columns"].items()},
                            set(data.get("wide") or ()))
    return WindowStage.completed(index, Path(data["folder"]), [Path(p) for p in data["files"]],
                                 rows=data["rows"], rejected=data["rejected"], tracker=tracker)


def result_to_json(result: WindowResult, segments: list[StagedSegment] = (),
                   health: Optional[dict[str, Any]] = None) -> str:
    """The stats of a fetched window, as the task sends them to the driver."""
    return json.dumps({
        "records": result.records, "pages": result.pages, "expected": result.expected,
        "new_fields": sorted(result.new_fields), "new_keys": result.new_keys,
        "rescued_rows": result.rescued_rows,
        "retyped": result.retyped,
        "checkpoint": result.checkpoint, "resumed_from": result.resumed_from,
        "earlier_records": result.earlier_records, "stage_seconds": result.stage_seconds,
        "telemetry": result.telemetry.as_dict() if result.telemetry is not None else None,
        "stage": stage_to_dict(result.stage), **_extras(segments, health),
    }, default=str)


def error_to_json(exc: BaseException, segments: list[StagedSegment] = (),
                  health: Optional[dict[str, Any]] = None) -> str:
    """A window's failure, keeping its error class, and the batches staged before it."""
    if isinstance(exc, RestlakeError):
        kind, message = type(exc).__name__, exc.message if hasattr(exc, "message") else str(exc)
    else:
        kind, message = "WindowError", f"{type(exc).__name__}: {exc}"
    telemetry = getattr(exc, "telemetry", None)
    return json.dumps({"error": {"type": kind, "message": str(message),
                                 "status": getattr(exc, "status", None)},
                       "telemetry": telemetry.as_dict() if telemetry is not None else None,
                       **_extras(segments, health)}, default=str)


def _extras(segments: list[StagedSegment], health: Optional[dict[str, Any]]) -> dict[str, Any]:
    return {"segments": [{"checkpoint": s.checkpoint, "stage": stage_to_dict(s.stage)}
                         for s in segments],
            "health": health}


def pieces_from_json(index: int, window: Window, text: str) -> list[Any]:
    """What the driver commits for one window, in order: its staged page batches, then
    its :class:`WindowResult` or the window's error (an exception instance)."""
    data = json.loads(text)
    out: list[Any] = [StagedSegment(index, window, stage_from_dict(index, s["stage"]),
                                    s["checkpoint"]) for s in data.get("segments") or ()]
    if "error" in data:
        error = rebuild_error(data["error"])
        if data.get("telemetry"):
            error.telemetry = Telemetry.from_dict(data["telemetry"])  # type: ignore[attr-defined]
        out.append(error)
        return out
    out.append(WindowResult(index, window, stage_from_dict(index, data["stage"]),
                            records=data["records"], pages=data["pages"],
                            expected=data["expected"], new_fields=set(data["new_fields"]),
                            new_keys=data.get("new_keys") or {},
                            rescued_rows=data["rescued_rows"], retyped=data.get("retyped") or {},
                            checkpoint=data["checkpoint"],
                            telemetry=Telemetry.from_dict(data["telemetry"] or {}),
                            resumed_from=data.get("resumed_from"),
                            earlier_records=data.get("earlier_records"),
                            stage_seconds=data.get("stage_seconds") or 0.0))
    return out


def result_from_json(index: int, window: Window, text: str) -> WindowResult:
    """Rebuild a :class:`WindowResult` from a task's stats (raises the window's error)."""
    last = pieces_from_json(index, window, text)[-1]
    if isinstance(last, BaseException):
        raise last
    return last


def health_from_json(text: str) -> Optional[dict[str, Any]]:
    """The request outcomes the task's health recorder drained, if any."""
    return json.loads(text).get("health")


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


def _fetch_task(cfg: SourceConfig, todo: list[tuple[int, Window]], run_id: str,
                load_id: Optional[str], staging: RunStaging,
                columns: Optional[dict[str, ColumnType]], share: Optional[float],
                batched: bool, resume: dict[int, dict[str, Any]]
                ) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function each task runs: fetch its windows, yield one stats row per window."""

    def fetch(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        from framework.logs import log_context
        from framework.ops.health import HealthRecorder

        health = HealthRecorder(cfg.config_id, cfg.system, run_id)
        with WindowFetcher(cfg, run_id, staging, columns, RateLimiter(share), load_id=load_id,
                           pool_size=1, health=health) as fetcher:
            for batch in batches:
                indexes, outcomes = [], []
                for pos in batch.column(0).to_pylist():
                    index, window = todo[pos]
                    segments: list[StagedSegment] = []
                    options = ({"on_segment": segments.append, "resume": resume.get(index)}
                               if batched else {})
                    try:
                        with log_context(config_id=cfg.config_id, run_id=run_id,
                                         window=window.key):
                            result = fetcher(index, window, **options)
                        outcome = result_to_json(result, segments, health.drain())
                    except Exception as exc:  # noqa: BLE001 - sent to the driver, raised there
                        outcome = error_to_json(exc, segments, health.drain())
                    indexes.append(index)
                    outcomes.append(outcome)
                yield pa.RecordBatch.from_arrays([pa.array(indexes, pa.int64()),
                                                  pa.array(outcomes, pa.string())],
                                                 names=["index", "outcome"])

    return fetch


def fetch_windows_distributed(spark: Any, cfg: SourceConfig, todo: list[tuple[int, Window]],
                              run_id: str, staging: RunStaging,
                              columns: Optional[dict[str, ColumnType]], *,
                              load_id: Optional[str] = None, batched: bool = False,
                              resume: Optional[dict[int, dict[str, Any]]] = None,
                              health: Any = None, slots: Optional[int] = None) -> list[Piece]:
    """Fetch ``todo`` (``(index, window)`` pairs) on the executors, one task per window.

    Args:
        load_id: the load the windows belong to (archived with the raw pages).
        batched: stage page batches (``limits.pages_per_commit``) for the driver to commit.
        resume: by window index, the checkpoint of its last committed page batch.
        health: the load's :class:`~framework.ops.health.HealthRecorder`; the tasks'
            request outcomes are added to it.

    Returns:
        ``(index, window, future)`` pieces in window order, every future already done:
        its result is a :class:`StagedSegment` (commit it) or the window's
        :class:`WindowResult` (staged like the threaded fetch's), or it raises the
        window's error. The runtime's commit loop consumes them as it consumes the
        thread pool's futures.

    Raises:
        Exception: Spark itself failed (a task crashed outside the fetch); the load fails.
    """
    if not todo:
        return []
    slots = slots or task_slots(spark)
    share = task_share(cfg.limits.requests_per_second, min(len(todo), slots))
    frame = spark.range(len(todo), numPartitions=len(todo))
    task = _fetch_task(cfg, todo, run_id, load_id, staging, columns, share, batched, resume or {})
    stats = frame.mapInArrow(task, RESULT_SCHEMA).collect()
    by_index = {row["index"]: row["outcome"] for row in stats}
    out: list[Piece] = []
    for index, window in todo:
        text = by_index.get(index)
        if text is None:
            pieces: list[Any] = [WindowError(f"window {window.key}: no result came back from "
                                             "the executors")]
        else:
            drained = health_from_json(text)
            if health is not None and drained:
                health.absorb(drained)
            pieces = pieces_from_json(index, window, text)
        for piece in pieces:
            future: Future = Future()
            if isinstance(piece, BaseException):
                future.set_exception(piece)
            else:
                future.set_result(piece)
            out.append((index, window, future))
    return out
