"""Gaussian mixtures in closed form: sampling, log-density, and every Gaussian-noised marginal.

If ``x0 ~ sum_k w_k N(m_k, C_k)`` and ``x_t = a x0 + s eps``, then
``x_t ~ sum_k w_k N(a m_k, a^2 C_k + s^2 I)`` and the posterior mean is (Tweedie / Gaussian conditioning)

    E[x0 | x_t] = sum_k r_k(x_t) [m_k + a C_k (a^2 C_k + s^2 I)^{-1} (x_t - a m_k)],

with ``r_k`` the component responsibilities. Everything is computed in float64 through one
eigendecomposition per component, ``C_k = U_k diag(d_k) U_k^T``. This module imports only torch so
that both ``data`` and ``oracles`` can use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .utils import GeneratorLike, randn

__all__ = ["GaussianMixture"]


class GaussianMixture:
    """A mixture of K full-covariance Gaussians in D dimensions.

    Args:
        means: ``(K, D)`` component means.
        covs: ``(K, D, D)`` symmetric positive semi-definite covariances, or ``(K,)`` / ``(K, D)`` for
            isotropic / diagonal ones.
        weights: ``(K,)`` mixture weights (normalised here); uniform when omitted.
    """

    def __init__(
        self,
        means: torch.Tensor | Sequence,
        covs: torch.Tensor | Sequence | float,
        weights: torch.Tensor | Sequence | None = None,
    ) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"means must be (K, D), got {tuple(means.shape)}")
        k, d = means.shape
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.ndim == 0:
            covs = covs.expand(k)
        if covs.ndim == 1:
            covs = covs[:, None, None] * torch.eye(d, dtype=torch.float64)
        elif covs.ndim == 2:
            covs = torch.diag_embed(covs)
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must be (K, D, D) = {(k, d, d)}, got {tuple(covs.shape)}")
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be K non-negative numbers with a positive sum")
        self.means = means
        self.covs = covs
        self.weights = weights / weights.sum()
        evals, evecs = torch.linalg.eigh(covs)
        if (evals < -1e-10).any():
            raise ValueError("covariances must be positive semi-definite")
        self.eigvals = evals.clamp_min(0.0)  # (K, D)
        self.eigvecs = evecs  # (K, D, D)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def mean(self) -> torch.Tensor:
        """``(D,)`` mixture mean."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """``(D, D)`` mixture covariance: ``sum w_k (C_k + m_k m_k^T) - m m^T``."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs) + torch.einsum(
            "k,ki,kj->ij", self.weights, self.means, self.means
        )
        return second - torch.outer(m, m)

    def sample(
        self, n: int, generator: GeneratorLike = None, return_labels: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` samples ``(n, D)`` in float64 (and their component labels ``(n,)``)."""
        if generator is None or isinstance(generator, torch.Generator):
            labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        else:
            labels = torch.stack([torch.multinomial(self.weights, 1, generator=g)[0] for g in generator])
        z = randn((n, self.dim), generator, dtype=torch.float64)
        scale = self.eigvecs[labels] * self.eigvals[labels].sqrt()[:, None, :]
        x = self.means[labels] + torch.einsum("nij,nj->ni", scale, z)
        return (x, labels) if return_labels else x

    def _noised_terms(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
        """Per-component rotated residuals, variances and log-densities of the noised marginal.

        Args:
            x: ``(B, D)`` float64. alpha, sigma: ``(B,)`` float64.
        Returns:
            y ``(B, K, D)`` in each component's eigenbasis, var ``(B, K, D)``, log-density ``(B, K)``
            including the log-weights.
        """
        a = alpha[:, None, None]
        resid = x[:, None, :] - a * self.means[None]  # (B, K, D)
        y = torch.einsum("kji,bkj->bki", self.eigvecs, resid)
        var = a**2 * self.eigvals[None] + (sigma**2)[:, None, None]
        var = var.clamp_min(1e-300)
        logp = -0.5 * ((y**2) / var + var.log()).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return y, var, logp + self.weights.log()[None]

    def _prep(self, x, alpha, sigma):
        x = torch.as_tensor(x, dtype=torch.float64)
        b = x.shape[0]
        alpha = torch.as_tensor(alpha, dtype=torch.float64).expand(b)
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(b)
        return x.reshape(b, -1), alpha, sigma

    def log_prob(self, x: torch.Tensor, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """``(B,)`` log-density of the noised marginal of ``a x0 + s eps`` at ``x`` (default: data)."""
        x, alpha, sigma = self._prep(x, alpha, sigma)
        return torch.logsumexp(self._noised_terms(x, alpha, sigma)[2], dim=-1)

    def responsibilities(self, x: torch.Tensor, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """``(B, K)`` posterior component probabilities ``p_t(k | x_t)``."""
        x, alpha, sigma = self._prep(x, alpha, sigma)
        return torch.softmax(self._noised_terms(x, alpha, sigma)[2], dim=-1)

    def posterior_mean(self, x: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """``(B, D)`` exact ``E[x0 | x_t = x]`` for ``x_t = alpha x0 + sigma eps``."""
        x, alpha, sigma = self._prep(x, alpha, sigma)
        y, var, logp = self._noised_terms(x, alpha, sigma)
        r = torch.softmax(logp, dim=-1)  # (B, K)
        gain = alpha[:, None, None] * self.eigvals[None] / var  # (B, K, D)
        comp = self.means[None] + torch.einsum("kij,bkj->bki", self.eigvecs, gain * y)
        return torch.einsum("bk,bkd->bd", r, comp)

    def score(self, x: torch.Tensor, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """``(B, D)`` exact ``grad_x log p_t(x)`` of the noised marginal."""
        x, alpha, sigma = self._prep(x, alpha, sigma)
        y, var, logp = self._noised_terms(x, alpha, sigma)
        r = torch.softmax(logp, dim=-1)
        comp = -torch.einsum("kij,bkj->bki", self.eigvecs, y / var)
        return torch.einsum("bk,bkd->bd", r, comp)

    def component(self, k: int) -> GaussianMixture:
        """Component ``k`` alone, as a one-component mixture."""
        return GaussianMixture(self.means[k : k + 1], self.covs[k : k + 1])
