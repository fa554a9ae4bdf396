"""One load end to end: claim -> windows -> fetch -> stage -> write Delta -> audit.

``runtime.run`` is the entry point every front end calls (the CLI, wheel tasks,
notebooks, the scheduler); ``fetch`` holds the fetch stack that reads windows,
``writers`` commits staged windows, ``distributed`` runs the same fetch stack inside
Spark tasks, ``audit`` builds the audit row of every run (loads, replays and
pushes), ``lease`` keeps and fences a claim, ``signals`` drains a run on SIGTERM/SIGINT
(``RunContext.request_stop`` is the same drain for any other caller).
"""

from typing import Any

_EXPORTS = {
    "RunContext": "framework.load.runtime", "LoadOutcome": "framework.load.runtime",
    "run": "framework.load.runtime", "run_load": "framework.load.runtime",
    "staging_root": "framework.load.runtime", "new_run_id": "framework.load.runtime",
    "fetch_window": "framework.load.fetch", "WindowResult": "framework.load.fetch",
    "WindowFetcher": "framework.load.fetch", "audit_record": "framework.load.audit",
    "TargetWriter": "framework.load.writers", "WriteResult": "framework.load.writers",
    "RunStaging": "framework.load.staging", "WindowStage": "framework.load.staging",
    "LeaseKeeper": "framework.load.lease", "drain_on_signals": "framework.load.signals",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not import the control store (and pyspark).
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'framework.load' has no attribute {name!r}")
