"""Samplers on the Gaussian-mixture oracle: contracts over the registry, convergence orders against
a float64 reference of the probability-flow ODE, moments of stochastic samplers, and identities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchdiffeq import odeint

from hwaksan.oracles import GaussianMixtureDenoiser
from hwaksan.parameterizations import velocity_from_x0
from hwaksan.processes import EDM, VPSDE, DiscreteVP, LinearInterpolant
from hwaksan.samplers import (
    SAMPLERS,
    CountingDenoiser,
    karras_grid,
    log_snr_grid,
    sample_ddim,
    sample_ddpm,
    uniform_grid,
)
from hwaksan.utils import generators_from_seeds

FAST_OPTIONS = {"annealed_langevin": {"n_steps_each": 2}, "pc": {"n_corrector": 1}}


def _run(name, denoiser, x, ts, generator, **extra):
    spec = SAMPLERS[name]
    opts = {**spec.defaults, **FAST_OPTIONS.get(name, {}), **extra}
    return spec.fn(denoiser, x, ts, generator=generator, **opts), opts


# ------------------------------------------------------------------------------------------------
# contract tests over the whole registry
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_contract(mixture2d, name):
    process = VPSDE()
    oracle = GaussianMixtureDenoiser(mixture2d, process)
    ts = uniform_grid(process, 6)
    x = process.prior_sample((6, 2), torch.Generator().manual_seed(0), dtype=torch.float64)

    # deterministic under a generator, and NFE counted exactly
    counter = CountingDenoiser(oracle)
    a, opts = _run(name, counter, x, ts, torch.Generator().manual_seed(1))
    b, _ = _run(name, oracle, x, ts, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    spec = SAMPLERS[name]
    if spec.nfe is not None:
        assert counter.nfe == spec.nfe(ts, process, opts)

    # dtype preserved
    assert a.dtype == torch.float64
    c, _ = _run(name, oracle, x.float(), ts, torch.Generator().manual_seed(1))
    assert c.dtype == torch.float32 and bool(torch.isfinite(c).all())

    # sample i does not depend on the batch: per-sample generators
    full, _ = _run(name, oracle, x, ts, generators_from_seeds(range(6)))
    part, _ = _run(name, oracle, x[2:4], ts, generators_from_seeds([2, 3]))
    if spec.nfe is None:  # an error controller steps the whole batch: equal up to its tolerance
        tol = 10 * (opts["rtol"] + opts["atol"]) if "rtol" in opts else 1e-3
        torch.testing.assert_close(part, full[2:4], rtol=tol, atol=tol)
    else:
        torch.testing.assert_close(part, full[2:4], rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# convergence order of deterministic samplers against a float64 PF-ODE reference
# ------------------------------------------------------------------------------------------------
def _reference(oracle, x, t0, t1):
    p = oracle.process

    def f(t, y):
        tb = torch.full((y.shape[0],), float(t), dtype=torch.float64)
        return velocity_from_x0(y, oracle(y, tb), tb, p)

    grid = torch.tensor([t0, t1], dtype=torch.float64)
    return odeint(f, x, grid, rtol=1e-11, atol=1e-11, method="dopri5", options={"step_t": grid[-1:]})[-1]


# the foundation's fixed-order solvers; higher-order multistep methods have their own order tests
# (tests/samplers/test_multistep.py) on ranges where they are asymptotic
ORDERED = ["ddim", "euler", "heun", "dpmpp_2m"]


@pytest.mark.parametrize("process", [VPSDE(), EDM(), DiscreteVP.cosine()], ids=lambda p: p.name + "")
@pytest.mark.parametrize("name", ORDERED)
def test_convergence_order(mixture2d, process, name):
    """Error vs a float64 reference on grids uniform in log-SNR, ending at sigma~ = 0.1 (no final
    denoise, so the ODE solution itself is compared), at 16, 32, 64 and 128 steps.

    The observed order between successive step counts is ``p_k = log2(e_k / e_{k+1})``. With the
    asymptotic expansion ``e_N = C N^-p (1 + c / N + c2 / N^2 + ...)`` of a method of order ``p``,
    ``p_k = p + c / (2 ln 2 N_k) + O(N_k^-2)``: the deviation ``d_k = p_k - p`` halves with every
    doubling. Required over the last doubling (64 -> 128): ``|d| <= 3/4 |d_prev| + 0.02`` and
    ``|d| < 0.15``. The factor 3/4 (not 1/2) leaves room for the ``N^-2`` term; the 0.02 covers
    methods whose ``c`` is about 0, where ``d ~ 3 c2 / (4 ln 2 N^2)`` (0.02 at N = 64 allows
    ``|c2|`` up to 75). A term of lower order, ``C' N^-(p-1)``, makes ``|d|`` grow with N instead,
    and a wrong order keeps it constant: both fail however small their constant is, once it shows
    at 128 steps."""
    oracle = GaussianMixtureDenoiser(mixture2d, process)
    x = process.prior_sample((64, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    t0, t1 = float(process.t_max), float(process.t_from_sigma_tilde(0.1))
    ref = _reference(oracle, x, t0, t1)
    ns = [16, 32, 64, 128]
    errors = []
    for n in ns:
        lam = torch.linspace(
            float(process.log_snr(t0)), float(process.log_snr(t1)), n + 1, dtype=torch.float64
        )
        ts = process.t_from_log_snr(lam)
        ts[0], ts[-1] = t0, t1
        out, _ = _run(name, oracle, x, ts, None)
        errors.append(float((out - ref).norm(dim=1).mean()))
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    dev = observed - SAMPLERS[name].order
    assert abs(dev[-1]) <= 0.75 * abs(dev[-2]) + 0.02 and abs(dev[-1]) < 0.15, (errors, observed)


# ------------------------------------------------------------------------------------------------
# stochastic samplers reproduce the mixture's moments
# ------------------------------------------------------------------------------------------------
STOCHASTIC_CASES = {
    "ddpm": ("uniform", 250, {}),
    "ddpm-beta": ("uniform", 250, {"variance": "beta"}),
    "ddim-eta1": ("uniform", 250, {"eta": 1.0}),
    "euler_maruyama": ("uniform", 500, {}),
    "pc": ("uniform", 250, {"snr": 0.1}),
    "annealed_langevin": ("log_snr", 60, {"n_steps_each": 30}),
}


@pytest.mark.parametrize("case", list(STOCHASTIC_CASES))
def test_stochastic_moments(mixture2d, case):
    """Mean and covariance within ``Z = 4`` Monte-Carlo standard errors plus 0.03 absolute for the
    time-discretisation bias of the first-order schemes at >= 250 steps (O(1/N)). pc and
    annealed_langevin also carry a bias set by their fixed corrector / Langevin step, which does not
    vanish with N and is not modelled by this tolerance: their steps are checked exactly instead.

    ``Z``: the six cases make 30 comparisons (2 means and 3 distinct covariance entries each); a
    standard normal exceeds 4 in absolute value with probability 6.3e-5, so a correct sampler fails
    one of them with probability below 0.2% (Bonferroni) whatever the seeds. The noise scales and
    drifts of these samplers are checked exactly, without Monte-Carlo error, in
    tests/samplers/test_stochastic_exact.py; this test checks the mixture's moments end to end."""
    name = case.split("-")[0]
    grid, n_steps, opts = STOCHASTIC_CASES[case]
    process = DiscreteVP.linear()
    oracle = GaussianMixtureDenoiser(mixture2d, process)
    if grid == "uniform":
        ts = uniform_grid(process, n_steps)
    else:
        ts = log_snr_grid(process, n_steps)
    n = 4000
    x = process.prior_sample((n, 2), torch.Generator().manual_seed(5), dtype=torch.float64)
    out = SAMPLERS[name].fn(oracle, x, ts, generator=torch.Generator().manual_seed(6), **opts)
    mean, cov = mixture2d.mean(), mixture2d.covariance()
    se_mean = (cov.diagonal() / n).sqrt()
    assert bool(((out.mean(0) - mean).abs() < 4 * se_mean + 0.03).all()), (out.mean(0), mean)
    var = cov.diagonal()
    se_cov = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()
    assert bool(((torch.cov(out.T) - cov).abs() < 4 * se_cov + 0.03).all()), (torch.cov(out.T), cov)


