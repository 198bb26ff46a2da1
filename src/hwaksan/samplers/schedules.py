"""Time discretisations: the step schedules of the samplers.

A grid is a float64 tensor ``ts`` of ``n + 1`` strictly decreasing times from ``t_max`` down to 0:
``n`` steps. Samplers take the grid as an argument, so every sampler works with every schedule.
The last step goes to ``t = 0`` (data); for diffusion processes whose log-SNR is infinite there, that
step is the final "denoise" step that returns the model's ``x0`` estimate (for VE, t = 0 is the noise
floor ``sigma_min``).

Noise-level grids (Karras, log-SNR) are built on the EDM noise level ``sigma~ = sigma/alpha =
exp(-lambda/2)`` and mapped back to times with :meth:`Process.t_from_log_snr`, so they mean the same
thing for every process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..processes import DiscreteVP, Process

__all__ = [
    "uniform_grid",
    "karras_grid",
    "log_snr_grid",
    "custom_grid",
    "make_grid",
    "GRIDS",
    "SPACINGS",
    "KARRAS_SIGMA_MAX",
]

SPACINGS = ("linspace", "leading", "trailing")
#: Where sigma~ is infinite at t_max (flows, zero terminal SNR), noise-level grids start here.
_FINITE_T_MAX = 1.0 - 1e-3
#: Default top of the Karras grid (Karras et al. 2022, Table 1: sigma_max = 80 for every model).
#: A cosine DDPM table reaches sigma~ = 2e4 at t = 1; Heun's trapezoid over such a first step
#: weights the network's output at the next (much lower) level by half of the whole interval and
#: loses the sample, so the grid starts at sigma~ = 80 unless ``sigma_max`` is given.
KARRAS_SIGMA_MAX = 80.0


def _finish(process: Process, ts: torch.Tensor) -> torch.Tensor:
    ts = ts.to(torch.float64)
    if ts[-1] != 0:
        ts = torch.cat([ts, ts.new_zeros(1)])
    return ts


def uniform_grid(
    process: Process,
    n: int,
    spacing: str = "linspace",
    t_max: float | None = None,
    t_min: float | None = None,
) -> torch.Tensor:
    """``n`` steps uniform in ``t``.

    For continuous processes ``"linspace"`` is ``linspace(t_max, t_min, n)`` then 0 (``n + 1``
    points from ``t_max`` to 0 when ``t_min = 0``) and ``"trailing"`` is ``linspace(t_max, 0, n + 1)``.
    For DDPM tables the three spacings of Lin et al. (2024, Table 2) choose integer knots
    ``k in 1..T``: linspace ``round(linspace(1, T, n))``, leading ``1 + (T // n) * arange(n)``,
    trailing ``round(arange(T, 0, -T/n))``; then t = k / T and a final 0.
    """
    if n < 1:
        raise ValueError("need at least one step")
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    t_max = process.t_max if t_max is None else float(t_max)
    t_min = process.t_min if t_min is None else float(t_min)
    if isinstance(process, DiscreteVP) and t_max == process.t_max and t_min == process.t_min:
        T = process.T
        if n > T:
            raise ValueError(f"{n} steps exceed the table's T = {T}")
        if spacing == "linspace":
            k = torch.linspace(T, 1, n, dtype=torch.float64).round()
        elif spacing == "leading":
            k = (1 + (T // n) * torch.arange(n, dtype=torch.float64)).flip(0)
        else:
            k = torch.arange(T, 0, -T / n, dtype=torch.float64).round()[:n]
        return _finish(process, k / T)
    if spacing == "leading":
        raise ValueError("'leading' spacing is defined for DDPM tables only")
    if spacing == "trailing" or t_min == 0:
        return torch.linspace(t_max, 0.0, n + 1, dtype=torch.float64)
    return _finish(process, torch.linspace(t_max, t_min, n, dtype=torch.float64))


def _sigma_range(process: Process, sigma_min, sigma_max, cap: float = math.inf) -> tuple[float, float, bool]:
    """Default EDM noise-level range (the top at most ``cap``); flags whether the grid must start
    exactly at t_max (where sigma~ is infinite: flows, zero terminal SNR)."""
    prepend = False
    if sigma_max is None:
        sigma_max = float(process.sigma_tilde(process.t_max))
        if not math.isfinite(sigma_max):
            sigma_max = float(process.sigma_tilde(min(process.t_max, _FINITE_T_MAX)))
            prepend = True
        sigma_max = min(sigma_max, cap)
    if sigma_min is None:
        t_lo = process.t_min if process.t_min > 0 else 1e-3
        sigma_min = float(process.sigma_tilde(t_lo))
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    return sigma_min, sigma_max, prepend


def _grid_from_sigmas(process: Process, sigmas: torch.Tensor, prepend: bool) -> torch.Tensor:
    ts = process.t_from_log_snr(-2.0 * sigmas.log())
    if prepend:  # start exactly at t_max (pure noise) and keep n steps
        ts = torch.cat([ts.new_full((1,), process.t_max), ts[1:]])
    return _finish(process, ts)


def karras_grid(
    process: Process,
    n: int,
    rho: float = 7.0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> torch.Tensor:
    """Karras et al. (2022) eq. 5 on the EDM noise level, then 0: ``n`` steps.

    ``sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho``, ``i = 0..n-1``.
    ``sigma_max`` defaults to ``min(sigma~(t_max), 80)`` (:data:`KARRAS_SIGMA_MAX`, EDM's value): the
    grid then starts below ``t_max`` and sampling starts from ``N(0, sigma(ts[0])^2)``. Where
    ``sigma~(t_max)`` is infinite (flows) the first point stays ``t_max``. Pass
    ``sigma_max=float(process.sigma_tilde(process.t_max))`` for the full range.
    """
    if n < 1:
        raise ValueError("need at least one step")
    smin, smax, prepend = _sigma_range(process, sigma_min, sigma_max, cap=KARRAS_SIGMA_MAX)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1).double()
    lo, hi = smin ** (1 / rho), smax ** (1 / rho)
    return _grid_from_sigmas(process, (hi + ramp * (lo - hi)) ** rho, prepend)


def log_snr_grid(
    process: Process, n: int, sigma_min: float | None = None, sigma_max: float | None = None
) -> torch.Tensor:
    """``n`` steps uniform in log-SNR (equivalently in ``log sigma~``; Lu et al. 2022's
    "logSNR" schedule, k-diffusion's "exponential"), then 0."""
    if n < 1:
        raise ValueError("need at least one step")
    smin, smax, prepend = _sigma_range(process, sigma_min, sigma_max)
    log_s = torch.linspace(math.log(smax), math.log(smin), n, dtype=torch.float64)
    return _grid_from_sigmas(process, log_s.exp(), prepend)


def custom_grid(process: Process, ts: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Validate a user grid: strictly decreasing times in [0, t_max]; a final 0 is appended."""
    ts = torch.as_tensor(ts, dtype=torch.float64).flatten()
    if len(ts) < 1:
        raise ValueError("a grid needs at least one time")
    if bool((ts[1:] >= ts[:-1]).any()):
        raise ValueError("grid times must be strictly decreasing (from noise to data)")
    if float(ts[0]) > process.t_max or float(ts[-1]) < 0:
        raise ValueError(f"grid times must lie in [0, {process.t_max}]")
    return _finish(process, ts)


GRIDS = {"uniform": uniform_grid, "karras": karras_grid, "log_snr": log_snr_grid}


def make_grid(process: Process, n: int, kind: str = "uniform", **options) -> torch.Tensor:
    """Build a grid by name (see :data:`GRIDS`)."""
    if kind not in GRIDS:
        raise ValueError(f"unknown grid {kind!r}; choose one of {', '.join(GRIDS)}")
    return GRIDS[kind](process, n, **options)
