"""Adaptive-step PF-ODE solving with a PID step-size controller.

The probability-flow ODE is integrated on the EDM variables with ``s = log sigma~`` as time,

    dx~/ds = x~ - D(alpha x~, t(s)),        x~ = x / alpha,  sigma~ = e^s,

a form that is smooth for every Gaussian path (the schedule only enters through ``t(s)``), with
the Bogacki-Shampine 3(2) embedded pair (Bogacki & Shampine 1989; first-same-as-last: 3 new
evaluations per accepted step) from ``sigma~(t_max)`` down to ``sigma~(t_min)``, then, when the grid
ends at 0, the DDIM step onto ``t = 0`` from ``D`` at ``t_min``
(:meth:`hwaksan.samplers.ode.ScaledLogSigmaODE.end`, as in ``sample_adaptive``): the library's final
denoising step ``x = alpha D`` where ``sigma(0) = 0``.

Step-size control (Soderlind 2003, "Digital filters in adaptive time-stepping", sec. 5; the
PID form used by Hairer & Wanner and by k-diffusion's DPM-Solver adaptive): with the normalised
error ``e_n = || (x_hi - x_lo) / (atol + rtol max(|x|, |x_new|)) ||_rms`` over the batch and
``eps_n = 1 / e_n``, the next step is

    h_{n+1} = h_n * eps_n^{b1} * eps_{n-1}^{b2} * eps_{n-2}^{b3},
    b1 = (i + p + d) / k,  b2 = -(p + 2 d) / k,  b3 = d / k,   k = 3 (error order + 1),

passed through Söderlind's smooth limiter ``1 + atan(f - 1)`` and kept in [0.2, 5]; a step is
accepted when its factor is at least ``accept_safety``. The default ``(p, i, d) = (0, 1, 0)`` is the
elementary (integral) controller; proportional and derivative gains smooth the step sequence.
"""

from __future__ import annotations

import math

import torch

from .._typing import Cond, Denoiser
from ..utils import GeneratorLike
from ._common import Callback
from .ode import ScaledLogSigmaODE

__all__ = ["sample_adaptive_pid", "PIDStats"]


class PIDStats(dict):
    """Counters filled by :func:`sample_adaptive_pid` when passed as ``stats``: ``accepted``,
    ``rejected``, ``nfe``."""


def sample_adaptive_pid(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    pcoeff: float = 0.0,
    icoeff: float = 1.0,
    dcoeff: float = 0.0,
    accept_safety: float = 0.81,
    h_init: float | None = None,
    stats: dict | None = None,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Bogacki-Shampine 3(2) on ``dx~/d log sigma~`` with a PID step-size controller.

    Integrates from ``ts[0]`` to ``ts[-1]`` (intermediate grid points are ignored); when
    ``ts[-1] = 0`` it stops at ``sigma~(t_min)`` and takes the DDIM step onto ``t = 0`` (the
    denoising step ``alpha(0) D(x(t_min))`` where ``sigma(0) = 0``), whose ``D(x(t_min))`` is the
    last first-same-as-last evaluation (no extra NFE). A grid starting where ``alpha = 0`` (flows,
    zero terminal SNR) first takes one boundary (DDIM) step to ``ts[1]``. NFE is decided by the
    controller (``stats`` receives the counts). The error norm spans the batch, so a sample depends
    on its batch-mates up to the tolerance.

    Args:
        rtol, atol: tolerances on ``x~`` (absolute in data units).
        pcoeff, icoeff, dcoeff: PID gains (Söderlind 2003); ``(0, 1, 0)`` is the I controller.
        accept_safety: accept a step when its proposed factor is at least this.
        h_init: first step in ``log sigma~`` (default: 1/20 of the range).
    """
    ode = ScaledLogSigmaODE(denoiser, x, ts, cond)
    s0, s1, finish, t_alpha = ode.s0, ode.s1, ode.finish, ode.time_alpha
    direction = -1.0  # s decreases from noise to data
    span = s0 - s1
    nfe = [0]

    def f(s: float, y: torch.Tensor) -> torch.Tensor:
        nfe[0] += 1
        return ode(s, y)

    y = ode.y0
    s = s0
    h = abs(h_init) if h_init is not None else span / 20.0
    k = 3.0
    b1, b2, b3 = (icoeff + pcoeff + dcoeff) / k, -(pcoeff + 2 * dcoeff) / k, dcoeff / k
    eps_hist = [1.0, 1.0]
    accepted = rejected = 0
    k1 = f(s, y)
    while direction * (s1 - s) > 1e-12 * span:
        last = h >= s - s1
        h = min(h, s - s1)
        hs = direction * h
        k2 = f(s + 0.5 * hs, y + 0.5 * hs * k1)
        k3 = f(s + 0.75 * hs, y + 0.75 * hs * k2)
        y_new = y + hs * (2 * k1 + 3 * k2 + 4 * k3) / 9
        s_new = s1 if last else s + hs
        k4 = f(s_new, y_new)
        err = hs * (-5 * k1 / 72 + k2 / 12 + k3 / 9 - k4 / 8)  # y_new - y_lo (order 2)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        e = float(((err / scale) ** 2).mean().sqrt())
        eps = 1.0 / max(e, 1e-10)
        factor = eps**b1 * eps_hist[0] ** b2 * eps_hist[1] ** b3
        factor = 1.0 + math.atan(factor - 1.0)  # Söderlind's smooth limiter
        factor = min(max(factor, 0.2), 5.0)
        if factor >= accept_safety:
            s, y, k1 = s_new, y_new, k4
            eps_hist = [eps, eps_hist[0]]
            accepted += 1
            if callback is not None:
                callback({"i": accepted, "t": t_alpha(s)[0], "x": t_alpha(s)[1] * y, "denoised": y - k1})
        else:
            rejected += 1
        h = h * factor
    # the step onto t = 0 reads D(x(t_min)) = x~ - f(s1, x~), the FSAL evaluation: no new NFE
    out = ode.end(y, y - k1 if finish else None)
    if stats is not None:
        stats.update(accepted=accepted, rejected=rejected, nfe=nfe[0])
    return out.to(x.dtype)
