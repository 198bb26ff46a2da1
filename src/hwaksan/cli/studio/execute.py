"""A prepared run executed in its model's worker thread: the command's own computation with a
callback that streams every step, then the final event.

Events: ``start {"total"}``; per step ``step {"step", "total", "preview"}`` (image models: the x0
prediction, or x where the walk has none, decoded to pixels, as a PNG grid of the batch at one
pixel per pixel) or ``step {"step", "total", "points"}`` (2-D models: the current x, the first
:data:`MAX_STEP_POINTS`); then ``done``, ``cancelled`` or ``error``.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from ...plotting import plot_samples_2d
from ..common import UserError
from ..edit import edit_images
from ..images import result_layout
from ..inpaint import inpaint_images
from ..sample import grid_scale, sample_images, sample_points, write_points_csv
from .commands import PreparedRun
from .errors import one_line
from .models import ServedModel
from .pictures import data_url, grid_png, strip_png
from .runs import Run, RunCancelled

__all__ = ["execute", "MAX_STEP_POINTS", "TRAJECTORY_POINTS"]

MAX_STEP_POINTS = 2000
"""Points a 2-D model's step event carries."""
TRAJECTORY_POINTS = 50
"""Points whose paths the ``done`` event of a 2-D model carries."""


def _points(x: torch.Tensor) -> list[list[float]]:
    return [[round(a, 5), round(b, 5)] for a, b in x.detach().cpu().double()[:, :2].tolist()]


class _Steps:
    """The callback of one run: stops a cancelled run, emits one ``step`` event per step, and
    keeps the first image's frames (the strip) or the first points' paths (2-D)."""

    def __init__(self, run: Run, served: ServedModel, job: PreparedRun) -> None:
        self.run, self.model, self.job = run, served.model, job
        self.frames: list[torch.Tensor] = []
        self.paths: list[list[list[float]]] = []
        self.count = 0

    @torch.no_grad()
    def __call__(self, info: dict[str, Any]) -> None:
        self.run.check_cancelled()
        self.count += 1
        event: dict[str, Any] = {"step": self.count, "total": self.job.total}
        if self.model.is_lowdim:
            x = self.model.decode(info["x"])
            self.paths.append(_points(x[:TRAJECTORY_POINTS]))
            event["points"] = _points(x[:MAX_STEP_POINTS])
        else:
            shown = info.get("denoised")
            shown = self.model.decode(info["x"] if shown is None else shown).detach().cpu()
            self.frames.append(shown[:1].clone())
            event["preview"] = data_url(grid_png(shown, self.job.nrow, fast=True))
        self.run.emit("step", event)


def _scatter_png(points: torch.Tensor, title: str) -> bytes:
    """The scatter plot ``hwaksan sample`` draws for a 2-D model, as PNG bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plot.png"
        plot_samples_2d({title: points}, path, cols=1)
        return path.read_bytes()


def _compute(served: ServedModel, job: PreparedRun, steps: _Steps, run: Run) -> dict[str, Any]:
    """Run the command's computation; set the run's results; returns the ``done`` event's data
    (without timing)."""
    model, args = served.model, job.args
    if model.is_lowdim:
        res = sample_points(model, args, steps)
        points = res.x.detach().cpu()
        csv = io.StringIO()
        write_points_csv(points, csv)
        run.points_csv = csv.getvalue()
        run.result_png = _scatter_png(points, f"{args.sampler}, {res.nfe} NFE")
        return {
            "nfe": res.nfe,
            "strip": None,
            "points": _points(points),
            "trajectories": steps.paths,
        }
    if job.operation == "sample":
        res, nrow = sample_images(model, args, steps)
        scale = grid_scale(res.x, args.scale)
    elif job.operation == "inpaint":
        res = inpaint_images(model, args, steps).result
        nrow, scale = result_layout(res.x)
    else:
        res, _ = edit_images(model, args, steps)
        nrow, scale = result_layout(res.x)
    run.result_png = grid_png(res.x.detach().cpu(), nrow, scale)
    strip = strip_png(steps.frames, scale)
    return {"nfe": res.nfe, "strip": data_url(strip) if strip is not None else None}


def execute(run: Run, served: ServedModel, job: PreparedRun) -> None:
    """Run ``job`` for ``run`` and emit its events; never raises (an error is the ``error``
    event, its traceback on the server's stderr)."""
    try:
        run.check_cancelled()
        run.emit("start", {"total": job.total})
        steps = _Steps(run, served, job)
        t0 = time.perf_counter()
        done = _compute(served, job, steps, run)
        seconds = time.perf_counter() - t0
        image = data_url(run.result_png) if run.result_png is not None else None
        run.emit("done", {"image": image, "command": job.command, "seconds": round(seconds, 4), **done})
    except RunCancelled:
        run.emit("cancelled", {})
    except (UserError, ValueError, RuntimeError, OSError) as err:
        run.emit("error", {"error": one_line(err)})
    except Exception as err:  # a bug: the page gets one line, the server's stderr the traceback
        traceback.print_exc(file=sys.stderr)
        run.emit("error", {"error": f"internal error: {type(err).__name__}: {one_line(err)}"})
