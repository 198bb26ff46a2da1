"""SDEdit and DDIM inversion (hwaksan.tasks.edit) against exact Gaussian-mixture oracles."""

from __future__ import annotations

import math

import pytest
import torch

import hwaksan as hw
from hwaksan.models.unet import UNet
from hwaksan.parameterizations import ModelDenoiser
from hwaksan.tasks import ddim_invert, edit_grid, invert_and_generate, sdedit, strength_time


def _gaussian(dim: int = 4, seed: int = 0) -> hw.GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    cov = a @ a.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)
    return hw.GaussianMixture(torch.zeros(1, dim, dtype=torch.float64), cov[None])


def _two_classes() -> hw.GaussianMixture:
    """Class 0 around -2, class 1 around +2 (std 0.3), in 2-D."""
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    return hw.GaussianMixture(means, torch.tensor([0.09, 0.09], dtype=torch.float64))


# -- strength -------------------------------------------------------------------------------------


def test_strength_time_closed_forms():
    edm = hw.make_process("edm")
    # Karras ramp on sigma^(1/7) between EDM's defaults sigma_min = 0.002 and sigma_max = 80
    lo, hi = 0.002 ** (1 / 7), 80 ** (1 / 7)
    for s in (0.25, 0.5, 0.9):
        sigma = (lo + s * (hi - lo)) ** 7
        assert strength_time(edm, s, "karras") == pytest.approx(sigma / 80.0, rel=1e-9)  # EDM: t = sigma/80
    # log-SNR grid: geometric in sigma
    assert strength_time(edm, 0.5, "log_snr") == pytest.approx(math.sqrt(0.002 * 80) / 80, rel=1e-9)
    vp = hw.make_process("vp")
    assert strength_time(vp, 0.6, "uniform") == pytest.approx(0.6)  # SDEdit's t0 on VP
    assert strength_time(vp, 0.0, "uniform") == 0.0
    assert strength_time(edm, 1.0, "karras") == float(hw.make_grid(edm, 5, "karras")[0])
    times = [strength_time(edm, s) for s in (0.1, 0.3, 0.5, 0.7, 1.0)]
    assert times == sorted(times)
    with pytest.raises(ValueError, match="strength"):
        strength_time(edm, 1.5)


@pytest.mark.parametrize("grid", ["karras", "log_snr", "uniform"])
def test_edit_grid(grid):
    p = hw.make_process("vp")
    ts = edit_grid(p, 0.4, 7, grid)
    assert len(ts) == 8 and float(ts[-1]) == 0.0
    assert float(ts[0]) == pytest.approx(strength_time(p, 0.4, grid), rel=1e-9)
    assert bool((ts[1:] < ts[:-1]).all())
    assert edit_grid(p, 0.0, 7, grid).tolist() == [0.0]
    tiny = edit_grid(p, 1e-9, 7, grid)  # below the grid's smallest level: one step
    assert len(tiny) == 2


# -- SDEdit -----------------------------------------------------------------------------------------


def test_sdedit_strength_zero_returns_input():
    oracle = hw.GaussianMixtureDenoiser(_gaussian(), hw.make_process("edm"))
    x = torch.randn(5, 4, dtype=torch.float64)
    res = sdedit(oracle, x, 0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.x, x) and res.nfe == 0
    net = UNet(in_channels=1, model_channels=8, channel_mult=(1,), num_res_blocks=1, attention_levels=[])
    model = ModelDenoiser(net, hw.make_process("edm"), "edm", 0.5)
    img = torch.rand(2, 1, 8, 8) * 2 - 1
    assert torch.equal(sdedit(model, img, 0.0, sampler="dpmpp_2m").x, img)


def test_sdedit_new_class_and_strength():
    """Under the class-1 oracle, strength 1 moves class-0 inputs to class 1; a small strength keeps
    them where they are (sigma~ at s = 0.2 is 0.085, far below the classes' distance of 4)."""
    mix = _two_classes()
    oracle = hw.GaussianMixtureDenoiser(mix, hw.make_process("edm"))
    x0 = mix.component(0).sample(200, torch.Generator().manual_seed(0))
    gens = [torch.Generator().manual_seed(i) for i in range(200)]
    cls1 = torch.ones(200, dtype=torch.long)
    full = sdedit(oracle, x0, 1.0, steps=12, cond=cls1, generator=gens).x
    assert bool((full[:, 0] > 0.5).all())
    gens = [torch.Generator().manual_seed(i) for i in range(200)]
    light = sdedit(oracle, x0, 0.2, steps=12, cond=cls1, generator=gens)
    assert float(strength_time(oracle.process, 0.2)) * 80 < 0.1
    assert float((light.x - x0).abs().max()) < 0.5
    # per-sample generators: sample i does not depend on the batch
    one = sdedit(oracle, x0[3:4], 0.6, cond=cls1[:1], generator=[torch.Generator().manual_seed(3)]).x
    gens = [torch.Generator().manual_seed(i) for i in range(200)]
    assert torch.allclose(sdedit(oracle, x0, 0.6, cond=cls1, generator=gens).x[3:4], one)


