"""The pieces every sampler shares: grid validation, per-sample times, scalar path coefficients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .._typing import Cond, Denoiser

__all__ = ["Step", "steps", "denoise", "Callback"]

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


def steps(denoiser: Denoiser, ts: torch.Tensor) -> Iterator[Step]:
    """Iterate over the steps of grid ``ts`` (float64, strictly decreasing)."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError("a grid needs at least two times (one step)")
    if bool((ts[1:] >= ts[:-1]).any()):
        raise ValueError("grid times must be strictly decreasing, from noise to data")
    p = denoiser.process
    alpha, sigma, lam = p.alpha(ts).tolist(), p.sigma(ts).tolist(), p.log_snr(ts).tolist()
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


def denoise(denoiser: Denoiser, x: torch.Tensor, t: float, cond: Cond) -> torch.Tensor:
    """Call the denoiser at one time ``t`` for the whole batch."""
    return denoiser(x, torch.full((x.shape[0],), t, dtype=torch.float64, device=x.device), cond)


def eps_of(x: torch.Tensor, x0: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """``eps_hat = (x - alpha x0_hat) / sigma`` with scalar coefficients."""
    return (x - alpha * x0) / sigma
