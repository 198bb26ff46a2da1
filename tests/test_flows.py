"""Flows: the closed-form velocity of a Gaussian-to-Gaussian flow, straightness, reflow and its
resumable pair shards, and the reflow / straightness commands.

Closed form (independent coupling, linear interpolant). With ``x0 ~ N(m0, S0)`` (data, t = 0) and
``x1 ~ N(m1, S1)`` (source, t = 1) independent, ``x_t = (1 - t) x0 + t x1`` is Gaussian,
``N(mu_t, C_t)`` with ``mu_t = (1 - t) m0 + t m1`` and ``C_t = (1 - t)^2 S0 + t^2 S1``, jointly
Gaussian with ``u = x1 - x0`` (mean ``m1 - m0``, ``Cov(u, x_t) = t S1 - (1 - t) S0``). Gaussian
conditioning gives the marginal velocity

    v*(x, t) = E[u | x_t = x] = (m1 - m0) + (t S1 - (1 - t) S0) C_t^{-1} (x - mu_t).

For diagonal ``S0`` and ``S1 = I``, ``m1 = 0`` its ODE is solved per axis by
``x_t = mu_t + s(t) z`` with ``s(t) = sqrt(C_t)`` and ``z = x1`` (``y' = C_t'/(2 C_t) y``), so a path
has chord ``X1 - X0 = (m1 - m0) + (s(1) - s(0)) z`` and velocity ``mu' + s'(t) z``: its straightness
is ``sum_k z_k^2 int_0^1 (s_k(1) - s_k(0) - s_k'(t))^2 dt``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from hwaksan.distributions import GaussianMixture
from hwaksan.evaluation.lowdim import sliced_wasserstein
from hwaksan.evaluation.straightness import straightness
from hwaksan.oracles import GaussianMixtureDenoiser
from hwaksan.parameterizations import velocity_from_x0
from hwaksan.processes import LinearInterpolant
from hwaksan.samplers import sample
from hwaksan.tasks.reflow import one_step, push_forward, source_sample

M0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
S0 = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)


def closed_form_velocity(x, t, m0, s0, m1, s1):
    """``v*(x, t)`` of the module docstring; ``x (B, D)``, scalar t, float64."""
    mu = (1 - t) * m0 + t * m1
    c = (1 - t) ** 2 * s0 + t**2 * s1
    k = (t * s1 - (1 - t) * s0) @ torch.linalg.inv(c)
    return (m1 - m0) + (x - mu) @ k.T


def test_oracle_flow_velocity_equals_the_closed_form():
    """The exact denoiser of N(m0, S0) under the linear interpolant, read as a velocity, is v*."""
    oracle = GaussianMixtureDenoiser(GaussianMixture(M0[None], S0[None]), LinearInterpolant())
    g = torch.Generator().manual_seed(0)
    x = 1.5 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    for t in (0.001, 0.1, 0.5, 0.9, 0.999):  # velocity_from_x0 divides by sigma(t) = t
        tb = torch.full((64,), t, dtype=torch.float64)
        v = velocity_from_x0(x, oracle(x, tb), tb, oracle.process)
        ref = closed_form_velocity(
            x, t, M0, S0, torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        )
        torch.testing.assert_close(v, ref.double(), rtol=1e-9, atol=1e-9)


def _gaussian_source(m1, l1):
    def source(n, generator):
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (m1 + z @ l1.T).float()

    return source


M1 = torch.tensor([-1.0, 0.5], dtype=torch.float64)
L1 = torch.tensor([[0.8, 0.0], [0.3, 0.6]], dtype=torch.float64)  # S1 = L1 L1^T


def test_closed_form_is_the_regression_of_x1_minus_x0_on_x_t():
    """Monte-Carlo check of the derivation with a non-standard source: the least-squares regression
    of u = x1 - x0 on (1, x_t) (exact for jointly Gaussian variables) recovers v*'s coefficients
    within 4 standard errors."""
    g = torch.Generator().manual_seed(1)
    n, t = 200_000, 0.3
    x0 = M0 + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(S0).T
    x1 = _gaussian_source(M1, L1)(n, g).double()
    xt, u = (1 - t) * x0 + t * x1, x1 - x0
    design = torch.cat([torch.ones(n, 1, dtype=torch.float64), xt], 1)
    coef = torch.linalg.lstsq(design, u).solution  # (3, 2)
    resid = u - design @ coef
    inv = torch.linalg.inv(design.T @ design)
    se = (inv.diagonal()[:, None] * (resid.pow(2).sum(0) / (n - 3))[None, :]).sqrt()
    origin = torch.zeros(1, 2, dtype=torch.float64)
    intercept = closed_form_velocity(origin, t, M0, S0, M1, L1 @ L1.T)[0]
    slope = closed_form_velocity(torch.eye(2, dtype=torch.float64), t, M0, S0, M1, L1 @ L1.T) - intercept
    expected = torch.cat([intercept[None], slope], 0)  # row j + 1: d v / d x_j
    assert ((coef - expected).abs() <= 4 * se).all(), (coef, expected, se)


def test_trained_tiny_flow_from_a_gaussian_source_matches_the_closed_form():
    """Flow matching with a sampled (non-standard) source learns v*: the trained field's mean squared
    error to v* is under 5% of the variance of v* itself (the part of u a field can explain)."""
    from hwaksan.models.mlp import MLP
    from hwaksan.parameterizations import ModelDenoiser
    from hwaksan.training.simple import fit

    torch.manual_seed(0)
    chol0 = torch.linalg.cholesky(S0).float()
    model = ModelDenoiser(MLP(2, width=32, depth=2, emb_dim=32), LinearInterpolant(), "velocity")
    data = lambda n, g: M0.float() + torch.randn(n, 2, generator=g) @ chol0.T  # noqa: E731
    fit(
        model,
        data,
        sample_source=_gaussian_source(M1, L1),
        steps=800,
        batch_size=256,
        lr=3e-3,
        progress=False,
    )
    g = torch.Generator().manual_seed(2)
    n = 4000
    x0, x1 = data(n, g).double(), _gaussian_source(M1, L1)(n, g).double()
    t = torch.rand(n, generator=g, dtype=torch.float64)
    xt = (1 - t)[:, None] * x0 + t[:, None] * x1
    with torch.no_grad():
        v = velocity_from_x0(xt, model(xt, t).double(), t, model.process)
    ref = torch.stack(
        [closed_form_velocity(xt[i : i + 1], float(t[i]), M0, S0, M1, L1 @ L1.T)[0] for i in range(n)]
    )
    err = (v - ref).pow(2).sum(1).mean()
    spread = (ref - ref.mean(0)).pow(2).sum(1).mean()
    assert err < 0.05 * spread, (float(err), float(spread))


class LinearMapFlow:
    """The straight flow of the exact OT map ``x0 = m + A x1`` (A symmetric positive definite) from
    ``N(0, I)``: ``x_t = (1 - t) m + M_t x1`` with ``M_t = (1 - t) A + t I`` (invertible, so the
    straight paths never cross) and velocity ``x1 - x0``. A denoiser: ``x0_hat = x - t v``."""

    def __init__(self, m, a):
        self.m, self.a, self.process = m, a, LinearInterpolant()

    def __call__(self, x, t, cond=None):
        x = x.double()
        out = torch.empty_like(x)
        for tv in t.unique().tolist():
            idx = t == tv
            mt = (1 - tv) * self.a + tv * torch.eye(len(self.m), dtype=torch.float64)
            x1 = torch.linalg.solve(mt, (x[idx] - (1 - tv) * self.m).T).T
            v = x1 - (self.m + x1 @ self.a.T)
            out[idx] = x[idx] - tv * v
        return out


def test_straightness_of_the_exact_ot_map_is_zero():
    g = torch.Generator().manual_seed(3)
    q = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64)).Q
    a = q @ torch.diag(torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)) @ q.T
    m = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    flow = LinearMapFlow(m, a)
    x1 = torch.randn(100, 3, generator=g, dtype=torch.float64)
    exact_cost = float((x1 - (m + x1 @ a.T)).pow(2).sum(1).mean())
    for steps in (1, 7):
        r = straightness(flow, x1, steps=steps)
        assert r.straightness <= 1e-24 * exact_cost
        assert r.transport_cost == pytest.approx(exact_cost, rel=1e-12)
        torch.testing.assert_close(r.x0, m + x1 @ a.T, rtol=1e-12, atol=1e-12)


def _path_integral(s0: float) -> float:
    """``int_0^1 (s(1) - s(0) - s'(t))^2 dt`` with ``s(t) = sqrt((1 - t)^2 s0 + t^2)``."""

    def s(t):
        return math.sqrt((1 - t) ** 2 * s0 + t**2)

    chord = s(1.0) - s(0.0)
    return quad(lambda t: (chord - (t - (1 - t) * s0) / s(t)) ** 2, 0, 1, epsabs=1e-13)[0]


def test_straightness_matches_the_closed_form_of_the_gaussian_flow():
    """Independent coupling, N(m0, diag s0) <- N(0, I): the estimator converges to the closed form
    (first order in 1/steps: the error at 2N is bounded by twice the change from N to 2N)."""
    m0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    s0 = torch.tensor([0.04, 2.0], dtype=torch.float64)
    oracle = GaussianMixtureDenoiser(GaussianMixture(m0[None], s0[None]), LinearInterpolant())
    x1 = torch.randn(200, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    exact = 0.0
    for k in range(2):
        exact += float(x1[:, k].pow(2).mean()) * _path_integral(float(s0[k]))
    coarse = straightness(oracle, x1, steps=200).straightness
    fine = straightness(oracle, x1, steps=400).straightness
    assert exact > 0.05  # a curved flow: the test could fail the other way
    assert abs(fine - exact) <= 2 * abs(coarse - fine) + 1e-9, (coarse, fine, exact)
    chords = -m0 + (1 - s0.sqrt()) * x1  # X1 - X0 per path
    cost = straightness(oracle, x1, steps=400).transport_cost
    assert cost == pytest.approx(float(chords.pow(2).sum(1).mean()), rel=2e-2)


def test_push_forward_is_the_sampler_from_the_same_noise(mixture2d):
    oracle = GaussianMixtureDenoiser(mixture2d, LinearInterpolant())
    gens = [torch.Generator().manual_seed(i) for i in range(6)]
    ref = sample(oracle, (6, 2), sampler="heun", steps=8, grid="uniform", generator=gens)
    x1 = source_sample(6, (2,), 0)
    out = push_forward(oracle, x1, sampler="heun", steps=8)
    torch.testing.assert_close(out.x, ref.x)
    assert out.nfe == ref.nfe
    torch.testing.assert_close(source_sample(3, (2,), 2), x1[2:5])  # per-sample seeds
    torch.testing.assert_close(one_step(oracle, x1), push_forward(oracle, x1, sampler="euler", steps=1).x)
    with pytest.raises(ValueError, match="stochastic"):
        push_forward(oracle, x1, sampler="ddpm", steps=4)


def test_pairs_from_a_trainable_model_carry_no_graph():
    """The ODE map of a network with trainable weights gives plain data: a second model can be
    fitted on the pairs, and the first one's graph is never backpropagated through."""
    from hwaksan.models.mlp import MLP
    from hwaksan.parameterizations import ModelDenoiser

    torch.manual_seed(0)
    teacher = ModelDenoiser(MLP(2, width=16, depth=1, emb_dim=8), LinearInterpolant(), "velocity")
    x1 = source_sample(8, (2,), 0)
    x0 = push_forward(teacher, x1, sampler="heun", steps=3).x
    assert x0.grad_fn is None and not x0.requires_grad
    student = MLP(2, width=16, depth=1, emb_dim=8)
    for _ in range(2):  # two steps on the same pairs: no "backward through the graph a second time"
        loss = (student(x1, torch.zeros(8), None) - (x1 - x0)).square().mean()
        loss.backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_reflow_preserves_the_marginal_and_straightens(mixture2d):
    """2-RF trained on pairs of the exact 1-RF (the mixture oracle under the flow interpolant):
    its samples are as close to the 1-RF's as two independent 1-RF sample sets are to each other
    (3x that sliced-Wasserstein noise floor at this sample size; a lost or misplaced component of
    weight >= 0.2 at distance ~1.5 would add >= 0.3), and its paths are straighter."""
    from hwaksan.models.mlp import MLP
    from hwaksan.parameterizations import ModelDenoiser
    from hwaksan.training.reflow import train_on_pairs_2d

    oracle = GaussianMixtureDenoiser(mixture2d, LinearInterpolant())
    n = 1500
    x1 = source_sample(4000, (2,), 0, dtype=torch.float64)
    x0 = push_forward(oracle, x1, sampler="heun", steps=20).x
    teacher_shape = ModelDenoiser(MLP(2, width=64, depth=2, emb_dim=32), LinearInterpolant(), "velocity")
    torch.manual_seed(0)
    student, _ = train_on_pairs_2d(
        teacher_shape,
        {"sample": x0, "noise": x1},
        steps=600,
        batch_size=256,
        lr=3e-3,
        init="scratch",
        progress=False,
    )

    def flow_samples(model, seed, steps):
        with torch.no_grad():
            return push_forward(
                model, source_sample(n, (2,), seed, dtype=torch.float64), sampler="heun", steps=steps
            ).x

    ref = flow_samples(oracle, 10**6, 20)
    sw = lambda a, b: sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0))  # noqa: E731
    floor = np.mean([sw(flow_samples(oracle, 10**7 + k * n, 20), ref) for k in range(3)])
    reflowed = flow_samples(student, 10**8, 20)
    assert sw(reflowed, ref) <= 3 * floor, (sw(reflowed, ref), floor)
    probe = source_sample(500, (2,), 10**9, dtype=torch.float64)
    assert (
        straightness(student, probe, steps=50).straightness
        < 0.5 * straightness(oracle, probe, steps=50).straightness
    )


