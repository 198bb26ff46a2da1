"""Learned variances (Nichol & Dhariwal 2021): the interpolation's endpoints, the denoiser's split
output, the ancestral sampler with ``variance="learned"``, L_hybrid's stop-gradient, and the
importance sampler of steps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hwaksan import GaussianMixtureDenoiser
from hwaksan.distributions import GaussianMixture
from hwaksan.evaluation.vlb import vlb_bits_per_dim
from hwaksan.losses import ImportanceSampler, hybrid_loss, vlb_term
from hwaksan.parameterizations import ModelDenoiser, reverse_log_variance
from hwaksan.processes import DiscreteVP
from hwaksan.samplers import sample
from hwaksan.utils import generators_from_seeds


def test_interpolation_endpoints_are_the_table_betas_and_posterior_variances():
    """frac = 1 (v = +1) gives log beta_t, frac = 0 (v = -1) gives log beta~_t =
    log(beta_t (1 - ab_{t-1}) / (1 - ab_t)) (Ho et al. eq. 7); at the first step beta~_1 = 0 is
    replaced by beta~_2 (improved-diffusion's clipped log-variance)."""
    T = 50
    process = DiscreteVP.linear(T=T, beta_start=1e-4, beta_end=0.05)
    ab = process.alphas_cumprod
    beta = 1 - ab / torch.cat([ab.new_ones(1), ab[:-1]])
    tilde = beta[1:] * (1 - ab[:-1]) / (1 - ab[1:])  # steps 2..T
    tilde_clipped = torch.cat([tilde[:1], tilde])
    k = torch.arange(1, T + 1, dtype=torch.float64)
    t, s = k / T, (k - 1) / T
    ones = torch.ones(T, 3, dtype=torch.float64)
    up = reverse_log_variance(process, t, s, "learned", ones)
    down = reverse_log_variance(process, t, s, "learned", -ones)
    torch.testing.assert_close(up, beta.log()[:, None].expand(T, 3), rtol=0, atol=1e-10)
    torch.testing.assert_close(down, tilde_clipped.log()[:, None].expand(T, 3), rtol=0, atol=1e-10)
    mid = reverse_log_variance(process, t, s, "learned", torch.zeros(T, 3, dtype=torch.float64))
    torch.testing.assert_close(mid, 0.5 * (up + down))
    torch.testing.assert_close(reverse_log_variance(process, t, s, "posterior"), tilde_clipped.log())
    fixed_large = torch.cat([tilde[:1], beta[1:]])  # improved-diffusion's FIXED_LARGE
    torch.testing.assert_close(reverse_log_variance(process, t, s, "beta"), fixed_large.log())


class _SigmaNet(nn.Module):
    """A learn_sigma network on vectors: ``[W x + b, v]`` with ``v = tanh(U x)`` or a constant."""

    def __init__(self, dim: int, v: float | None = None) -> None:
        super().__init__()
        self.config = {"learn_sigma": True}
        self.mean = nn.Linear(dim, dim)
        self.var = nn.Linear(dim, dim)
        self.v = v
        self.calls = 0

    def forward(self, x, noise_level, cond=None):
        self.calls += 1
        h = x * (1 + noise_level[:, None])
        v = torch.full_like(x, self.v) if self.v is not None else torch.tanh(self.var(x))
        return torch.cat([self.mean(h), v], dim=1)


class _MeanOnly(nn.Module):
    def __init__(self, twin: _SigmaNet) -> None:
        super().__init__()
        self.twin = twin

    def forward(self, x, noise_level, cond=None):
        return self.twin(x, noise_level, cond)[:, : x.shape[1]]


def _model(v: float | None = None, seed: int = 0, dim: int = 3, T: int = 30) -> ModelDenoiser:
    torch.manual_seed(seed)
    return ModelDenoiser(_SigmaNet(dim, v), DiscreteVP.linear(T=T, beta_end=0.1), "eps").double()


def test_model_denoiser_splits_the_output_and_calls_the_network_once():
    model = _model()
    assert model.learn_sigma
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.full((4,), 0.5, dtype=torch.float64)
    x0, v = model.x0_and_variance(x, t)
    assert model.net.calls == 1 and x0.shape == v.shape == (4, 3)
    plain = ModelDenoiser(_MeanOnly(model.net), model.process, "eps")
    assert not plain.learn_sigma
    torch.testing.assert_close(model(x, t), plain(x, t))
    torch.testing.assert_close(x0, plain(x, t))
    with pytest.raises(ValueError, match="learn_sigma=True"):
        plain.x0_and_variance(x, t)


@pytest.mark.parametrize(("v", "fixed"), [(1.0, "beta"), (-1.0, "posterior")])
def test_learned_variance_sampler_reduces_to_the_fixed_ones_at_the_endpoints(v, fixed):
    """With v = +1 the learned ancestral sampler is the beta one, with v = -1 the posterior one
    (same network, same noise), and it makes exactly one network call per step."""
    model = _model(v)
    plain = ModelDenoiser(_MeanOnly(model.net), model.process, "eps")
    kw = {"sampler": "ddpm", "steps": 12, "grid": "uniform", "dtype": torch.float64}
    learned = sample(model, (5, 3), variance="learned", generator=generators_from_seeds(5), **kw)
    model.net.calls = 0
    sample(model, (5, 3), variance="learned", generator=generators_from_seeds(5), **kw)
    assert learned.nfe == 12 and model.net.calls == 12
    ref = sample(plain, (5, 3), variance=fixed, generator=generators_from_seeds(5), **kw)
    torch.testing.assert_close(learned.x, ref.x, rtol=1e-12, atol=1e-12)


def test_learned_variance_needs_a_model_that_predicts_one():
    oracle = GaussianMixtureDenoiser(GaussianMixture([[0.0, 0.0]], [0.1]), DiscreteVP.linear(T=10))
    with pytest.raises(ValueError, match="learn_sigma=True.*'posterior' or 'beta'"):
        sample(oracle, (2, 2), sampler="ddpm", steps=3, grid="uniform", variance="learned")


def test_vlb_with_learned_endpoint_equals_the_fixed_variance_bound():
    """The evaluation's learned branch at v = -1 is the posterior-variance bound (same draws)."""
    model = _model(-1.0)
    plain = ModelDenoiser(_MeanOnly(model.net), model.process, "eps")
    x0 = (torch.randint(0, 256, (6, 3), generator=torch.Generator().manual_seed(0)).double() / 127.5) - 1
    a = vlb_bits_per_dim(model, x0, generator=torch.Generator().manual_seed(1), progress=False)
    b = vlb_bits_per_dim(
        plain, x0, variance="posterior", generator=torch.Generator().manual_seed(1), progress=False
    )
    assert a.variance == "learned" and b.variance == "posterior"
    torch.testing.assert_close(a.per_sample, b.per_sample, rtol=1e-12, atol=1e-12)


def _grads(model: ModelDenoiser, **kwargs) -> tuple[torch.Tensor, torch.Tensor, object]:
    model.zero_grad()
    x0 = (torch.randint(0, 256, (16, 3), generator=torch.Generator().manual_seed(0)).double() / 127.5) - 1
    out = hybrid_loss(model, x0, generator=generators_from_seeds(16), **kwargs)
    out.loss.backward()
    return model.net.mean.weight.grad.clone(), model.net.var.weight.grad.clone(), out


def test_hybrid_loss_stops_the_gradient_of_the_mean_inside_l_vlb():
    """L_hybrid's gradient on the mean's parameters is L_simple's (the L_vlb term sees a detached
    mean); the variance's parameters get gradient only from L_vlb. L_vlb alone trains both."""
    model = _model()
    g_mean, g_var, out = _grads(model, vlb_weight=1e-3)
    g_mean0, g_var0, out0 = _grads(model, vlb_weight=0.0)
    torch.testing.assert_close(g_mean, g_mean0, rtol=1e-12, atol=0)
    assert float(g_var0.abs().max()) == 0 and float(g_var.abs().max()) > 0
    torch.testing.assert_close(out.loss, out0.loss + 1e-3 * 30 * out.vlb.mean())
    g_mean_vlb, _, _ = _grads(model, kind="vlb")
    assert not torch.allclose(g_mean_vlb, torch.zeros_like(g_mean_vlb))
    with pytest.raises(ValueError, match="learn_sigma=True"):
        hybrid_loss(ModelDenoiser(_MeanOnly(model.net), model.process, "eps"), torch.zeros(2, 3))


def test_hybrid_terms_are_the_evaluation_terms():
    """The L_{k-1} of a training draw (bits/dim) is what the evaluation's vlb_term gives for the
    same step and noise: the trained and the reported bound are one formula."""
    model = _model()
    x0 = (torch.randint(0, 256, (8, 3), generator=torch.Generator().manual_seed(0)).double() / 127.5) - 1
    out = hybrid_loss(model, x0, generator=generators_from_seeds(8))
    gens = generators_from_seeds(8)
    for g in gens:  # replay the draws: the step, then the noise
        torch.rand((), generator=g, dtype=torch.float64)
    eps = torch.stack([torch.randn(3, generator=g, dtype=torch.float64) for g in gens])
    t, s = out.k.double() / 30, (out.k.double() - 1) / 30
    with torch.no_grad():
        nats = vlb_term(model, x0, t, s, eps=eps)
    torch.testing.assert_close(out.vlb, nats / (3 * math.log(2)))
    assert bool((out.k >= 1).all() and (out.k <= 30).all())


def test_importance_sampler_is_uniform_until_warm_then_follows_sqrt_mean_square():
    T = 4
    sampler = ImportanceSampler(T, history=10, uniform_mix=0.0)
    torch.testing.assert_close(sampler.probabilities(), torch.full((T,), 0.25, dtype=torch.float64))
    values = {1: [1.0] * 10, 2: [2.0, 4.0] * 5, 3: [0.5] * 12 + [3.0] * 10, 4: [1.0] * 9}
    for k, vs in values.items():
        sampler.update(torch.full((len(vs),), k), torch.tensor(vs))
    assert not sampler.warmed_up()  # step 4 has 9 values: still uniform
    k, w = sampler.sample(1000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(w, torch.ones(1000, dtype=torch.float64))
    assert set(k.tolist()) == {1, 2, 3, 4}
    sampler.update(torch.tensor([4]), torch.tensor([1.0]))
    assert sampler.warmed_up()
    assert sampler.history[2].tolist() == [3.0] * 10  # only the last 10 values of step 3 are kept
    rms = torch.tensor([1.0, math.sqrt(10.0), 3.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(sampler.probabilities(), rms / rms.sum())
    n = 40000
    k, w = sampler.sample(n, torch.Generator().manual_seed(1))
    p = rms / rms.sum()
    freq = torch.bincount(k - 1, minlength=T).double() / n
    assert bool(((freq - p).abs() < 4 * (p * (1 - p) / n).sqrt()).all()), (freq, p)
    torch.testing.assert_close(w, 1 / (T * p[k - 1]))
    mixed = ImportanceSampler(T, history=10, uniform_mix=0.1)
    mixed.load_state_dict(sampler.state_dict())
    torch.testing.assert_close(mixed.probabilities(), 0.9 * p + 0.1 / T)
