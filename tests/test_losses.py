"""Training objectives: targets, weightings converted between spaces, DSM and Hyvarinen score matching."""

from __future__ import annotations

import math

import pytest
import torch

from hwaksan.losses import (
    denoising_loss,
    draw,
    dsm_loss,
    sample_t,
    score_matching_loss,
    x0_weight,
)
from hwaksan.models.mlp import MLP
from hwaksan.parameterizations import ModelDenoiser, prediction_scale
from hwaksan.processes import EDM, VESDE, DiscreteVP, LinearInterpolant


class _Zero(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, noise_level, cond=None):
        return torch.zeros_like(x) + 0 * self.p


def test_simple_eps_loss_of_zero_network_is_mean_eps_squared():
    model = ModelDenoiser(_Zero(), DiscreteVP.linear(), "eps")
    x0 = torch.randn(64, 5)
    loss = denoising_loss(model, x0, generator=torch.Generator().manual_seed(0), reduction="none")
    d = draw(model.process, x0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, d.eps.pow(2).mean(1))


def test_flow_matching_target_is_eps_minus_x0():
    model = ModelDenoiser(_Zero(), LinearInterpolant(), "velocity")
    x0 = torch.randn(32, 3)
    loss = denoising_loss(model, x0, generator=torch.Generator().manual_seed(1), reduction="none")
    d = draw(model.process, x0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, (d.eps - d.x0).pow(2).mean(1))


def test_ot_coupling_used_by_loss():
    from hwaksan.processes import ot_coupling

    x0 = torch.randn(16, 2)
    d = draw(LinearInterpolant(), x0, generator=torch.Generator().manual_seed(0), coupling=ot_coupling)
    d0 = draw(LinearInterpolant(), x0, generator=torch.Generator().manual_seed(0))
    assert (d.x0 - d.eps).pow(2).sum() <= (d0.x0 - d0.eps).pow(2).sum() + 1e-6


@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_min_snr_weights_in_each_space(gamma):
    """Hang et al. 2023: eps-loss weight min(snr,g)/snr, x0-loss min(snr,g), v-loss min(snr,g)/(snr+1)."""
    p = DiscreteVP.cosine()
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    snr = p.snr(t)
    w = x0_weight("min_snr", p, t, min_snr_gamma=gamma)
    torch.testing.assert_close(w / prediction_scale("eps", p, t), snr.clamp(max=gamma) / snr)
    torch.testing.assert_close(w / prediction_scale("x0", p, t), snr.clamp(max=gamma))
    torch.testing.assert_close(w / prediction_scale("v", p, t), snr.clamp(max=gamma) / (snr + 1))


def test_edm_weight_and_lognormal_t():
    p = EDM()
    t = torch.tensor([0.01, 0.1, 0.5], dtype=torch.float64)
    s = p.sigma(t)
    torch.testing.assert_close(x0_weight("edm", p, t, sigma_data=0.5), (s**2 + 0.25) / (s * 0.5) ** 2)
    ts = sample_t(p, 20000, "edm", torch.Generator().manual_seed(0))
    log_s = p.sigma(ts).log()
    assert abs(float(log_s.mean()) + 1.2) < 5 * 1.2 / math.sqrt(20000)
    assert abs(float(log_s.std()) - 1.2) < 5 * 1.2 / math.sqrt(2 * 20000)


def test_discrete_t_hits_every_knot():
    p = DiscreteVP.linear(T=10)
    t = sample_t(p, 5000, "discrete", torch.Generator().manual_seed(0))
    k = (t * 10).round()
    assert set(k.long().tolist()) == set(range(1, 11))
    torch.testing.assert_close(t * 10, k)


def test_dsm_is_ncsn_objective():
    """E sigma^2 || s(x~) + (x~ - x)/sigma^2 ||^2 computed by hand with the same draws."""
    torch.manual_seed(0)
    p = VESDE()
    net = MLP(dim=3, width=32, depth=1)
    torch.nn.init.normal_(net.out.weight, std=0.1)
    model = ModelDenoiser(net, p, "score")
    x0 = torch.randn(64, 3)
    got = dsm_loss(model, x0, generator=torch.Generator().manual_seed(2), reduction="none")
    d = draw(p, x0, generator=torch.Generator().manual_seed(2))
    s = p.sigma(d.t).float()[:, None]
    score = model.predict(d.x_t, d.t)
    ref = (s**2 * (score + (d.x_t - d.x0) / s**2).pow(2)).mean(1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_score_matching_exact_divergence_and_unbiased_sliced():
    a = torch.tensor([[1.0, 0.3, 0.0], [0.2, -0.5, 0.1], [0.0, 0.4, 2.0]], dtype=torch.float64)
    f = lambda x: x @ a.T  # noqa: E731  div f = tr(A)
    x = torch.randn(256, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = score_matching_loss(f, x, method="exact")
    ref = (f(x).pow(2).sum(1) + 2 * torch.trace(a)).mean()
    torch.testing.assert_close(exact, ref)
    # Hutchinson is unbiased: the mean over many probes converges to the exact value; for
    # Rademacher probes z^T A z has variance 2 sum_{i != j} S_ij^2, S = (A + A^T) / 2, per sample
    # and probe; the loss carries 2 div f, hence twice the standard error of the mean.
    sliced = score_matching_loss(
        f, x, method="sliced", n_probes=64, generator=torch.Generator().manual_seed(1)
    )
    off = a - torch.diag(torch.diag(a))
    var = 2 * (((off + off.T) / 2) ** 2).sum()  # Var z^T A z for Rademacher z
    se = 2 * math.sqrt(float(var) / (256 * 64))
    assert abs(float((sliced - exact).detach())) < 5 * se


def test_hyvarinen_minimiser_is_true_score():
    """For x ~ N(0, s^2), E[f^2 + 2 f'] over f = -x/c is minimised at c = s^2."""
    s2 = 0.64
    x = math.sqrt(s2) * torch.randn(
        200_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    cs = torch.linspace(0.3, 1.2, 91, dtype=torch.float64)
    losses = [float(score_matching_loss(lambda y, c=c: -y / c, x).detach()) for c in cs]
    best = float(cs[int(torch.tensor(losses).argmin())])
    assert abs(best - s2) <= 0.02  # grid spacing 0.01, plus Monte-Carlo noise of the sample variance


def test_unknown_names_are_rejected():
    model = ModelDenoiser(_Zero(), DiscreteVP.linear(), "eps")
    with pytest.raises(ValueError, match="min_snr"):
        denoising_loss(model, torch.zeros(2, 2), weighting="nope")
    with pytest.raises(ValueError, match="uniform"):
        sample_t(model.process, 3, "nope")
