"""The studio without HTTP: the served models, their workers and the runs."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

from .commands import PreparedRun, prepare_run
from .errors import RequestError
from .execute import execute
from .limits import Limits
from .models import ServedModel, catalogue
from .runs import Run, RunStore
from .worker import ModelWorker

__all__ = ["Studio"]


class Studio:
    """Serves ``models`` (ids ``"0"``, ``"1"``, ...), keeping uploads under ``work``.

    Args:
        models: the models, as loaded from the command line.
        work: the folder of the runs' files (one sub-folder per run).
        limits: the bounds of a request.
    """

    def __init__(self, models: list[ServedModel], work: Path, limits: Limits | None = None) -> None:
        self.models = {m.id: m for m in models}
        self.work = Path(work)
        self.limits = limits or Limits()
        self.runs = RunStore(self.limits.keep_runs)
        self._workers = {m.id: ModelWorker(f"hwaksan-studio-model-{m.id}") for m in models}

    def catalogue(self) -> dict[str, Any]:
        """The body of ``GET /api/models``."""
        return catalogue(list(self.models.values()), self.limits)

    def submit(self, body: dict[str, Any]) -> tuple[Run, PreparedRun, int]:
        """Check a run request, queue it on its model's worker; returns the run, the prepared
        command and the run's queue position.

        Raises:
            RequestError: the request is refused (one line).
        """
        model_id = body.get("model")
        served = self.models.get(model_id) if isinstance(model_id, str) else None
        if served is None:
            ids = ", ".join(self.models)
            raise RequestError(422, f"no model {str(model_id)[:40]!r} here; this studio serves ids {ids}")
        run_id = secrets.token_hex(8)
        folder = self.work / run_id
        try:
            job = prepare_run(served, body, folder, self.limits)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        run = Run(run_id, served.id, job.command, folder)
        self.runs.add(run)
        position = self._workers[served.id].submit(run, lambda: execute(run, served, job))
        return run, job, position

    def cancel(self, run: Run) -> bool:
        """Cancel ``run``: a waiting run leaves its queue, a running one stops at its next step.
        Returns False when it had already ended."""
        if run.finished:
            return False
        run.cancel_requested.set()
        if self._workers[run.model].withdraw(run):
            run.emit("cancelled", {})
        return True
