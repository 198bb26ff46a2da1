"""Diffusion processes: DDPM tables, VP / sub-VP / VE SDEs and EDM.

Beta schedules are plain functions that return float64 tables; :class:`DiscreteVP` turns any
``alphas_cumprod`` table into a continuous-time process (knot ``k`` at ``t = k / T``) so that
discrete-time models meet continuous samplers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .base import Process, TimeLike, _t

__all__ = [
    "linear_betas",
    "cosine_alphas_cumprod",
    "sigmoid_alphas_cumprod",
    "betas_from_noise_map",
    "alphas_cumprod_from_betas",
    "betas_from_alphas_cumprod",
    "rescale_zero_terminal_snr",
    "DiscreteVP",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "EDM",
]


# --------------------------------------------------------------------------------------------------
# beta / alphas_cumprod tables (float64, index k-1 holds step k = 1..T)
# --------------------------------------------------------------------------------------------------
def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020) linear schedule: ``beta_k`` from ``beta_start`` to ``beta_end``, ``(T,)``."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """``alphabar_k = prod_{s<=k} (1 - beta_s)``, computed as ``exp(cumsum(log1p(-beta)))``."""
    return torch.exp(torch.cumsum(torch.log1p(-betas.double()), 0))


def betas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`alphas_cumprod_from_betas`: ``beta_k = 1 - alphabar_k / alphabar_{k-1}``."""
    ab = alphas_cumprod.double()
    prev = torch.cat([ab.new_ones(1), ab[:-1]])
    return 1.0 - ab / prev


