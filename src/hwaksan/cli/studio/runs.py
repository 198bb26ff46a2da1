"""A studio run's record: its events in order, its results, and the bounded store of runs.

A run's events are appended by its worker thread and read by any number of event streams, each
at its own index, woken by a listener on every new event; the last event is exactly one of
:data:`FINAL`.
"""

from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FINAL", "Run", "RunCancelled", "RunStore"]

FINAL = ("done", "cancelled", "error")
"""The events that end a run."""


class RunCancelled(Exception):
    """Raised in the sampler's callback to stop a cancelled run at its next step."""


@dataclass
class Run:
    """One studio run.

    Attributes:
        id: the id the API names it by.
        model: the served model's id.
        command: the ``hwaksan`` command that reproduces it.
        folder: its files (uploads); removed when the run leaves the store.
        events: ``(name, data)`` in order.
        result_png: the final grid (or a 2-D model's scatter plot), once done.
        points_csv: a 2-D model's samples as ``hwaksan sample`` writes them, once done.
    """

    id: str
    model: str
    command: str
    folder: Path
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    result_png: bytes | None = None
    points_csv: str | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: list[Callable[[], None]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1][0] in FINAL

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Append an event (nothing after a final one) and call the listeners."""
        with self._lock:
            if self.finished:
                return
            self.events.append((name, data))
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from the emitting thread) after every new event."""
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def check_cancelled(self) -> None:
        """Raise :class:`RunCancelled` once a cancel was asked for."""
        if self.cancel_requested.is_set():
            raise RunCancelled

    def compact(self) -> None:
        """Drop the previews and points of the step events (an old run's memory); the event
        count and the final event stay."""
        with self._lock:
            self.events = [
                (name, {k: v for k, v in data.items() if k not in ("preview", "points")})
                if name == "step"
                else (name, data)
                for name, data in self.events
            ]


class RunStore:
    """The runs by id, bounded: past ``keep`` runs the oldest finished ones leave (their folders
    removed), and finished runs past the newest ``full`` keep no previews (:meth:`Run.compact`)."""

    def __init__(self, keep: int = 50, full: int = 8) -> None:
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._keep, self._full = keep, full
        self._lock = threading.Lock()

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def add(self, run: Run) -> None:
        """Add ``run`` and apply the bounds."""
        with self._lock:
            self._runs[run.id] = run
            finished = [r for r in self._runs.values() if r.finished]
            for old in finished[: max(0, len(self._runs) - self._keep)]:
                del self._runs[old.id]
                shutil.rmtree(old.folder, ignore_errors=True)
            runs = list(self._runs.values())
        for old in runs[: max(0, len(runs) - self._full)]:
            if old.finished:
                old.compact()