def test_sdedit_guidance_wraps_the_denoiser():
    pytest.importorskip("hwaksan.guidance")
    mix = _two_classes()
    oracle = hw.GaussianMixtureDenoiser(mix, hw.make_process("edm"))
    x0 = mix.component(0).sample(64, torch.Generator().manual_seed(0))
    cls1 = torch.ones(64, dtype=torch.long)

    def run(w, **kw):
        return sdedit(
            oracle, x0, 0.5, steps=8, cond=cls1, guidance=w, generator=torch.Generator().manual_seed(1), **kw
        )

    plain = run(None)
    assert torch.equal(run(1.0).x, plain.x)  # w = 1 is no guidance
    strong = run(4.0, guidance_options={"uncond": lambda c: None})
    # guidance pushes further towards class 1 than the conditional model alone
    assert float(strong.x[:, 0].mean()) > float(plain.x[:, 0].mean())


# -- inversion --------------------------------------------------------------------------------------


@pytest.mark.parametrize("process", ["edm", "flow"])
def test_inversion_reconstruction_error_shrinks_first_order(process):
    """Explicit DDIM inversion then DDIM generation: each is Euler on the PF-ODE, so the round trip
    has a global error O(1/N): doubling the steps halves it (ratio -> 0.5; checked in [0.4, 0.6] once
    N >= 16, where the higher-order terms are below 20% of the leading one)."""
    mix = _gaussian()
    oracle = hw.GaussianMixtureDenoiser(mix, hw.make_process(process))
    x0 = mix.sample(64, torch.Generator().manual_seed(1))
    errors = []
    for n in (16, 32, 64):
        ts = hw.make_grid(oracle.process, n, "karras")
        latent, res = invert_and_generate(oracle, x0, ts)
        errors.append(float((res.x - x0).pow(2).mean().sqrt()))
        assert res.nfe == 2 * n - 1  # the inversion's first step (from sigma = 0) needs no call
    ratios = [errors[i + 1] / errors[i] for i in range(len(errors) - 1)]
    assert all(0.4 < r < 0.6 for r in ratios), (errors, ratios)


def test_inversion_fixed_point_makes_the_round_trip_exact():
    mix = _gaussian()
    oracle = hw.GaussianMixtureDenoiser(mix, hw.make_process("edm"))
    x0 = mix.sample(32, torch.Generator().manual_seed(2))
    ts = hw.make_grid(oracle.process, 16, "karras")
    errors = []
    for k in (0, 2, 10):
        _, res = invert_and_generate(oracle, x0, ts, fixed_point_iters=k)
        errors.append(float((res.x - x0).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3
    # the latent is what DDIM maps back: one more DDIM pass from it reproduces the reconstruction
    latent = ddim_invert(oracle, x0, ts, fixed_point_iters=10)
    back = hw.samplers.sample_ddim(oracle, latent, ts)
    assert float((back - x0).abs().max()) < 1e-3


def test_inversion_edit_changes_the_class():
    mix = _two_classes()
    oracle = hw.GaussianMixtureDenoiser(mix, hw.make_process("edm"))
    x0 = mix.component(0).sample(32, torch.Generator().manual_seed(0))
    ts = hw.make_grid(oracle.process, 32, "karras")
    cls0, cls1 = torch.zeros(32, dtype=torch.long), torch.ones(32, dtype=torch.long)
    _, rec = invert_and_generate(oracle, x0, ts, cond=cls0)
    _, edit = invert_and_generate(oracle, x0, ts, cond=cls0, new_cond=cls1)
    # the reconstruction stays in class 0 within half a class std (0.3); the edit lands in class 1
    assert bool((rec.x[:, 0] < -1).all()) and float((rec.x - x0).pow(2).mean().sqrt()) < 0.15
    assert bool((edit.x[:, 0] > 0.5).all())


def test_inversion_rejects_bad_grids():
    oracle = hw.GaussianMixtureDenoiser(_gaussian(), hw.make_process("edm"))
    with pytest.raises(ValueError, match="decreasing"):
        ddim_invert(oracle, torch.zeros(1, 4), torch.tensor([0.0, 0.5]))