def cosine_alphas_cumprod(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021) eq. 17: ``alphabar(t) = f(t) / f(0)``, ``f = cos^2(((t/T)+s)/(1+s) pi/2)``.

    Betas are clipped at ``max_beta`` (their sec. 3.2) and the table rebuilt from them.
    """
    k = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos(((k / T) + s) / (1 + s) * math.pi / 2) ** 2
    ab = f / f[0]
    betas = (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)
    return alphas_cumprod_from_betas(betas)


def sigmoid_alphas_cumprod(
    T: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0
) -> torch.Tensor:
    """Chen (2023) sigmoid schedule (Alg. 1; Jabri et al. 2023), evaluated at ``t = k/T``.

    ``v(t) = sigmoid((t (end - start) + start) / tau)``,
    ``alphabar(t) = (sigmoid(end/tau) - v(t)) / (sigmoid(end/tau) - sigmoid(start/tau))``,
    clipped to [1e-9, 1]. (Not diffusers' 'sigmoid', which is a GeoDiff beta schedule.)
    """
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    v = torch.sigmoid((t * (end - start) + start) / tau)
    return ((v_end - v) / (v_end - v_start)).clamp(1e-9, 1.0)


def betas_from_noise_map(
    lambdas: torch.Tensor, noise_map: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid
) -> torch.Tensor:
    """The article's general schedule (sec. 4.1): ``sigma_t = s(lambda_t)`` for an increasing map
    ``s: R -> (0, 1)`` and an increasing sequence ``lambda_1 < ... < lambda_T``, then
    ``beta_t = 1 - (1 - sigma_t^2) / (1 - sigma_{t-1}^2)`` with ``sigma_0 = 0``. Returns ``(T,)``.

    (Here ``lambda_t`` is the article's free parameter sequence, not the log-SNR.)
    """
    lambdas = torch.as_tensor(lambdas, dtype=torch.float64)
    if lambdas.ndim != 1 or not bool((lambdas[1:] > lambdas[:-1]).all()):
        raise ValueError("lambdas must be a strictly increasing 1-d sequence")
    sig = noise_map(lambdas).double()
    if not bool(((sig > 0) & (sig < 1)).all()) or not bool((sig[1:] > sig[:-1]).all()):
        raise ValueError("noise_map must map the lambdas strictly increasingly into (0, 1)")
    prev = torch.cat([sig.new_zeros(1), sig[:-1]])
    return 1.0 - (1.0 - sig**2) / (1.0 - prev**2)


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Lin et al. (2024) Alg. 1: shift and scale ``sqrt(alphabar)`` so that its last value is 0 and
    its first unchanged; returns the new ``alphabar`` table (last entry exactly 0)."""
    a = alphas_cumprod.double().sqrt()
    a0, aT = a[0].clone(), a[-1].clone()
    a = (a - aT) * a0 / (a0 - aT)
    return a**2


# --------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------
class DiscreteVP(Process):
    """DDPM's discrete variance-preserving process from an ``alphabar`` table (Ho et al. 2020).

    Knot ``k = 0..T`` sits at ``t = k / T`` with ``alphabar_0 = 1``; ``alpha = sqrt(alphabar)``,
    ``sigma = sqrt(1 - alphabar)``. Between knots ``k >= 1`` log-sigma is interpolated by a monotone
    cubic Hermite spline (Fritsch & Carlson 1980), and on the first interval ``sigma^2`` is linear in
    ``t`` (so ``sigma(0) = 0``); the path is C1 in ``t``, which ODE solvers need, and equals the table
    exactly at the knots.

    Use the constructors :meth:`linear`, :meth:`cosine`, :meth:`sigmoid` or pass a table.

    Args:
        alphas_cumprod: ``(T,)`` strictly decreasing values in [0, 1); the last may be 0 only with
            ``zero_terminal_snr`` semantics (then eps-prediction is undefined at t = 1).
        schedule: name recorded in the config.
        schedule_args: arguments recorded in the config.
    """

    name = "ddpm"

    def __init__(
        self,
        alphas_cumprod: torch.Tensor,
        schedule: str = "custom",
        schedule_args: dict[str, Any] | None = None,
    ) -> None:
        ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if ab.ndim != 1 or len(ab) < 2:
            raise ValueError("alphas_cumprod must be a 1-d table with at least 2 entries")
        if not bool((ab[1:] < ab[:-1]).all()) or not bool((ab < 1).all() & (ab >= 0).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing within [0, 1)")
        self.alphas_cumprod = ab
        self.T = len(ab)
        self.schedule = schedule
        self.schedule_args = dict(schedule_args or {})
        self.t_min = 1.0 / self.T
        self.zero_terminal_snr = bool(ab[-1] == 0)
        var = torch.cat([ab.new_zeros(1), 1.0 - ab])
        self._var = var  # sigma^2 at knots 0..T
        self._log_sigma = 0.5 * var.log()  # knot 0: -inf, never interpolated
        self._slopes = self._hermite_slopes()

    # constructors -----------------------------------------------------------------------------------
    @classmethod
    def linear(
        cls,
        T: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        zero_terminal_snr: bool = False,
    ) -> DiscreteVP:
        """Linear betas (Ho et al. 2020)."""
        ab = alphas_cumprod_from_betas(linear_betas(T, beta_start, beta_end))
        args = {"T": T, "beta_start": beta_start, "beta_end": beta_end}
        return cls._build(ab, "linear", args, zero_terminal_snr)

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, zero_terminal_snr: bool = False) -> DiscreteVP:
        """Cosine alphabar (Nichol & Dhariwal 2021)."""
        return cls._build(cosine_alphas_cumprod(T, s), "cosine", {"T": T, "s": s}, zero_terminal_snr)

    @classmethod
    def sigmoid(
        cls,
        T: int = 1000,
        start: float = -3.0,
        end: float = 3.0,
        tau: float = 1.0,
        zero_terminal_snr: bool = False,
    ) -> DiscreteVP:
        """Sigmoid alphabar (Chen 2023)."""
        ab = sigmoid_alphas_cumprod(T, start, end, tau)
        args = {"T": T, "start": start, "end": end, "tau": tau}
        return cls._build(ab, "sigmoid", args, zero_terminal_snr)

    @classmethod
    def from_betas(cls, betas: torch.Tensor, zero_terminal_snr: bool = False) -> DiscreteVP:
        """Any beta table, e.g. from :func:`betas_from_noise_map`."""
        betas = torch.as_tensor(betas, dtype=torch.float64)
        ab = alphas_cumprod_from_betas(betas)
        return cls._build(ab, "betas", {"betas": betas.tolist()}, zero_terminal_snr)

    @classmethod
    def _build(cls, ab, schedule, args, zero_terminal_snr):
        if zero_terminal_snr:
            ab = rescale_zero_terminal_snr(ab)
            args = {**args, "zero_terminal_snr": True}
        return cls(ab, schedule, args)

    @property
    def betas(self) -> torch.Tensor:
        """``(T,)`` betas of the table."""
        return betas_from_alphas_cumprod(self.alphas_cumprod)

    # interpolation ----------------------------------------------------------------------------
    def _hermite_slopes(self) -> torch.Tensor:
        """d log-sigma / dt at knots 0..T: harmonic-mean (PCHIP) slopes inside, the first interval's
        ``1 / (2 t)`` at knot 1 (C1 join), one-sided at knot T."""
        y, T = self._log_sigma, self.T
        delta = (y[2:] - y[1:-1]) * T  # secants of intervals k..k+1, k = 1..T-1
        m = torch.zeros(T + 1, dtype=torch.float64)
        if T > 2:
            m[2:T] = 2.0 / (1.0 / delta[:-1] + 1.0 / delta[1:])
        m[1] = torch.minimum(torch.tensor(T / 2.0, dtype=torch.float64), 3 * delta[0])
        m[T] = delta[-1]
        return m

    def _log_sigma_and_slope(self, t: torch.Tensor):
        """log sigma(t) and its t-derivative for ``t >= 1/T`` (cubic Hermite on each interval)."""
        h = 1.0 / self.T
        k = (t * self.T).floor().clamp(1, self.T - 1).long()
        u = (t * self.T - k).clamp(0.0, 1.0)
        y0, y1 = self._log_sigma[k], self._log_sigma[k + 1]
        m0, m1 = self._slopes[k], self._slopes[k + 1]
        u2, u3 = u * u, u * u * u
        y = (2 * u3 - 3 * u2 + 1) * y0 + (u3 - 2 * u2 + u) * h * m0
        y = y + (-2 * u3 + 3 * u2) * y1 + (u3 - u2) * h * m1
        dy = (6 * u2 - 6 * u) * y0 + (3 * u2 - 4 * u + 1) * h * m0
        dy = (dy + (-6 * u2 + 6 * u) * y1 + (3 * u2 - 2 * u) * h * m1) / h
        return y, dy

    def _var_and_dvar(self, t: TimeLike):
        """``sigma^2(t)`` and its t-derivative."""
        t = _t(t)
        first = t < 1.0 / self.T
        ls, slope = self._log_sigma_and_slope(torch.where(first, torch.ones_like(t), t))
        var_rest = torch.exp(2 * ls)
        var = torch.where(first, t * self.T * self._var[1], var_rest)
        dvar = torch.where(first, self.T * self._var[1] * torch.ones_like(t), 2 * slope * var_rest)
        u = t * self.T
        knot = u.round()
        at_knot = ((u - knot).abs() < 1e-9) & (knot >= 0) & (knot <= self.T)
        var = torch.where(at_knot, self._var[knot.clamp(0, self.T).long()], var)
        return var, dvar

    def alpha(self, t: TimeLike) -> torch.Tensor:
        return (1.0 - self._var_and_dvar(t)[0]).clamp_min(0.0).sqrt()

    def sigma(self, t: TimeLike) -> torch.Tensor:
        return self._var_and_dvar(t)[0].sqrt()

    def d_sigma(self, t: TimeLike) -> torch.Tensor:
        var, dvar = self._var_and_dvar(t)
        return dvar / (2 * var.sqrt())

    def d_alpha(self, t: TimeLike) -> torch.Tensor:
        var, dvar = self._var_and_dvar(t)
        return -dvar / (2 * (1.0 - var).sqrt())

    def log_snr(self, t: TimeLike) -> torch.Tensor:
        var = self._var_and_dvar(t)[0]
        return torch.log1p(-var) - var.log()

    def t_from_log_snr(self, lam: TimeLike) -> torch.Tensor:
        lam = _t(lam)
        var = torch.sigmoid(-lam)  # sigma^2 of a VP path with this log-SNR
        first = var <= self._var[1]
        t_first = var / (self._var[1] * self.T)
        ls = 0.5 * var.log()
        table = self._log_sigma[1:].contiguous()  # increasing, knots 1..T
        idx = torch.searchsorted(table, ls.clamp(table[0], table[-1]).contiguous())
        k = idx.clamp(1, self.T - 1)  # ls lies between knots k and k + 1
        lo = (k.double()) / self.T
        hi = lo + 1.0 / self.T
        for _ in range(60):  # bisection on the monotone spline, to float64 precision
            mid = 0.5 * (lo + hi)
            below = self._log_sigma_and_slope(mid)[0] < ls
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return torch.where(first, t_first, 0.5 * (lo + hi))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "schedule": self.schedule, **self.schedule_args}


class VPSDE(Process):
    """Variance-preserving SDE (Song et al. 2021, eq. 11), the continuous limit of DDPM.

    ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW``, ``beta(t) = beta_min + t (beta_max - beta_min)``,
    ``B(t) = int_0^t beta = beta_min t + t^2 (beta_max - beta_min) / 2``,
    ``alpha = exp(-B/2)``, ``sigma = sqrt(1 - exp(-B))`` (the article's ``1 - exp(-B)`` is the variance).
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> None:
        if not 0 < beta_min < beta_max:
            raise ValueError("need 0 < beta_min < beta_max")
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(t_min)

    def beta(self, t: TimeLike) -> torch.Tensor:
        """``beta(t)``."""
        return self.beta_min + _t(t) * (self.beta_max - self.beta_min)

    def int_beta(self, t: TimeLike) -> torch.Tensor:
        """``B(t) = int_0^t beta(s) ds``."""
        t = _t(t)
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)

    def alpha(self, t: TimeLike) -> torch.Tensor:
        return torch.exp(-0.5 * self.int_beta(t))

    def sigma(self, t: TimeLike) -> torch.Tensor:
        return (-torch.expm1(-self.int_beta(t))).sqrt()

    def d_alpha(self, t: TimeLike) -> torch.Tensor:
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t: TimeLike) -> torch.Tensor:
        return 0.5 * self.beta(t) * torch.exp(-self.int_beta(t)) / self.sigma(t)

    def log_snr(self, t: TimeLike) -> torch.Tensor:
        # alpha^2 / sigma^2 = 1 / (exp(B) - 1)
        return -torch.log(torch.expm1(self.int_beta(t)))

    def t_from_log_snr(self, lam: TimeLike) -> torch.Tensor:
        b = torch.nn.functional.softplus(-_t(lam))  # B = log(1 + exp(-lambda))
        d = self.beta_max - self.beta_min
        return 2 * b / (self.beta_min + (self.beta_min**2 + 2 * d * b).sqrt())

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "beta_min": self.beta_min,
            "beta_max": self.beta_max,
            "t_min": self.t_min,
        }


class SubVPSDE(VPSDE):
    """Sub-VP SDE (Song et al. 2021, eq. 29): VP's ``alpha``, ``sigma = 1 - exp(-B(t))``.

    Its variance ``sigma^2`` is below the VP one at every t (hence the name).
    """

    name = "subvp"

    def sigma(self, t: TimeLike) -> torch.Tensor:
        return -torch.expm1(-self.int_beta(t))

    def d_sigma(self, t: TimeLike) -> torch.Tensor:
        return self.beta(t) * torch.exp(-self.int_beta(t))

    def log_snr(self, t: TimeLike) -> torch.Tensor:
        b = self.int_beta(t)
        return -b - 2 * torch.log(-torch.expm1(-b))

    def t_from_log_snr(self, lam: TimeLike) -> torch.Tensor:
        return Process.t_from_log_snr(self, lam)


class VESDE(Process):
    """Variance-exploding SDE / NCSN (Song & Ermon 2019; Song et al. 2021, eq. 9).

    ``alpha = 1``, ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``: geometric noise levels. Note that
    ``sigma(0) = sigma_min`` (the floor): sampling ends at the smallest trained noise level.
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError("need 0 < sigma_min < sigma_max")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(sigma_max / sigma_min)

    def alpha(self, t: TimeLike) -> torch.Tensor:
        return torch.ones_like(_t(t))

    def sigma(self, t: TimeLike) -> torch.Tensor:
        return self.sigma_min * torch.exp(_t(t) * self._log_ratio)

    def d_alpha(self, t: TimeLike) -> torch.Tensor:
        return torch.zeros_like(_t(t))

    def d_sigma(self, t: TimeLike) -> torch.Tensor:
        return self.sigma(t) * self._log_ratio

    def log_snr(self, t: TimeLike) -> torch.Tensor:
        return -2 * (math.log(self.sigma_min) + _t(t) * self._log_ratio)

    def t_from_log_snr(self, lam: TimeLike) -> torch.Tensor:
        return (-0.5 * _t(lam) - math.log(self.sigma_min)) / self._log_ratio

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class EDM(Process):
    """EDM's sigma space (Karras et al. 2022): ``alpha = 1``, ``sigma(t) = sigma_max t``.

    This is EDM's own choice ``sigma(t) = t`` rescaled to ``t`` in [0, 1]; sampling grids live in
    ``[sigma_min, sigma_max] = [0.002, 80]`` and ``sigma_data`` (0.5) sets the preconditioning.
    """

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError("need 0 < sigma_min < sigma_max")
        self.sigma_min, self.sigma_max, self.sigma_data = map(float, (sigma_min, sigma_max, sigma_data))
        self.t_min = self.sigma_min / self.sigma_max

    def alpha(self, t: TimeLike) -> torch.Tensor:
        return torch.ones_like(_t(t))

    def sigma(self, t: TimeLike) -> torch.Tensor:
        return self.sigma_max * _t(t)

    def d_alpha(self, t: TimeLike) -> torch.Tensor:
        return torch.zeros_like(_t(t))

    def d_sigma(self, t: TimeLike) -> torch.Tensor:
        return torch.full_like(_t(t), self.sigma_max)

    def log_snr(self, t: TimeLike) -> torch.Tensor:
        return -2 * torch.log(self.sigma_max * _t(t))

    def t_from_log_snr(self, lam: TimeLike) -> torch.Tensor:
        return torch.exp(-0.5 * _t(lam)) / self.sigma_max

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "sigma_data": self.sigma_data,
        }
