"""Tests for the low-dimensional metrics (hwaksan.evaluation.lowdim).

Expected values come from closed forms or from independent implementations (scipy, POT, explicit
loops); Monte-Carlo tolerances are 5 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import wasserstein_distance

from hwaksan.data.toy import get_toy_dataset
from hwaksan.distributions import GaussianMixture
from hwaksan.evaluation.lowdim import (
    mean_log_likelihood,
    median_heuristic,
    mmd,
    sliced_wasserstein,
)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- sliced Wasserstein


def test_sw_of_a_set_with_itself_is_zero():
    x = _randn(100, 3)
    assert sliced_wasserstein(x, x, generator=_gen()) == 0.0


@pytest.mark.parametrize("p", [1, 2, 3])
def test_sw_shift_in_one_dimension_is_exact(p):
    """In 1-D every direction is +/-1, so SW_p(x, x + c) = |c| whatever the projections."""
    x = _randn(50, 1)
    c = -0.7
    assert sliced_wasserstein(x, x + c, n_projections=7, generator=_gen(), p=p) == pytest.approx(
        abs(c), rel=1e-12
    )


@pytest.mark.parametrize("d", [2, 5])
def test_sw2_shift_closed_form(d):
    """SW_2^2(x, x + c) = E_u <u, c>^2 = |c|^2 / D.

    Each projection of y = x + c is that of x shifted by <u, c>, and the 1-D W_2 between a set and
    its shift is the shift, so the K-projection estimate is (1/K) sum_k <u_k, c>^2. By rotational
    invariance <u, c>^2 = |c|^2 u_1^2 with u_1^2 ~ Beta(1/2, (D-1)/2): mean 1/D and variance
    2 (D-1) / (D^2 (D+2)). Tolerance: 5 standard errors of the mean over K directions.
    """
    x = _randn(64, d)
    c = _randn(d, seed=1)
    k = 4000
    sw = sliced_wasserstein(x, x + c, n_projections=k, generator=_gen(2))
    c2 = float(c.square().sum())
    se = c2 * math.sqrt(2 * (d - 1) / (d**2 * (d + 2)) / k)
    assert abs(sw**2 - c2 / d) <= 5 * se


def test_sw_unequal_sizes_replicated_set():
    """y = x repeated 3 times is the same empirical measure (SW 0); its shift gives |c| in 1-D."""
    x = _randn(40, 2)
    y = x.repeat(3, 1)
    assert sliced_wasserstein(x, y, generator=_gen()) == pytest.approx(0.0, abs=1e-12)
    x1 = x[:, :1]
    assert sliced_wasserstein(x1, x1.repeat(3, 1) + 0.25, generator=_gen()) == pytest.approx(0.25, rel=1e-12)


@pytest.mark.parametrize("n,m", [(7, 11), (12, 12), (5, 3)])
def test_sw_one_dimension_matches_exact_optimal_transport(n, m):
    """1-D, unequal sizes: W_1 against scipy, W_2 against POT's exact OT (emd2)."""
    x = _randn(n, 1, seed=3)
    y = _randn(m, 1, seed=4) * 1.7 + 0.3
    w1 = wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy())
    assert sliced_wasserstein(x, y, n_projections=3, p=1) == pytest.approx(w1, rel=1e-10)
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    cost = (x.numpy() - y.numpy().T) ** 2
    w2 = math.sqrt(ot.emd2(a, b, cost))
    assert sliced_wasserstein(x, y, n_projections=3, p=2) == pytest.approx(w2, rel=1e-9)


