"""Contract tests over every process, and DDPM's closed forms against float64 simulation."""

from __future__ import annotations

import math

import pytest
import torch

from hwaksan.processes import (
    EDM,
    VESDE,
    VPSDE,
    DiscreteVP,
    LinearInterpolant,
    SubVPSDE,
    alphas_cumprod_from_betas,
    betas_from_noise_map,
    cosine_alphas_cumprod,
    linear_betas,
    make_process,
    process_from_config,
    rescale_zero_terminal_snr,
    sigmoid_alphas_cumprod,
)

PROCESSES = {
    "ddpm-linear": DiscreteVP.linear(),
    "ddpm-cosine": DiscreteVP.cosine(),
    "ddpm-sigmoid": DiscreteVP.sigmoid(),
    "ddpm-linear-ztsnr": DiscreteVP.linear(zero_terminal_snr=True),
    "ddpm-noise-map": DiscreteVP.from_betas(betas_from_noise_map(torch.linspace(-6, 3, 200))),
    "vp": VPSDE(),
    "subvp": SubVPSDE(),
    "ve": VESDE(),
    "edm": EDM(),
    "flow": LinearInterpolant(),
    "flow-floor": LinearInterpolant(sigma_min=1e-3),
}
FLOORS = {"ve": 0.01, "flow-floor": 1e-3, "edm": 0.0}


@pytest.fixture(params=list(PROCESSES), ids=list(PROCESSES))
def named(request):
    return request.param, PROCESSES[request.param]


def _times(n=400, lo=2e-3, hi=0.998):
    g = torch.Generator().manual_seed(0)
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def test_boundary_values(named):
    name, p = named
    assert float(p.alpha(0.0)) == pytest.approx(1.0, abs=1e-15)
    assert float(p.sigma(0.0)) == pytest.approx(FLOORS.get(name, 0.0), abs=1e-15)


def _grad(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if not y.requires_grad:  # a constant (alpha = 1): zero derivative
        return torch.zeros_like(t)
    return torch.autograd.grad(y.sum(), t)[0]


def test_derivatives_match_autograd(named):
    _, p = named
    t = _times().requires_grad_(True)
    da, ds = _grad(p.alpha(t), t), _grad(p.sigma(t), t)
    t = t.detach()
    torch.testing.assert_close(p.d_alpha(t), da, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(p.d_sigma(t), ds, rtol=1e-9, atol=1e-12)


def test_log_snr_definition_and_round_trip(named):
    _, p = named
    t = _times()
    lam = p.log_snr(t)
    torch.testing.assert_close(lam, 2 * torch.log(p.alpha(t) / p.sigma(t)), rtol=1e-10, atol=1e-10)
    assert bool((lam[t.argsort()].diff() < 0).all()), "log-SNR must decrease in t"
    torch.testing.assert_close(p.t_from_log_snr(lam), t, rtol=0, atol=1e-9)


def test_config_round_trip(named):
    _, p = named
    q = process_from_config(p.config())
    t = _times(50)
    torch.testing.assert_close(q.alpha(t), p.alpha(t), rtol=0, atol=1e-15)
    torch.testing.assert_close(q.sigma(t), p.sigma(t), rtol=0, atol=1e-15)


def test_q_sample_is_one_shot_gaussian(named):
    _, p = named
    x0 = torch.randn(8, 3, dtype=torch.float64)
    eps = torch.randn(8, 3, dtype=torch.float64)
    t = _times(8)
    xt = p.q_sample(x0, t, eps)
    torch.testing.assert_close(xt, p.alpha(t)[:, None] * x0 + p.sigma(t)[:, None] * eps)


def test_posterior_is_gaussian_conditioning(named):
    """q(x_s | x_t, x0) from the joint Gaussian of (x_s, x_t) given x0, computed independently."""
    _, p = named
    t, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.35, dtype=torch.float64)
    a_s, s_s, a_t, s_t = p.alpha(s), p.sigma(s), p.alpha(t), p.sigma(t)
    a_ts = a_t / a_s
    # Cov(x_s, x_t | x0) = a_ts s_s^2, Var(x_t | x0) = s_t^2
    gain = a_ts * s_s**2 / s_t**2
    x0, xt = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.4, dtype=torch.float64)
    mean_ref = a_s * x0 + gain * (xt - a_t * x0)
    var_ref = s_s**2 - gain * a_ts * s_s**2
    c_xt, c_x0, var = p.posterior_coefficients(t, s)
    torch.testing.assert_close(c_xt * xt + c_x0 * x0, mean_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(var, var_ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "sigmoid"])
