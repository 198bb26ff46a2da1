"""The pieces every sampler shares: grid validation, per-sample times, scalar path coefficients,
and the steps that are written once: the DDIM step, which every sampler takes at the two
boundaries of a grid (:func:`boundary_step`), and the Euler-Maruyama step of the reverse SDE
(:func:`euler_maruyama_step`).

**Boundaries.** Two kinds of step leave the rule of a higher-order or stochastic sampler undefined:

- the last step onto ``sigma = 0`` (the data end): the sampler returns ``alpha_s x0^``, the
  denoiser's prediction, the library's one convention for the end of sampling;
- a step from a point where ``alpha = 0`` (a flow's ``t = 1``, a zero-terminal-SNR table): ``x_t``
  carries no signal, the log-SNR is ``-inf`` and ratios such as ``sigma~ = sigma/alpha`` are
  singular, so the step is the DDIM step ``x_s = alpha_s x0^ + sigma_s x_t / sigma_t``, which needs
  none of them, and it leaves no usable history for a multistep method.

Both are the DDIM step (Song, Meng & Ermon 2021, eq. 12 with ``eta = 0``), so every sampler takes
that one step there (:attr:`Step.boundary`) and the registry's NFE formulas read the same predicate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .._typing import Cond, Denoiser
from ..processes import Process
from ..utils import GeneratorLike, randn_like

__all__ = [
    "Step",
    "steps",
    "grid_steps",
    "validate_grid",
    "denoise",
    "eps_of",
    "score_of",
    "ddim_step",
    "boundary_step",
    "sde_coefficients",
    "euler_maruyama_step",
    "Callback",
]

Callback = Callable[[dict[str, Any]], None] | None


@dataclass(frozen=True)
class Step:
    """One step ``t -> s`` of a grid, with python-float path coefficients (float64 precision)."""

    i: int
    t: float
    s: float
    alpha_t: float
    sigma_t: float
    alpha_s: float
    sigma_s: float
    lambda_t: float
    lambda_s: float
    last: bool

    @property
    def sigma_tilde_t(self) -> float:
        """EDM noise level ``sigma/alpha`` at t (inf where alpha = 0)."""
        return self.sigma_t / self.alpha_t if self.alpha_t > 0 else float("inf")

    @property
    def sigma_tilde_s(self) -> float:
        return self.sigma_s / self.alpha_s if self.alpha_s > 0 else float("inf")

    @property
    def to_data(self) -> bool:
        """The step ends at ``sigma = 0`` (the last step of a grid that ends at ``t = 0``)."""
        return self.sigma_s == 0

    @property
    def from_noise(self) -> bool:
        """The step starts where ``alpha = 0`` (no finite log-SNR): ``x_t`` is pure noise."""
        return not (self.alpha_t > 0 and math.isfinite(self.lambda_t))

    @property
    def boundary(self) -> bool:
        """Either boundary: the sampler takes :func:`boundary_step` (one network call, no history)."""
        return self.to_data or self.from_noise


def validate_grid(ts: torch.Tensor) -> torch.Tensor:
    """``ts`` as a float64 tensor; raises ValueError unless it is 1-d, strictly decreasing and has
    at least two times."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError("a grid needs at least two times (one step)")
    if bool((ts[1:] >= ts[:-1]).any()):
        raise ValueError("grid times must be strictly decreasing, from noise to data")
    return ts


def grid_steps(process: Process, ts: torch.Tensor) -> Iterator[Step]:
    """Iterate over the steps of grid ``ts`` (float64, strictly decreasing) of ``process``."""
    ts = validate_grid(ts)
    alpha, sigma, lam = process.alpha(ts).tolist(), process.sigma(ts).tolist(), process.log_snr(ts).tolist()
    n = len(ts) - 1
    tl = ts.tolist()
    for i in range(n):
        yield Step(
            i,
            tl[i],
            tl[i + 1],
            alpha[i],
            sigma[i],
            alpha[i + 1],
            sigma[i + 1],
            lam[i],
            lam[i + 1],
            i == n - 1,
        )


def steps(denoiser: Denoiser, ts: torch.Tensor) -> Iterator[Step]:
    """Iterate over the steps of grid ``ts`` (float64, strictly decreasing) of the denoiser's process."""
    return grid_steps(denoiser.process, ts)


