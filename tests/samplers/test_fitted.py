"""Tests for the fitted solver (hwaksan.samplers.fitted / fit / planfile) and the benchmark's
paired bar statistics (bench/bar.py).

- Identities: with zero coefficients and no corrector the data form is DPM-Solver++(3M) and the
  noise form DEIS, step for step; the "corrector off" coefficients of ``predictor_only_coefficients``
  turn the corrector into the identity on the predictor; a constant denoiser (``D = c``) is
  integrated exactly (``x~_s - c = (sigma~_s / sigma~_t) (x~_t - c)``) for *any* coefficients, the
  consistency that the difference parameterisation promises.
- Convergence order of the plain noise form (the data form is in test_multistep.py's list).
- The straight-through grid gradient: d(loss)/d(log sigma~ of an interior level) from autograd equals
  a central finite difference (float64, relative 1e-4: the FD error is O(delta^2) with delta = 1e-5).
- Generalisation: a solver fitted on calibration noise of one seed has a lower error than its
  starting method on noise of another seed; the paired per-sample improvement is more than 3 of its
  standard errors.
- Plan files: round trip, clear errors; ``plan-steps --fit`` then ``sample --plan`` on a 2-D checkpoint.
- bench/bar.py: identical sample sets pass with delta 0; a shifted set is detected as worse.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchdiffeq import odeint

from hwaksan.distributions import GaussianMixture
from hwaksan.oracles import GaussianMixtureDenoiser
from hwaksan.processes import EDM, DiscreteVP, LinearInterpolant
from hwaksan.samplers import CountingDenoiser, karras_grid, log_snr_grid, sample_deis, sample_dpmpp_3m
from hwaksan.samplers.fit import _mean_error, _Params, fit_solver, predictor_only_coefficients
from hwaksan.samplers.fitted import run_fitted, sample_fitted, zero_coefficients
from hwaksan.samplers.plan import calibration_set
from hwaksan.samplers.planfile import load_plan, save_plan

SMIN, SMAX = 0.05, 80.0


def _mixture() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=torch.float64)
    covs = torch.tensor([[0.3**2, 0.5**2], [0.6**2, 0.2**2]], dtype=torch.float64)
    return GaussianMixture(means, covs)


@pytest.fixture(scope="module")
def vp():
    den = GaussianMixtureDenoiser(_mixture(), DiscreteVP.linear(T=1000))
    x = den.process.prior_sample((16, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    return den, x


@pytest.mark.parametrize("form, reference", [("data", sample_dpmpp_3m), ("noise", sample_deis)])
def test_plain_predictor_is_dpmpp_3m_or_deis(vp, form, reference):
    den, x = vp
    ts = karras_grid(den.process, 7)
    ours = sample_fitted(den, x.clone(), ts, form=form, corrector=False)
    torch.testing.assert_close(ours, reference(den, x.clone(), ts), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", ["data", "noise"])
def test_predictor_only_coefficients_switch_the_corrector_off(vp, form):
    den, x = vp
    ts = log_snr_grid(den.process, 6)
    coef = predictor_only_coefficients(ts, den.process, 3, form)
    with_corr = sample_fitted(den, x.clone(), ts, form=form, coefficients=coef)
    without = sample_fitted(den, x.clone(), ts, form=form, corrector=False)
    torch.testing.assert_close(with_corr, without, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(sample_fitted(den, x.clone(), ts, form=form), without)  # corrector matters


class ConstantDenoiser:
    def __init__(self, process, c):
        self.process, self.c = process, c

    def __call__(self, x, t, cond=None):
        return self.c.expand_as(x).to(x.dtype)


@pytest.mark.parametrize("form", ["data", "noise"])
def test_any_coefficients_integrate_a_constant_denoiser_exactly(form):
    process = DiscreteVP.cosine(T=1000)
    c = torch.tensor([0.3, -1.2], dtype=torch.float64)
    den = ConstantDenoiser(process, c)
    ts = karras_grid(process, 7)[:-1]  # 6 steps ending at t_min > 0: no final denoising step
    x = process.prior_sample((4, 2), torch.Generator().manual_seed(1), dtype=torch.float64, t=float(ts[0]))
    g = torch.Generator().manual_seed(2)
    coef = {
        k: torch.randn(torch.tensor(v).shape, generator=g).tolist()
        for k, v in zero_coefficients(6, 3).items()
    }
    out = sample_fitted(den, x.clone(), ts, coefficients=coef, form=form)
    a0, s0 = float(process.alpha(ts[0])), float(process.sigma_tilde(ts[0]))
    a1, s1 = float(process.alpha(ts[-1])), float(process.sigma_tilde(ts[-1]))
    exact = a1 * (c + (s1 / s0) * (x / a0 - c))
    torch.testing.assert_close(out, exact, rtol=1e-9, atol=1e-9)


def test_noise_form_convergence_order():
    mix = _mixture()
    den = GaussianMixtureDenoiser(mix, EDM())
    x = SMAX * torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(s, y):
        return y - mix.posterior_mean(y, 1.0, float(torch.exp(s)))

    grid = torch.tensor([math.log(SMAX), math.log(SMIN)], dtype=torch.float64)
    ref = mix.posterior_mean(odeint(f, x, grid, rtol=1e-12, atol=1e-12)[-1], 1.0, SMIN)
    ns, errs = (20, 40, 80), []
    for n in ns:
        ts = log_snr_grid(den.process, n, sigma_min=SMIN, sigma_max=SMAX)
        errs.append(float((sample_fitted(den, x.clone(), ts, form="noise") - ref).norm(dim=1).mean()))
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(slope - 4) <= 0.35, (slope, errs)


@pytest.mark.parametrize("form", ["data", "noise"])
def test_straight_through_grid_gradient_matches_finite_differences(vp, form):
    den, _ = vp
    x = den.process.prior_sample((8, 2), torch.Generator().manual_seed(4), dtype=torch.float64)
    ref = torch.zeros_like(x)  # any fixed target: the check is of d loss / d grid
    ts = log_snr_grid(den.process, 5)
    params = _Params(den.process, ts, zero_coefficients(5, 3))

    def loss() -> torch.Tensor:
        out = run_fitted(den, x.clone(), params.nodes(), params.coefficients(), 3, True, form)
        return _mean_error(out, ref)

    loss().backward()
    grad = params.g.grad.clone()
    delta = 1e-5
    for i in (0, 2):
        with torch.no_grad():
            params.g[i] += delta
            up = float(loss())
            params.g[i] -= 2 * delta
            down = float(loss())
            params.g[i] += delta
        fd = (up - down) / (2 * delta)
        assert float(grad[i]) == pytest.approx(fd, rel=1e-4, abs=1e-9), (i, float(grad[i]), fd)


def test_fitted_solver_generalises_to_other_noise():
    den = GaussianMixtureDenoiser(_mixture(), DiscreteVP.linear(T=1000))
    cal = calibration_set(den, 64, torch.Generator().manual_seed(1))
    plan = fit_solver(den, 4, calibration=cal, iterations=25, plan_evals=12)
    assert plan.error <= plan.initial_error and len(plan.ts) == 5
    x, ref = calibration_set(den, 200, torch.Generator().manual_seed(2))  # other noise
    start = sample_fitted(den, x.clone(), plan.start_ts, **plan.start_options)
    counter = CountingDenoiser(den)
    fitted = sample_fitted(counter, x.clone(), plan.ts, **plan.options)
    assert counter.nfe == 4
    e_fit, e_start = (fitted - ref).norm(dim=1), (start - ref).norm(dim=1)
    diff = e_fit - e_start
    se = float(diff.std()) / math.sqrt(len(diff))
    assert float(diff.mean()) < -3 * se, (float(e_fit.mean()), float(e_start.mean()), se)


def test_plan_file_round_trip_and_errors(tmp_path):
    ts = torch.tensor([1.0, 0.5, 0.1, 0.0], dtype=torch.float64)
    coef = zero_coefficients(3, 3)
    path = save_plan(tmp_path / "p.json", "fitted", ts, {"coefficients": coef, "form": "noise"}, error=0.1)
    plan = load_plan(path)
    assert plan["sampler"] == "fitted" and torch.equal(plan["ts"], ts) and plan["error"] == 0.1
    bad = json.loads(path.read_text())
    bad["options"]["coefficients"]["corrector"] = [[0.0] * 3] * 2
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="3 lists of 3 numbers"):
        load_plan(tmp_path / "bad.json")
    (tmp_path / "up.json").write_text(json.dumps({"sampler": "fitted", "ts": [0.1, 0.5, 0.0]}))
    with pytest.raises(ValueError, match="strictly decreasing"):
        load_plan(tmp_path / "up.json")
    with pytest.raises(ValueError, match="unknown sampler"):
        save_plan(tmp_path / "u.json", "nope", ts)
        load_plan(tmp_path / "u.json")


def test_fit_on_a_network_checkpoint_model():
    from hwaksan.models.mlp import MLP
    from hwaksan.parameterizations import ModelDenoiser

    torch.manual_seed(0)
    model = ModelDenoiser(MLP(dim=2, width=16, depth=1), DiscreteVP.linear(T=1000), "v").double()
    with torch.no_grad():
        cal = calibration_set(model, 16, torch.Generator().manual_seed(0), shape=(2,), rtol=1e-5, atol=1e-5)
    plan = fit_solver(model, 3, calibration=cal, iterations=5, plan_evals=6)
    assert math.isfinite(plan.error) and plan.error <= plan.initial_error
    assert all(p.grad is None for p in model.parameters())  # the network is not trained by the fit
    counter = CountingDenoiser(model)
    with torch.no_grad():
        out = sample_fitted(counter, cal[0].clone(), plan.ts, **plan.options)
    assert counter.nfe == 3 and bool(torch.isfinite(out).all())


def test_plan_steps_fit_cli_and_sample_with_the_plan(tmp_path, capsys):
    from hwaksan.cli import main

    plan = tmp_path / "fit.json"
    rc = main(
        ["plan-steps", "--oracle", "2d", "--process", "ddpm-linear", "--fit", "--steps", "3", "--n", "16"]
        + ["--iterations", "3", "--max-evals", "6", "--out", str(plan)]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "held-out" in text and str(plan) in text
    record = load_plan(plan)
    assert record["sampler"] == "fitted" and len(record["ts"]) == 4
    out = tmp_path / "toy"  # a ddpm-linear 2-D checkpoint: the plan's process
    args = ["train", "--data", "moons", "--train-steps", "5", "--batch-size", "16", "--width", "16"]
    assert main([*args, "--depth", "1", "--out", str(out)]) == 0
    png = tmp_path / "fitted.png"
    assert main(["sample", str(out), "--plan", str(plan), "--n", "8", "--out", str(png)]) == 0
    assert png.exists() and "with fitted (3 NFE)" in capsys.readouterr().out


def _bench_bar():
    path = Path(__file__).resolve().parents[2] / "bench" / "bar.py"
    spec = importlib.util.spec_from_file_location("bench_bar", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_bar_statistics():
    bar = _bench_bar()
    bar.N_BOOT, bar.N_ENTROPY = 50, 5_000
    mix = _mixture()
    ref = bar.PairedReference(mix, 200)
    x = mix.sample(200, torch.Generator().manual_seed(9)).double()
    same = ref.compare(x, x.clone())
    assert same["sw_delta"] == 0 and same["nll_gap_delta"] == 0 and same["sw_ok"] and same["nll_ok"]
    shifted = ref.compare(x + torch.tensor([0.5, 0.0], dtype=torch.float64), x)
    assert not shifted["sw_ok"] and shifted["sw_delta"] > 2 * shifted["sw_se"] > 0


def test_fitting_on_a_path_that_starts_at_alpha_zero():
    """A flow's grid starts where alpha = 0, so a planned grid holds one boundary step more than
    ``n_steps``; the starting coefficients must have its length, and the fitted plan runs."""
    den = GaussianMixtureDenoiser(_mixture(), LinearInterpolant())
    cal = calibration_set(den, 64, torch.Generator().manual_seed(1))
    plan = fit_solver(den, 4, calibration=cal, iterations=3, plan_evals=6)
    coefficients, n = plan.options["coefficients"], len(plan.ts) - 1
    assert len(coefficients["predictor"]) == n and len(coefficients["corrector"]) == n
    assert plan.error <= plan.initial_error
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.isfinite(sample_fitted(den, x, plan.ts, **plan.options)).all()