def test_pair_shards_resume_to_the_uninterrupted_result(tmp_path, mixture2d):
    from hwaksan.io.checkpoint import CheckpointError
    from hwaksan.training.pairs import PairShards
    from hwaksan.training.reflow import simulate_pairs

    oracle = GaussianMixtureDenoiser(mixture2d, LinearInterpolant())
    kw = {"shape": (2,), "sampler": "heun", "steps": 4, "shard_size": 10, "batch_size": 4, "progress": False}
    full = simulate_pairs(oracle, tmp_path / "a", 25, **kw)
    assert full["noise"].shape == (25, 2) and full["sample"].shape == (25, 2)
    assert simulate_pairs(oracle, tmp_path / "b", 25, max_shards=1, **kw) is None  # "interrupted"
    first = (tmp_path / "b" / "shard_00000.safetensors").stat().st_mtime_ns
    spec = json.loads((tmp_path / "b" / "shard_00000.json").read_text())["spec"]
    with pytest.raises(CheckpointError, match="2 of 3 pair shards are missing"):
        PairShards(tmp_path / "b", 25, 10, spec).load()
    resumed = simulate_pairs(oracle, tmp_path / "b", 25, **kw)
    assert (tmp_path / "b" / "shard_00000.safetensors").stat().st_mtime_ns == first  # kept, not redone
    for key in full:
        assert torch.equal(full[key], resumed[key])
    torch.testing.assert_close(full["noise"][13], source_sample(1, (2,), 13)[0])  # pair i: seed i
    with pytest.raises(CheckpointError, match="other settings"):
        simulate_pairs(oracle, tmp_path / "b", 25, **{**kw, "steps": 5})
    with pytest.raises(CheckpointError, match="keep the shard size"):
        simulate_pairs(oracle, tmp_path / "b", 25, **{**kw, "shard_size": 5})


