"""Metrics between two sets of low-dimensional samples, and the likelihood under a known density.

All computations run in float64 on the device of the first input. Sample sets are ``(n, D)``
tensors (a 1-D tensor is read as ``(n, 1)``); the two sets may have different sizes.

- :func:`sliced_wasserstein`: Monte-Carlo sliced Wasserstein distance over random unit directions,
  with the *exact* 1-D Wasserstein distance between the projected empirical measures.
- :func:`mmd`: the unbiased estimate of the squared maximum mean discrepancy (Gretton et al. 2012,
  JMLR) with a sum of Gaussian (RBF) kernels.
- :func:`mean_log_likelihood`: average log-density of samples under a true density.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

__all__ = ["HasLogProb", "mean_log_likelihood", "median_heuristic", "mmd", "sliced_wasserstein"]

# elements per intermediate block: bounds memory at ~32 MiB of float64
_BLOCK = 2**22


@runtime_checkable
class HasLogProb(Protocol):
    """Anything with ``log_prob(x) -> (n,)``: a toy data set, a ``GaussianMixture``, ..."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor: ...


def _as_samples(x: torch.Tensor, name: str, device=None) -> torch.Tensor:
    x = torch.as_tensor(x).detach()
    x = x.to(device=device if device is not None else x.device, dtype=torch.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be (n, D), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return x


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = _as_samples(x, "x")
    y = _as_samples(y, "y", device=x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y differ in dimension: {x.shape[1]} vs {y.shape[1]}")
    return x, y


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 256,
    generator: torch.Generator | None = None,
    p: float = 2,
) -> float:
    """Sliced Wasserstein distance ``SW_p`` between the empirical measures of ``x`` and ``y``.

    ``SW_p(mu, nu)^p = E_{u ~ Unif(S^{D-1})} W_p^p(u#mu, u#nu)``, estimated with ``n_projections``
    random unit directions ``u_k`` (normalised Gaussian vectors drawn from ``generator``, the same
    for both sets):

        SW_p ~= ( (1/K) sum_k W_p^p(<u_k, x>, <u_k, y>) )^(1/p).

    In 1-D, ``W_p^p = int_0^1 |F^{-1}(s) - G^{-1}(s)|^p ds`` with ``F^{-1}, G^{-1}`` the quantile
    functions of the projections. For empirical measures these are step functions (the sorted
    projections, with steps at ``i/n`` and ``j/m``), so the integral is computed exactly on the
    merged grid of their breakpoints; with ``n == m`` this is the familiar
    ``(1/n) sum_i |x_(i) - y_(i)|^p`` of the sorted values.

    Example: for ``y = x + c`` each projection is shifted by ``<u, c>``, so
    ``SW_2^2 = E_u <u, c>^2 = |c|^2 / D`` (as ``E[u u^T] = I / D``), i.e. ``SW_2 = |c| / sqrt(D)``.

    Args:
        x: ``(n, D)`` samples.
        y: ``(m, D)`` samples.
        n_projections: number ``K`` of random directions.
        generator: ``torch.Generator`` (CPU) for the directions; ``None`` uses torch's global RNG.
        p: order ``p >= 1``.

    Returns:
        The estimate of ``SW_p`` (a Python float).
    """
    x, y = _pair(x, y)
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    dirs = torch.randn(n_projections, d, generator=generator, dtype=torch.float64)
    dirs = (dirs / dirs.norm(dim=1, keepdim=True)).to(x.device)

    # Breakpoints of both quantile functions in units of 1/(n m): i m (i = 1..n) and j n (j = 1..m).
    # On the interval (a, b] ending at breakpoint b, the quantile of x is its order statistic
    # ceil(b / m) - 1 (0-based) and that of y is ceil(b / n) - 1. Integer arithmetic keeps it exact.
    dev = x.device
    b = torch.cat([torch.arange(1, n + 1, device=dev) * m, torch.arange(1, m + 1, device=dev) * n])
    b = torch.unique(b)  # sorted
    width = torch.diff(b, prepend=b.new_zeros(1)).to(torch.float64) / (n * m)  # sums to 1
    ix = (b + m - 1) // m - 1
    iy = (b + n - 1) // n - 1

    chunk = max(1, _BLOCK // (n + m + b.numel()))
    wpp = []
    for k in range(0, n_projections, chunk):
        u = dirs[k : k + chunk].T  # (D, k)
        px = torch.sort(x @ u, dim=0).values  # (n, k)
        py = torch.sort(y @ u, dim=0).values  # (m, k)
        wpp.append((width[:, None] * (px[ix] - py[iy]).abs().pow(p)).sum(0))
    return float(torch.cat(wpp).mean() ** (1.0 / p))


def _pairwise_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # direct differences (no ||a||^2 + ||b||^2 - 2ab expansion): exact zeros for equal points
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def median_heuristic(x: torch.Tensor, y: torch.Tensor | None = None, max_points: int = 1000) -> float:
    """Median of the pairwise Euclidean distances in the pooled sample ``[x; y]``.

    Pairs ``i < j`` only (no self-distances). When more than ``max_points`` points are pooled, a
    deterministic, evenly spaced subset of ``max_points`` of them is used (this is a bandwidth
    heuristic, not a statistic that needs every pair).

    Args:
        x: ``(n, D)`` samples.
        y: optional ``(m, D)`` samples.
        max_points: cap on the number of pooled points used.

    Returns:
        The median distance (a Python float).
    """
    z = _as_samples(x, "x")
    if y is not None:
        z = torch.cat(_pair(z, y))
    if z.shape[0] < 2:
        raise ValueError("the median heuristic needs at least two points")
    if z.shape[0] > max_points:
        idx = torch.linspace(0, z.shape[0] - 1, max_points, device=z.device).round().long()
        z = z[idx]
    i, j = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    dist = (z[i] - z[j]).norm(dim=1)
    return float(torch.quantile(dist, 0.5))


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``sum_{i, j} sum_h exp(-gamma_h |a_i - b_j|^2)`` over all pairs, in row blocks."""
    neg_gamma = -gamma
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    rows = max(1, _BLOCK // (b.shape[0] * gamma.numel()))
    for s in range(0, a.shape[0], rows):
        d2 = _pairwise_dist(a[s : s + rows], b).square_()
        total += torch.exp_(d2[..., None] * neg_gamma).sum()
    return total


def mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidths: Sequence[float] | torch.Tensor | None = None,
) -> float:
    """Unbiased estimate of the squared MMD with a sum of RBF kernels (Gretton et al. 2012, JMLR).

    With ``k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2))`` over the bandwidths ``h``,

        MMD_u^2 = 1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(n m) sum_{i, j} k(x_i, y_j),

    whose expectation is exactly ``MMD^2 = E k(X, X') + E k(Y, Y') - 2 E k(X, Y) >= 0``; the
    estimate itself can be slightly negative when the two distributions are (nearly) equal.

    Args:
        x: ``(n, D)`` samples, ``n >= 2``.
        y: ``(m, D)`` samples, ``m >= 2``.
        bandwidths: kernel length scales ``h > 0``; default: the median heuristic
            (:func:`median_heuristic` of the pooled sample) times ``(0.5, 1, 2)``. Pass them
            explicitly to compare several models on the same kernel.

    Returns:
        ``MMD_u^2`` (a Python float).
    """
    x, y = _pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("the unbiased MMD needs at least two samples in each set")
    if bandwidths is None:
        med = median_heuristic(x, y)
        if med <= 0:
            raise ValueError("all pooled samples coincide: pass bandwidths explicitly")
        bandwidths = [0.5 * med, med, 2.0 * med]
    h = torch.as_tensor(bandwidths, dtype=torch.float64, device=x.device).reshape(-1)
    if h.numel() == 0 or not bool((h > 0).all()):
        raise ValueError(f"bandwidths must be positive, got {bandwidths}")
    gamma = 1.0 / (2.0 * h**2)
    n_kernels = h.numel()  # k(a, a) = number of kernels: removes the diagonal exactly
    kxx = (_kernel_sum(x, x, gamma) - n * n_kernels) / (n * (n - 1))
    kyy = (_kernel_sum(y, y, gamma) - m * n_kernels) / (m * (m - 1))
    kxy = _kernel_sum(x, y, gamma) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


def mean_log_likelihood(
    x: torch.Tensor,
    dataset_or_logprob: HasLogProb | Callable[[torch.Tensor], torch.Tensor],
) -> float:
    """Mean log-density of the samples under a known density: ``(1/n) sum_i log p(x_i)``.

    For samples from a model ``q`` this estimates ``E_q log p = -H(q) - KL(q || p)`` (minus the
    cross-entropy). It is not maximised by ``q = p``: a model that collapses onto the modes of
    ``p`` scores higher than ``p`` itself, so read it next to :func:`sliced_wasserstein` or
    :func:`mmd`. It is ``-inf`` as soon as one sample falls where ``p = 0`` (e.g. off the
    checkerboard).

    Args:
        x: ``(n, D)`` samples.
        dataset_or_logprob: an object with ``log_prob(x) -> (n,)`` (a toy data set with
            ``has_density``, a ``GaussianMixture``) or such a callable.

    Returns:
        The mean log-density in nats (a Python float).
    """
    if getattr(dataset_or_logprob, "has_density", True) is False:
        name = getattr(dataset_or_logprob, "name", type(dataset_or_logprob).__name__)
        raise ValueError(f"{name!r} has no known density")
    if isinstance(dataset_or_logprob, HasLogProb):
        fn = dataset_or_logprob.log_prob
    elif callable(dataset_or_logprob):
        fn = dataset_or_logprob
    else:
        raise TypeError("dataset_or_logprob must have a log_prob method or be callable")
    n = len(x)
    if n == 0:
        raise ValueError("x is empty")
    lp = torch.as_tensor(fn(x)).to(torch.float64)
    if lp.shape != (n,):
        raise ValueError(f"log_prob returned shape {tuple(lp.shape)}, expected ({n},)")
    return float(lp.mean())
