"""The trainer's ``[diffusion] loss = "hybrid"``: clear config errors, a learned-variance checkpoint
that the evaluation reads, and exact resume with the importance sampler's history in the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hwaksan.data.images import ImageDataset, load_dataset
from hwaksan.evaluation.vlb import vlb_bits_per_dim
from hwaksan.io.checkpoint import list_checkpoints, load_model
from hwaksan.training.config import ConfigError, load_config
from hwaksan.training.hybrid import HybridLossExtension
from hwaksan.training.trainer import Trainer

DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits.toml"
TINY = [
    "model.preset=unet",
    "model.args={model_channels=8, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[], "
    "mid_attention=false, num_head_channels=8, num_groups=2, learn_sigma=true}",
    "train.batch_size=16",
    "train.threads=1",
    "train.log_every=1",
    "train.sample_every=0",
    "train.max_seconds=0",
    "optim.warmup=2",
    "sample.n=4",
    "sample.steps=2",
    "data.conditional=false",
    "diffusion.process=ddpm-linear",
    "diffusion.process_args={T = 8}",
    "diffusion.prediction=eps",
    "diffusion.weighting=simple",
    "diffusion.t_dist=discrete",
    "diffusion.loss=hybrid",
]


@pytest.mark.parametrize(
    ("override", "names"),
    [
        (["diffusion.loss=hybrid", "model.args={learn_sigma=false}"], "model.args.learn_sigma = true"),
        (["diffusion.loss=hybrid", "diffusion.process=edm"], "diffusion.process with it: ddpm-linear"),
        (["diffusion.loss=vlb", "diffusion.process=ddpm-linear", "diffusion.t_dist=uniform"], "t_dist"),
        (["diffusion.importance_sampling=true"], "diffusion.loss = 'hybrid' or 'vlb'"),
        (["diffusion.loss=elbo"], "allowed values: simple, hybrid, vlb"),
    ],
)
def test_hybrid_config_errors_name_the_fix(override, names):
    base = ["diffusion.process=ddpm-linear", "diffusion.t_dist=discrete", "model.args={learn_sigma=true}"]
    with pytest.raises(ConfigError, match=names.replace(".", r"\.").replace("(", r"\(")):
        load_config(DIGITS, [*base, *override])


def _sampler(trainer: Trainer):
    return trainer.extension(HybridLossExtension).sampler


def test_hybrid_resume_is_bit_identical_with_the_importance_sampler_in_the_checkpoint(tmp_path):
    """T = 8 steps x 10 values: the sampler is warm after 80 samples (5 steps of 16), so the second
    half of the run draws importance-sampled steps from the history restored from the checkpoint."""
    k = 6
    extra = ["diffusion.importance_sampling=true", f"train.steps={2 * k}", f"train.checkpoint_every={k}"]
    cfg = load_config(DIGITS, [*TINY, *extra])
    full_data = load_dataset("digits", "train")
    data = ImageDataset(full_data.images[:100].clone(), None, None, full_data.class_names, "digits")
    full = Trainer(cfg, tmp_path / "full", progress=False, pictures=False, data=data)
    full.run()
    assert _sampler(full).warmed_up()
    first = Trainer(cfg, tmp_path / "split", progress=False, pictures=False, data=data)
    first.run(stop_after=k)
    assert [s for s, _ in list_checkpoints(tmp_path / "split")] == [k]
    second = Trainer(cfg, tmp_path / "split", progress=False, pictures=False, data=data)
    second.run(resume=True)
    for name, value in full.net.state_dict().items():
        assert torch.equal(value, second.net.state_dict()[name]), name
    assert torch.equal(_sampler(full).history, _sampler(second).history)
    assert torch.equal(_sampler(full).count, _sampler(second).count)
    assert full.losses == second.losses
    # the checkpoint is a learned-variance model for the evaluation
    model, _ = load_model(list_checkpoints(tmp_path / "split")[-1][1])
    assert model.learn_sigma
    res = vlb_bits_per_dim(model, data.images[:4], progress=False)
    assert res.variance == "learned" and res.T == 8 and torch.isfinite(res.per_sample).all()
