"""Couplings: exact minibatch OT against brute force and POT's EMD, label-aware OT, Sinkhorn, user
pairings, and the coupling hooks of the losses and the trainers."""

from __future__ import annotations

import itertools

import numpy as np
import ot
import pytest
import torch

from hwaksan.losses import denoising_loss, draw, sample_t
from hwaksan.processes import (
    COUPLINGS,
    LinearInterpolant,
    make_coupling,
    ot_assignment,
    ot_coupling,
    pairing_coupling,
    sinkhorn_coupling,
)
from hwaksan.processes.coupling import sinkhorn_plan, squared_distances


def _batch(b: int, d: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype) + 0.5


def _cost(x0: torch.Tensor, eps: torch.Tensor) -> float:
    return float((x0.double() - eps.double()).pow(2).sum())


def test_squared_distances_match_the_definition():
    x0, eps = _batch(7, 5, 0)
    direct = (x0[:, None, :] - eps[None, :, :]).pow(2).sum(-1)
    torch.testing.assert_close(squared_distances(x0, eps), direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("b,d", [(2, 1), (4, 2), (6, 3), (7, 2)])
def test_ot_coupling_equals_the_brute_force_optimum(b, d):
    for seed in range(3):
        x0, eps = _batch(b, d, seed)
        costs = {p: _cost(x0, eps[list(p)]) for p in itertools.permutations(range(b))}
        best = min(costs, key=costs.get)
        perm = ot_assignment(x0, eps)
        assert _cost(x0, ot_coupling(x0, eps)) == pytest.approx(costs[best], rel=1e-12)
        assert tuple(perm.tolist()) == best  # continuous data: the optimum is unique


@pytest.mark.parametrize("b,d", [(64, 2), (100, 30)])
def test_ot_coupling_equals_pots_exact_emd(b, d):
    x0, eps = _batch(b, d, 11)
    plan = ot.emd(np.full(b, 1 / b), np.full(b, 1 / b), squared_distances(x0, eps).numpy())
    # equal uniform batches: the EMD plan is a permutation matrix / b (Birkhoff-von Neumann)
    assert np.allclose(np.sort(plan, axis=1)[:, -1], 1 / b) and np.allclose(plan.sum(1), 1 / b)
    perm = ot_assignment(x0, eps)
    assert perm.tolist() == plan.argmax(1).tolist()
    emd_cost = float((plan * squared_distances(x0, eps).numpy()).sum()) * b
    assert _cost(x0, eps[perm]) == pytest.approx(emd_cost, rel=1e-10)


def test_ot_coupling_keeps_dtype_shape_and_permutes_images():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(16, 1, 4, 4, generator=g)
    eps = torch.randn(16, 1, 4, 4, generator=g)
    out = ot_coupling(x0, eps)
    assert out.shape == eps.shape and out.dtype == eps.dtype
    assert sorted(out.reshape(16, -1).sum(1).tolist()) == sorted(eps.reshape(16, -1).sum(1).tolist())
    assert _cost(x0, out) < _cost(x0, eps)


def test_label_aware_ot_never_pairs_across_classes_and_is_optimal_within_each():
    g = torch.Generator().manual_seed(5)
    b = 30
    x0, eps = _batch(b, 2, 7)
    labels = torch.randint(0, 3, (b,), generator=g)
    source_labels = labels[torch.randperm(b, generator=g)]  # same class sizes, other positions
    perm = ot_assignment(x0, eps, labels, source_labels)
    assert sorted(perm.tolist()) == list(range(b))
    assert torch.equal(source_labels[perm], labels)
    for c in range(3):
        rows = (labels == c).nonzero().squeeze(1)
        cols = (source_labels == c).nonzero().squeeze(1)
        inner = ot_assignment(x0[rows], eps[cols])
        assert _cost(x0[rows], eps[perm[rows]]) == pytest.approx(_cost(x0[rows], eps[cols][inner]), rel=1e-12)
    # without source labels, position j of the i.i.d. source batch takes the class of x0[j]
    perm = ot_assignment(x0, eps, labels)
    assert torch.equal(labels[perm], labels)
    # the sinkhorn coupling respects the classes as well
    g2 = torch.Generator().manual_seed(0)
    out = sinkhorn_coupling(x0, eps, labels, source_labels, reg=0.1, generator=g2)
    idx = [int((eps == row).all(1).nonzero()[0]) for row in out]
    assert torch.equal(source_labels[idx], labels)


def test_label_aware_ot_rejects_unequal_class_sizes():
    x0, eps = _batch(4, 2, 0)
    with pytest.raises(ValueError, match="class 0 has 2 data and 3 source"):
        ot_assignment(x0, eps, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 1]))
    with pytest.raises(ValueError, match="same shape"):
        ot_coupling(x0, eps[:3])