def test_sw_higher_dimension_matches_per_direction_exact_ot():
    """D = 3, unequal sizes: with the documented directions (normalised Gaussians drawn from the
    generator), SW_p^p is the mean over directions of the exact 1-D W_p^p (POT emd2)."""
    x = _randn(9, 3, seed=5)
    y = _randn(13, 3, seed=6) + 0.5
    k, p = 6, 3
    dirs = torch.randn(k, 3, generator=_gen(7), dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    a, b = np.full(9, 1 / 9), np.full(13, 1 / 13)
    wpp = []
    for u in dirs:
        px, py = (x @ u).numpy(), (y @ u).numpy()
        wpp.append(ot.emd2(a, b, np.abs(px[:, None] - py[None, :]) ** p))
    expected = float(np.mean(wpp)) ** (1 / p)
    got = sliced_wasserstein(x, y, n_projections=k, generator=_gen(7), p=p)
    assert got == pytest.approx(expected, rel=1e-9)


def test_sw_deterministic_and_symmetric():
    x, y = _randn(30, 2), _randn(45, 2, seed=1) * 2
    a = sliced_wasserstein(x, y, generator=_gen(9))
    assert a == sliced_wasserstein(x, y, generator=_gen(9))
    assert a == pytest.approx(sliced_wasserstein(y, x, generator=_gen(9)), rel=1e-12)
    assert a > 0


def test_sw_accepts_float32_and_rejects_bad_input():
    x = _randn(20, 2)
    assert sliced_wasserstein(x.float(), x.float() + 1, generator=_gen()) > 0
    with pytest.raises(ValueError):
        sliced_wasserstein(x, _randn(20, 3))
    with pytest.raises(ValueError):
        sliced_wasserstein(x, x, p=0.5)


# --------------------------------------------------------------------------------------- MMD


def _mmd_loops(x, y, hs):
    """The unbiased estimator written pair by pair."""

    def k(a, b):
        d2 = float((a - b).square().sum())
        return sum(math.exp(-d2 / (2 * h * h)) for h in hs)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd_matches_pairwise_loops():
    x, y = _randn(6, 2), _randn(9, 2, seed=1) + 0.4
    hs = (0.3, 1.1)
    assert mmd(x, y, bandwidths=hs) == pytest.approx(_mmd_loops(x, y, hs), rel=1e-12)


def test_median_heuristic_and_default_bandwidths():
    x, y = _randn(30, 2), _randn(50, 2, seed=1) * 2
    med = float(np.median(pdist(torch.cat([x, y]).numpy())))
    assert median_heuristic(x, y) == pytest.approx(med, rel=1e-12)
    expected = mmd(x, y, bandwidths=[0.5 * med, med, 2 * med])
    assert mmd(x, y) == pytest.approx(expected, rel=1e-12)
    assert mmd(x, y) == pytest.approx(_mmd_loops(x, y, (0.5 * med, med, 2 * med)), rel=1e-10)


def _gaussian_mmd2(mu1, s1, mu2, s2, hs, d):
    """Closed-form MMD^2 between N(mu1, s1^2 I) and N(mu2, s2^2 I) for sum_h exp(-|a-b|^2 / 2h^2).

    For Z = A - B ~ N(delta, tau^2 I_D): E exp(-|Z|^2 / (2 h^2)) =
    (h^2 / (h^2 + tau^2))^(D/2) exp(-|delta|^2 / (2 (h^2 + tau^2))), with tau^2 = 2 s1^2 for
    two draws of X, 2 s2^2 for Y, and s1^2 + s2^2 (delta = mu1 - mu2) for X against Y.
    """
    dm2 = float((mu1 - mu2).square().sum())
    total = 0.0
    for h in hs:
        h2 = h * h
        total += (h2 / (h2 + 2 * s1**2)) ** (d / 2) + (h2 / (h2 + 2 * s2**2)) ** (d / 2)
        t2 = s1**2 + s2**2
        total -= 2 * (h2 / (h2 + t2)) ** (d / 2) * math.exp(-dm2 / (2 * (h2 + t2)))
    return total


def _replicates(mu1, s1, mu2, s2, hs, n=200, reps=16):
    vals = []
    for r in range(reps):
        x = mu1 + s1 * _randn(n, 2, seed=2 * r)
        y = mu2 + s2 * _randn(n, 2, seed=2 * r + 1)
        vals.append(mmd(x, y, bandwidths=hs))
    vals = torch.tensor(vals, dtype=torch.float64)
    return float(vals.mean()), float(vals.std() / math.sqrt(reps))


@pytest.mark.parametrize(
    "mu2,s2",
    [((1.0, 0.5), 1.0), ((0.0, 0.0), 1.5), ((0.5, -0.5), 0.7)],
)
def test_mmd_two_gaussians_closed_form(mu2, s2):
    """The estimator is unbiased: the mean of 16 independent estimates matches the closed form
    within 5 standard errors (estimated from the spread of the 16 replicates)."""
    hs = (0.5, 1.0, 2.0)
    mu1, s1 = torch.zeros(2, dtype=torch.float64), 1.0
    mu2 = torch.tensor(mu2, dtype=torch.float64)
    expected = _gaussian_mmd2(mu1, s1, mu2, s2, hs, 2)
    mean, se = _replicates(mu1, s1, mu2, s2, hs)
    assert expected > 5 * se  # the test can tell these distributions apart
    assert abs(mean - expected) <= 5 * se, (mean, expected, se)


def test_mmd_identical_distributions_is_zero_within_error():
    hs = (0.5, 1.0, 2.0)
    mu = torch.tensor([0.3, -0.2], dtype=torch.float64)
    assert _gaussian_mmd2(mu, 1.0, mu, 1.0, hs, 2) == 0.0
    mean, se = _replicates(mu, 1.0, mu, 1.0, hs)
    assert abs(mean) <= 5 * se, (mean, se)


def test_mmd_rejects_bad_input():
    x = _randn(10, 2)
    with pytest.raises(ValueError):
        mmd(x[:1], x)
    with pytest.raises(ValueError):
        mmd(x, x, bandwidths=[1.0, 0.0])
    with pytest.raises(ValueError):
        mmd(x, _randn(10, 3))


# ------------------------------------------------------------------------- mean log-likelihood


def test_mean_log_likelihood_standard_gaussian():
    """E log N(z; 0, I_D) = -D/2 log(2 pi) - D/2; Var = Var(|z|^2 / 2) = D / 2."""
    d, n = 3, 4000
    z = _randn(n, d, seed=8)

    def logp(x):
        return -0.5 * x.square().sum(1) - 0.5 * d * math.log(2 * math.pi)

    expected = -0.5 * d * math.log(2 * math.pi) - 0.5 * d
    se = math.sqrt(d / 2 / n)
    assert abs(mean_log_likelihood(z, logp) - expected) <= 5 * se


def test_mean_log_likelihood_objects():
    board = get_toy_dataset("checkerboard")
    x = board.sample(500, 0)
    assert mean_log_likelihood(x, board) == pytest.approx(-math.log(6.0), rel=1e-15)
    x_off = torch.cat([x, torch.tensor([[10.0, 10.0]])])
    assert mean_log_likelihood(x_off, board) == -math.inf

    gm = GaussianMixture([[0.0, 0.0], [2.0, 1.0]], [0.5, 0.2])
    y = _randn(50, 2)
    assert mean_log_likelihood(y, gm) == pytest.approx(float(gm.log_prob(y).mean()), rel=1e-15)

    with pytest.raises(ValueError):
        mean_log_likelihood(x, get_toy_dataset("moons"))
    with pytest.raises(TypeError):
        mean_log_likelihood(x, 3.0)
