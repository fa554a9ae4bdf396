"""Draining a run on SIGTERM / SIGINT: the first signal drains, a second one exits now.

A scheduler that cancels a job sends SIGTERM (Ctrl-C sends SIGINT). The first signal
calls :meth:`RunContext.request_stop`: no new claims or windows, in-flight windows reach
a commit or page checkpoint, and every claimed row goes back to PENDING, so no row is
left RUNNING. A second signal exits at once with the signal's default action, as a kill
would (rows still RUNNING are taken over when their lease ends).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional

log = logging.getLogger(__name__)

DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalDrain:
    """What :func:`drain_on_signals` saw: the first signal received, if any."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    @property
    def exit_code(self) -> Optional[int]:
        """``128 + signal`` once a signal stopped the run (143 for SIGTERM, 130 for SIGINT)."""
        return None if self.signum is None else 128 + self.signum

    def __repr__(self) -> str:
        name = signal.Signals(self.signum).name if self.signum else "none"
        return f"SignalDrain(received={name})"


@contextmanager
def drain_on_signals(ctx: Any, signals: tuple[int, ...] = DRAIN_SIGNALS) -> Iterator[SignalDrain]:
    """Within the block, the first of ``signals`` drains ``ctx``; a second one exits now.

    The previous handlers are restored on exit. Outside the main thread (where Python
    cannot install handlers) it installs nothing; the caller stops ``ctx`` itself.
    """
    drain = SignalDrain()
    if threading.current_thread() is not threading.main_thread():
        yield drain
        return

    def handle(signum: int, _frame: Any) -> None:
        if drain.signum is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        drain.signum = signum
        ctx.request_stop(f"{signal.Signals(signum).name} received")

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield drain
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
