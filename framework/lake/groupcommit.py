"""Group commit: the writes of concurrent loads to one table share one Delta commit (no Spark).

Loads that run at once in one process each append their window-log, health-log and
audit rows and finish their control rows. A :class:`GroupCommit` lets them share
commits without changing what each of them can rely on: a caller hands its item in and
waits; the first waiting caller becomes the leader and commits every item waiting at
that moment in one go, while the items that arrive meanwhile wait for the next commit.
:meth:`GroupCommit.submit` returns only once the commit holding the item is done (or
raises its error), so a caller's rows are durable when it goes on, exactly as with a
commit of its own; a crash loses only items whose callers were still waiting.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Ticket(Generic[T]):
    item: T
    on_commit: Optional[Callable[[], None]] = None
    done: bool = False
    result: Any = None
    error: Optional[BaseException] = None


class GroupCommit(Generic[T, R]):
    """Commits the items of concurrent callers in shared batches.

    Args:
        commit: writes a batch in one commit; returns one result per item, in order.
        name: what is committed (for ``repr``).
    """

    def __init__(self, commit: Callable[[Sequence[T]], Sequence[R]], name: str) -> None:
        self._commit = commit
        self.name = name
        self._cond = threading.Condition()
        self._queue: list[_Ticket[T]] = []
        self._busy = False
        self.commits = 0  # batches committed (for tests and benches)
        self.items = 0

    def __repr__(self) -> str:
        return f"GroupCommit({self.name}: {self.items} items in {self.commits} commits)"

    def submit(self, item: T, on_commit: Optional[Callable[[], None]] = None) -> R:
        """Commit ``item`` with whatever else is waiting; returns its result.

        Args:
            on_commit: called once the commit holding ``item`` starts (while the item
                waits, the caller's other work, such as a lease's heartbeat, goes on).

        Raises:
            whatever the commit of its batch raised.
        """
        ticket: _Ticket[T] = _Ticket(item, on_commit)
        batch: list[_Ticket[T]] = []
        with self._cond:
            self._queue.append(ticket)
            while not ticket.done:
                if not self._busy:
                    self._busy = True
                    batch, self._queue = self._queue, []
                    break
                self._cond.wait()
        if batch:
            self._lead(batch)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def _lead(self, batch: list[_Ticket[T]]) -> None:
        try:
            for ticket in batch:
                if ticket.on_commit is not None:
                    ticket.on_commit()
            results = list(self._commit([t.item for t in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} items")
            for ticket, result in zip(batch, results):
                ticket.result = result
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch sees it
            for ticket in batch:
                ticket.error = exc
        finally:
            with self._cond:
                for ticket in batch:
                    ticket.done = True
                self.commits += 1
                self.items += len(batch)
                self._busy = False
                self._cond.notify_all()
