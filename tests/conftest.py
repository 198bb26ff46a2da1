"""Shared fixtures: small Gaussian-mixture problems and their exact denoisers."""

from __future__ import annotations

import pytest
import torch

from hwaksan.distributions import GaussianMixture

torch.set_num_threads(1)  # two xdist workers on two cores: one thread each


@pytest.fixture(scope="session")
def mixture2d() -> GaussianMixture:
    """A 3-component anisotropic mixture in 2-D with unequal weights."""
    means = torch.tensor([[-1.5, 0.0], [1.5, 0.3], [0.0, 1.5]], dtype=torch.float64)
    covs = torch.tensor(
        [[[0.20, 0.05], [0.05, 0.10]], [[0.10, -0.03], [-0.03, 0.30]], [[0.15, 0.0], [0.0, 0.05]]],
        dtype=torch.float64,
    )
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))
