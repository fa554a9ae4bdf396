"""Named crash points for the crash-recovery harness (zero cost when unused).

``RESTLAKE_CRASH_AT=<point>:<n>`` kills the process with SIGKILL the ``n``-th time
(1-based) execution reaches ``crashpoint(<point>)``. Tests use it to stop a load at an
exact step (after the claim, between the target commit and the window log, before the
audit row, ...) and then prove that a rerun ends with the target equal to the source.
"""

from __future__ import annotations

import os
import signal
import threading

POINTS = (
    "after_claim",
    "page_fetched",
    "window_staged",
    "before_target_commit",
    "after_target_commit",
    "after_window_log",
    "before_control_finish",
    "after_control_finish",
    "before_audit",
)

_lock = threading.Lock()
_counts: dict[str, int] = {}
_target = os.environ.get("RESTLAKE_CRASH_AT")


def crashpoint(name: str) -> None:
    """Die here (SIGKILL, no cleanup) when ``RESTLAKE_CRASH_AT`` names this point and count."""
    if not _target:
        return
    point, _, nth = _target.partition(":")
    if point != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == int(nth or 1)
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
