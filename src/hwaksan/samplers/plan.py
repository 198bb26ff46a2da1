"""Time-grid optimisation for a fixed NFE budget.

Given a denoiser (a trained model or the oracle), a sampler and a number of steps ``n``,
:func:`plan_steps` chooses the ``n - 1`` interior noise levels that minimise the sampler's error, in
the spirit of "optimal steps" (Xue et al. 2024) and "align your steps" (Sabour et al. 2024), with
the most direct error proxy available: the sampler's own end-point error on a small *calibration*
batch of prior noise against a high-accuracy float64 solution of the same PF-ODE from the same
noise (:func:`calibration_set`), computed once.

Parameterisation: the grid runs from ``sigma~_max = sigma~(t_max)`` to ``sigma~_min =
sigma~(t_min)`` (then the final denoising step to t = 0), and its ``n - 1`` increments in
``log sigma~`` are ``softmax(theta)`` times the whole range, so every parameter vector is a valid,
strictly decreasing grid with the same end points. With more than ``max_params`` increments,
``theta`` is piecewise linear over ``max_params`` knots (a smooth step-density). The search is
Nelder-Mead on ``log(error)``, started from the better of the log-SNR and Karras (rho = 7) grids, so
the planned grid is never worse than those on the calibration batch.

Evaluate a planned grid on *other* noise than its calibration batch (the benchmark does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .._typing import Denoiser
from ..utils import GeneratorLike
from . import SAMPLERS
from ._common import boundary_step, denoise, steps
from .schedules import _FINITE_T_MAX, _sigma_range, karras_grid

__all__ = ["Plan", "plan_steps", "calibration_set", "grid_from_log_sigmas"]


@dataclass(frozen=True)
class Plan:
    """A planned grid.

    Attributes:
        ts: ``(n + 1,)`` float64 grid, decreasing to 0 (pass it to any sampler).
        sigmas: ``(n,)`` EDM noise levels ``sigma~`` of ``ts[:-1]``.
        error: mean L2 end-point error on the calibration batch with ``ts``.
        initial_error: the same for the starting grid.
        initial: name of the starting grid ("log_snr" or "karras").
        evaluations: sampler runs spent by the search.
    """

    ts: torch.Tensor
    sigmas: torch.Tensor
    error: float
    initial_error: float
    initial: str
    evaluations: int


def grid_from_log_sigmas(process, log_sigmas: torch.Tensor, prepend: bool = False) -> torch.Tensor:
    """Times of the decreasing noise levels ``exp(log_sigmas)``, then 0. The first time is snapped to
    ``t_max`` when it is ``sigma~(t_max)``; with ``prepend`` the grid starts at ``t_max`` (where
    ``sigma~`` is infinite: flows, zero terminal SNR) before the first finite level."""
    log_sigmas = torch.as_tensor(log_sigmas, dtype=torch.float64)
    ts = process.t_from_log_snr(-2.0 * log_sigmas)
    if prepend:
        ts = torch.cat([ts.new_full((1,), process.t_max), ts])
    elif abs(float(ts[0]) - process.t_max) < 1e-9:
        ts[0] = process.t_max
    return torch.cat([ts, ts.new_zeros(1)])


def calibration_set(
    denoiser: Denoiser,
    n_samples: int = 64,
    generator: GeneratorLike = None,
    shape: tuple[int, ...] | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prior noise ``x (n_samples, *shape)`` and its PF-ODE end points (float64).

    The reference integrates ``dx~/ds = x~ - D(alpha x~, t)``, ``s = log sigma~``, with dopri5 from
    ``sigma~(t_max)`` to ``sigma~(t_min)`` and ends with the denoising step ``D(x, t_min)``, the
    convention every sampler's last step follows. ``shape`` defaults to the mixture dimension of an
    oracle denoiser (``denoiser.mixture.dim``).
    """
    process = denoiser.process
    if shape is None:
        mixture = getattr(denoiser, "mixture", None)
        if mixture is None:
            raise ValueError("give the data shape (shape=...) for a denoiser that is not a mixture oracle")
        shape = (mixture.dim,)
    s_min, s_max, prepend = _sigma_range(process, None, None)  # the full range
    x = process.prior_sample((n_samples, *shape), generator, dtype=torch.float64)
    t_start = min(process.t_max, _FINITE_T_MAX) if prepend else process.t_max
    y = x
    if prepend:  # the boundary (DDIM) step from alpha = 0 to the first finite noise level
        st = next(steps(denoiser, torch.tensor([process.t_max, t_start], dtype=torch.float64)))
        y = boundary_step(st, x, denoise(denoiser, x, st.t, None))
    y = y / float(process.alpha(t_start))

    def t_of(log_sigma: float) -> float:
        return float(process.t_from_log_snr(-2.0 * log_sigma))

    def f(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = t_of(float(s))
        a = float(process.alpha(t))
        tb = torch.full((y.shape[0],), t, dtype=torch.float64)
        return y - denoiser(a * y, tb)

    from torchdiffeq import odeint  # it loads scipy.integrate (~0.5 s): only when solving

    grid = torch.tensor([math.log(s_max), math.log(s_min)], dtype=torch.float64)
    with torch.no_grad():
        y = odeint(f, y, grid, rtol=rtol, atol=atol, method="dopri5")[-1]
        t_end = t_of(math.log(s_min))
        ref = denoiser(float(process.alpha(t_end)) * y, torch.full((y.shape[0],), t_end, dtype=torch.float64))
    return x, ref


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def _theta_of(process, ts, s_min, n_inc, n_par, use_end, prepend) -> np.ndarray | None:
    """Parameters of :func:`plan_steps` that reproduce the grid ``ts`` (None when it does not fit:
    wrong length, not decreasing in noise level)."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if len(ts) != n_inc + 2 + int(prepend) or n_inc < 1:
        return None
    ls = np.log(process.sigma_tilde(ts[int(prepend) : -1]).clamp(min=s_min).numpy())
    inc = -np.diff(ls)
    if not bool(np.all(inc > 0)):
        return None
    logits = np.log(inc)
    if n_par < n_inc:
        logits = np.interp(np.linspace(0, 1, n_par), np.linspace(0, 1, n_inc), logits)
    theta = logits - logits.mean()
    if use_end:
        theta = np.append(theta, math.sqrt(max(ls[-1] - math.log(s_min), 0.0)))
    return theta


def plan_steps(
    denoiser: Denoiser,
    n_steps: int,
    *,
    sampler: str | Callable[..., torch.Tensor] = "unipc",
    sampler_options: dict | None = None,
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    n_samples: int = 64,
    generator: GeneratorLike = None,
    max_params: int = 8,
    max_evals: int = 200,
    free_end: bool = True,
    starts: dict[str, torch.Tensor] | None = None,
) -> Plan:
    """Choose an ``n_steps`` grid for ``sampler`` that minimises its calibration error.

    Args:
        denoiser: model or oracle (``denoiser.process`` is used).
        n_steps: grid steps (the sampler's NFE follows from it: n for multistep, 2n - 1 for Heun).
        sampler: a registered name (:data:`hwaksan.samplers.SAMPLERS`) or a sampler function.
        sampler_options: options for the sampler (a registered sampler's defaults come first).
        calibration: ``(x, reference)`` from :func:`calibration_set`; computed here when omitted
            (with ``n_samples`` and ``generator``), which costs one high-accuracy solve.
        max_params: at most this many free parameters (knots of the step-density).
        max_evals: budget of sampler runs for the search.
        free_end: also choose the last noise level before the final denoising step (at or above
            ``sigma~(t_min)``, one more parameter ``e`` with ``log sigma_last = log sigma_min + e^2``);
            with few steps, spending them above the lowest level can be more accurate. The error is
            still measured against the solution that runs down to ``sigma~(t_min)``.
        starts: more starting grids (name -> ``n_steps`` grid from ``sigma~(t_max)`` down to 0, e.g.
            the uniform-in-t grid that suits the cosine table), scored with the log-SNR and Karras ones.

    Returns:
        a :class:`Plan` whose ``ts`` goes to any sampler.

    Example:
        >>> from hwaksan.oracles import GaussianMixtureDenoiser, anisotropic_mixture
        >>> from hwaksan.processes import EDM
        >>> den = GaussianMixtureDenoiser(anisotropic_mixture(2), EDM())
        >>> plan = plan_steps(den, 4, sampler="dpmpp_2m", n_samples=8, max_evals=20)
        >>> len(plan.ts), plan.error <= plan.initial_error
        (5, True)
    """
    from scipy.optimize import minimize  # scipy is slow to import: only when planning

    if n_steps < 1:
        raise ValueError("need at least one step")
    process = denoiser.process
    if isinstance(sampler, str):
        spec = SAMPLERS[sampler]
        fn, options = spec.fn, {**spec.defaults, **(sampler_options or {})}
        if spec.stochastic:
            raise ValueError(f"{sampler!r} is stochastic: plan grids for deterministic samplers")
    else:
        fn, options = sampler, dict(sampler_options or {})
    if calibration is None:
        calibration = calibration_set(denoiser, n_samples, generator)
    x_cal, ref = calibration
    s_min, s_max, prepend = _sigma_range(process, None, None)  # the full range
    lo, hi = math.log(s_min), math.log(s_max)
    n_inc = n_steps - 1  # increments between the n noise levels sigma_max .. sigma_min

    use_end = free_end and n_inc >= 1

    def log_sigmas_of(theta: np.ndarray) -> torch.Tensor:
        if n_inc <= 0:
            return torch.tensor([hi], dtype=torch.float64)
        end = lo
        if use_end:
            theta, end = theta[:-1], min(lo + float(theta[-1]) ** 2, lo + 0.9 * (hi - lo))
        if len(theta) == n_inc:
            logits = theta
        else:
            knots = np.linspace(0.0, 1.0, len(theta))
            logits = np.interp(np.linspace(0.0, 1.0, n_inc), knots, theta)
        cum = np.concatenate([[0.0], np.cumsum(_softmax(logits))])
        cum[-1] = 1.0
        return torch.as_tensor(hi + (end - hi) * cum, dtype=torch.float64)

    def grid(theta: np.ndarray) -> torch.Tensor:
        return grid_from_log_sigmas(process, log_sigmas_of(theta), prepend)

    evals = [0]

    def error_of(ts: torch.Tensor) -> float:
        evals[0] += 1
        if bool((ts[1:] >= ts[:-1]).any()):
            return math.inf
        with torch.no_grad():
            out = fn(denoiser, x_cal.clone(), ts, **options)
        e = (out.double() - ref.double()).reshape(len(ref), -1).norm(dim=1)
        return float(e.mean()) if bool(torch.isfinite(e).all()) else math.inf

    # starting points: log-SNR uniform (theta = 0), Karras rho = 7 and the given grids (theta = log
    # increments, e = sqrt of the last level's height above sigma_min)
    n_par = min(n_inc, max_params)
    extra = {"karras": karras_grid(process, n_steps, sigma_max=s_max), **(starts or {})}
    starts = {"log_snr": np.zeros(max(n_par, 0)) if not use_end else np.zeros(n_par + 1)}
    for name, ts0 in extra.items():
        th = _theta_of(process, ts0, s_min, n_inc, n_par, use_end, prepend)
        if th is not None:
            starts[name] = th
    n_dim = n_par + int(use_end)
    scored = {name: error_of(grid(th)) for name, th in starts.items()}
    initial = min(scored, key=scored.get)
    theta0, err0 = starts[initial], scored[initial]
    best_theta, best_err = theta0, err0
    if n_dim >= 2 and max_evals > len(starts):

        def objective(th: np.ndarray) -> float:
            nonlocal best_theta, best_err
            e = error_of(grid(th))
            if e < best_err:
                best_theta, best_err = th.copy(), e
            return math.log(e) if math.isfinite(e) and e > 0 else 1e3

        simplex = [theta0] + [theta0 + 0.5 * np.eye(n_dim)[i] for i in range(n_dim)]
        minimize(
            objective,
            theta0,
            method="Nelder-Mead",
            options={"maxfev": max_evals - len(starts), "initial_simplex": np.array(simplex), "fatol": 1e-4},
        )
    ts = grid(best_theta)
    sig = process.sigma_tilde(ts[:-1])
    return Plan(ts, sig, best_err, err0, initial, evals[0])
