"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021, app. D; Chen et al.
2018 instantaneous change of variables).

Integrating data -> noise, ``log p_0(x_0) = log p_T(x_T) + int_0^T div u(x_t, t) dt`` where
``u = alpha' x0^ + sigma' eps^`` is the PF-ODE velocity. The divergence is exact (one backward pass
per dimension: low dimension) or Hutchinson's estimate ``z^T (du/dx) z`` with one fixed probe per
trajectory (a vector-Jacobian product: high dimension).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._typing import Cond, Denoiser
from ..parameterizations import velocity_from_x0
from ..utils import GeneratorLike, randn
from .ode import _land_on

__all__ = ["LikelihoodResult", "log_likelihood", "divergence"]

PROBES = ("rademacher", "gaussian")


@dataclass(frozen=True)
class LikelihoodResult:
    """Per-sample ``log_prob (B,)`` in nats of ``x_0`` (at ``t_start``), the prior term and the
    integrated divergence that make it up, the latent ``x_T`` and the number of network calls.

    With Hutchinson's estimator, ``delta_log_prob_probes (B, M)`` holds the integral for each of
    the ``M`` probes (independent unbiased estimates along the same trajectory; ``delta_log_prob``
    is their mean, so their spread gives its Monte-Carlo error); None with the exact divergence."""

    log_prob: torch.Tensor
    prior_log_prob: torch.Tensor
    delta_log_prob: torch.Tensor
    x_T: torch.Tensor
    nfe: int
    delta_log_prob_probes: torch.Tensor | None = None


def _exact_divergence(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_i d out_i / d x_i`` ``(B,)``: one backward pass per dimension (vectorising them with
    ``is_grads_batched`` or a replicated batch measured slower on CPU for the U-Net)."""
    flat = out.reshape(x.shape[0], -1)
    div = torch.zeros(x.shape[0], dtype=out.dtype, device=x.device)
    for i in range(flat.shape[1]):
        (g,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)
        div = div + g.reshape(x.shape[0], -1)[:, i]
    return div


def divergence(fn, x: torch.Tensor, probe: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fn(x), div fn(x))``: exact when ``probe`` is None, else Hutchinson's
    ``probe^T (dfn/dx) probe`` (Hutchinson 1989; one vector-Jacobian product per probe).

    Shapes: ``x (B, *shape)`` -> ``(B, *shape)`` and the divergence ``(B,)``; with ``M`` probes
    ``probe (B, M, *shape)`` the estimates ``(B, M)``. Requires ``fn`` to be per-sample.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        if probe is None:
            div = _exact_divergence(out, x)
        elif probe.ndim == x.ndim + 1:
            m = probe.shape[1]
            divs = []
            for j in range(m):
                (vjp,) = torch.autograd.grad(out, x, probe[:, j], retain_graph=j < m - 1)
                divs.append((vjp * probe[:, j]).reshape(x.shape[0], -1).sum(1))
            div = torch.stack(divs, 1)
        else:
            (vjp,) = torch.autograd.grad(out, x, probe)
            div = (vjp * probe).reshape(x.shape[0], -1).sum(1)
    return out.detach(), div.detach()


def log_likelihood(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    cond: Cond = None,
    t_start: float | None = None,
    t_end: float | None = None,
    exact: bool | None = None,
    probe: str = "rademacher",
    generator: GeneratorLike = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    probes: int = 1,
) -> LikelihoodResult:
    """Log-likelihood of ``x0 (B, *shape)`` under the model's probability-flow ODE.

    Args:
        t_start: where integration starts (default ``1e-5`` where the log-SNR is infinite at 0,
            as Song et al. 2021; else 0).
        t_end: where the prior ``N(0, sigma(t_end)^2 I)`` is evaluated (default ``process.t_max``,
            or ``t_max - 1e-3`` where the path is singular there).
        exact: exact divergence (default: when the data dimension is at most 16).
        probe: Hutchinson probe distribution, ``"rademacher"`` or ``"gaussian"``.
        probes: number ``M`` of Hutchinson probes per sample, each fixed along the trajectory;
            the divergence is their mean and each one's integral is returned in
            ``delta_log_prob_probes`` (one network call and ``M`` vector-Jacobian products per
            function evaluation).
    """
    process = denoiser.process
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {', '.join(PROBES)}")
    dim = x0[0].numel()
    exact = dim <= 16 if exact is None else exact
    if t_start is None:
        t_start = 1e-5 if not torch.isfinite(process.log_snr(0.0)) else 0.0
    if t_end is None:
        t_end = process.t_max
        if not bool(torch.isfinite(process.d_alpha(t_end))):  # zero terminal SNR: singular at 1
            t_end = t_end - 1e-3
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    z = None
    if not exact:
        z = randn((x0.shape[0], probes, *x0.shape[1:]), generator, dtype=x0.dtype, device=x0.device)
        if probe == "rademacher":
            z = z.sign()
    nfe = 0

    def dynamics(t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        nonlocal nfe
        nfe += 1
        x = state[0]
        tb = torch.full((x.shape[0],), float(t), dtype=torch.float64, device=x.device)
        u, div = divergence(lambda y: velocity_from_x0(y, denoiser(y, tb, cond), tb, process), x, z)
        return u, div.reshape(x.shape[0], -1).to(x.dtype)

    grid = torch.tensor([t_start, t_end], dtype=x0.dtype, device=x0.device)
    state0 = (x0, torch.zeros(x0.shape[0], 1 if exact else probes, dtype=x0.dtype, device=x0.device))
    from torchdiffeq import odeint  # it loads scipy.integrate (~0.5 s): only when solving

    xs, deltas = odeint(
        dynamics, state0, grid, rtol=rtol, atol=atol, method=method, options=_land_on(grid, method)
    )
    x_T, per_probe = xs[-1], deltas[-1].double()
    delta = per_probe.mean(1)
    std = float(process.sigma(t_end))
    flat = x_T.reshape(x_T.shape[0], -1).double()
    prior = -0.5 * (flat**2).sum(1) / std**2 - 0.5 * dim * torch.log(
        torch.tensor(2 * torch.pi * std**2, dtype=torch.float64)
    )
    return LikelihoodResult(prior + delta, prior, delta, x_T, nfe, None if exact else per_probe)
