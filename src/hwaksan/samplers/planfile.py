"""Plan files: a sampler, its time grid and its options as JSON (``hwaksan plan-steps --out``).

A plan file records what :func:`hwaksan.samplers.plan.plan_steps` or
:func:`hwaksan.samplers.fit.fit_solver` chose for one model and one step budget::

    {"sampler": "fitted", "ts": [1.0, ..., 0.0], "options": {"coefficients": {...}, "form": "noise",
     "order": 3}, "nfe": 10, "error": ..., ...}

:func:`load_plan` reads one back for Python callers and for the command line (``hwaksan sample
CHECKPOINT --plan FILE`` sets the sampler, the grid, the steps and the sampler options from it)::

    plan = load_plan("plan.json")
    res = sample(model, (64, 2), sampler=plan["sampler"], grid=plan["ts"], **plan["options"])

:func:`load_grid` reads the grid alone (``hwaksan sample --grid FILE``). Both refuse, in one line, a
grid that is not at least two finite, strictly decreasing times in [0, 1] (:func:`check_grid`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from . import SAMPLERS
from .fitted import check_coefficients

__all__ = ["save_plan", "load_plan", "load_grid", "check_grid"]


def save_plan(
    path: str | Path, sampler: str, ts: torch.Tensor, options: dict | None = None, **meta: Any
) -> Path:
    """Write a plan file (parent folders created); ``meta`` adds JSON-serialisable fields."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"sampler": sampler, "ts": [float(t) for t in ts], "options": dict(options or {}), **meta}
    path.write_text(json.dumps(record, indent=2))
    return path


def check_grid(ts: Any, where: str = "grid") -> torch.Tensor:
    """A grid from JSON as a float64 tensor, checked: a list of at least two finite numbers, strictly
    decreasing (from noise to data), in [0, 1].

    Raises:
        ValueError: anything else (one line that starts with ``where``).
    """
    if not isinstance(ts, list) or not all(
        isinstance(t, (int, float)) and not isinstance(t, bool) for t in ts
    ):
        raise ValueError(f"{where}: 'ts' must be a list of numbers; write one with hwaksan plan-steps --out")
    if len(ts) < 2:
        raise ValueError(f"{where}: 'ts' must hold at least two times (one step)")
    if not all(math.isfinite(t) for t in ts):
        raise ValueError(f"{where}: 'ts' holds NaN or infinite times; give finite times in [0, 1]")
    if any(not 0.0 <= t <= 1.0 for t in ts):
        raise ValueError(f"{where}: 'ts' holds times outside [0, 1]")
    if any(b >= a for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError(f"{where}: 'ts' must be strictly decreasing, from noise (1) to data (0)")
    return torch.tensor([float(t) for t in ts], dtype=torch.float64)


def _finite_numbers(value: Any) -> bool:
    """Whether ``value`` is a finite number or a (nested) list of them."""
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_record(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ValueError(f"{path}: cannot read a plan file ({reason})") from None


def load_grid(path: str | Path) -> torch.Tensor:
    """The grid ``"ts"`` of a grid or plan file, as a checked float64 tensor (:func:`check_grid`).

    Raises:
        ValueError: the file is missing, not JSON, or holds no valid grid (one line).
    """
    path = Path(path)
    record = _read_record(path)
    if not isinstance(record, dict) or "ts" not in record:
        raise ValueError(f"{path}: not a grid file (no list 'ts'); write one with hwaksan plan-steps --out")
    return check_grid(record["ts"], str(path))


def load_plan(path: str | Path) -> dict:
    """Read and check a plan file: ``{"sampler": str, "ts": float64 tensor, "options": dict, ...}``.

    Raises:
        ValueError: the file is missing, not JSON, names an unknown sampler, has no decreasing grid,
            or carries fitted coefficients that do not fit its grid.
    """
    path = Path(path)
    record = _read_record(path)
    if not isinstance(record, dict) or not isinstance(record.get("ts"), list):
        raise ValueError(f"{path}: not a plan file (no list 'ts'); write one with hwaksan plan-steps --out")
    ts = check_grid(record["ts"], str(path))
    sampler = record.get("sampler")
    if sampler not in SAMPLERS:
        raise ValueError(f"{path}: unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    options = record.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"{path}: 'options' must be a JSON object")
    if options.get("coefficients") is not None:
        order = options.get("order", 3)
        if not isinstance(order, int) or isinstance(order, bool) or not 1 <= order <= 16:
            raise ValueError(f"{path}: option 'order' must be a whole number 1..16")
        try:
            check_coefficients(options["coefficients"], len(ts) - 1, order)
        except (TypeError, KeyError, AttributeError, IndexError) as err:
            raise ValueError(f"{path}: malformed fitted coefficients ({err!r})") from None
        if not _finite_numbers([options["coefficients"][k] for k in ("predictor", "corrector", "final")]):
            raise ValueError(f"{path}: fitted coefficients must be finite numbers")
    return {**record, "ts": ts, "options": options, "sampler": sampler}
