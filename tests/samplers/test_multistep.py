"""Tests for the multistep samplers (hwaksan.samplers.multistep) and the grid planner.

- Convergence order: on a 2-D two-component mixture (EDM, sigma~ from 80 to 0.05, log-SNR-uniform
  grids) against a float64 dopri5 reference (rtol = atol = 1e-12) of the same PF-ODE, the log-log
  slope of the error vs the step count is the declared order within 0.35. The step counts are in
  the asymptotic regime (successive slopes agree within 0.3, measured once when the test was written):
  2nd-order methods 20..80 steps, 3rd/4th-order ones 20..80, LMS (4 history points) 40..160.
  Declared orders: DPM-Solver++(3M) and DEIS integrate a quadratic interpolant exactly (local error
  O(h^4)) -> 3; UniPC-3 with its corrector -> 4 (Zhao et al. 2023); LMS with four points -> 4;
  DPM-2 (midpoint) -> 2. The lower-order warm-up steps sit at sigma~ = 80 where the denoiser is
  nearly constant in log-SNR, so they do not limit the slope over these ranges.
- Registry contract for the new samplers: deterministic under a generator, NFE equals spec.nfe,
  sample i independent of the batch size with per-sample generators, dtype preserved.
- The SDE samplers at ``eta = 0`` against the DPM-Solver++ multistep step written out here (closed
  form for two points, quadrature for three); their stochastic steps are tested exactly in
  test_stochastic_exact.py.
- One step of DPM-Solver++(3M) and of UniPC (bh1 and bh2) re-derived independently in float64 on
  linear-Gaussian data (``x0 ~ N(0, s^2 I)``: the exact denoiser is linear, the exact PF-ODE
  solution closed form), with scipy quadrature of the interpolating polynomial instead of phi
  functions and Vandermonde solves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from torchdiffeq import odeint

from hwaksan.distributions import GaussianMixture
from hwaksan.oracles import GaussianMixtureDenoiser
from hwaksan.processes import EDM, VPSDE, DiscreteVP
from hwaksan.samplers import SAMPLERS, CountingDenoiser, karras_grid, log_snr_grid
from hwaksan.samplers.multistep import BrownianTree, phi, sample_dpmpp_3m, sample_unipc
from hwaksan.utils import generators_from_seeds

NEW_DETERMINISTIC = ("dpmpp_3m", "unipc", "unipc_bh1", "deis", "lms", "dpm_2", "fitted")
NEW_STOCHASTIC = ("dpmpp_2m_sde", "dpmpp_3m_sde")
ORDER_STEPS = {"lms": (40, 80, 160)}
SMIN, SMAX = 0.05, 80.0


def _mixture() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=torch.float64)
    covs = torch.tensor([[0.3**2, 0.5**2], [0.6**2, 0.2**2]], dtype=torch.float64)
    return GaussianMixture(means, covs)


@pytest.fixture(scope="module")
def order_problem():
    mix = _mixture()
    den = GaussianMixtureDenoiser(mix, EDM())
    x = SMAX * torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(s, y):  # dx~/d log sigma~ = x~ - D(x~, sigma~)
        return y - mix.posterior_mean(y, 1.0, float(torch.exp(s)))

    grid = torch.tensor([math.log(SMAX), math.log(SMIN)], dtype=torch.float64)
    y = odeint(f, x, grid, rtol=1e-12, atol=1e-12, method="dopri5")[-1]
    return den, x, mix.posterior_mean(y, 1.0, SMIN)


@pytest.mark.parametrize("name", NEW_DETERMINISTIC)
def test_convergence_order(order_problem, name):
    den, x, ref = order_problem
    spec = SAMPLERS[name]
    ns = ORDER_STEPS.get(name, (20, 40, 80))
    errs = []
    for n in ns:
        ts = log_snr_grid(den.process, n, sigma_min=SMIN, sigma_max=SMAX)
        out = spec.fn(den, x.clone(), ts, **spec.defaults)
        errs.append(float((out - ref).norm(dim=1).mean()))
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(slope - spec.order) <= 0.35, (name, spec.order, slope, errs)


# --------------------------------------------------------------------------------------------------
# registry contract
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def contract_denoiser():
    return GaussianMixtureDenoiser(_mixture(), DiscreteVP.cosine(T=200))


@pytest.mark.parametrize("name", NEW_DETERMINISTIC + NEW_STOCHASTIC)
def test_registry_contract(contract_denoiser, name):
    den = contract_denoiser
    spec = SAMPLERS[name]
    ts = karras_grid(den.process, 6)
    x = den.process.prior_sample((4, 2), torch.Generator().manual_seed(3))
    assert x.dtype == torch.float32

    counter = CountingDenoiser(den)
    a = spec.fn(counter, x.clone(), ts, generator=torch.Generator().manual_seed(5), **spec.defaults)
    assert counter.nfe == spec.nfe(ts, den.process, spec.defaults)
    assert a.dtype == torch.float32 and a.shape == x.shape and bool(torch.isfinite(a).all())
    b = spec.fn(den, x.clone(), ts, generator=torch.Generator().manual_seed(5), **spec.defaults)
    assert torch.equal(a, b)

    full = spec.fn(den, x.clone(), ts, generator=generators_from_seeds([10, 11, 12, 13]), **spec.defaults)
    part = spec.fn(den, x[2:].clone(), ts, generator=generators_from_seeds([12, 13]), **spec.defaults)
    torch.testing.assert_close(full[2:], part, rtol=1e-5, atol=1e-5)
    if spec.stochastic:  # the noise is really used: another seed gives another sample
        c = spec.fn(den, x.clone(), ts, generator=torch.Generator().manual_seed(6), **spec.defaults)
        assert not torch.allclose(a, c)


@pytest.mark.parametrize("name, order", [("dpmpp_2m_sde", 2), ("dpmpp_3m_sde", 3)])
def test_sde_with_eta_zero_is_the_ode_multistep(contract_denoiser, name, order):
    """With ``eta = 0`` the SDE samplers take the deterministic DPM-Solver++ multistep step, written
    out here in float64 (Lu et al. 2022b, eq. 9: ``x_s = (sigma_s / sigma_t) x_t + sigma_s
    int_{lam_t}^{lam_s} e^lam D dlam`` with ``D`` the polynomial through the last ``k`` denoisings
    in ``lam``, integrated exactly). One point: ``(1 - e^{-h}) D_0``. Two points, in closed form:
    ``(1 - e^{-h}) D_0 + (h - 1 + e^{-h}) / h (D_0 - D_1) / r`` with ``r = (lam_t - lam_prev) / h``
    (Alg. 2 of the paper approximates the second weight by ``(1 - e^{-h}) / 2``, an O(h^3) local
    difference; the library's multistep family integrates the interpolant exactly). Three points:
    scipy quadrature. The last step onto sigma = 0 is ``alpha_s D``; no noise whatever the seed."""
    den = contract_denoiser
    p = den.process
    ts = karras_grid(p, 8)
    x = p.prior_sample((5, 2), torch.Generator().manual_seed(1), dtype=torch.float64)
    sde = SAMPLERS[name].fn(den, x, ts, eta=0.0, generator=torch.Generator().manual_seed(0))
    other = SAMPLERS[name].fn(den, x, ts, eta=0.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(sde, other)
    tl = ts.tolist()
    hist: list[tuple[float, torch.Tensor]] = []  # (lam_j, D_j), newest first
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        a_s, s_s, s_t = float(p.alpha(s)), float(p.sigma(s)), float(p.sigma(t))
        d = den(x, torch.full((x.shape[0],), t, dtype=torch.float64))
        if s_s == 0:
            x = a_s * d
            continue
        lam_t, lam_s = _lam(p, t), _lam(p, s)
        h = lam_s - lam_t
        hist = [(lam_t, d), *hist][:order]
        if len(hist) == 3:
            x = (s_s / s_t) * x + s_s * _exp_poly_integral(
                [lj for lj, _ in hist], [dj for _, dj in hist], lam_t, lam_s
            )
            continue
        step = -math.expm1(-h) * d
        if len(hist) == 2:
            r = (lam_t - hist[1][0]) / h
            step = step + (h + math.expm1(-h)) / h * (d - hist[1][1]) / r
        x = (s_s / s_t) * x + a_s * step
    torch.testing.assert_close(sde, x, rtol=1e-10, atol=1e-12)


def test_brownian_tree_is_grid_independent_and_brownian():
    seeds = torch.arange(4000)
    tree = BrownianTree((4000, 1), seeds, 0.0, 1.0, dtype=torch.float64)
    # the same path whatever the query order, and W(0) = 0
    w = tree(0.3)
    _ = tree(0.9), tree(0.1)
    assert torch.equal(w, tree(0.3)) and float(tree(0.0).abs().max()) == 0.0
    # a coarse increment is the sum of the fine ones (same path under any grid)
    coarse = tree(0.8) - tree(0.2)
    fine = sum(tree(b) - tree(a) for a, b in [(0.2, 0.35), (0.35, 0.61), (0.61, 0.8)])
    torch.testing.assert_close(coarse, fine, rtol=0, atol=1e-12)
    # increments are N(0, dt) and independent over disjoint intervals (5 standard errors)
    z1, z2 = tree.normal(0.7, 0.2), tree.normal(0.2, 0.05)
    n = 4000
    assert abs(float(z1.mean())) < 5 / math.sqrt(n)
    assert abs(float(z1.var()) - 1) < 5 * math.sqrt(2 / n)
    assert abs(float((z1 * z2).mean())) < 5 / math.sqrt(n)


def test_phi_functions():
    for z in (-3.0, -0.7, -1e-4, 1e-4, 0.5, 2.0):
        assert phi(1, z) == pytest.approx(math.expm1(z) / z, rel=1e-12)
        assert phi(2, z) == pytest.approx((math.expm1(z) - z) / z**2, rel=1e-9)
        assert phi(3, z) == pytest.approx((math.expm1(z) - z - z * z / 2) / z**3, rel=1e-6)


# --------------------------------------------------------------------------------------------------
# one step re-derived on linear-Gaussian data
# --------------------------------------------------------------------------------------------------
S = 0.7  # data std: x0 ~ N(0, S^2 I)


class LinearGaussianDenoiser:
    """``E[x0 | x_t] = alpha S^2 / (alpha^2 S^2 + sigma^2) x_t``, written out independently."""

    def __init__(self, process):
        self.process = process

    def __call__(self, x, t, cond=None):
        a, s = float(self.process.alpha(t[0])), float(self.process.sigma(t[0]))
        return (a * S**2 / (a * a * S**2 + s * s)) * x


def _lam(process, t: float) -> float:
    return math.log(float(process.alpha(t)) / float(process.sigma(t)))


def _exp_poly_integral(nodes: list[float], values: list[torch.Tensor], lo: float, hi: float) -> torch.Tensor:
    """``int_lo^hi e^lam P(lam) dlam`` for the Lagrange polynomial through ``(nodes, values)``, by
    scipy quadrature of each basis polynomial."""
    out = torch.zeros_like(values[0])
    for j, vj in enumerate(values):

        def basis(lam, j=j):
            return math.prod((lam - nodes[m]) / (nodes[j] - nodes[m]) for m in range(len(nodes)) if m != j)

        w, _ = quad(lambda lam, basis=basis: math.exp(lam) * basis(lam), lo, hi, epsabs=0, epsrel=1e-13)
        out = out + w * vj
    return out


def _closed_form(process, x: torch.Tensor, t: float, s: float) -> torch.Tensor:
    """Exact PF-ODE transport of ``x`` from t to s for Gaussian data:
    ``x~(sigma~) = x~_t sqrt((S^2 + sigma~^2) / (S^2 + sigma~_t^2))``."""
    a_t, a_s = float(process.alpha(t)), float(process.alpha(s))
    st, ss = float(process.sigma_tilde(t)), float(process.sigma_tilde(s))
    return a_s * (x / a_t) * math.sqrt((S**2 + ss**2) / (S**2 + st**2))


@pytest.fixture(scope="module")
def gaussian_setup():
    process = VPSDE()
    den = LinearGaussianDenoiser(process)
    ts = torch.tensor([0.8, 0.55, 0.4, 0.3, 0.22], dtype=torch.float64)
    x = float(process.sigma(0.8)) * torch.randn(
        6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return process, den, ts, x


def _run(fn, den, x, ts, **kw):
    log = []
    out = fn(den, x.clone(), ts, callback=lambda d: log.append((d["x"].clone(), d["denoised"].clone())), **kw)
    return out, log


def test_dpmpp_3m_step_matches_independent_derivation(gaussian_setup):
    process, den, ts, x = gaussian_setup
    out, log = _run(sample_dpmpp_3m, den, x, ts)
    tl = ts.tolist()
    lam = [_lam(process, t) for t in tl]
    # the last step (3 -> 4) from the sampler's own state at t_3 with its three previous denoisings
    x3 = log[2][0]
    ds = [log[1][1], log[2][1], log[3][1]]  # D at t_1, t_2, t_3
    sig4, sig3 = float(process.sigma(tl[4])), float(process.sigma(tl[3]))
    expect = (sig4 / sig3) * x3 + sig4 * _exp_poly_integral(lam[1:4], ds, lam[3], lam[4])
    torch.testing.assert_close(out, expect, rtol=1e-10, atol=1e-12)
    # and that step is an accurate PF-ODE step: compare with the closed-form transport of x_3
    exact = _closed_form(process, x3, tl[3], tl[4])
    ddim = (sig4 / sig3) * x3 + float(process.alpha(tl[4])) * -math.expm1(lam[3] - lam[4]) * ds[2]
    assert float((out - exact).norm()) < 0.15 * float((ddim - exact).norm())


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_steps_match_independent_derivation(gaussian_setup, variant):
    """UniPC-2 (Zhao et al. 2023, Alg. 2/3, data prediction) over three steps, from its equations."""
    process, den, ts, x = gaussian_setup
    ts = ts[:4]
    out, log = _run(sample_unipc, den, x, ts, order=2, variant=variant, lower_order_final=False)
    tl = ts.tolist()
    lam = [_lam(process, t) for t in tl]
    alpha = [float(process.alpha(t)) for t in tl]
    sig = [float(process.sigma(t)) for t in tl]
    t64 = lambda t: torch.full((x.shape[0],), t, dtype=torch.float64)  # noqa: E731

    def B(h):
        return h if variant == "bh1" else 1 - math.exp(-h)

    def base(i, xi, m):  # (sigma_{i+1}/sigma_i) x_i + alpha_{i+1} (1 - e^{-h}) m_i
        h = lam[i + 1] - lam[i]
        return (sig[i + 1] / sig[i]) * xi + alpha[i + 1] * (1 - math.exp(-h)) * m

    m0 = den(x, t64(tl[0]))
    xp1 = base(0, x, m0)  # UniP-1 (= DDIM)
    m1 = den(xp1, t64(tl[1]))
    h1 = lam[1] - lam[0]
    x1 = base(0, x, m0) + alpha[1] * B(h1) * 0.5 * (m1 - m0)  # UniC-1: a = 1/2, r = 1
    h2 = lam[2] - lam[1]
    r = (lam[0] - lam[1]) / h2
    xp2 = base(1, x1, m1) + alpha[2] * B(h2) * 0.5 * (m0 - m1) / r  # UniP-2: a = 1/2
    m2 = den(xp2, t64(tl[2]))
    # UniC-2 with two points solves a_m exactly: the quadratic through (lam0, m0), (lam1, m1),
    # (lam2, m2) integrated exactly, whatever B(h)
    x2 = (sig[2] / sig[1]) * x1 + sig[2] * _exp_poly_integral(lam[:3], [m0, m1, m2], lam[1], lam[2])
    h3 = lam[3] - lam[2]
    r = (lam[1] - lam[2]) / h3
    xp3 = base(2, x2, m2) + alpha[3] * B(h3) * 0.5 * (m1 - m2) / r
    torch.testing.assert_close(log[0][0], xp1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log[1][0], xp2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out, xp3, rtol=1e-10, atol=1e-12)


def test_planned_grid_is_valid_and_no_worse():
    from hwaksan.samplers.plan import calibration_set, plan_steps

    den = GaussianMixtureDenoiser(_mixture(), EDM())
    cal = calibration_set(den, 16, torch.Generator().manual_seed(0), rtol=1e-9, atol=1e-9)
    s_min = float(den.process.sigma_tilde(den.process.t_min))
    for free_end in (False, True):
        plan = plan_steps(den, 5, sampler="dpmpp_3m", calibration=cal, max_evals=40, free_end=free_end)
        ts = plan.ts
        assert ts.dtype == torch.float64 and len(ts) == 6 and float(ts[-1]) == 0.0
        assert float(ts[0]) == den.process.t_max and bool((ts[1:] < ts[:-1]).all())
        if free_end:  # the last level may move up, never below the process's lowest
            assert float(plan.sigmas[-1]) >= s_min * (1 - 1e-9)
        else:
            assert float(plan.sigmas[-1]) == pytest.approx(s_min, rel=1e-9)
        assert plan.error <= plan.initial_error and plan.evaluations <= 40
