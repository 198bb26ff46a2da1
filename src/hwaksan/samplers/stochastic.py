"""Stochastic samplers: DDPM ancestral sampling and the reverse SDE."""

from __future__ import annotations

import math

import torch

from .._typing import Cond, Denoiser
from ..parameterizations import reverse_log_variance
from ..utils import GeneratorLike, as_time, randn_like
from ._common import Callback, denoise, euler_maruyama_step, sde_coefficients, steps

__all__ = ["sample_ddpm", "sample_euler_maruyama", "sde_coefficients", "x0_and_variance"]

VARIANCES = ("posterior", "beta", "learned")


def x0_and_variance(
    denoiser: Denoiser, x: torch.Tensor, t: float | torch.Tensor, cond: Cond = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0_hat, v)`` from one call of a denoiser that predicts a variance (its
    ``x0_and_variance`` method, e.g. a :class:`~hwaksan.parameterizations.ModelDenoiser` whose
    network has ``learn_sigma``). Shapes ``(B, *shape)``."""
    fn = getattr(denoiser, "x0_and_variance", None)
    if fn is None:
        raise ValueError(
            f"variance='learned' needs a denoiser that predicts a variance (a ModelDenoiser whose "
            f"network has learn_sigma=True); {type(denoiser).__name__} has none: use variance="
            "'posterior' or 'beta'"
        )
    return fn(x, as_time(t, x.shape[0], x.device), cond)


def sample_ddpm(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    variance: str = "posterior",
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Ancestral sampling (Ho et al. 2020, Alg. 2), generalised to any grid and Gaussian path.

    ``x_s = mu~(x_t, x0^) + s z`` with the posterior mean of ``q(x_s | x_t, x0)`` at ``x0 = x0^`` and
    ``s^2`` the posterior variance ``beta~`` (``variance="posterior"``), the forward transition
    variance ``beta`` (``variance="beta"``, no noise on the last step as in Ho et al.), or the
    model's learned interpolation ``exp(frac log beta + (1 - frac) log beta~)`` per element
    (``variance="learned"``, Nichol & Dhariwal 2021 eq. 15; no noise on the last step; the
    denoiser returns ``x0^`` and ``v`` from one network call). On DDPM knots
    ``mu~ = 1/sqrt(1-beta_t) (x_t - beta_t / sqrt(1 - ab_t) eps^)``. NFE = number of steps.
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    process = denoiser.process
    for st in steps(denoiser, ts):
        if variance == "learned":
            x0, v_out = x0_and_variance(denoiser, x, st.t, cond)
        else:
            x0 = denoise(denoiser, x, st.t, cond)
        c_xt, c_x0, post_var = (float(v) for v in process.posterior_coefficients(st.t, st.s))
        x = c_xt * x + c_x0 * x0
        if variance == "learned":
            if st.sigma_s > 0:
                tb = torch.full((x.shape[0],), st.t, dtype=torch.float64, device=x.device)
                sb = torch.full_like(tb, st.s)
                log_var = reverse_log_variance(process, tb, sb, "learned", v_out)
                x = x + torch.exp(0.5 * log_var).to(x.dtype) * randn_like(x, generator)
            var = 0.0
        elif variance == "posterior":
            var = post_var
        else:
            var = float(process.transition(st.t, st.s)[1]) if st.sigma_s > 0 else 0.0
        if var > 0:
            x = x + math.sqrt(var) * randn_like(x, generator)
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x


def sample_euler_maruyama(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6; Anderson 1982):
    ``dx = [f x - g^2 score] dt + g dW_bar``, stepping ``dt = s - t < 0``:
    ``x_s = x + (f x - g^2 score)(s - t) + g sqrt(t - s) z`` with ``score = (alpha x0^ - x)/sigma^2``
    (:func:`hwaksan.samplers._common.euler_maruyama_step`). For VP this is the article's
    ``x_{t-dt} = x_t + 1/2 beta x dt + beta score dt + sqrt(beta) dW``. A last step onto sigma = 0
    returns the denoised mean ``alpha_s x0^``. NFE = number of steps.

    Like any explicit Euler method it is stable only while ``g^2 |dt| / sigma^2`` stays below about
    2 (``beta dt < 2`` for VP). The cosine DDPM table has ``beta(t) ~ 7000`` next to ``t = 1``
    (its last beta is clipped at 0.999), so a uniform grid of fewer than ~3500 steps from ``t = 1``
    diverges there: use the linear table or the VP SDE, or an exact-transition sampler
    (``ddpm``, ``ddim`` with ``eta``, ``dpmpp_2m_sde``) with that schedule.
    """
    process = denoiser.process
    for st in steps(denoiser, ts):
        x0 = denoise(denoiser, x, st.t, cond)
        x = euler_maruyama_step(process, st, x, x0, generator)
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x
