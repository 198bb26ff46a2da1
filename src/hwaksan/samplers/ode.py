"""Deterministic samplers of the probability-flow ODE.

All are written on the EDM variables ``x~ = x / alpha``, ``sigma~ = sigma / alpha``, in which the
PF-ODE of every Gaussian path reads ``dx~/dsigma~ = eps_hat`` (Karras et al. 2022, sec. 4; Song
et al. 2021 DDIM, eq. 14), or on the log-SNR (DPM-Solver++). Steps are expressed in x so that a grid
may start where alpha = 0 (flows, zero terminal SNR); the boundary steps (onto sigma = 0, from
alpha = 0) are :func:`hwaksan.samplers._common.boundary_step`.
"""

from __future__ import annotations

import math

import torch

from .._typing import Cond, Denoiser
from ..utils import GeneratorLike, randn_like
from ._common import Callback, boundary_step, ddim_step, denoise, eps_of, grid_steps, steps

__all__ = ["sample_ddim", "sample_heun", "sample_dpmpp_2m", "sample_adaptive", "ScaledLogSigmaODE"]

_ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


def _land_on(grid: torch.Tensor, method: str) -> dict | None:
    """torchdiffeq's adaptive solvers may step past the end and interpolate back; times outside the
    path's domain (t < 0) are undefined, so force a step to land on the end time."""
    return {"step_t": grid[-1:]} if method in _ADAPTIVE_METHODS else None


def sample_ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    eta: float = 0.0,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """DDIM (Song, Meng & Ermon 2021, eq. 12) on any grid; with ``eta = 0`` it is exactly the Euler
    method on ``dx~/dsigma~ = eps_hat`` (EDM Alg. 1 without the correction), i.e. "euler".

    ``x_s = alpha_s x0^ + sqrt(sigma_s^2 - c^2) eps^ + c z``, ``c = eta sqrt(var q(x_s | x_t, x0))``;
    for DDPM tables ``c = eta sqrt((1-ab_s)/(1-ab_t)) sqrt(1 - ab_t/ab_s)``. ``eta = 1`` is ancestral
    sampling with the posterior variance. NFE = number of steps.

    Shapes: ``x (B, *shape)`` at ``ts[0]``; returns the sample at ``ts[-1]``.
    """
    process = denoiser.process
    for st in steps(denoiser, ts):
        x0 = denoise(denoiser, x, st.t, cond)
        eps = eps_of(x, x0, st.alpha_t, st.sigma_t)
        c = 0.0
        if eta > 0:
            var = float(process.posterior_coefficients(st.t, st.s)[2])
            c = eta * math.sqrt(max(var, 0.0))
        x = ddim_step(x0, eps, st.alpha_s, math.sqrt(max(st.sigma_s**2 - c**2, 0.0)))
        if c > 0:
            x = x + c * randn_like(x, generator)
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x


