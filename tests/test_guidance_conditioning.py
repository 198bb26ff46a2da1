"""Class-conditional training with condition dropout for every network (U-Net, DiT, MoE-DiT, MLP):
the null class is trained exactly when labels are dropped, and a 2-D MLP learns both its classes and
its unconditional mode."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import hwaksan as hw
from hwaksan.data.images import ImageDataset, load_dataset
from hwaksan.guidance import ClassifierFreeGuidance
from hwaksan.training.config import load_config
from hwaksan.training.simple import fit
from hwaksan.training.trainer import Trainer

DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits.toml"
COMMON = [
    "train.batch_size=16",
    "train.threads=1",
    "train.sample_every=0",
    "train.max_seconds=0",
    "optim.warmup=1",
    "optim.weight_decay=0.0",
]
# Tiny networks of each architecture on the 8x8 digits.
ARCHS = {
    "unet": [
        "model.preset=unet",
        "model.args={model_channels=8, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[], "
        "mid_attention=false, num_head_channels=8, num_groups=2}",
    ],
    "dit": [
        "model.preset=dit",
        "model.args={patch_size=2, hidden_size=16, depth=1, num_heads=2}",
    ],
    "moe-dit": [
        "model.preset=moe-dit",
        "model.args={patch_size=2, hidden_size=16, depth=1, num_heads=2, num_experts=2, top_k=1}",
    ],
    "mlp": ["model.preset=mlp", "model.args={width=32, depth=1, emb_dim=16}"],
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    full = load_dataset("digits", "train")
    return ImageDataset(full.images[:64].clone(), full.labels[:64].clone(), None, full.class_names, "digits")


@pytest.mark.parametrize("arch", list(ARCHS))
def test_condition_dropout_trains_the_null_class_and_only_then(arch, digits, tmp_path):
    """With p_uncond = 1 every label is the null class: only the null row of the class embedding
    moves. With p_uncond = 0 the null row never moves. (Adam leaves a row whose gradient is
    exactly zero where it is; weight decay is off. Three steps, because adaLN-Zero / zero-initialised
    output layers pass no gradient to the embedding on the first one.)"""
    rows = {}
    for p in (0.0, 1.0):
        cfg = load_config(DIGITS, [*COMMON, *ARCHS[arch], f"data.p_uncond={p}", "train.steps=3"])
        trainer = Trainer(cfg, tmp_path / f"p{p}", progress=False, pictures=False, data=digits)
        assert trainer.num_classes == 10 and trainer.null_label == 10
        before = trainer.net.class_embed.weight.detach().clone()
        for step in range(3):
            trainer.train_step(step)
        after = trainer.net.class_embed.weight.detach()
        rows[p] = (after - before).abs().amax(dim=1)  # (11,): how far each row moved
    assert rows[0.0][10] == 0 and (rows[0.0][:10] > 0).any()
    assert rows[1.0][10] > 0 and (rows[1.0][:10] == 0).all()


def test_label_dropout_rate_is_p_uncond(digits, tmp_path):
    p, steps = 0.3, 40
    cfg = load_config(DIGITS, [*COMMON, *ARCHS["mlp"], f"data.p_uncond={p}"])
    trainer = Trainer(cfg, tmp_path, progress=False, pictures=False, data=digits)
    dropped = torch.cat([trainer.batch(s)[1] == 10 for s in range(steps)]).double()
    n = dropped.numel()
    assert abs(float(dropped.mean()) - p) < 4 * math.sqrt(p * (1 - p) / n)
    kept = torch.cat([trainer.batch(s)[1] for s in range(steps)])
    labels = torch.cat([digits.labels[trainer.batch_indices(s)] for s in range(steps)])
    assert torch.equal(kept[kept != 10], labels[kept != 10])  # kept labels are the true ones


def test_two_d_mlp_learns_its_classes_and_the_null_class_with_fit():
    """Two well-separated classes in 2-D; fit() with labels and p_uncond = 0.3. Conditional samples
    land in their class; null-class samples cover both; CFG sharpens them (all in the class)."""
    mix = hw.GaussianMixture([[-2.0, 0.0], [2.0, 0.0]], 0.1)

    def sample_data(n, gen):
        x, y = mix.sample(n, gen, return_labels=True)
        return {"x0": x.float(), "labels": y}

    torch.manual_seed(0)
    model = hw.ModelDenoiser(
        hw.MLP(dim=2, width=64, depth=2, emb_dim=32, num_classes=2), hw.make_process("edm"), "edm", 1.0
    )
    fit(model, sample_data, steps=300, batch_size=256, lr=3e-3, warmup=20, t_dist="edm", p_uncond=0.3,
        progress=False)  # fmt: skip
    n = 400
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    with torch.no_grad():
        for label, sign in ((0, -1), (1, 1)):
            y = torch.full((n,), label)
            x = hw.sample(model, (n, 2), steps=12, cond=y, generator=gens).x
            assert float((sign * x[:, 0] > 0).float().mean()) > 0.95
        null = hw.sample(model, (n, 2), steps=12, cond=torch.full((n,), 2), generator=gens).x
        right = float((null[:, 0] > 0).float().mean())
        assert 0.4 < right < 0.6  # both modes (true share 0.5, 4 SE = 0.1)
        guided = ClassifierFreeGuidance(model, 3.0)  # null class 2 read from the MLP
        x = hw.sample(guided, (n, 2), steps=12, cond=torch.ones(n, dtype=torch.long), generator=gens).x
        assert float((x[:, 0] > 0).float().mean()) > 0.98
    with pytest.raises(ValueError, match="num_classes"):
        fit(hw.ModelDenoiser(hw.MLP(dim=2), hw.make_process("edm")), sample_data, steps=1, progress=False)
