"""The Process interface: how x_t is made.

Every forward process is a Gaussian path ``x_t = alpha(t) x0 + sigma(t) eps`` for ``t`` in [0, 1],
``t = 0`` data and ``t = 1`` (nearly) pure noise. A process exposes ``alpha``, ``sigma``, their time
derivatives, the log-SNR ``lambda(t) = log(alpha^2 / sigma^2)`` and its inverse, the prior, one-shot
sampling of ``q(x_t | x0)`` and the Gaussian posterior ``q(x_s | x_t, x0)`` between any two times.
No other module computes alpha or sigma.

All time arithmetic is float64: methods take a float or a tensor of times and return float64 tensors
of the same shape.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch

from ..utils import GeneratorLike, append_dims, randn

__all__ = ["Process", "TimeLike"]

TimeLike = float | torch.Tensor


def _t(t: TimeLike) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


class Process(ABC):
    """A Gaussian path ``x_t = alpha(t) x0 + sigma(t) eps``.

    Attributes:
        t_min: the smallest positive time a sampling grid visits before its final step to t = 0
            (where the log-SNR is still finite, e.g. ``1/T`` for DDPM, ``1e-3`` for the VP SDE).
        t_max: where sampling starts (1.0).
        name: registry name used in configs.
    """

    name: str = "process"
    t_min: float = 0.0
    t_max: float = 1.0

    # -- the path -------------------------------------------------------------------------------
    @abstractmethod
    def alpha(self, t: TimeLike) -> torch.Tensor:
        """Signal scale ``alpha(t)``."""

    @abstractmethod
    def sigma(self, t: TimeLike) -> torch.Tensor:
        """Noise scale ``sigma(t)``."""

    @abstractmethod
    def d_alpha(self, t: TimeLike) -> torch.Tensor:
        """Time derivative ``d alpha / dt``."""

    @abstractmethod
    def d_sigma(self, t: TimeLike) -> torch.Tensor:
        """Time derivative ``d sigma / dt``."""

    def log_snr(self, t: TimeLike) -> torch.Tensor:
        """``lambda(t) = log(alpha^2 / sigma^2)``: +inf where sigma = 0, -inf where alpha = 0."""
        return 2.0 * (self.alpha(t).log() - self.sigma(t).log())

    def t_from_log_snr(self, lam: TimeLike) -> torch.Tensor:
        """Inverse of :meth:`log_snr` (lambda is strictly decreasing in t).

        The generic implementation bisects in float64 to machine precision; subclasses override it
        with a closed form where one exists.
        """
        lam = _t(lam)
        lo = torch.zeros_like(lam)
        hi = torch.ones_like(lam)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > lam  # still too little noise: move right
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def snr(self, t: TimeLike) -> torch.Tensor:
        """``alpha^2 / sigma^2``."""
        return self.alpha(t) ** 2 / self.sigma(t) ** 2

    def sigma_tilde(self, t: TimeLike) -> torch.Tensor:
        """EDM-form noise level ``sigma / alpha = exp(-lambda / 2)`` (Karras et al. 2022, sec. 4)."""
        return self.sigma(t) / self.alpha(t)

    def t_from_sigma_tilde(self, s: TimeLike) -> torch.Tensor:
        """Inverse of :meth:`sigma_tilde`."""
        return self.t_from_log_snr(-2.0 * _t(s).log())

    # -- sampling the forward process -------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One-shot ``x_t = alpha(t) x0 + sigma(t) eps``.

        Shapes: ``x0, eps (B, *shape)``, ``t (B,)`` -> ``(B, *shape)`` in ``x0``'s dtype.
        """
        a = append_dims(self.alpha(t), x0.ndim).to(x0.dtype)
        s = append_dims(self.sigma(t), x0.ndim).to(x0.dtype)
        return a * x0 + s * eps

    def prior_std(self, t: TimeLike | None = None) -> float:
        """Standard deviation of the prior used to start sampling at ``t`` (default ``t_max``):
        ``sigma(t)``. Below ``t_max`` this neglects ``alpha(t)^2 Var(x0)``, which is what every
        sampler that starts at a capped noise level does (EDM's ``sigma_max = 80``)."""
        return float(self.sigma(self.t_max if t is None else t))

    def prior_sample(
        self,
        shape,
        generator: GeneratorLike = None,
        dtype: torch.dtype = torch.float32,
        device=None,
        t: TimeLike | None = None,
    ) -> torch.Tensor:
        """Draw ``x_t ~ N(0, sigma(t)^2 I)`` of ``shape = (batch, *data_shape)``; ``t`` defaults to
        ``t_max`` (pass the first time of the sampling grid)."""
        return self.prior_std(t) * randn(shape, generator, dtype=dtype, device=device)

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log-density of the prior ``N(0, sigma(t_max)^2 I)`` (data dims flattened)."""
        s2 = self.prior_std() ** 2
        xf = x.reshape(x.shape[0], -1).double()
        d = xf.shape[1]
        return -0.5 * (xf**2).sum(1) / s2 - 0.5 * d * math.log(2 * math.pi * s2)

    # -- transitions between two times ------------------------------------------------------------
    def transition(self, t: TimeLike, s: TimeLike) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(x_t | x_s) = N(alpha_ts x_s, sigma_ts^2 I)`` for ``s < t``.

        ``alpha_ts = alpha_t / alpha_s`` and ``sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2
        = sigma_t^2 (1 - exp(lambda_t - lambda_s))`` (Kingma et al. 2021, eq. 32-33), evaluated
        with ``expm1`` so small steps keep their precision. For DDPM knots ``s = t - 1/T`` this is
        ``sqrt(1 - beta_t)`` and ``beta_t``.
        """
        t, s = _t(t), _t(s)
        alpha_ts = self.alpha(t) / self.alpha(s)
        var_ts = self.sigma(t) ** 2 * -torch.expm1(self.log_snr(t) - self.log_snr(s))
        return alpha_ts, var_ts

    def posterior_coefficients(
        self, t: TimeLike, s: TimeLike
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coefficients of ``q(x_s | x_t, x0) = N(c_xt x_t + c_x0 x0, var I)``, ``s < t``.

        ``c_xt = alpha_ts sigma_s^2 / sigma_t^2``, ``c_x0 = alpha_s sigma_ts^2 / sigma_t^2``,
        ``var = sigma_ts^2 sigma_s^2 / sigma_t^2 = sigma_s^2 (1 - exp(lambda_t - lambda_s))``.
        For DDPM with ``s = t - 1`` these are Ho et al. (2020) eq. 7: ``mu~_t`` and ``beta~_t``.
        """
        t, s = _t(t), _t(s)
        a_t, a_s, s_t, s_s = self.alpha(t), self.alpha(s), self.sigma(t), self.sigma(s)
        frac = -torch.expm1(self.log_snr(t) - self.log_snr(s))  # sigma_ts^2 / sigma_t^2
        c_xt = a_t * s_s**2 / (a_s * s_t**2)
        c_x0 = a_s * frac
        var = s_s**2 * frac
        return c_xt, c_x0, var

    def posterior(
        self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(B, *shape)`` and variance ``(B,)`` of ``q(x_s | x_t, x0)`` for per-sample times."""
        c_xt, c_x0, var = self.posterior_coefficients(t, s)
        n = x_t.ndim
        mean = append_dims(c_xt, n).to(x_t.dtype) * x_t + append_dims(c_x0, n).to(x_t.dtype) * x0
        return mean, var

    # -- serialisation ------------------------------------------------------------------------------
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """A JSON-serialisable description; ``process_from_config(p.config())`` rebuilds ``p``."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"