# ------------------------------------------------------------------------------------------------
# identities between samplers
# ------------------------------------------------------------------------------------------------
def test_ddim_eta1_equals_ddpm_posterior(mixture2d):
    process = DiscreteVP.linear()
    oracle = GaussianMixtureDenoiser(mixture2d, process)
    ts = uniform_grid(process, 1000)
    x = process.prior_sample((32, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    a = sample_ddim(oracle, x, ts, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = sample_ddpm(oracle, x, ts, variance="posterior", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_is_euler_on_edm_ode(mixture2d):
    """DDIM (eta = 0) equals Euler on dx~/dsigma~ = (x~ - D)/sigma~, x~ = x/alpha (EDM sec. 4)."""
    process = DiscreteVP.cosine()
    oracle = GaussianMixtureDenoiser(mixture2d, process)
    ts = uniform_grid(process, 10)[:-1]  # stop before t = 0
    x = process.prior_sample((16, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    got = sample_ddim(oracle, x, ts)
    xt = x / process.alpha(ts[0])
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        st, ss = process.sigma_tilde(t), process.sigma_tilde(s)
        d = (xt - oracle(xt * process.alpha(t), t.expand(16))) / st
        xt = xt + (ss - st) * d
    torch.testing.assert_close(got, xt * process.alpha(ts[-1]), rtol=1e-10, atol=1e-10)


def test_flow_euler_is_straight_line_euler(mixture2d):
    """For the linear interpolant, Euler in t with v = eps^ - x0^ equals our Euler/DDIM."""
    process = LinearInterpolant()
    oracle = GaussianMixtureDenoiser(mixture2d, process)
    ts = uniform_grid(process, 8)
    x = torch.randn(16, 2, dtype=torch.float64)
    got = sample_ddim(oracle, x, ts)
    y = x.clone()
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        x0 = oracle(y, t.expand(16))
        v = (y - (1 - t) * x0) / t - x0 if t > 0 else None
        y = y + (s - t) * v
    torch.testing.assert_close(got, y, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# grids
# ------------------------------------------------------------------------------------------------
def test_karras_grid_eq5():
    p = EDM()
    ts = karras_grid(p, 5, rho=7.0)
    sig = p.sigma(ts)
    i = torch.arange(5, dtype=torch.float64)
    ref = (80 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(sig[:-1], ref)
    assert float(ts[-1]) == 0.0


def test_karras_grid_starts_at_edm_sigma_max_and_sampling_starts_there(mixture2d):
    """Default top: min(sigma~(t_max), 80); full range on request; flows keep t_max; the prior is
    drawn at the grid's first time, so a VE process with sigma_max = 400 starts from 80 * z."""
    from hwaksan.processes import VESDE
    from hwaksan.samplers import KARRAS_SIGMA_MAX, sample

    cosine = DiscreteVP.cosine()
    ts = karras_grid(cosine, 6)
    assert float(cosine.sigma_tilde(ts[0])) == pytest.approx(KARRAS_SIGMA_MAX, rel=1e-9)
    full = float(cosine.sigma_tilde(cosine.t_max))
    assert full > 1e4  # the table's own top, which the default avoids
    assert float(cosine.sigma_tilde(karras_grid(cosine, 6, sigma_max=full)[0])) == pytest.approx(
        full, rel=1e-9
    )
    linear = DiscreteVP.linear()  # sigma~(1) = 157 > 80: capped as well
    assert float(linear.sigma_tilde(karras_grid(linear, 4)[0])) == pytest.approx(80.0, rel=1e-9)
    assert float(karras_grid(LinearInterpolant(), 4)[0]) == 1.0

    ve = VESDE(sigma_min=0.01, sigma_max=400.0)
    oracle = GaussianMixtureDenoiser(mixture2d, ve)
    x_start = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
    ref = sample(
        oracle,
        (64, 2),
        sampler="euler",
        steps=3,
        grid="karras",
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    ).x
    manual = sample_ddim(oracle, x_start, karras_grid(ve, 3))
    torch.testing.assert_close(ref, manual)


def test_ddpm_spacings():
    p = DiscreteVP.linear()
    k = lambda spacing: (uniform_grid(p, 10, spacing)[:-1] * 1000).round().long().tolist()  # noqa: E731
    assert k("trailing") == list(range(1000, 0, -100))
    assert k("leading") == list(range(901, 0, -100))
    assert k("linspace") == [round(v) for v in np.linspace(1000, 1, 10)]


def test_log_snr_grid_is_uniform_in_log_snr():
    p = VPSDE()
    ts = log_snr_grid(p, 8)
    lam = p.log_snr(ts[:-1])
    torch.testing.assert_close(lam.diff(), lam.diff()[:1].expand(7), rtol=1e-9, atol=1e-9)


def test_grid_validation_message(mixture2d):
    oracle = GaussianMixtureDenoiser(mixture2d, VPSDE())
    with pytest.raises(ValueError, match="decreasing"):
        sample_ddim(oracle, torch.zeros(2, 2), torch.tensor([0.1, 0.5], dtype=torch.float64))


def test_sde_on_flow_start_names_the_fix(mixture2d):
    process = LinearInterpolant()
    oracle = GaussianMixtureDenoiser(mixture2d, process)
    with pytest.raises(ValueError, match="t_max"):
        SAMPLERS["euler_maruyama"].fn(oracle, torch.zeros(2, 2), uniform_grid(process, 4))
    out = SAMPLERS["euler_maruyama"].fn(oracle, torch.zeros(2, 2), uniform_grid(process, 4, t_max=0.99))
    assert bool(torch.isfinite(out).all())
