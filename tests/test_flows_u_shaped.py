"""The U-shaped training-time density of Lee, Lin & Fanti 2024 (``sample_t(..., "u_shaped")``), and
``u_shaped_tmax``: the same with an atom of mass 0.1 at ``t_max``.

Closed form on [0, 1] with ``a = 4``: ``p(u) = a cosh(a (u - 1/2)) / (2 sinh(a/2))``, CDF
``F(u) = (sinh(a (u - 1/2)) + sinh(a/2)) / (2 sinh(a/2))``, mean 1/2 (symmetric) and variance
``int (u - 1/2)^2 p(u) du = 1/4 - coth(a/2)/a + 2/a^2`` (by parts, twice), 0.1157 for a = 4
(uniform: 1/12 = 0.0833).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from hwaksan.losses import T_DISTRIBUTIONS, sample_t
from hwaksan.processes import LinearInterpolant, make_process

A = 4.0
N = 200_000


def _cdf(u):
    """The closed-form CDF; ``u`` a float or a numpy array."""
    return (np.sinh(A * (u - 0.5)) + math.sinh(A / 2)) / (2 * math.sinh(A / 2))


def _draw(process=None, n=N, seed=0, **kw):
    return sample_t(process or LinearInterpolant(), n, "u_shaped", torch.Generator().manual_seed(seed), **kw)


def test_u_shaped_is_a_t_distribution_and_is_deterministic():
    assert "u_shaped" in T_DISTRIBUTIONS
    t = _draw(n=1000)
    assert t.dtype == torch.float64 and t.shape == (1000,)
    assert torch.equal(t, _draw(n=1000))
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0


def test_u_shaped_matches_its_closed_form_cdf_ks():
    t = _draw().numpy()
    d, _ = stats.kstest(t, _cdf)
    # Kolmogorov's limit: P(sqrt(n) D > 1.95) ~ 1e-3
    assert d < 1.95 / math.sqrt(N)
    # and it is not the uniform density: the KS distance to U(0, 1) is max |F(u) - u| = 0.092
    d_uniform, _ = stats.kstest(t, "uniform")
    assert d_uniform > 0.08


def test_u_shaped_mean_variance_and_end_mass_match_the_closed_form():
    t = _draw(seed=1)
    var = 0.25 - 1 / (math.tanh(A / 2) * A) + 2 / A**2
    assert abs(float(t.mean()) - 0.5) < 4 * math.sqrt(var / N)
    dev2 = (t - 0.5) ** 2
    assert abs(float(dev2.mean()) - var) < 4 * float(dev2.std()) / math.sqrt(N)
    # histogram: mass of each tenth of [0, 1] against F, 4 binomial standard errors
    edges = torch.linspace(0, 1, 11, dtype=torch.float64)
    counts = torch.histc(t, bins=10, min=0.0, max=1.0)
    for k in range(10):
        p = _cdf(float(edges[k + 1])) - _cdf(float(edges[k]))
        assert abs(float(counts[k]) / N - p) < 4 * math.sqrt(p * (1 - p) / N)
    # U-shaped: the end tenths hold 3x the mass of the middle ones (0.173 vs 0.057)
    assert counts[0] > 2.3 * counts[5] and counts[9] > 2.3 * counts[4]


def test_u_shaped_spans_the_process_time_range_and_its_parameter():
    vp = make_process("vp")
    t = _draw(vp, n=20_000)
    assert float(t.min()) >= vp.t_min and float(t.max()) <= vp.t_max
    u = (t - vp.t_min) / (vp.t_max - vp.t_min)
    d, _ = stats.kstest(u.numpy(), _cdf)
    assert d < 1.95 / math.sqrt(20_000)
    # a small a tends to U(0, 1): the variance approaches 1/12
    flat = _draw(n=20_000, u_shape_a=1e-3)
    assert abs(float(flat.var()) - 1 / 12) < 4 * math.sqrt(1 / 180 / 20_000)
    with pytest.raises(ValueError, match="u_shape_a"):
        _draw(n=3, u_shape_a=0.0)


def test_u_shaped_tmax_puts_mass_p_at_t_max_and_is_u_shaped_elsewhere():
    t = sample_t(LinearInterpolant(), N, "u_shaped_tmax", torch.Generator().manual_seed(2))
    end = t == 1.0
    p = 0.1
    assert abs(float(end.double().mean()) - p) < 4 * math.sqrt(p * (1 - p) / N)
    rest = t[~end].numpy()
    d, _ = stats.kstest(rest, _cdf)
    assert d < 1.95 / math.sqrt(len(rest))
    t_all = sample_t(
        LinearInterpolant(), 1000, "u_shaped_tmax", torch.Generator().manual_seed(2), p_t_max=1.0
    )
    assert bool((t_all == 1.0).all())
    with pytest.raises(ValueError, match="p_t_max"):
        sample_t(LinearInterpolant(), 3, "u_shaped_tmax", p_t_max=1.5)