def test_ddpm_chain_matches_one_shot(schedule):
    """Simulating x_t = sqrt(1-beta_t) x_{t-1} + sqrt(beta_t) z in float64 matches q(x_t | x0)."""
    p = getattr(DiscreteVP, schedule)(T=200)
    n = 40_000
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((n,), 1.3, dtype=torch.float64)
    x = x0.clone()
    betas = p.betas
    for k in range(p.T):
        x = (1 - betas[k]).sqrt() * x + betas[k].sqrt() * torch.randn(n, generator=g, dtype=torch.float64)
        if k + 1 in (1, 50, 200):
            t = torch.tensor((k + 1) / p.T, dtype=torch.float64)
            mean, std = float(p.alpha(t) * 1.3), float(p.sigma(t))
            se = std / math.sqrt(n)
            assert abs(float(x.mean()) - mean) < 5 * se
            # the sample std has standard error std / sqrt(2n)
            assert abs(float(x.std()) - std) < 5 * std / math.sqrt(2 * n)


def test_ddpm_posterior_matches_ho_eq7():
    p = DiscreteVP.linear()
    ab = p.alphas_cumprod
    betas = p.betas
    for k in (2, 10, 500, 1000):
        t, s = k / p.T, (k - 1) / p.T
        ab_t, ab_s, beta = ab[k - 1], ab[k - 2], betas[k - 1]
        c_x0_ref = ab_s.sqrt() * beta / (1 - ab_t)
        c_xt_ref = (1 - beta).sqrt() * (1 - ab_s) / (1 - ab_t)
        var_ref = (1 - ab_s) / (1 - ab_t) * beta
        c_xt, c_x0, var = p.posterior_coefficients(t, s)
        torch.testing.assert_close(c_xt, c_xt_ref, rtol=1e-10, atol=0)
        torch.testing.assert_close(c_x0, c_x0_ref, rtol=1e-10, atol=0)
        torch.testing.assert_close(var, var_ref, rtol=1e-9, atol=0)
        a_ts, var_ts = p.transition(t, s)
        # alphabar is a product of up to 1000 rounded float64 factors: ~1e-12 relative
        torch.testing.assert_close(a_ts**2, 1 - beta, rtol=1e-10, atol=0)
        torch.testing.assert_close(var_ts, beta, rtol=1e-9, atol=0)


def test_table_values_exact_at_knots():
    p = DiscreteVP.cosine()
    k = torch.arange(0, p.T + 1, dtype=torch.float64)
    ab = torch.cat([torch.ones(1, dtype=torch.float64), p.alphas_cumprod])
    torch.testing.assert_close(p.alpha(k / p.T) ** 2, ab, rtol=0, atol=1e-14)


def test_schedules_closed_forms():
    b = linear_betas(1000)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    ab = cosine_alphas_cumprod(1000)
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(ab[499]) == pytest.approx(f(0.5) / f(0.0), rel=1e-12)
    assert float(alphas_cumprod_from_betas(b)[9]) == pytest.approx(math.prod(1 - float(x) for x in b[:10]))
    sg = sigmoid_alphas_cumprod(1000)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    ref = (sig(3) - sig(0.5 * 6 - 3)) / (sig(3) - sig(-3))
    assert float(sg[499]) == pytest.approx(ref, rel=1e-12)


def test_noise_map_schedule_gives_requested_sigmas():
    lam = torch.linspace(-5, 4, 100, dtype=torch.float64)
    p = DiscreteVP.from_betas(betas_from_noise_map(lam))
    torch.testing.assert_close(p.sigma(torch.arange(1, 101, dtype=torch.float64) / 100), torch.sigmoid(lam))
    with pytest.raises(ValueError, match="strictly increasing"):
        betas_from_noise_map(lam.flip(0))


def test_zero_terminal_snr_rescale():
    ab = DiscreteVP.linear().alphas_cumprod
    new = rescale_zero_terminal_snr(ab)
    assert float(new[-1]) == 0.0
    assert float(new[0]) == pytest.approx(float(ab[0]), rel=1e-12)
    assert float(DiscreteVP.linear(zero_terminal_snr=True).log_snr(1.0)) == -math.inf


def test_make_process_errors_name_choices():
    with pytest.raises(ValueError, match="ddpm-linear"):
        make_process("nope")
    with pytest.raises(ValueError, match="beta_min"):
        make_process("vp", beta_min=5, beta_max=1)
