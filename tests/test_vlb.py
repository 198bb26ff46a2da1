"""The DDPM variational bound against independent computations and closed forms (Ho et al. 2020
eq. 5): its Gaussian KL and discretised-Gaussian decoder, a point mass (every KL term vanishes),
Gaussian data (each KL term's expectation in closed form), Gibbs' inequality, the step subset."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from scipy.stats import norm

from hwaksan import GaussianMixtureDenoiser
from hwaksan.distributions import GaussianMixture
from hwaksan.evaluation.vlb import vlb_bits_per_dim, vlb_grid
from hwaksan.losses import discretized_gaussian_log_likelihood, normal_kl, prior_kl
from hwaksan.processes import VESDE, VPSDE, DiscreteVP, LinearInterpolant
from hwaksan.utils import generators_from_seeds

A = 2 / 255  # width of an 8-bit level in [-1, 1]


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = (
        torch.randn(50, generator=g, dtype=torch.float64),
        torch.randn(50, generator=g, dtype=torch.float64),
    )
    lv1, lv2 = (
        torch.randn(50, generator=g, dtype=torch.float64),
        torch.randn(50, generator=g, dtype=torch.float64),
    )
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    )
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), ref, rtol=1e-12, atol=1e-12)


def test_discretized_gaussian_matches_scipy_including_edges_and_tails():
    """log of Phi((x + a/2 - mu)/s) - Phi((x - a/2 - mu)/s), with x = -1 and x = +1 bins open."""
    k = torch.tensor([0, 1, 17, 100, 127, 128, 200, 254, 255, 30, 240])
    x = k.double() / 127.5 - 1
    mu = torch.tensor([-1.0, -0.9, 0.3, -0.2, 0.0, 0.01, 0.5, 0.99, 1.02, 0.9, -0.95], dtype=torch.float64)
    s = torch.tensor([0.01, 0.05, 0.007, 0.2, 0.003, 0.5, 1.0, 0.02, 0.01, 0.04, 0.06], dtype=torch.float64)
    got = discretized_gaussian_log_likelihood(x, mu, s.log())
    want = []
    for xi, mi, si in zip(x.tolist(), mu.tolist(), s.tolist(), strict=True):
        hi, lo = (xi + A / 2 - mi) / si, (xi - A / 2 - mi) / si
        if xi <= -1:
            want.append(norm.logcdf(hi))
        elif xi >= 1:
            want.append(norm.logsf(lo))
        elif abs(lo) > 8 and abs(hi) > 8:  # deep tail: both CDFs round to 0 or 1 in float64
            with mpmath.workdps(500):  # enough digits for 1 - Phi(30) ~ 1e-198 too
                want.append(float(mpmath.log(mpmath.ncdf(hi) - mpmath.ncdf(lo))))
        else:
            want.append(math.log(norm.cdf(hi) - norm.cdf(lo)))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    # the 256 bins partition the line: their masses add up to one
    allx = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    total = discretized_gaussian_log_likelihood(allx, torch.tensor(0.3), torch.tensor(0.4).log()).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-12)


def test_prior_kl_closed_form():
    process = DiscreteVP.linear(T=100)
    x0 = torch.tensor([[0.5, -1.0, 0.0]], dtype=torch.float64)
    ab = float(process.alphas_cumprod[-1])
    want = sum(0.5 * (-math.log(1 - ab) + (1 - ab) + ab * c**2 - 1) for c in x0[0].tolist())
    assert float(prior_kl(process, x0)) == pytest.approx(want, rel=1e-12)


def _point_mass(c: torch.Tensor, process) -> GaussianMixtureDenoiser:
    return GaussianMixtureDenoiser(GaussianMixture(c[None], torch.full((1,), 1e-14)), process)


def test_point_mass_bound_is_prior_plus_decoder_in_closed_form():
    """Data = one 8-bit image c: the exact denoiser returns c, so with the posterior variance every
    KL term is 0 and L_vlb = L_T + L_0, L_0 = -log of the N(c, beta~_2) mass of c's bin."""
    T = 60
    process = DiscreteVP.linear(T=T, beta_start=1e-4, beta_end=0.04)
    c = torch.tensor([0, 40, 128, 255], dtype=torch.float64) / 127.5 - 1
    x = c[None].repeat(5, 1)
    res = vlb_bits_per_dim(_point_mass(c, process), x, variance="posterior", progress=False)
    to_bits = 1 / (4 * math.log(2))
    assert abs(res.kl_bpd) < 1e-9 and float(res.terms_bpd[1:].abs().max()) < 1e-9
    ab, b = process.alphas_cumprod, process.betas
    prior = sum(0.5 * (-math.log(1 - ab[-1]) + (1 - ab[-1]) + ab[-1] * v**2 - 1) for v in c.tolist())
    assert res.prior_bpd == pytest.approx(float(prior) * to_bits, rel=1e-10)
    std = math.sqrt(float(b[1] * (1 - ab[0]) / (1 - ab[1])))  # beta~_2 (Ho et al. eq. 7)
    z = A / 2 / std
    masses = [norm.cdf(z), 2 * norm.cdf(z) - 1, 2 * norm.cdf(z) - 1, norm.cdf(z)]  # -1, interior, +1
    decoder = -sum(math.log(m) for m in masses)
    assert res.decoder_bpd == pytest.approx(decoder * to_bits, rel=1e-8)
    assert res.bits_per_dim == pytest.approx(res.prior_bpd + res.decoder_bpd, abs=1e-9)
    assert res.std_error < 1e-9 and res.n == 5 and res.per_sample.shape == (5,) and res.T == T


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_kl_terms_of_gaussian_data_match_their_closed_form(variance):
    """For x0 ~ N(0, s^2 I) and the exact denoiser, x0 - E[x0 | x_t] ~ N(0, v_t) with
    v_t = s^2 sigma_t^2 / (alpha_t^2 s^2 + sigma_t^2), so E KL(q || p) per dimension is
    ``0.5 (log(S/beta~) + beta~/S - 1) + 0.5 c_x0^2 v_t / S`` with S the model's variance. The sum
    over steps is compared within 4 standard errors: each term is ``c_t chi^2_D`` with sd
    ``c_t sqrt(2 D)``, and the sd of the sum is at most the sum of the sds."""
    s, d, n, T = 0.2, 4, 1500, 40
    process = DiscreteVP.linear(T=T, beta_start=1e-4, beta_end=0.05)
    oracle = GaussianMixtureDenoiser(GaussianMixture([[0.0] * d], [s**2]), process)
    x0 = (s * torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).clamp(-1, 1)
    res = vlb_bits_per_dim(
        oracle, x0, variance=variance, generator=torch.Generator().manual_seed(1), progress=False
    )
    k = torch.arange(2, T + 1, dtype=torch.float64)
    t, u = k / T, (k - 1) / T
    _, c_x0, post = process.posterior_coefficients(t, u)
    model_var = post if variance == "posterior" else process.transition(t, u)[1]
    a, sig = process.alpha(t), process.sigma(t)
    v = s**2 * sig**2 / (a**2 * s**2 + sig**2)
    const = 0.5 * ((model_var / post).log() + post / model_var - 1)
    scale = 0.5 * c_x0**2 * v / model_var
    expected = float((const + scale).sum()) * d  # nats per image
    se = float(scale.sum()) * math.sqrt(2 * d) / math.sqrt(n)
    got = float(res.terms_bpd[1:].sum()) * d * math.log(2)
    assert abs(got - expected) < 4 * se, (got, expected, se)


