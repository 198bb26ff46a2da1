"""k-NN manifold precision / recall (Kynkaanniemi et al. 2019) on sets with a known answer."""

from __future__ import annotations

import pytest
import torch

from hwaksan.evaluation import precision_recall
from hwaksan.evaluation.manifold import knn_radii, manifold_coverage


def _cloud(n: int, centre: float, seed: int, dim: int = 4) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + centre


def test_knn_radii_match_brute_force():
    x = _cloud(60, 0.0, 0)
    for k in (1, 3, 5):
        d = torch.cdist(x, x)  # (60, 60) with 0 on the diagonal
        expected = d.sort(dim=1).values[:, k]
        torch.testing.assert_close(knn_radii(x, k), expected, rtol=1e-10, atol=1e-10)


def test_identical_sets_give_one_one():
    x = _cloud(200, 0.0, 1)
    assert precision_recall(x, x, warn=False) == (1.0, 1.0)


def test_disjoint_far_sets_give_zero_zero():
    assert precision_recall(_cloud(200, 0.0, 2), _cloud(200, 100.0, 3), warn=False) == (0.0, 0.0)


def test_a_generator_that_covers_one_of_two_modes():
    """real = A u B (far apart), fake = A: every fake point is real (precision 1), half the real
    set is covered (recall 1/2). Swapping the roles swaps the numbers."""
    a, b = _cloud(150, 0.0, 4), _cloud(150, 50.0, 5)
    real = torch.cat([a, b])
    assert precision_recall(real, a, warn=False) == (1.0, 0.5)
    assert precision_recall(a, real, warn=False) == (0.5, 1.0)


def test_coverage_is_inclusive_at_the_radius_and_exclusive_beyond():
    support = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0 + 1e-6], [0.6, 0.8]], dtype=torch.float64)
    inside = manifold_coverage(query, support, torch.tensor([1.0], dtype=torch.float64))
    assert inside.tolist() == [True, False, True]


def test_small_sets_warn():
    x = _cloud(20, 0.0, 6)
    with pytest.warns(UserWarning, match="precision/recall from 20"):
        precision_recall(x, x)


def test_random_sets_match_a_brute_force_reading_of_the_definition():
    real, fake = _cloud(120, 0.0, 7, dim=3), _cloud(90, 0.0, 8, dim=3) * 0.8 + 1.8
    k = 3

    def covered(query, support):
        d_ss = torch.cdist(support, support)
        radii = d_ss.sort(dim=1).values[:, k]  # k-th neighbour other than the point itself
        return (torch.cdist(query, support) <= radii[None, :]).any(dim=1).double().mean().item()

    p, r = precision_recall(real, fake, k=k, warn=False)
    assert p == pytest.approx(covered(fake, real), abs=1e-12)
    assert r == pytest.approx(covered(real, fake), abs=1e-12)
    assert 0.05 < p < 0.95 and 0.05 < r < 0.95  # a case where the test can fail in both directions