def test_sinkhorn_plan_has_uniform_marginals_and_costs_at_most_reg_log_b_above_ot():
    b = 24
    x0, eps = _batch(b, 2, 2)
    cost = squared_distances(x0, eps)
    ot_cost = _cost(x0, ot_coupling(x0, eps)) / b
    for reg in (0.05, 0.01):
        plan = sinkhorn_plan(x0, eps, reg=reg)
        uniform = torch.full((b,), 1 / b, dtype=torch.float64)
        torch.testing.assert_close(plan.sum(1), uniform, rtol=0, atol=1e-9)
        torch.testing.assert_close(plan.sum(0), uniform, rtol=0, atol=1e-6)
        plan_cost = float((plan * cost).sum())
        # entropic OT: OT <= <P_reg, C> <= OT + reg log(B) mean(C)   (entropy of P in [log B, 2 log B])
        assert ot_cost - 1e-9 <= plan_cost <= ot_cost + reg * np.log(b) * float(cost.mean())
    # sampled pairs cost on average what the plan costs, far less than the product coupling
    g = torch.Generator().manual_seed(0)
    costs = [_cost(x0, sinkhorn_coupling(x0, eps, reg=0.05, generator=g)) / b for _ in range(50)]
    plan = sinkhorn_plan(x0, eps, reg=0.05)
    row_cost = (plan * cost).sum(1) * b  # E cost of pair i given x0_i
    se = float(((plan * b) * (cost - row_cost[:, None]) ** 2).sum(1).sum().sqrt()) / b / np.sqrt(50)
    assert np.mean(costs) == pytest.approx(float((plan * cost).sum()), abs=4 * se)
    assert np.mean(costs) < 0.5 * float(cost.mean())
    with pytest.raises(ValueError, match="reg must be > 0"):
        sinkhorn_plan(x0, eps, reg=0.0)


def test_user_pairing_is_applied_and_checked():
    x0, eps = _batch(5, 2, 0)
    coupling = pairing_coupling(lambda a, b: torch.arange(4, -1, -1))
    torch.testing.assert_close(coupling(x0, eps), eps.flip(0))
    with pytest.raises(ValueError, match="integer indices of shape"):
        pairing_coupling(lambda a, b: torch.zeros(3, dtype=torch.long))(x0, eps)
    with pytest.raises(ValueError, match="must lie in 0..4"):
        pairing_coupling(lambda a, b: torch.full((5,), 5))(x0, eps)


def test_make_coupling_by_name():
    x0, eps = _batch(8, 2, 4)
    assert COUPLINGS == ("independent", "ot", "sinkhorn")
    assert make_coupling("independent") is None and make_coupling(None) is None
    torch.testing.assert_close(make_coupling("ot")(x0, eps), ot_coupling(x0, eps))
    labels = torch.tensor([0, 1] * 4)
    torch.testing.assert_close(make_coupling("ot", labels=labels)(x0, eps), ot_coupling(x0, eps, labels))
    out = make_coupling("sinkhorn", generator=torch.Generator().manual_seed(0))(x0, eps)
    assert out.shape == eps.shape
    with pytest.raises(ValueError, match="unknown coupling 'emd'; choose one of independent, ot, sinkhorn"):
        make_coupling("emd")


