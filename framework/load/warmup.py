"""A throwaway Delta write while a load's windows are fetched: the target write runs warm.

A JVM's first Delta write pays a cost of its own whatever its size: the JIT compiling the
JSON reader, the Parquet writer and Delta's commit path, and Spark's code generation
(measured on a fresh local session: a 1M-row write takes ~30 s cold and ~19 s after one
window of the same rows was written first; that first small write takes ~14 s). Every
``restlake run`` is a fresh process with a fresh JVM, so its first target write pays it
after the fetch, on the load's wall time.

When a load's first target commit waits for more windows than the first one staged (a
full load; an incremental load committing several windows at once), the first staged
window is written to a throwaway Delta table in the run's staging folder while the other
windows are fetched. Only:

* once per process (after any Delta write the JVM is warm: ``serve`` and ``scheduler``
  warm once), one at a time (loads run in parallel offer theirs; one runs), and only on a
  local warehouse (a cluster's JVM outlives the job);
* never in the load's way: it is cancelled (its Spark job group) when the target write is
  about to start, and its failure is logged at debug level and changes nothing;
* never on the target: it reads the staged files (read-only) and writes below the run's
  staging folder, which the run removes.

``RESTLAKE_WARMUP=off`` turns it off. Nothing here imports Spark at module level.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Optional

from framework.lake.classes import OFF
from framework.secrets import redact

log = logging.getLogger(__name__)

FOLDER = "_warmup"  # below the run's staging folder

_warm = threading.Event()  # a Delta write finished in this process: its JVM is warm
_slot = threading.Lock()  # one warm-up at a time in a process (``run --parallel`` loads)


def mark_warm() -> None:
    """A Delta write of this process finished: later loads need no warm-up."""
    _warm.set()


def is_warm() -> bool:
    return _warm.is_set()


def enabled(environ: Optional[dict[str, str]] = None) -> bool:
    """``RESTLAKE_WARMUP`` is not ``off``."""
    env = os.environ if environ is None else environ
    return env.get("RESTLAKE_WARMUP", "").strip().lower() not in OFF


class WriteWarmup:
    """Warms the JVM with one staged window while a load fetches the others.

    Args:
        writer: the load's :class:`~framework.load.writers.TargetWriter` (its ``spark``
            may still be starting: the warm-up waits for it in its own thread).
        staged_with: the columns the load's rows are staged against (``None``: no target).
        folder: the run's staging folder; the throwaway table goes below it.
    """

    def __init__(self, writer: Any, staged_with: Any, folder: Path) -> None:
        self.writer, self.staged_with = writer, staged_with
        self.path = Path(folder) / FOLDER
        self.group = f"restlake-warmup-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self._over = False  # the target write is about to start: no warm-up from now on
        self._thread: Optional[threading.Thread] = None
        self._spark: Any = None  # set once the warm-up's jobs may run

    def offer(self, stage: Any) -> bool:
        """A window is staged and the load's first commit waits for more: start the
        warm-up with it unless the process is warm or a warm-up already started.

        Returns:
            whether this call started it.
        """
        with self._lock:
            if self._over or self._thread is not None or is_warm():
                return False
            if not _slot.acquire(blocking=False):
                return False  # another load's warm-up runs: this load may offer again
            self._thread = threading.Thread(target=self._run, args=(stage,), daemon=True,
                                            name="restlake-warmup")
            self._thread.start()
            return True

    def _run(self, stage: Any) -> None:
        try:
            spark = self.writer.spark
            sc = spark.sparkContext  # waits for a session still starting
            with self._lock:
                if self._over:
                    return
                sc.setJobGroup(self.group, "restlake: warm-up write (throwaway)", True)
                self._spark = spark
            if self.writer.warm_up(stage, self.staged_with, self.path):
                mark_warm()
                log.debug("%s: the warm-up write finished", self.writer.config_id)
        except Exception as exc:  # noqa: BLE001 - a warm-up never fails a load
            log.debug("%s: warm-up write not done: %s: %s", self.writer.config_id,
                      type(exc).__name__, redact(str(exc))[:200])
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
            _slot.release()

    def finish(self) -> None:
        """Before the target write (or when the load ends): no warm-up starts from now on;
        one still running is cancelled and awaited (its folder is removed)."""
        with self._lock:
            self._over = True
            thread, spark = self._thread, self._spark
        if thread is None:
            return
        # cancelled until it ends: a job it submits just after a cancel is cancelled next
        while thread.is_alive():
            if spark is not None:
                try:
                    spark.sparkContext.cancelJobGroup(self.group)
                except Exception as exc:  # noqa: BLE001
                    log.debug("could not cancel the warm-up write: %s", type(exc).__name__)
            thread.join(0.2)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def __repr__(self) -> str:
        return f"WriteWarmup({self.writer.config_id}, started={self.started})"
