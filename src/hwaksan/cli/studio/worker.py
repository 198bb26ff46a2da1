"""One worker thread per model: its runs one at a time, first in first out.

A run waiting behind others is told its place (``queued {"position": k}``, k runs ahead of it)
when it joins and whenever the place changes; a run cancelled while it waits leaves the queue.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from .runs import Run

__all__ = ["ModelWorker"]


class ModelWorker:
    """Runs jobs ``job() -> None`` of one model in a daemon thread, one at a time."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._pending: deque[tuple[Run, Callable[[], None]]] = deque()
        self._busy: Run | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._told: dict[str, int] = {}

    def submit(self, run: Run, job: Callable[[], None]) -> int:
        """Queue ``job`` for ``run``; returns its position (0: it runs next, nothing ahead)."""
        with self._cond:
            self._pending.append((run, job))
            position = len(self._pending) - 1 + (self._busy is not None)
            if position:
                self._tell(run, position)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return position

    def withdraw(self, run: Run) -> bool:
        """Take ``run`` out of the queue if it is still waiting; returns whether it was."""
        with self._cond:
            for item in self._pending:
                if item[0] is run:
                    self._pending.remove(item)
                    self._told.pop(run.id, None)
                    self._announce()
                    return True
        return False

    def _announce(self) -> None:
        """Tell every waiting run its position (under the lock)."""
        ahead = self._busy is not None
        for i, (run, _) in enumerate(self._pending):
            self._tell(run, i + ahead)

    def _tell(self, run: Run, position: int) -> None:
        """Emit ``queued`` when ``run``'s position changed (under the lock)."""
        if self._told.get(run.id) != position:
            self._told[run.id] = position
            run.emit("queued", {"position": position})

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                run, job = self._pending.popleft()
                self._told.pop(run.id, None)
                self._busy = run
                self._announce()
            try:
                job()
            finally:
                with self._cond:
                    self._busy = None
