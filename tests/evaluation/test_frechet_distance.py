"""Frechet distance against closed forms for Gaussians (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from hwaksan.evaluation import (
    SmallSampleWarning,
    frechet_distance,
    frechet_distance_from_statistics,
    gaussian_statistics,
)


def _spd(f: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(f, f, generator=g, dtype=torch.float64)
    return a @ a.T / f + 0.1 * torch.eye(f, dtype=torch.float64)


def _exact_sample(mu: torch.Tensor, cov: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n points whose sample mean and (unbiased) sample covariance are exactly mu and cov."""
    z = torch.randn(n, len(mu), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(0)
    white = torch.linalg.cholesky(z.T @ z / (n - 1))
    z = torch.linalg.solve_triangular(white, z.T, upper=False).T  # sample cov = I
    return z @ torch.linalg.cholesky(cov).T + mu


def test_one_dimension_is_the_wasserstein_distance_of_two_normals():
    # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    d = frechet_distance_from_statistics(
        torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-0.5]), torch.tensor([[0.25]])
    )
    assert d == pytest.approx(1.5**2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_commuting_covariances():
    f64 = torch.float64
    mu_a, mu_b = torch.tensor([0.0, 1.0, 2.0], dtype=f64), torch.tensor([1.0, 1.0, -1.0], dtype=f64)
    s_a, s_b = torch.tensor([1.0, 2.0, 0.5], dtype=f64), torch.tensor([3.0, 0.1, 0.5], dtype=f64)
    expected = float((mu_a - mu_b).square().sum() + (s_a.sqrt() - s_b.sqrt()).square().sum())
    got = frechet_distance_from_statistics(mu_a, torch.diag(s_a), mu_b, torch.diag(s_b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_general_covariances_match_scipy_sqrtm():
    f = 6
    cov_a, cov_b = _spd(f, 0), _spd(f, 1)
    mu_a = torch.linspace(-1, 1, f, dtype=torch.float64)
    mu_b = torch.zeros(f, dtype=torch.float64)
    root = scipy.linalg.sqrtm(cov_a.numpy() @ cov_b.numpy())  # independent route: sqrtm of the product
    expected = float(
        np.sum((mu_a - mu_b).numpy() ** 2) + np.trace(cov_a.numpy()) + np.trace(cov_b.numpy())
        - 2 * np.trace(root).real
    )  # fmt: skip
    got = frechet_distance_from_statistics(mu_a, cov_a, mu_b, cov_b)
    assert got == pytest.approx(expected, rel=1e-10)


def test_samples_with_exact_statistics_give_the_closed_form():
    f, n = 5, 40
    cov_a, cov_b = _spd(f, 2), _spd(f, 3)
    mu_a, mu_b = torch.ones(f, dtype=torch.float64), torch.zeros(f, dtype=torch.float64)
    xa, xb = _exact_sample(mu_a, cov_a, n, 4), _exact_sample(mu_b, cov_b, n, 5)
    m, c = gaussian_statistics(xa)
    torch.testing.assert_close(m, mu_a)
    torch.testing.assert_close(c, cov_a)
    expected = frechet_distance_from_statistics(mu_a, cov_a, mu_b, cov_b)
    assert frechet_distance(xa, xb) == pytest.approx(expected, rel=1e-9)


def test_the_low_rank_route_equals_the_eigen_route():
    """Fewer samples than dimensions: the singular-value shortcut must equal the F x F route."""
    g = torch.Generator().manual_seed(7)
    a = torch.randn(30, 64, generator=g, dtype=torch.float64)
    b = torch.randn(25, 64, generator=g, dtype=torch.float64) * 1.5 + 0.2
    full = frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
    # The F x F route takes square roots of the ~F - n round-off eigenvalues (~eps |S|) of the
    # rank-deficient product: each adds up to sqrt(eps |S|) to the trace term.
    scale = float(torch.linalg.matrix_norm(gaussian_statistics(b)[1], 2))
    tol = 2 * 64 * (torch.finfo(torch.float64).eps * scale**2) ** 0.5
    assert frechet_distance(a, b, warn=False) == pytest.approx(full, abs=tol)
    assert frechet_distance(a, a, warn=False) == pytest.approx(0.0, abs=1e-9)


def test_a_sample_against_itself_is_zero_and_float32_input_works():
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    _, cov = gaussian_statistics(x)
    assert abs(frechet_distance(x, x)) < 1e-9 * float(torch.trace(cov))


def test_small_samples_warn_and_bad_shapes_raise():
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(SmallSampleWarning, match="2 x the dimension"):
        frechet_distance(x, x)
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(x, x[:, :4])
    with pytest.raises(ValueError, match=r"\(n, F\)"):
        frechet_distance(x[0], x)