def test_draw_with_given_source_and_coupling_forms_the_interpolant():
    p = LinearInterpolant()
    x0, x1 = _batch(16, 2, 9)
    t = torch.rand(16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    d = draw(p, x0, t, eps=x1, coupling=ot_coupling)
    torch.testing.assert_close(d.eps, ot_coupling(x0, x1))
    torch.testing.assert_close(d.x_t, (1 - t)[:, None] * x0 + t[:, None] * d.eps)
    with pytest.raises(ValueError, match="must have the shape of x0"):
        draw(p, x0, t, eps=x1[:3])


def test_terminal_t_distribution_is_t_max():
    t = sample_t(LinearInterpolant(), 5, "terminal")
    assert t.dtype == torch.float64 and torch.equal(t, torch.ones(5, dtype=torch.float64))


def test_fit_passes_source_coupling_and_pairs_to_the_loss(monkeypatch):
    """fit: a named coupling, a source sampler and fixed pairs reach denoising_loss as such."""
    import hwaksan.training.simple as simple
    from hwaksan.models.mlp import MLP
    from hwaksan.parameterizations import ModelDenoiser

    seen = []

    def spy(model, x0, **kwargs):
        seen.append((x0, kwargs["eps"], kwargs["coupling"]))
        return denoising_loss(model, x0, **kwargs)

    monkeypatch.setattr(simple, "denoising_loss", spy)
    model = ModelDenoiser(MLP(2, width=8, depth=1), LinearInterpolant(), "velocity")
    source = lambda n, g: torch.full((n, 2), 7.0)  # noqa: E731
    simple.fit(
        model, lambda n, g: torch.zeros(n, 2), steps=1, batch_size=4, coupling="ot", sample_source=source
    )
    x0, eps, coupling = seen[-1]
    assert torch.equal(eps, torch.full((4, 2), 7.0)) and coupling is not None
    pairs = (torch.zeros(4, 2), torch.ones(4, 2))
    simple.fit(model, lambda n, g: pairs, steps=1, batch_size=4, coupling="ot", progress=False)
    x0, eps, coupling = seen[-1]
    assert torch.equal(eps, pairs[1]) and coupling is None  # fixed pairs: no re-pairing


def test_config_accepts_the_couplings_and_names_them_on_error():
    from hwaksan.training.config import ConfigError, load_config

    assert load_config(None, ["diffusion.coupling=ot"]).diffusion.coupling == "ot"
    with pytest.raises(ConfigError, match="diffusion.coupling.*allowed values: independent, ot, sinkhorn"):
        load_config(None, ["diffusion.coupling=emd"])


def test_trainer_pairs_each_batch_by_the_configured_coupling(monkeypatch):
    import hwaksan.training.loop as loop_mod
    import hwaksan.training.trainer as trainer_mod
    from hwaksan.data.images import ImageDataset
    from hwaksan.training.config import load_config

    calls = []
    real = loop_mod.make_coupling

    def spy(name, **kwargs):
        calls.append((name, kwargs.get("labels")))
        return real(name, **kwargs)

    monkeypatch.setattr(loop_mod, "make_coupling", spy)
    g = torch.Generator().manual_seed(0)
    data = ImageDataset(
        torch.rand(12, 1, 8, 8, generator=g) * 2 - 1, torch.arange(12) % 3, None, None, "digits"
    )
    cfg = load_config(None, _TINY + ["diffusion.coupling=ot", "data.p_uncond=0.0"])
    tr = trainer_mod.Trainer(cfg, "unused", progress=False, pictures=False, data=data)
    tr.train_step(0)
    name, labels = calls[-1]
    assert name == "ot"
    _, batch_labels, _ = tr.batch(0)
    assert torch.equal(labels, batch_labels)  # label-aware OT for the conditional model


_TINY = [
    "data.name=digits",
    "model.preset=unet",
    "model.args={model_channels=8, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[], "
    "mid_attention=false, num_head_channels=8, num_groups=2}",
    "diffusion.process=flow",
    "diffusion.prediction=velocity",
    "diffusion.weighting=simple",
    "diffusion.t_dist=uniform",
    "train.batch_size=6",
    "train.threads=1",
    "train.sample_every=0",
    "optim.warmup=1",
]


def test_trainer_trains_on_fixed_pairs():
    from hwaksan.training.config import load_config
    from hwaksan.training.pairs import PairedImageDataset
    from hwaksan.training.trainer import Trainer

    g = torch.Generator().manual_seed(1)
    images = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1
    data = PairedImageDataset(images, None, None, None, "digits", noise=-3 * images)
    cfg = load_config(None, _TINY + ["data.conditional=false"])
    tr = Trainer(cfg, "unused", progress=False, pictures=False, data=data)
    for step in (0, 1, 2):
        x0, _, _ = tr.batch(step)
        torch.testing.assert_close(tr.paired_noise(step), -3 * x0)  # the partner of every image
    assert torch.isfinite(torch.tensor(tr.train_step(0)["loss"]))
    with pytest.raises(ValueError, match="does not pair"):
        PairedImageDataset(images, None, None, None, "digits", noise=images[:3])
