"""Straightness and transport cost of a model's ODE map (Liu, Gong & Liu 2022, sec. 2.2 / eq. 4).

For the flow ``dX_t/dt = v(X_t, t)`` that carries the source ``X_1`` (t = 1) to the data ``X_0``
(t = 0) the straightness is

    S = int_0^1 E || (X_1 - X_0) - v(X_t, t) ||^2 dt          (Liu et al. 2022, eq. 4),

zero exactly when every path is a straight line walked at constant speed (then one Euler step is
exact), and the transport cost of the coupling ``(X_0, X_1)`` the flow induces is
``E ||X_1 - X_0||^2`` (the quadratic cost that optimal transport minimises).

Both are estimated on a batch of source samples along the trajectories of a deterministic sampler
(Euler on a uniform grid by default, which for the linear interpolant *is* Euler on ``v``): the
velocity at the start of every step, ``v_i = alpha' x0_hat + sigma' eps_hat`` at ``(x_i, t_i)``
(the model's own prediction, no extra network call), enters a left Riemann sum
``S ~ sum_i (t_i - t_{i+1}) mean_b ||(X_1 - X_0) - v_i||^2``. For Euler on a flow,
``X_1 - X_0 = sum_i (t_i - t_{i+1}) v_i`` holds exactly, so a flow whose velocity is constant
along every path has ``S = 0`` up to rounding whatever the number of steps. Norms are summed over
all data dimensions (``per_dim`` divides by ``D``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._typing import Cond, Denoiser
from ..parameterizations import velocity_from_x0
from ..samplers import get_sampler, make_grid

__all__ = ["StraightnessResult", "straightness"]


@dataclass(frozen=True)
class StraightnessResult:
    """``straightness`` S and ``transport_cost`` E||X_1 - X_0||^2 (both summed over the ``dim``
    data dimensions, averaged over ``n`` paths), with the sampler's ``steps`` and the end points
    ``x0`` (data side) and ``x1`` (source side), each ``(n, *shape)``."""

    straightness: float
    transport_cost: float
    dim: int
    n: int
    steps: int
    x0: torch.Tensor
    x1: torch.Tensor

    @property
    def straightness_per_dim(self) -> float:
        return self.straightness / self.dim

    @property
    def transport_cost_per_dim(self) -> float:
        return self.transport_cost / self.dim

    def as_dict(self) -> dict[str, float]:
        """The numbers (no tensors), for JSON reports."""
        return {
            "straightness": self.straightness,
            "transport_cost": self.transport_cost,
            "straightness_per_dim": self.straightness_per_dim,
            "transport_cost_per_dim": self.transport_cost_per_dim,
            "dim": self.dim,
            "n": self.n,
            "steps": self.steps,
        }


@torch.no_grad()
def straightness(
    denoiser: Denoiser,
    x1: torch.Tensor,
    *,
    steps: int = 100,
    sampler: str = "euler",
    grid: str = "uniform",
    cond: Cond = None,
) -> StraightnessResult:
    """Straightness and transport cost of ``denoiser``'s ODE from the source samples ``x1``.

    Args:
        denoiser: any model (a flow, or a diffusion model's probability-flow ODE in its own t).
        x1: ``(n, *shape)`` standardised source samples; the path starts at
            ``X_1 = prior_std(t_max) x1`` (``x1`` itself for the flow interpolant).
        steps: sampler steps (the Riemann sum has one term per step).
        sampler: a deterministic, single-evaluation-per-step sampler (``euler``, ``ddim``).
        grid: the time grid (:data:`hwaksan.samplers.GRIDS`); uniform gives ``dt = 1 / steps``.
        cond: the condition of every path.

    Returns:
        A :class:`StraightnessResult`.
    """
    spec = get_sampler(sampler)
    if spec.stochastic:
        raise ValueError(f"sampler {sampler!r} is stochastic; straightness needs a deterministic one (euler)")
    process = denoiser.process
    ts = make_grid(process, steps, grid)
    x_start = (process.prior_std(float(ts[0])) * x1).double()
    points: list[tuple[float, torch.Tensor, torch.Tensor]] = []  # (t_i, x_i, x0_hat_i)
    current = [x_start]

    def record(info: dict) -> None:
        points.append((float(info["t"]), current[0], info["denoised"]))
        current[0] = info["x"]

    x_end = spec.fn(denoiser, x_start, ts, cond=cond, callback=record, **spec.defaults).double()
    if len(points) != len(ts) - 1:
        raise ValueError(f"sampler {sampler!r} does not report every step; use euler")
    n = x1.shape[0]
    chord = (x_start - x_end).reshape(n, -1)
    total = torch.zeros((), dtype=torch.float64)
    times = ts.tolist()
    for i, (t, x, x0_hat) in enumerate(points):
        tb = torch.full((n,), t, dtype=torch.float64, device=x.device)
        v = velocity_from_x0(x.double(), x0_hat.double(), tb, process).reshape(n, -1)
        total = total + (times[i] - times[i + 1]) * (chord - v).pow(2).sum(1).mean()
    return StraightnessResult(
        straightness=float(total),
        transport_cost=float(chord.pow(2).sum(1).mean()),
        dim=chord.shape[1],
        n=n,
        steps=len(points),
        x0=x_end,
        x1=x_start,
    )