def denoise(denoiser: Denoiser, x: torch.Tensor, t: float, cond: Cond) -> torch.Tensor:
    """Call the denoiser at one time ``t`` for the whole batch."""
    return denoiser(x, torch.full((x.shape[0],), t, dtype=torch.float64, device=x.device), cond)


def eps_of(x: torch.Tensor, x0: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """``eps_hat = (x - alpha x0_hat) / sigma`` with scalar coefficients."""
    return (x - alpha * x0) / sigma


def score_of(x: torch.Tensor, x0: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """``score_hat = (alpha x0_hat - x) / sigma^2`` (Tweedie's formula) with scalar coefficients."""
    return (alpha * x0 - x) / sigma**2


def ddim_step(x0: torch.Tensor, eps: torch.Tensor | None, alpha_s: Any, sigma_s: Any) -> torch.Tensor:
    """The DDIM update (Song, Meng & Ermon 2021, eq. 12 with ``eta = 0``; the Euler step on
    ``dx~/dsigma~ = eps^``, Karras et al. 2022 sec. 4) written in ``x``:

        x_s = alpha_s x0^ + sigma_s eps^,

    valid in either direction (``s < t`` samples, ``s > t`` inverts). At ``sigma_s = 0`` it is
    ``alpha_s x0^`` and ``eps`` may be None. ``alpha_s, sigma_s`` are floats or 0-d tensors (fitting
    differentiates through them). Shapes: ``x0, eps (B, *shape)`` -> ``(B, *shape)``.
    """
    if sigma_s == 0:
        return alpha_s * x0
    return alpha_s * x0 + sigma_s * eps


def boundary_step(st: Step, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The step a sampler takes over a boundary step ``st`` (module docstring): the DDIM update
    from ``x_t`` with the denoiser's ``x0^ = D(x_t, t)``, so ``alpha_s x0^`` onto ``sigma = 0`` and
    ``alpha_s x0^ + sigma_s x_t / sigma_t`` from ``alpha = 0``. Any other step gets the plain DDIM
    step. Shapes: ``x, x0 (B, *shape)`` -> ``(B, *shape)``."""
    eps = None if st.to_data else eps_of(x, x0, st.alpha_t, st.sigma_t)
    return ddim_step(x0, eps, st.alpha_s, st.sigma_s)


def sde_coefficients(process: Process, t: float) -> tuple[float, float]:
    """Drift and squared diffusion ``f(t), g(t)^2`` of the forward SDE ``dx = f x dt + g dW`` whose
    marginals are the path: ``f = alpha'/alpha``, ``g^2 = d(sigma^2)/dt - 2 f sigma^2``
    (Kingma et al. 2021, app. A; for VP: ``f = -beta/2``, ``g^2 = beta``)."""
    a, s = float(process.alpha(t)), float(process.sigma(t))
    da, ds = float(process.d_alpha(t)), float(process.d_sigma(t))
    if a <= 0:
        raise ValueError(
            f"the forward SDE is singular at t={t} where alpha = 0: start the grid below t = 1 "
            "(e.g. uniform_grid(process, n, t_max=0.999))"
        )
    f = da / a
    return f, 2 * s * ds - 2 * f * s**2


def euler_maruyama_step(
    process: Process, st: Step, x: torch.Tensor, x0: torch.Tensor, generator: GeneratorLike
) -> torch.Tensor:
    """One Euler-Maruyama step ``t -> s`` of the reverse SDE (Song et al. 2021, eq. 6; Anderson
    1982) ``dx = [f x - g^2 score] dt + g dW_bar`` with ``dt = s - t < 0``:

        x_s = x_t + (f x_t - g^2 score^)(s - t) + g sqrt(t - s) z,   score^ = (alpha_t x0^ - x_t) / sigma_t^2,

    ``f, g^2`` from :func:`sde_coefficients` at ``t`` (a step from ``alpha = 0`` raises: the SDE is
    singular there) and ``z`` drawn from ``generator``. A last step onto ``sigma = 0`` is the
    boundary step ``alpha_s x0^`` (no noise). Shapes: ``x, x0 (B, *shape)`` -> ``(B, *shape)``.
    """
    if st.to_data:
        return boundary_step(st, x, x0)
    f, g2 = sde_coefficients(process, st.t)
    score = score_of(x, x0, st.alpha_t, st.sigma_t)
    dt = st.s - st.t
    return x + (f * x - g2 * score) * dt + math.sqrt(g2 * -dt) * randn_like(x, generator)