def test_reflow_command_2d_end_to_end_and_resumes(tmp_path, capsys, monkeypatch):
    import hwaksan.losses
    from hwaksan.cli import main

    teacher = tmp_path / "teacher"
    common = ["--width", "32", "--depth", "1", "--batch-size", "64", "--no-progress"]
    assert (
        main(
            [
                "train",
                "--data",
                "moons",
                "--source",
                "8gaussians",
                "--coupling",
                "ot",
                "--process",
                "flow",
                "--prediction",
                "velocity",
                "--train-steps",
                "20",
                "--out",
                str(teacher),
                *common,
            ]
        )
        == 0
    )
    out = tmp_path / "reflow"
    args = [
        "reflow",
        str(teacher),
        "--pairs",
        "60",
        "--steps",
        "3",
        "--train-steps",
        "10",
        "--distill-steps",
        "5",
        "--eval-n",
        "50",
        "--eval-steps",
        "5",
        "--shard-size",
        "25",
        "--batch-size",
        "32",
        "--t-dist",
        "u_shaped",
        "--out",
        str(out),
        "--no-progress",
    ]
    seen = []  # the training times reach the loss: u_shaped for the reflow round, terminal to distil
    sample_t = hwaksan.losses.sample_t
    monkeypatch.setattr(
        hwaksan.losses, "sample_t", lambda p, n, d, *a, **k: seen.append(d) or sample_t(p, n, d, *a, **k)
    )
    assert main(args) == 0
    assert seen == ["u_shaped"] * 10 + ["terminal"] * 5
    report = json.loads((out / "report.json").read_text())
    assert report["t_dist"] == "u_shaped"
    assert set(report["rounds"]) == {"1", "2", "distill"}
    for r in report["rounds"].values():
        assert r["straightness"] >= 0 and r["transport_cost"] > 0 and "sw_euler_1" in r
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    assert len(stamps) == 3 + 3 + 2  # 3 + 3 pair shards, rf2 and distill
    assert main(args) == 0  # the second run finds everything done
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps
    assert (
        main(
            ["straightness", str(out / "rf2"), "--n", "20", "--steps", "4", "--out", str(tmp_path / "s.json")]
        )
        == 0
    )
    assert json.loads((tmp_path / "s.json").read_text())["n"] == 20
    assert (
        main(
            [
                "sample",
                str(teacher),
                "--sampler",
                "euler",
                "--steps",
                "2",
                "--n",
                "30",
                "--out",
                str(tmp_path / "s.png"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "report" in text and "outputs:" in text


def test_reflow_command_images_end_to_end(tmp_path):
    from hwaksan.cli import main
    from hwaksan.data.images import load_dataset
    from hwaksan.io.checkpoint import load_model
    from hwaksan.training.config import load_config
    from hwaksan.training.trainer import Trainer

    tiny = [
        "data.name=digits",
        "data.conditional=true",
        "model.preset=unet",
        "model.args={model_channels=8, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[], "
        "mid_attention=false, num_head_channels=8, num_groups=2, num_classes=10}",
        "diffusion.process=edm",
        "train.batch_size=8",
        "train.steps=2",
        "train.threads=1",
        "train.sample_every=0",
        "optim.warmup=1",
    ]
    data = load_dataset("digits", "train")
    Trainer(load_config(None, tiny), tmp_path / "edm", progress=False, pictures=False, data=data).run()
    out = tmp_path / "reflow"
    args = [
        "reflow",
        str(tmp_path / "edm"),
        "--pairs",
        "12",
        "--steps",
        "2",
        "--train-steps",
        "2",
        "--distill-steps",
        "1",
        "--distill-pairs",
        "last",
        "--eval-n",
        "4",
        "--eval-steps",
        "2",
        "--set",
        "train.sample_every=0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    model, meta = load_model(out / "rf2" / "checkpoints" / "step_0000002")
    assert model.process.name == "flow" and model.prediction == "velocity"
    assert meta["config"]["diffusion"]["t_dist"] == "u_shaped_tmax" and meta["num_classes"] == 10  # default
    _, meta = load_model(out / "distill" / "checkpoints" / "step_0000001")
    assert meta["config"]["diffusion"]["t_dist"] == "terminal"
    report = json.loads((out / "report.json").read_text())
    assert set(report["rounds"]) == {"1", "2", "distill"}
