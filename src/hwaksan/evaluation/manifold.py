"""Improved precision and recall: the k-nearest-neighbour manifold estimate.

Kynkaanniemi et al. 2019 ("Improved Precision and Recall Metric for Assessing Generative Models",
sec. 3, eqs. 1-2): the manifold of a feature set ``Phi`` is the union of balls around each of its
points, each ball's radius the distance to that point's k-th nearest neighbour in ``Phi``::

    f(phi, Phi) = 1  if  ||phi - phi'|| <= ||phi' - NN_k(phi', Phi)||  for some phi' in Phi,  else 0
    precision   = mean over generated phi_g of f(phi_g, Phi_real)
    recall      = mean over real phi_r of f(phi_r, Phi_gen)

Precision is the share of generated samples that look like real data; recall is the share of real
data the generator covers. Both depend on the sample sizes (the balls shrink as n grows), so
compare numbers only at equal ``n`` and ``k`` (the paper: k = 3, equal set sizes).
"""

from __future__ import annotations

import warnings

import torch

from .frechet import SmallSampleWarning

__all__ = ["MIN_SAMPLES_PR", "knn_radii", "manifold_coverage", "precision_recall"]

MIN_SAMPLES_PR = 1000
"""Fewer samples than this per set gives a warning: the binomial standard error of a share near 0.5
is then above 0.016, and the k-NN balls of a small set are large, which inflates both numbers."""

_BLOCK = 2**22  # entries of a distance block: 32 MiB of float64


def _sq_dists(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(len(a), len(b))`` by ``|a|^2 + |b|^2 - 2 a.b`` (float64, clamped at 0)."""
    return ((a * a).sum(1, keepdim=True) + b_sq[None, :] - 2 * a @ b.T).clamp_min_(0)


def _as_feats(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).detach().to(torch.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be non-empty (n, F) features, got shape {tuple(x.shape)}")
    return x


def knn_radii(feats: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Distance ``(n,)`` from each row of ``feats (n, F)`` to its k-th nearest other row (float64)."""
    x = _as_feats(feats, "feats")
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in 1..{n - 1} for {n} samples, got {k}")
    x_sq = (x * x).sum(1)
    rows = max(1, _BLOCK // n)
    out = torch.empty(n, dtype=torch.float64, device=x.device)
    for i in range(0, n, rows):
        d2 = _sq_dists(x[i : i + rows], x, x_sq)
        d2[torch.arange(d2.shape[0]), torch.arange(i, i + d2.shape[0])] = 0.0  # itself, exactly
        out[i : i + rows] = d2.topk(k + 1, dim=1, largest=False).values[:, k]  # [0] is the point itself
    return out.sqrt()


def manifold_coverage(query: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each row of ``query (m, F)``: is it inside some ball ``(support_j, radii_j)``? -> bool ``(m,)``.

    Distances within a relative round-off allowance of ``1e-9`` of a radius count as inside, so a
    point that is also in ``support`` is always inside its own ball.
    """
    q, s = _as_feats(query, "query"), _as_feats(support, "support")
    if q.shape[1] != s.shape[1]:
        raise ValueError(f"feature dimensions differ: {q.shape[1]} vs {s.shape[1]}")
    r2 = radii.to(torch.float64).square()
    s_sq = (s * s).sum(1)
    tol = 1e-9 * (s_sq.mean() + (q * q).sum(1).mean())
    rows = max(1, _BLOCK // s.shape[0])
    inside = torch.empty(q.shape[0], dtype=torch.bool, device=q.device)
    for i in range(0, q.shape[0], rows):
        d2 = _sq_dists(q[i : i + rows], s, s_sq)
        inside[i : i + rows] = (d2 <= r2[None, :] + tol).any(dim=1)
    return inside


def precision_recall(
    real_feats: torch.Tensor, fake_feats: torch.Tensor, k: int = 3, warn: bool = True
) -> tuple[float, float]:
    """Improved precision and recall (module docstring) of generated ``fake_feats (n_g, F)`` against
    ``real_feats (n_r, F)``, with k-th-neighbour balls (``k = 3`` as in the paper).

    Example:
        >>> x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
        >>> precision_recall(x, x, warn=False)  # a set against itself
        (1.0, 1.0)
        >>> precision_recall(x, x + 100.0, warn=False)  # far apart
        (0.0, 0.0)
    """
    real, fake = _as_feats(real_feats, "real_feats"), _as_feats(fake_feats, "fake_feats")
    if warn and min(real.shape[0], fake.shape[0]) < MIN_SAMPLES_PR:
        warnings.warn(
            f"precision/recall from {real.shape[0]} real and {fake.shape[0]} generated samples: below "
            f"{MIN_SAMPLES_PR} the k-NN balls are wide and the shares noisy (both read optimistic); use "
            "more samples or report the spread over seeds",
            SmallSampleWarning,
            stacklevel=2,
        )
    precision = manifold_coverage(fake, real, knn_radii(real, k)).double().mean()
    recall = manifold_coverage(real, fake, knn_radii(fake, k)).double().mean()
    return float(precision), float(recall)
