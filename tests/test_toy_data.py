"""Tests for the 2-D toy data sets (hwaksan.data.toy).

Every expected number is derived from the construction of the set, never copied from a run.
Monte-Carlo tolerances are 5 standard errors of the statistic being tested.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from scipy import integrate

from hwaksan.data import toy
from hwaksan.data.toy import TOY_DATASETS, ToyDataset, get_toy_dataset
from hwaksan.distributions import GaussianMixture

ALL = (
    "moons",
    "swiss_roll",
    "circles",
    "s_curve",
    "8gaussians",
    "checkerboard",
    "spiral",
    "gmm",
)
WITH_DENSITY = ("8gaussians", "checkerboard", "gmm")
MIXTURES = ("8gaussians", "gmm")


def test_registry_names():
    assert TOY_DATASETS == ALL
    for name in ALL:
        ds = get_toy_dataset(name)
        assert isinstance(ds, ToyDataset)
        assert ds.name == name and ds.dim == 2
        assert ds.has_density == (name in WITH_DENSITY)
        assert (ds.mixture is not None) == (name in MIXTURES)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_toy_dataset("banana")
    for name in ALL:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_shape_and_dtype(name, n):
    x = get_toy_dataset(name).sample(n, torch.Generator().manual_seed(0))
    assert x.shape == (n, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", ALL)
def test_determinism(name):
    ds = get_toy_dataset(name)
    a = ds.sample(64, torch.Generator().manual_seed(3))
    b = ds.sample(64, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(ds.sample(64, 3), ds.sample(64, 3))  # an int seed
    assert not torch.equal(a, ds.sample(64, torch.Generator().manual_seed(4)))
    g = torch.Generator().manual_seed(3)
    assert not torch.equal(ds.sample(64, g), ds.sample(64, g))  # the generator advances
    torch.manual_seed(11)
    c = ds.sample(64)
    torch.manual_seed(11)
    assert torch.equal(c, ds.sample(64))  # global RNG


def test_bad_n():
    ds = get_toy_dataset("moons")
    for n in (-1, 2.0, True):
        with pytest.raises(ValueError):
            ds.sample(n)


@pytest.mark.parametrize("name", ALL)
def test_standardised_moments(name):
    """Mean 0 and variance 1 per axis, each within 5 standard errors.

    SE(mean) = s / sqrt(n); SE(variance) = sqrt((m4 - s^4) / n) with m4 the central fourth moment
    (both estimated from the sample). For moons / circles the angles are a deterministic grid, so
    the true error is far below these bounds.
    """
    n = 20_000
    x = get_toy_dataset(name).sample(n, torch.Generator().manual_seed(1)).double()
    mean = x.mean(0)
    xc = x - mean
    var = xc.square().mean(0)
    m4 = xc.pow(4).mean(0)
    assert (mean.abs() <= 5 * var.sqrt() / math.sqrt(n)).all(), mean
    assert ((var - 1).abs() <= 5 * ((m4 - var**2) / n).sqrt()).all(), var


def _uniform_moments(f, lo, hi):
    """E f(u), E f(u)^2 for u ~ U[lo, hi], by quadrature (f scalar -> scalar)."""
    e1 = integrate.quad(f, lo, hi, limit=200)[0] / (hi - lo)
    e2 = integrate.quad(lambda u: f(u) ** 2, lo, hi, limit=200)[0] / (hi - lo)
    return e1, e2


def _raw_moments(name, ds):
    """Exact raw (mean, E x^2) per axis from the generator's parametrisation, by quadrature."""
    pi = math.pi
    if name == "moons":  # half on (cos u, sin u), half on (1 - cos u, 1/2 - sin u), u ~ U[0, pi]
        halves = [
            (lambda u: math.cos(u), lambda u: math.sin(u)),
            (lambda u: 1 - math.cos(u), lambda u: 0.5 - math.sin(u)),
        ]
        parts = [[_uniform_moments(f, 0, pi) for f in half] for half in halves]
        return [tuple(0.5 * (parts[0][a][k] + parts[1][a][k]) for k in (0, 1)) for a in (0, 1)]
    if name == "circles":  # radius 1 and 1/2, half each, angle ~ U[0, 2 pi]
        out = []
        for trig in (math.cos, math.sin):
            m1 = [_uniform_moments(lambda u, r=r, f=trig: r * f(u), 0, 2 * pi) for r in (1.0, 0.5)]
            out.append(tuple(0.5 * (m1[0][k] + m1[1][k]) for k in (0, 1)))
        return out
    if name == "swiss_roll":  # (t cos t, t sin t), t ~ U[3 pi / 2, 9 pi / 2]
        return [
            _uniform_moments(lambda t: t * math.cos(t), 1.5 * pi, 4.5 * pi),
            _uniform_moments(lambda t: t * math.sin(t), 1.5 * pi, 4.5 * pi),
        ]
    if name == "s_curve":  # (sin t, sign(t) (cos t - 1)), t ~ U[-3 pi / 2, 3 pi / 2]
        return [
            _uniform_moments(math.sin, -1.5 * pi, 1.5 * pi),
            _uniform_moments(lambda t: math.copysign(1, t) * (math.cos(t) - 1), -1.5 * pi, 1.5 * pi),
        ]
    if name == "spiral":  # +/- theta (cos theta, sin theta), density 2 theta / T^2 on [0, T]
        big_t = ds.turns_angle
        out = []
        for trig in (math.cos, math.sin):
            e2 = integrate.quad(lambda th, f=trig: (th * f(th)) ** 2 * 2 * th / big_t**2, 0, big_t)[0]
            out.append((0.0, e2))  # the two arms cancel in the mean
        return out
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["moons", "circles", "swiss_roll", "s_curve", "spiral"])
def test_scaling_constants_are_exact(name):
    """shift / scale are the exact raw mean / std (with the Gaussian noise added in quadrature)."""
    ds = get_toy_dataset(name)
    for axis, (e1, e2) in enumerate(_raw_moments(name, ds)):
        assert float(ds.shift[axis]) == pytest.approx(e1, rel=1e-9, abs=1e-12)
        std = math.sqrt(e2 - e1**2 + ds.noise**2)
        assert float(ds.scale[axis]) == pytest.approx(std, rel=1e-9)


