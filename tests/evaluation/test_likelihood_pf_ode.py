"""PF-ODE likelihood against closed forms: the Gaussian-mixture oracle's exact marginals, Hutchinson's
estimator against the exact divergence, and the 8-bit dequantisation constant against the exact
mass of a discretised Gaussian.

ODE tolerance used below: dopri5 keeps each accepted step's local error under ``atol + rtol |y|``
(in its RMS norm), so the global error is at most ``(number of steps) (atol + rtol max|y|)`` before
the flow's own amplification; the number of network calls ``nfe`` bounds the number of steps.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from hwaksan import GaussianMixtureDenoiser
from hwaksan.distributions import GaussianMixture
from hwaksan.evaluation.likelihood import (
    bin_width,
    dequantization_offset_bits,
    dequantize_images,
    image_nll,
)
from hwaksan.oracles import anisotropic_mixture
from hwaksan.processes import EDM, VESDE, VPSDE, DiscreteVP, LinearInterpolant
from hwaksan.samplers import divergence, log_likelihood
from hwaksan.utils import generators_from_seeds

RTOL = ATOL = 1e-6


def _ode_tol(res, rtol: float = RTOL, atol: float = ATOL) -> float:
    scale = max(1.0, float(res.delta_log_prob.abs().max()), float(res.x_T.abs().max()))
    return res.nfe * (atol + rtol * scale)


def _t_start(process) -> float:
    return 1e-5 if not torch.isfinite(process.log_snr(0.0)) else 0.0


@pytest.mark.parametrize(
    "process",
    [VPSDE(), VESDE(), LinearInterpolant(), DiscreteVP.linear(), EDM()],
    ids=["vp", "ve", "flow", "ddpm", "edm"],
)
def test_oracle_pf_ode_log_density_equals_the_exact_marginal(mixture2d, process):
    """``log p_t0(x) = log p_T(x_T) + int div u``: with the exact terminal density (the oracle's) the
    only error left is the ODE solver's, whatever the process. (VE starts at t = 0, where its
    density is the data convolved with N(0, sigma_min^2); the others at 1e-5.)"""
    oracle = GaussianMixtureDenoiser(mixture2d, process)
    x = mixture2d.sample(12, torch.Generator().manual_seed(0))
    res = log_likelihood(oracle, x, rtol=RTOL, atol=ATOL)
    t0 = torch.full((12,), _t_start(process), dtype=torch.float64)
    t1 = torch.full((12,), process.t_max, dtype=torch.float64)
    truth = oracle.log_prob(x, t0)
    estimate = res.delta_log_prob + oracle.log_prob(res.x_T, t1)
    err = float((estimate - truth).abs().max())
    assert err < _ode_tol(res), (err, _ode_tol(res))
    # The reported log_prob uses the Gaussian prior N(0, sigma(1)^2): it differs from the truth by
    # exactly the prior's mismatch at x_T (no other approximation).
    gaussian = res.prior_log_prob - oracle.log_prob(res.x_T, t1)
    torch.testing.assert_close(res.log_prob - truth, gaussian, rtol=0, atol=_ode_tol(res))


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_divergence_is_unbiased(probe):
    """The mean of z^T J z over many probes matches tr J (exact, D backward passes) within 4
    standard errors, for the oracle's PF-ODE velocity of an anisotropic 8-D mixture."""
    mixture = anisotropic_mixture(8, seed=1)
    oracle = GaussianMixtureDenoiser(mixture, VPSDE())
    x = mixture.sample(3, torch.Generator().manual_seed(2)) * 0.8
    t = torch.full((3,), 0.3, dtype=torch.float64)

    def velocity(y):
        a, s = oracle.process.alpha(t)[:, None], oracle.process.sigma(t)[:, None]
        da, ds = oracle.process.d_alpha(t)[:, None], oracle.process.d_sigma(t)[:, None]
        x0 = oracle(y, t)
        return da * x0 + ds * (y - a * x0) / s

    _, exact = divergence(velocity, x)
    m = 800
    z = torch.randn(3, m, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    if probe == "rademacher":
        z = z.sign()
    _, est = divergence(velocity, x, z)
    assert est.shape == (3, m)
    se = est.std(1) / math.sqrt(m)
    assert bool(((est.mean(1) - exact).abs() < 4 * se).all()), (est.mean(1), exact, se)


def test_hutchinson_ode_likelihood_matches_exact_within_its_reported_error():
    """``image_nll`` with M probes: each image's estimate is within 4 of its reported Hutchinson
    standard errors (plus both ODE tolerances) of the exact-divergence value."""
    mixture = anisotropic_mixture(6, seed=0, scale=0.5)
    oracle = GaussianMixtureDenoiser(mixture, LinearInterpolant())
    x = (mixture.sample(4, torch.Generator().manual_seed(5)) * 0.3).clamp(-1, 1)
    common = {"dequantize": False, "rtol": 1e-6, "atol": 1e-6, "progress": False}
    exact = image_nll(oracle, x, exact=True, **common)
    hutch = image_nll(oracle, x, exact=False, probes=24, generator=generators_from_seeds(4), **common)
    assert hutch.probes == 24 and hutch.hutchinson_std is not None and not hutch.exact
    to_bits = 1 / (6 * math.log(2))
    ode = (exact.nfe + hutch.nfe) * 1e-6 * (1 + 10) * to_bits  # both solves, |y| <= 10
    diff = (hutch.per_sample - exact.per_sample).abs()
    assert bool((diff < 4 * hutch.hutchinson_std + ode).all()), (diff, hutch.hutchinson_std)
    assert hutch.hutchinson_std_error == pytest.approx(float(hutch.hutchinson_std.pow(2).sum().sqrt()) / 4)
    assert exact.n == 4 and exact.per_sample.shape == (4,) and exact.std_error > 0


def test_dequantisation_constant_is_minus_log2_of_the_bin_width():
    """x = a k + b with a = 2/255: -log2(a) = log2(127.5); a uniform density over the
    dequantisation range [-1 - a/2, 1 + a/2]^D gives every 8-bit image P(k) = 256^-D: 8 bits/dim."""
    a = bin_width(256)
    assert a == pytest.approx(2 / 255, rel=1e-15)
    assert dequantization_offset_bits(256) == pytest.approx(math.log2(127.5), rel=1e-15)
    nll_per_dim = math.log(256 * a)  # -log of the uniform density (256 a)^-1 per dimension
    assert nll_per_dim / math.log(2) + dequantization_offset_bits(256) == pytest.approx(8.0, rel=1e-14)


def test_dequantised_ode_bits_bound_the_exact_discrete_nll_of_a_gaussian():
    """For 1-D data N(m, s^2) (the flow oracle), the dequantised PF-ODE bits of an 8-bit value x
    average to ``E_u[-log2 p(x + a(u - 1/2))] + log2(1/a)`` >= ``-log2 P(k)`` with
    ``P(k) = Phi((x + a/2 - m)/s) - Phi((x - a/2 - m)/s)``, and by Hoeffding's lemma the Jensen gap
    is at most ``R^2 / 8`` nats, R the range of log p over the bin."""
    m, s = 0.1, 0.3
    process = LinearInterpolant()
    oracle = GaussianMixtureDenoiser(GaussianMixture([[m]], [s**2]), process)
    k = 165
    x = torch.full((48, 1), k / 127.5 - 1, dtype=torch.float64)
    res = image_nll(oracle, x, generator=generators_from_seeds(48), rtol=1e-7, atol=1e-7, progress=False)
    assert res.dequantized and res.offset_bits == pytest.approx(math.log2(127.5))
    # the density the ODE starts from, at t = 1e-5: N(alpha m, alpha^2 s^2 + sigma^2)
    t0 = 1e-5
    a_t, s_t = float(process.alpha(t0)), float(process.sigma(t0))
    mean, std = a_t * m, math.sqrt(a_t**2 * s**2 + s_t**2)
    a, xv = 2 / 255, float(x[0, 0])
    exact_bits = -math.log2(norm.cdf((xv + a / 2 - mean) / std) - norm.cdf((xv - a / 2 - mean) / std))
    r = a * (abs(xv - mean) + a / 2) / std**2  # range of log p over the bin
    gap = r**2 / 8 / math.log(2)
    ode = res.nfe * 1e-7 * (1 + 10) / math.log(2)  # |delta|, |x_T| < 10 here
    diff = res.bits_per_dim - exact_bits
    assert -4 * res.std_error - ode <= diff <= gap + 4 * res.std_error + ode, (diff, gap, res.std_error)
    # the per-image values are the continuous NLL at the dequantised inputs plus the offset
    xq = dequantize_images(x, generators_from_seeds(48))
    truth = -oracle.log_prob(xq, torch.full((48,), t0, dtype=torch.float64)) / math.log(2)
    torch.testing.assert_close(res.per_sample, truth + math.log2(127.5), rtol=0, atol=ode + 1e-9)


def test_bad_inputs_are_one_clear_error():
    oracle = GaussianMixtureDenoiser(GaussianMixture([[0.0]], [0.1]), VPSDE())
    with pytest.raises(ValueError, match=r"\[-1, 1\].*127\.5"):
        image_nll(oracle, torch.full((2, 1), 3.0), progress=False)
    with pytest.raises(ValueError, match="rademacher, gaussian"):
        image_nll(oracle, torch.zeros(2, 1), probe="cauchy", progress=False)
