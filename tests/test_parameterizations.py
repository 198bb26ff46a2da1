"""Every prediction type converts to every other through the process; preconditioning is exact."""

from __future__ import annotations

import itertools

import pytest
import torch

from hwaksan.oracles import GaussianMixtureDenoiser
from hwaksan.parameterizations import (
    PREDICTIONS,
    ModelDenoiser,
    convert_prediction,
    edm_preconditioning,
    prediction_from_x0_eps,
    prediction_scale,
    score_from_x0,
    velocity_from_x0,
    x0_eps_from_prediction,
)
from hwaksan.processes import EDM, VESDE, VPSDE, DiscreteVP, LinearInterpolant, SubVPSDE

PROCS = [DiscreteVP.cosine(), VPSDE(), SubVPSDE(), VESDE(), EDM(), LinearInterpolant()]


@pytest.mark.parametrize("process", PROCS, ids=lambda p: p.name)
@pytest.mark.parametrize("a,b", list(itertools.product(PREDICTIONS, PREDICTIONS)))
def test_round_trip_every_pair(process, a, b):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(16, 3, generator=g, dtype=torch.float64)
    t = 0.02 + 0.96 * torch.rand(16, generator=g, dtype=torch.float64)
    x = process.q_sample(x0, t, eps)
    pa = prediction_from_x0_eps(a, x0, eps, t, process, sigma_data=0.7)
    pb = convert_prediction(pa, a, b, x, t, process, sigma_data=0.7)
    torch.testing.assert_close(pb, prediction_from_x0_eps(b, x0, eps, t, process, sigma_data=0.7))
    x0r, epsr = x0_eps_from_prediction(b, pb, x, t, process, sigma_data=0.7)
    torch.testing.assert_close(x0r, x0)
    torch.testing.assert_close(epsr, eps)


def test_velocity_and_score_closed_forms():
    p = VPSDE()
    x0, eps = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64) * 0.9 + 0.05
    x = p.q_sample(x0, t, eps)
    # velocity = d x_t / dt along the path, by a central difference in float64
    h = 1e-6
    fd = (p.q_sample(x0, t + h, eps) - p.q_sample(x0, t - h, eps)) / (2 * h)
    torch.testing.assert_close(velocity_from_x0(x, x0, t, p), fd, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(score_from_x0(x, x0, t, p), -eps / p.sigma(t)[:, None])


def test_v_is_salimans_ho_for_vp():
    p = DiscreteVP.linear()
    x0, eps = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=torch.float64)
    a, s = p.alpha(t)[:, None], p.sigma(t)[:, None]
    v = prediction_from_x0_eps("v", x0, eps, t, p)
    torch.testing.assert_close(v, a * eps - s * x0)
    x = p.q_sample(x0, t, eps)
    torch.testing.assert_close(a * x - s * v, x0)  # Salimans & Ho: x0 = alpha x_t - sigma v


def test_edm_coefficients_table1():
    s, sd = torch.tensor([0.5, 2.0], dtype=torch.float64), 0.5
    c_skip, c_out, c_in, c_noise = edm_preconditioning(s, sd)
    torch.testing.assert_close(c_skip, sd**2 / (s**2 + sd**2))
    torch.testing.assert_close(c_out, s * sd / (s**2 + sd**2).sqrt())
    torch.testing.assert_close(c_in, 1 / (s**2 + sd**2).sqrt())
    torch.testing.assert_close(c_noise, s.log() / 4)


class _IdealNetwork(torch.nn.Module):
    """The network output a perfect model of type ``kind`` would give: computed from the oracle by
    inverting the preconditioning, ``F = pred*(x0_exact, eps_exact)``."""

    def __init__(self, oracle, process, kind, sigma_data):
        super().__init__()
        self.oracle, self.process, self.kind, self.sd = oracle, process, kind, sigma_data
        self.t = None

    def forward(self, x_in, noise_level, cond=None):
        from hwaksan.parameterizations import eps_from_x0, input_scale

        t = self.t
        x = x_in / input_scale(self.process, t, self.sd)[:, None]
        x0 = self.oracle(x, t)
        return prediction_from_x0_eps(
            self.kind, x0, eps_from_x0(x, x0, t, self.process), t, self.process, self.sd
        )


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("process", [DiscreteVP.cosine(), EDM(), LinearInterpolant()], ids=lambda p: p.name)
def test_preconditioned_ideal_network_is_exact_denoiser(mixture2d, kind, process):
    oracle = GaussianMixtureDenoiser(mixture2d, process)
    net = _IdealNetwork(oracle, process, kind, 0.8).double()
    model = ModelDenoiser(net, process, prediction=kind, sigma_data=0.8)
    t = torch.linspace(0.05, 0.95, 12, dtype=torch.float64)
    x = process.q_sample(mixture2d.sample(12), t, torch.randn(12, 2, dtype=torch.float64))
    net.t = t
    torch.testing.assert_close(model(x, t), oracle(x, t), rtol=1e-9, atol=1e-10)


def test_prediction_scale_is_squared_sensitivity():
    """|d pred / d x0|^2 at fixed x_t, by autograd through the conversion."""
    p = VPSDE()
    t = torch.tensor([0.3], dtype=torch.float64)
    x = torch.tensor([[0.4]], dtype=torch.float64)
    for kind in PREDICTIONS:
        x0 = torch.tensor([[0.1]], dtype=torch.float64, requires_grad=True)
        eps = (x - p.alpha(t) * x0) / p.sigma(t)
        (g,) = torch.autograd.grad(prediction_from_x0_eps(kind, x0, eps, t, p).sum(), x0)
        torch.testing.assert_close(prediction_scale(kind, p, t), g.reshape(1) ** 2)


def test_eps_prediction_refused_at_zero_terminal_snr():
    with pytest.raises(ValueError, match="v"):
        ModelDenoiser(torch.nn.Linear(2, 2), DiscreteVP.linear(zero_terminal_snr=True), "eps")