def _discretised_gaussian_data(m: float, s: float, n: int, d: int, seed: int) -> torch.Tensor:
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (torch.round((m + s * z + 1) * 127.5).clamp(0, 255)) / 127.5 - 1


def _entropy_bits(m: float, s: float) -> float:
    """Entropy per dimension of the 8-bit discretised N(m, s^2) (edge bins open), in bits."""
    x = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    logp = discretized_gaussian_log_likelihood(x, torch.tensor(m), torch.tensor(math.log(s)))
    return float(-(logp.exp() * logp).sum()) / math.log(2)


def test_bound_is_above_the_entropy_of_discrete_data():
    """Gibbs: E_x L_vlb(x) >= E_x[-log p_model(x)] >= H(P) for any model, here the exact continuous
    denoiser of discretised Gaussian data (within 4 standard errors of the Monte-Carlo mean)."""
    m, s = 0.1, 0.25
    x0 = _discretised_gaussian_data(m, s, 400, 2, 0)
    oracle = GaussianMixtureDenoiser(GaussianMixture([[m, m]], [s**2]), DiscreteVP.linear(T=100))
    res = vlb_bits_per_dim(oracle, x0, generator=torch.Generator().manual_seed(1), progress=False)
    h = _entropy_bits(m, s)
    assert res.bits_per_dim > h - 4 * res.std_error, (res.bits_per_dim, h, res.std_error)
    assert res.variance == "beta"
    assert res.bits_per_dim == pytest.approx(res.prior_bpd + res.decoder_bpd + res.kl_bpd, abs=1e-9)