def sample_heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """EDM's 2nd-order Heun sampler (Karras et al. 2022, Alg. 1, and Alg. 2 with churn).

    On ``x~ = x/alpha``: ``d = (x~ - D)/sigma~ = eps_hat``, ``x~' = x~ + (s' - s) d``; when
    ``sigma(s') > 0`` correct with the average of ``d`` and ``d'`` at ``(x~', s')``. Churn: inside
    ``[s_tmin, s_tmax]``, ``gamma = min(s_churn / n, sqrt(2) - 1)``, ``s^ = s (1 + gamma)``,
    ``x~^ = x~ + sqrt(s^^2 - s^2) s_noise z``. A boundary step (onto sigma = 0, or from alpha = 0
    where sigma~ = inf and there is no finite trapezoid) is the Euler step alone.
    NFE = 2 n - (boundary steps).
    """
    process = denoiser.process
    all_steps = list(steps(denoiser, ts))
    n = len(all_steps)
    for st in all_steps:
        t, a_t, s_t, sig_t = st.t, st.alpha_t, st.sigma_t, st.sigma_tilde_t
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= sig_t <= s_tmax else 0.0
        if gamma > 0 and not st.from_noise:
            sig_hat = sig_t * (1 + gamma)
            t = float(process.t_from_sigma_tilde(sig_hat))
            a_hat, s_hat = float(process.alpha(t)), float(process.sigma(t))
            z = randn_like(x, generator)
            x_tilde = x / a_t + math.sqrt(sig_hat**2 - sig_t**2) * s_noise * z
            x, a_t, s_t, sig_t = a_hat * x_tilde, a_hat, s_hat, s_hat / a_hat
        x0 = denoise(denoiser, x, t, cond)
        d = eps_of(x, x0, a_t, s_t)
        x_next = ddim_step(x0, d, st.alpha_s, st.sigma_s)  # the Euler step, written in x
        if not st.boundary:
            x0_next = denoise(denoiser, x_next, st.s, cond)
            d_next = eps_of(x_next, x0_next, st.alpha_s, st.sigma_s)
            x_next = st.alpha_s * (x / a_t + (st.sigma_tilde_s - sig_t) * 0.5 * (d + d_next))
        x = x_next
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), multistep 2nd order in the log-SNR.

    With ``lambda = log(alpha/sigma)`` (half our log-SNR) and ``h_i = lambda_i - lambda_{i-1}``:
    ``x_i = (sigma_i / sigma_{i-1}) x_{i-1} - alpha_i (exp(-h_i) - 1) D_i`` where ``D_1 = x0^_0`` and
    ``D_i = (1 + 1/(2 r)) x0^_{i-1} - 1/(2 r) x0^_{i-2}``, ``r = h_{i-1} / h_i``. First order on the
    first step, after a step from alpha = 0, and on a last step that ends at sigma = 0. NFE = n.
    """
    x0_prev, h_prev = None, None  # the previous point's x0^ and h (None: no usable history)
    for st in steps(denoiser, ts):
        x0 = denoise(denoiser, x, st.t, cond)
        if st.boundary:
            x, x0_prev = boundary_step(st, x, x0), None
        else:
            h = 0.5 * (st.lambda_s - st.lambda_t)
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x = (st.sigma_s / st.sigma_t) * x - st.alpha_s * math.expm1(-h) * d
            x0_prev, h_prev = x0, h
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x


class ScaledLogSigmaODE:
    """The PF-ODE of the adaptive samplers, on ``x~ = x / alpha`` with ``s = log sigma~`` as time:

        dx~/ds = x~ - D(alpha x~, t(s))        (Karras et al. 2022, eq. 4, with sigma~ = e^s)

    It needs only ``alpha``, ``sigma~`` and the inverse of the log-SNR (``t(s)``), never
    ``d alpha / dt``, so a tabulated (spline) schedule adds no error of its own.

    Built from a sampling grid ``ts``: where the path cannot start (``alpha(ts[0]) = 0`` or an
    infinite ``alpha'``: flows, zero terminal SNR) one boundary (DDIM) step to ``ts[1]`` is taken
    first. The integration runs from ``s0 = log sigma~(t0)`` to ``s1 = log sigma~(t1)``; when the grid
    ends at 0, ``t1 = t_min`` (``1e-3`` where the process has none) and ``finish`` is True:
    :meth:`end` takes the boundary step onto ``t = 0``. ``y0 (B, *shape)`` is ``x~`` at ``s0``;
    calling the object gives the right-hand side ``(s, y (B, *shape)) -> (B, *shape)``.
    """

    def __init__(self, denoiser: Denoiser, x: torch.Tensor, ts: torch.Tensor, cond: Cond = None) -> None:
        process = denoiser.process
        ts = torch.as_tensor(ts, dtype=torch.float64)
        if float(process.alpha(ts[0])) <= 0 or not bool(torch.isfinite(process.d_alpha(ts[0]))):
            st = next(steps(denoiser, ts[:2]))
            x = boundary_step(st, x, denoise(denoiser, x, st.t, cond))
            ts = ts[1:]
        self.denoiser, self.cond, self.process = denoiser, cond, process
        self.t0 = float(ts[0])
        self.finish = float(ts[-1]) == 0.0
        self.t1 = (process.t_min if process.t_min > 0 else 1e-3) if self.finish else float(ts[-1])
        self.s0, self.s1 = (math.log(float(process.sigma_tilde(t))) for t in (self.t0, self.t1))
        self._cache: dict[float, tuple[float, float]] = {}
        self.y0 = x / self.alpha_at(self.s0)

    def time_alpha(self, s: float) -> tuple[float, float]:
        """``(t(s), alpha(t(s)))``; the ends map exactly to ``t0`` and ``t1``."""
        if s not in self._cache:
            t = (
                self.t0
                if s == self.s0
                else self.t1
                if s == self.s1
                else float(self.process.t_from_log_snr(-2.0 * s))
            )
            self._cache[s] = (t, float(self.process.alpha(t)))
        return self._cache[s]

    def alpha_at(self, s: float) -> float:
        return self.time_alpha(s)[1]

    def __call__(self, s: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t, a = self.time_alpha(float(s))
        tb = torch.full((y.shape[0],), t, dtype=torch.float64, device=y.device)
        return y - self.denoiser(a * y, tb, self.cond)

    def end(self, y: torch.Tensor, denoised: torch.Tensor | None = None) -> torch.Tensor:
        """The sample from ``x~ = y (B, *shape)`` at ``s1``: ``alpha(t1) y``, then, when ``finish``,
        the boundary step onto ``t = 0`` with ``x0^ = D(x, t1)`` (``denoised``: the caller's own
        evaluation of it, no new network call)."""
        x = self.alpha_at(self.s1) * y
        if not self.finish:
            return x
        st = next(grid_steps(self.process, torch.tensor([self.t1, 0.0], dtype=torch.float64)))
        x0 = denoise(self.denoiser, x, self.t1, self.cond) if denoised is None else denoised
        return boundary_step(st, x, x0)


def sample_adaptive(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    method: str = "dopri5",
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Error-controlled Runge-Kutta (torchdiffeq) on the PF-ODE in ``s = log sigma~``
    (:class:`ScaledLogSigmaODE`, the form of the benchmark's float64 reference), so the error falls
    with the tolerance even on a tabulated schedule.

    Integrates from ``ts[0]`` to ``ts[-1]``; when ``ts[-1] = 0`` it integrates to ``t_min`` (``1e-3``
    where the process has none) and finishes with one denoising step. The intermediate grid points
    are ignored. A grid starting where ``alpha = 0`` or ``alpha'`` is infinite (flows, zero terminal
    SNR) first takes one boundary (DDIM) step to ``ts[1]``. NFE is decided by the controller (count it with
    :class:`hwaksan.samplers.CountingDenoiser`). ``rtol, atol`` apply to ``x~`` (data units); the
    controller's error norm spans the batch, so a sample depends on its batch-mates up to the
    tolerance.
    """
    ode = ScaledLogSigmaODE(denoiser, x, ts, cond)
    grid = torch.tensor([ode.s0, ode.s1], dtype=x.dtype, device=x.device)
    from torchdiffeq import odeint  # it loads scipy.integrate (~0.5 s): only when solving

    y = odeint(ode, ode.y0, grid, rtol=rtol, atol=atol, method=method, options=_land_on(grid, method))
    x = ode.end(y[-1])
    if callback is not None:
        callback({"i": 0, "t": ode.t0, "x": x, "denoised": x})
    return x
