"""Closed-form denoisers for Gaussian-mixture data: exact models for testing.

For data ``x0 ~ sum_k w_k N(m_k, C_k)`` every noised marginal is again a Gaussian mixture, so the
ideal denoiser ``E[x0 | x_t]`` is known exactly for every process. Wrapped as a :class:`Denoiser`
it drives every sampler without any training, which lets tests compare samplers against exact
answers.
"""

from __future__ import annotations

import torch

from ._typing import Cond
from .distributions import GaussianMixture
from .processes import Process
from .utils import as_time

__all__ = ["GaussianMixtureDenoiser", "anisotropic_mixture"]


class GaussianMixtureDenoiser:
    """Exact ``D(x_t, t) = E[x0 | x_t]`` for Gaussian-mixture data under ``process``.

    Computed in float64 and returned in ``x``'s dtype; differentiable in ``x`` (for likelihoods and
    guidance). With ``cond`` = class labels ``(B,)`` it denoises under component ``cond[i]`` alone
    (the exact class-conditional model).

    Shapes: ``x (B, *shape)`` with ``prod(shape) = D``, ``t (B,)``.
    """

    def __init__(self, mixture: GaussianMixture, process: Process) -> None:
        self.mixture = mixture
        self.process = process
        self._components: dict[int, GaussianMixture] = {}

    def _mixture_for(self, label: int) -> GaussianMixture:
        if label not in self._components:
            self._components[label] = self.mixture.component(label)
        return self._components[label]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        b = x.shape[0]
        t = as_time(t, b, x.device)
        xf = x.reshape(b, -1).double()
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)
        if cond is None:
            x0 = self.mixture.posterior_mean(xf, alpha, sigma)
        else:
            labels = torch.as_tensor(cond).reshape(-1)
            x0 = torch.empty_like(xf)
            for k in labels.unique().tolist():
                idx = (labels == k).nonzero().squeeze(1)
                x0[idx] = self._mixture_for(int(k)).posterior_mean(xf[idx], alpha[idx], sigma[idx])
        return x0.reshape(x.shape).to(x.dtype)

    def log_prob(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``(B,)`` exact log-density of the noised marginal ``p_t`` at ``x``."""
        t = as_time(t, x.shape[0], x.device)
        xf = x.reshape(x.shape[0], -1)
        return self.mixture.log_prob(xf, self.process.alpha(t), self.process.sigma(t))


def anisotropic_mixture(
    dim: int, n_components: int = 4, seed: int = 0, scale: float = 2.0
) -> GaussianMixture:
    """A reproducible mixture in ``dim`` dimensions with random means and anisotropic covariances
    (eigenvalues log-uniform in [0.01, 1], random rotations): the benchmark's 64-D problem."""
    g = torch.Generator().manual_seed(seed)
    means = scale * torch.randn(n_components, dim, generator=g, dtype=torch.float64) / dim**0.5
    covs = []
    for _ in range(n_components):
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        ev = torch.exp(torch.empty(dim, dtype=torch.float64).uniform_(-4.6, 0.0, generator=g))
        covs.append(q @ torch.diag(ev) @ q.T)
    weights = torch.rand(n_components, generator=g, dtype=torch.float64) + 0.5
    return GaussianMixture(means, torch.stack(covs), weights)