def test_random_subset_of_steps_is_unbiased_with_its_reported_error():
    """n_t uniformly drawn KL terms weighted by 1/p estimate the same bound as all T terms: the two
    estimates agree within 4 combined standard errors (their reported std_error)."""
    m, s = -0.2, 0.3
    x0 = _discretised_gaussian_data(m, s, 300, 3, 2)
    oracle = GaussianMixtureDenoiser(GaussianMixture([[m] * 3], [s**2]), DiscreteVP.cosine(T=50))
    full = vlb_bits_per_dim(oracle, x0, generator=torch.Generator().manual_seed(3), progress=False)
    sub = vlb_bits_per_dim(oracle, x0, n_t=4, generator=generators_from_seeds(range(300)), progress=False)
    assert sub.nfe == 5 and full.nfe == 50 and sub.terms_bpd is None
    se = math.hypot(full.std_error, sub.std_error)
    assert abs(full.bits_per_dim - sub.bits_per_dim) < 4 * se, (full.bits_per_dim, sub.bits_per_dim, se)
    # a non-uniform proposal too (more mass on the small-t terms, where the KL terms are large)
    p = torch.linspace(2.0, 0.5, 49)
    imp = vlb_bits_per_dim(
        oracle, x0, n_t=4, proposal=p, generator=generators_from_seeds(300), progress=False
    )
    assert abs(full.bits_per_dim - imp.bits_per_dim) < 4 * math.hypot(full.std_error, imp.std_error)
    # per-image generators: an image's value does not depend on the batch size
    again = vlb_bits_per_dim(
        oracle, x0[:7], n_t=4, generator=generators_from_seeds(range(7)), batch_size=3, progress=False
    )
    torch.testing.assert_close(again.per_sample, sub.per_sample[:7])


def test_chain_grids_and_refusals():
    ddpm = DiscreteVP.linear(T=1000)
    assert torch.equal(vlb_grid(ddpm), torch.arange(1001, dtype=torch.float64) / 1000)
    assert torch.equal(vlb_grid(ddpm, 4), torch.tensor([0, 250, 500, 750, 1000], dtype=torch.float64) / 1000)
    torch.testing.assert_close(
        vlb_grid(VPSDE(), 4), torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    )
    assert len(vlb_grid(LinearInterpolant())) == 1001
    with pytest.raises(ValueError, match="sigma\\(0\\) = 0.*image_nll"):
        vlb_grid(VESDE())
    with pytest.raises(ValueError, match="1..1000"):
        vlb_grid(ddpm, 2000)
