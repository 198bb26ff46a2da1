"""Langevin-based samplers: predictor-corrector (Song et al. 2021) and annealed Langevin dynamics
(Song & Ermon 2019)."""

from __future__ import annotations

import math

import torch

from .._typing import Cond, Denoiser
from ..utils import GeneratorLike, randn_like
from ._common import Callback, ddim_step, denoise, euler_maruyama_step, score_of, steps

__all__ = ["langevin_correct", "sample_pc", "sample_annealed_langevin"]


def _per_sample_norm(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1).norm(dim=1).reshape((-1,) + (1,) * (v.ndim - 1))


def langevin_correct(
    denoiser: Denoiser,
    x: torch.Tensor,
    t: float,
    *,
    snr: float,
    a: float,
    n_steps: int,
    cond: Cond,
    generator: GeneratorLike,
) -> torch.Tensor:
    """Langevin corrector (Song et al. 2021, Alg. 4/5) at fixed ``t``, ``n_steps`` times:
    ``g = score(x)``, ``eps = 2 a (r ||z|| / ||g||)^2`` (per sample), ``x <- x + eps g + sqrt(2 eps) z``.

    The step is capped at ``2 a r^2 sigma_t^2``, its value when ``x`` is pure noise at scale sigma_t:
    in low dimension ``||g||`` vanishes near a mode and the uncapped rule diverges (p_t has
    covariance at least ``sigma_t^2 I``, so longer steps only overshoot). Norms are per sample, so
    a sample does not depend on the rest of the batch.
    """
    p = denoiser.process
    alpha, sigma = float(p.alpha(t)), float(p.sigma(t))
    for _ in range(n_steps):
        x0 = denoise(denoiser, x, t, cond)
        g = score_of(x, x0, alpha, sigma)
        z = randn_like(x, generator)
        step = 2 * a * (snr * _per_sample_norm(z) / _per_sample_norm(g).clamp_min(1e-30)) ** 2
        step = step.clamp(max=2 * a * snr**2 * sigma**2)
        x = x + step * g + (2 * step).sqrt() * z
    return x


def sample_pc(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    snr: float = 0.16,
    n_corrector: int = 1,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Alg. 1): at every grid time a Langevin
    corrector (``n_corrector`` steps, target signal-to-noise ``snr``) then an Euler-Maruyama step of
    the reverse SDE. The corrector's ``a`` is ``alpha_{s|t}^2`` (1 for VE, ``1 - beta_i`` for VP).
    A last step onto sigma = 0 returns the denoised mean. NFE = n (1 + n_corrector).
    """
    process = denoiser.process
    for st in steps(denoiser, ts):
        a = float(process.transition(st.t, st.s)[0]) ** 2 if st.alpha_s > 0 else 1.0
        x = langevin_correct(
            denoiser, x, st.t, snr=snr, a=a, n_steps=n_corrector, cond=cond, generator=generator
        )
        x0 = denoise(denoiser, x, st.t, cond)
        x = euler_maruyama_step(process, st, x, x0, generator)
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x


def sample_annealed_langevin(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    step_size: float | None = None,
    n_steps_each: int = 100,
    denoise_last: bool = True,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) over the noise levels of the grid.

    For every level ``sigma_i`` (the grid's times with ``sigma > 0``), ``a_i = step_size sigma_i^2 /
    sigma_L^2`` (``sigma_L`` the smallest level) and ``n_steps_each`` updates
    ``x <- x + a_i/2 score(x, sigma_i) + sqrt(a_i) z``. The default ``step_size`` is ``0.2 sigma_L^2``,
    NCSN's ratio (2e-5 at sigma_L = 0.01). With ``denoise_last`` and a grid ending where
    sigma = 0, a final ``x0^`` (Jolicoeur-Martineau et al. 2021) replaces the last noisy iterate.
    NFE = levels * n_steps_each (+1).
    """
    p = denoiser.process
    ts = torch.as_tensor(ts, dtype=torch.float64)
    sig = p.sigma(ts)
    levels = ts[sig > 0].tolist()
    sigma_l = float(p.sigma(levels[-1]))
    last_t = levels[-1]
    if step_size is None:
        step_size = 0.2 * sigma_l**2
    for i, t in enumerate(levels):
        alpha, sigma = float(p.alpha(t)), float(p.sigma(t))
        a_i = step_size * sigma**2 / sigma_l**2
        for _ in range(n_steps_each):
            x0 = denoise(denoiser, x, t, cond)
            score = score_of(x, x0, alpha, sigma)
            x = x + 0.5 * a_i * score + math.sqrt(a_i) * randn_like(x, generator)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
    if denoise_last and float(p.sigma(ts[-1])) == 0:  # the boundary step onto sigma = 0
        x = ddim_step(denoise(denoiser, x, last_t, cond), None, float(p.alpha(ts[-1])), 0.0)
    return x
