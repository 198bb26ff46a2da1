"""Plan files: a sampler, its time grid and its options as JSON (``hwaksan plan-steps --out``).

A plan file records what :func:`hwaksan.samplers.plan.plan_steps` or
:func:`hwaksan.samplers.fit.fit_solver` chose for one model and one step budget::

    {"sampler": "fitted", "ts": [1.0, ..., 0.0], "options": {"coefficients": {...}, "form": "noise",
     "order": 3}, "nfe": 10, "error": ..., ...}

:func:`load_plan` reads one back for Python callers and for the command line (``hwaksan sample
CHECKPOINT --plan FILE`` sets the sampler, the grid, the steps and the sampler options from it)::

    plan = load_plan("plan.json")
    res = sample(model, (64, 2), sampler=plan["sampler"], grid=plan["ts"], **plan["options"])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from . import SAMPLERS
from .fitted import check_coefficients

__all__ = ["save_plan", "load_plan"]


def save_plan(
    path: str | Path, sampler: str, ts: torch.Tensor, options: dict | None = None, **meta: Any
) -> Path:
    """Write a plan file (parent folders created); ``meta`` adds JSON-serialisable fields."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"sampler": sampler, "ts": [float(t) for t in ts], "options": dict(options or {}), **meta}
    path.write_text(json.dumps(record, indent=2))
    return path


def load_plan(path: str | Path) -> dict:
    """Read and check a plan file: ``{"sampler": str, "ts": float64 tensor, "options": dict, ...}``.

    Raises:
        ValueError: the file is missing, not JSON, names an unknown sampler, has no decreasing grid,
            or carries fitted coefficients that do not fit its grid.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read a plan file ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("ts"), list):
        raise ValueError(f"{path}: not a plan file (no list 'ts'); write one with hwaksan plan-steps --out")
    ts = torch.tensor(record["ts"], dtype=torch.float64)
    if ts.ndim != 1 or len(ts) < 2 or bool((ts[1:] >= ts[:-1]).any()):
        raise ValueError(f"{path}: 'ts' must be at least two strictly decreasing times")
    sampler = record.get("sampler")
    if sampler not in SAMPLERS:
        raise ValueError(f"{path}: unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    options = record.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"{path}: 'options' must be a JSON object")
    if options.get("coefficients") is not None:
        check_coefficients(options["coefficients"], len(ts) - 1, int(options.get("order", 3)))
    return {**record, "ts": ts, "options": options, "sampler": sampler}
