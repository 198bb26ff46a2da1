"""The Frechet distance between two sets of features, through their Gaussian statistics.

For Gaussians ``N(mu_a, S_a)`` and ``N(mu_b, S_b)`` the squared 2-Wasserstein (Frechet) distance is
(Dowson & Landau 1982; used on Inception features as "FID" by Heusel et al. 2017, eq. 6)::

    d^2 = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})

``tr (S_a S_b)^{1/2}`` equals ``tr (S_a^{1/2} S_b S_a^{1/2})^{1/2}`` (the two matrices are similar), and
the second form is a symmetric positive semi-definite matrix: its eigenvalues are real and >= 0 up to
round-off, so it is computed with two symmetric eigen-decompositions in float64 and no complex
matrix square root (``scipy.linalg.sqrtm`` of the non-symmetric product leaves a tiny imaginary
part that other implementations have to discard).

From two feature sets smaller than the feature dimension, :func:`frechet_distance` takes a
shortcut that is exact, not an approximation: with centred features ``X_a (n_a, F)``,
``X_b (n_b, F)`` and ``S = X^T X / (n - 1)``, the non-zero eigenvalues of ``S_a S_b`` are those of
``M M^T / ((n_a - 1)(n_b - 1))`` with ``M = X_a X_b^T`` (``eig(PQ) = eig(QP)``), so
``tr (S_a S_b)^{1/2}`` is the sum of the singular values of ``M`` over ``sqrt((n_a - 1)(n_b - 1))``:
an ``n_a x n_b`` problem instead of two ``F x F`` eigen-decompositions.

Like every Frechet distance on features, the plug-in estimate is biased upwards at finite sample
size (the bias shrinks roughly like ``1 / n``), and with fewer samples than twice the feature
dimension the covariance estimate is too poor to trust: :func:`frechet_distance` warns then.
"""

from __future__ import annotations

import math
import warnings

import torch

__all__ = [
    "SmallSampleWarning",
    "gaussian_statistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "min_samples_fd",
]


class SmallSampleWarning(UserWarning):
    """A sample is too small for a stable estimate of a metric."""


def min_samples_fd(dim: int) -> int:
    """Fewest samples for which a Frechet distance in ``dim`` dimensions is reported without a
    warning: ``2 dim``. With ``n <= dim`` the sample covariance is singular (rank ``n - 1``) and the
    trace term is dominated by estimation noise; ``2 dim`` is the usual rule of thumb."""
    return 2 * int(dim)


def _features(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).detach().to(torch.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be (n, F) features, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples for a covariance, got {x.shape[0]}")
    return x


def gaussian_statistics(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(F,)`` and unbiased covariance ``(F, F)`` of features ``(n, F)``, in float64."""
    x = _features(feats, "feats")
    mu = x.mean(0)
    xc = x - mu
    cov = xc.T @ xc / (x.shape[0] - 1)
    return mu, cov


def _sqrt_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off
    eigenvalues are set to zero)."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance_from_statistics(
    mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor, cov_b: torch.Tensor
) -> float:
    """Frechet distance ``d^2`` (module docstring) between ``N(mu_a, cov_a)`` and ``N(mu_b, cov_b)``;
    means ``(F,)``, covariances ``(F, F)``. Computed in float64; the result is ``>= 0`` up to round-off
    (clamped at 0)."""
    mu_a, mu_b = (torch.as_tensor(m, dtype=torch.float64) for m in (mu_a, mu_b))
    cov_a, cov_b = (torch.as_tensor(c, dtype=torch.float64) for c in (cov_a, cov_b))
    f = mu_a.shape[0]
    for name, m, c in (("a", mu_a, cov_a), ("b", mu_b, cov_b)):
        if m.shape != (f,) or c.shape != (f, f):
            raise ValueError(
                f"statistics {name}: mean {tuple(m.shape)} and covariance {tuple(c.shape)} for F={f}"
            )
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = eig.clamp_min(0).sqrt().sum()
    d2 = (mu_a - mu_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_sqrt
    return max(float(d2), 0.0)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor, warn: bool = True) -> float:
    """Frechet distance between the Gaussian fits of two feature sets ``(n_a, F)`` and ``(n_b, F)``.

    Warns (:class:`SmallSampleWarning`) when either set has fewer than :func:`min_samples_fd`
    samples.

    Example:
        >>> x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> round(frechet_distance(x, x), 9)
        0.0
        >>> round(frechet_distance(x, x + 1.0), 6)  # a shift by (1, 1, 1) costs ||1||^2 = 3
        3.0
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if warn:
        need = min_samples_fd(a.shape[1])
        if min(a.shape[0], b.shape[0]) < need:
            warnings.warn(
                f"Frechet distance from {a.shape[0]} and {b.shape[0]} samples of {a.shape[1]}-d features: "
                f"fewer than {need} (2 x the dimension) makes the covariance estimate unstable and the "
                "distance biased upwards; use more samples or report the spread over seeds",
                SmallSampleWarning,
                stacklevel=2,
            )
    if max(a.shape[0], b.shape[0]) >= a.shape[1]:
        return frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
    ca, cb = a.shape[0] - 1, b.shape[0] - 1
    xa, xb = a - a.mean(0), b - b.mean(0)
    tr_sqrt = torch.linalg.svdvals(xa @ xb.T).sum() / math.sqrt(ca * cb)
    d2 = (
        (a.mean(0) - b.mean(0)).square().sum() + xa.square().sum() / ca + xb.square().sum() / cb - 2 * tr_sqrt
    )
    return max(float(d2), 0.0)