@pytest.mark.parametrize("name", MIXTURES)
def test_mixture_is_exactly_standardised(name):
    gm = get_toy_dataset(name).mixture
    assert isinstance(gm, GaussianMixture)
    torch.testing.assert_close(gm.mean(), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    diag = gm.covariance().diagonal()
    torch.testing.assert_close(diag, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


def test_gmm_components_are_anisotropic():
    gm = get_toy_dataset("gmm").mixture
    ev = torch.linalg.eigvalsh(gm.covs)  # (K, 2), ascending
    assert (ev[:, 1] / ev[:, 0] > 2.0).all()
    assert len(set(gm.weights.tolist())) > 1  # unequal weights


def test_eight_gaussians_log_prob_matches_construction():
    """Means 4 (cos 2 pi k/8, sin 2 pi k/8), std 0.5, then divided by sqrt(4^2/2 + 0.5^2)."""
    ds = get_toy_dataset("8gaussians")
    c = 1 / math.sqrt(8.25)
    torch.testing.assert_close(ds.scale, torch.full((2,), 1 / c, dtype=torch.float64))
    ang = torch.arange(8, dtype=torch.float64) * math.pi / 4
    means = 4 * c * torch.stack([ang.cos(), ang.sin()], 1)
    s2 = (0.5 * c) ** 2
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    d2 = (x[:, None, :] - means[None]).square().sum(-1)  # (50, 8)
    expected = torch.logsumexp(-d2 / (2 * s2) - math.log(2 * math.pi * s2) - math.log(8), dim=1)
    got = ds.log_prob(x)
    assert got.dtype == torch.float64 and got.shape == (50,)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # float32 input gives the same values as its float64 cast
    torch.testing.assert_close(ds.log_prob(x.float()), ds.log_prob(x.float().double()))


@pytest.mark.parametrize("name", MIXTURES)
def test_mixture_log_prob_integrates_to_one(name):
    """Trapezoid rule on a grid of spacing h over a box holding all but a negligible tail.

    Poisson summation: the lattice sum of a Gaussian N(m, C) with spacing h differs from its
    integral by sum_{k != 0} exp(-2 pi^2 k^T C k / h^2) <= theta(a)^2 - 1, with
    a = 2 pi^2 s_min^2 / h^2 and theta(a) = 1 + 2 sum_{j>=1} e^{-a j^2}
    <= 1 + 2 e^{-a} / (1 - e^{-a}).
    With h = s_min (smallest component std) this is ~4 e^{-2 pi^2} ~ 1e-8. The box reaches 12
    marginal stds beyond every mean, so the tail (bounded with erfc) is below 1e-30.
    """
    ds = get_toy_dataset(name)
    gm = ds.mixture
    s_min = float(gm.eigvals.min().sqrt())
    h = s_min
    marg_sd = gm.covs.diagonal(dim1=-2, dim2=-1).sqrt()  # (K, 2)
    half = float((gm.means.abs() + 12 * marg_sd).max())
    grid = torch.arange(-half, half + h, h, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    dens = ds.log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).exp().reshape(xx.shape)
    total = float(torch.trapezoid(torch.trapezoid(dens, dx=h, dim=1), dx=h, dim=0))

    a = 2 * math.pi**2 * s_min**2 / h**2
    lattice = (1 + 2 * math.exp(-a) / (1 - math.exp(-a))) ** 2 - 1
    tail = sum(
        float(w) * 0.5 * math.erfc((half - abs(float(m))) / (math.sqrt(2) * float(s)))
        for w, mk, sk in zip(gm.weights, gm.means, marg_sd, strict=True)
        for m, s in zip(mk, sk, strict=True)
    )
    assert lattice < 1e-7  # the bound is meaningful at this spacing
    assert abs(total - 1) <= lattice + tail + 1e-12, (total, lattice, tail)


def test_checkerboard_log_prob_values():
    """Squares of side c = sqrt(3)/2 on [-sqrt 3, sqrt 3]^2, black iff i + j even; 8 c^2 = 6."""
    ds = get_toy_dataset("checkerboard")
    c = math.sqrt(3) / 2
    for i in range(4):
        for j in range(4):
            centre = torch.tensor([[(i - 2 + 0.5) * c, (j - 2 + 0.5) * c]], dtype=torch.float64)
            corner = torch.tensor([[(i - 2 + 0.01) * c, (j - 2 + 0.99) * c]], dtype=torch.float64)
            expected = -math.log(6.0) if (i + j) % 2 == 0 else -math.inf
            for pt in (centre, corner):
                lp = ds.log_prob(pt)
                assert lp.dtype == torch.float64 and lp.shape == (1,)
                assert float(lp[0]) == pytest.approx(expected, rel=1e-15)
    outside = torch.tensor(
        [[2.0 * c + 0.01, -1.5 * c], [0.0, -2.0 * c - 1e-9], [5.0, 5.0]], dtype=torch.float64
    )
    assert torch.isneginf(ds.log_prob(outside)).all()


def test_checkerboard_density_integrates_to_one():
    """Midpoint rule on a grid aligned with the squares: exact for a piecewise-constant density."""
    ds = get_toy_dataset("checkerboard")
    c = math.sqrt(3) / 2
    k = 10
    h = c / k
    mid = -2 * c + h * (torch.arange(4 * k, dtype=torch.float64) + 0.5)
    xx, yy = torch.meshgrid(mid, mid, indexing="ij")
    dens = ds.log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).exp()
    assert float(dens.sum() * h * h) == pytest.approx(1.0, abs=1e-12)


def test_checkerboard_samples_in_support_and_uniform_over_squares():
    ds = get_toy_dataset("checkerboard")
    n = 40_000
    x = ds.sample(n, torch.Generator().manual_seed(5))
    lp = ds.log_prob(x)
    assert torch.all(lp == -math.log(6.0))
    c = math.sqrt(3) / 2
    idx = (torch.floor(x.double() / c) + 2).long()
    counts = torch.bincount(idx[:, 0] * 4 + idx[:, 1], minlength=16).double()
    black = torch.tensor([(i + j) % 2 == 0 for i in range(4) for j in range(4)])
    assert counts[~black].sum() == 0
    se = math.sqrt(n * (1 / 8) * (7 / 8))  # binomial(n, 1/8)
    assert ((counts[black] - n / 8).abs() <= 5 * se).all(), counts[black]


@pytest.mark.parametrize("u", [0.0, 1.0 - 2**-53, 1.0])
def test_checkerboard_edge_points_stay_inside(monkeypatch, u):
    """Points drawn on (or rounding onto) an edge stay inside their own square after float32."""
    ds = get_toy_dataset("checkerboard")
    c = math.sqrt(3) / 2
    cells = torch.tensor([[i, j] for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    corner = (cells.double() - 2) * c

    def draw_on_edges(n, generator):
        k = torch.arange(n) % 8
        return corner[k], corner[k] + u * c

    monkeypatch.setattr(ds, "_draw", draw_on_edges)
    x = ds.sample(16)
    assert torch.all(ds.log_prob(x) == -math.log(6.0))
    # the move is at most one float32 ulp
    k = torch.arange(16) % 8
    target = (corner[k] + u * c).float()
    assert torch.all((x - target).abs() <= torch.finfo(torch.float32).eps * 2)


@pytest.mark.parametrize("name", [n for n in ALL if n not in WITH_DENSITY])
def test_no_density_raises(name):
    ds = get_toy_dataset(name)
    with pytest.raises(NotImplementedError):
        ds.log_prob(torch.zeros(3, 2))


@pytest.mark.parametrize("name", WITH_DENSITY)
def test_log_prob_rejects_bad_shape(name):
    with pytest.raises(ValueError):
        get_toy_dataset(name).log_prob(torch.zeros(3, 3))


def test_module_imports_respect_layering():
    """data -> utils (and distributions): only torch, numpy, sklearn and those two from hwaksan."""
    tree = ast.parse(Path(toy.__file__).read_text())
    allowed_top = {"__future__", "math", "numpy", "torch", "sklearn"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in allowed_top, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.module in ("utils", "distributions"), node.module
            else:
                assert node.module.split(".")[0] in allowed_top | {"hwaksan"}, node.module
                if node.module.startswith("hwaksan"):
                    assert node.module in ("hwaksan.utils", "hwaksan.distributions")
