"""The trainer's extensions: a toy extension trains through the loop unchanged, the config maps to
its extensions, combinations that do not compose are refused, and every checkpoint is a model
artifact for ``load_trained``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from hwaksan.data.images import ImageDataset, load_dataset
from hwaksan.data.text import TextEncoderUnavailable
from hwaksan.io.artifact import load_trained
from hwaksan.io.checkpoint import CheckpointError, latest_checkpoint, save_tensors
from hwaksan.io.codec import IdentityCodec, VAECodec
from hwaksan.io.training_state import load_training_state
from hwaksan.training.config import ConfigError, load_config
from hwaksan.training.extension import Extension, RunContext, StepContext
from hwaksan.training.extensions import check_combinations, extensions_for
from hwaksan.training.hybrid import HybridLossExtension
from hwaksan.training.latent import LatentExtension
from hwaksan.training.moe import MoEExtension
from hwaksan.training.pairs import PairedImageDataset, PairsExtension
from hwaksan.training.superres import SuperResExtension
from hwaksan.training.text import TextExtension
from hwaksan.training.trainer import Trainer
from hwaksan.training.vae import VAEConfig, train_vae

DIGITS = Path(__file__).resolve().parents[2] / "configs" / "digits.toml"
NET = (
    "model.args={model_channels=8, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[], "
    "mid_attention=false, num_head_channels=8, num_groups=2}"
)
TINY = [
    "model.preset=unet",
    NET,
    "train.batch_size=8",
    "train.steps=2",
    "train.threads=1",
    "train.log_every=1",
    "train.sample_every=0",
    "train.max_seconds=0",
    "optim.warmup=1",
    "sample.n=4",
    "sample.steps=2",
]
# cross-attention at the top level, for text conditioning
TEXT_NET = (
    "model.args={model_channels=8, channel_mult=[1], num_res_blocks=1, attention_levels=[0], "
    "mid_attention=false, num_head_channels=8, num_groups=2, num_classes=0}"
)
TEXT = ["data.conditional=false", "text.encoder=minilm", "text.captions=templates", TEXT_NET]


def config(*extra: str):
    return load_config(DIGITS, [*TINY, *extra])


@pytest.fixture(scope="module")
def data() -> ImageDataset:
    full = load_dataset("digits", "train")
    return dataclasses.replace(
        full, images=full.images[:48].clone(), labels=full.labels[:48].clone(), ids=full.ids[:48]
    )


@pytest.fixture(scope="module")
def encoder():
    from hwaksan.conditioning.text import load_text_encoder

    try:
        return load_text_encoder(32)
    except TextEncoderUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("vae")
    cfg = VAEConfig(
        data="digits", image_size=8, latent_channels=2, model_channels=8, channel_mult=(1, 2),
        mid_attention=False, steps=3, batch_size=8, warmup=1, threads=1,
    )  # fmt: skip
    train_vae(cfg, out, data=data, val=data, progress=False, pictures=False)
    return out


# ----------------------------------------------------------------------------------------------
# a toy extension, defined here, trains through the loop


class ConstantClass(Extension):
    """Condition an unconditional model on a constant class 1 of 2, and add ``w * sum(theta^2)``
    to the loss; counts its steps and keeps the count in checkpoints."""

    name = "toy"

    def __init__(self, weight: float = 1e-3) -> None:
        self.weight = weight
        self.steps_seen = torch.zeros((), dtype=torch.long)
        self.network = None

    def network_spec(self, spec, image_shape):
        return {**spec, "num_classes": 2}

    def start(self, ctx: RunContext) -> None:
        self.network = ctx.network

    def batch_cond(self, cond, ctx: StepContext):
        return {**cond, "labels": torch.ones(len(ctx.x0), dtype=torch.long, device=ctx.device)}

    def sample_cond(self, cond, n, ctx: RunContext):
        return {**cond, "labels": torch.ones(n, dtype=torch.long, device=ctx.device)}

    def extra_loss(self, ctx: StepContext):
        self._last = self.weight * sum(p.square().sum() for p in self.network.parameters())
        return self._last

    def after_step(self, ctx: StepContext) -> None:
        self.steps_seen += 1

    def metrics(self):
        return {"toy_l2": float(self._last.detach())}

    def checkpoint_tensors(self):
        return {"toy.steps_seen": self.steps_seen.clone()}

    def load_checkpoint_tensors(self, tensors):
        self.steps_seen = tensors["toy.steps_seen"].clone()


def test_an_extension_defined_outside_the_package_trains_through_the_loop(tmp_path, data):
    cfg = config("data.conditional=false")
    toy = ConstantClass()
    trainer = Trainer(cfg, tmp_path / "run", progress=False, pictures=False, data=data, extensions=[toy])
    assert trainer.extension(ConstantClass) is toy and trainer.net.config["num_classes"] == 2
    x0, cond, _ = trainer.batch(0)
    assert torch.equal(cond, torch.ones(8, dtype=torch.long))  # the labels alone: packed as a tensor
    result = trainer.run(stop_after=1)
    assert int(toy.steps_seen) == 1
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["toy_l2"] > 0
    assert trainer.sample_images(3).shape == (3, 1, 8, 8)
    # its checkpoint tensors come back on resume
    again = ConstantClass()
    resumed = Trainer(cfg, tmp_path / "run", progress=False, pictures=False, data=data, extensions=[again])
    assert resumed.run(resume=True).step == 2 and int(again.steps_seen) == 2
    assert result.checkpoint is not None
    # the extra loss reaches the weights: a heavy weight shrinks them more than none
    norms = []
    for w in (0.0, 10.0):
        t = Trainer(
            cfg, tmp_path / f"w{w}", progress=False, pictures=False, data=data, extensions=[ConstantClass(w)]
        )
        t.run()
        norms.append(sum(float(p.detach().square().sum()) for p in t.net.parameters()))
    assert norms[1] < norms[0]


def test_an_extension_may_not_overwrite_another_condition(tmp_path, data):
    trainer = Trainer(
        config("data.conditional=true"),
        tmp_path,
        progress=False,
        pictures=False,
        data=data,
        extensions=[ConstantClass()],
    )
    with pytest.raises(ValueError, match="changed the condition key 'labels'"):
        trainer.batch(0)


# ----------------------------------------------------------------------------------------------
# the config -> extensions map and what it refuses


def _kinds(cfg, dataset) -> list[type]:
    return [type(e) for e in extensions_for(cfg, dataset, progress=False)]


def test_the_config_maps_to_its_extensions(data, vae_dir):
    assert _kinds(config(), data) == []
    assert _kinds(config("data.lowres=4", "data.conditional=false"), data) == [SuperResExtension]
    hybrid = [
        "diffusion.process=ddpm-linear",
        "diffusion.process_args={T=8}",
        "diffusion.prediction=eps",
        "diffusion.t_dist=discrete",
        "diffusion.loss=vlb",
    ]
    assert _kinds(config(*hybrid), data) == [HybridLossExtension]
    assert _kinds(load_config(DIGITS, ["model.preset=moe-mnist"]), data) == [MoEExtension]
    pairs = PairedImageDataset(data.images, None, None, None, "digits", noise=torch.randn_like(data.images))
    assert _kinds(config("data.conditional=false"), pairs) == [PairsExtension]
    latent = config(f"latent.vae={vae_dir.as_posix()}")
    assert _kinds(latent, data) == [LatentExtension]


def test_text_maps_to_its_extension(data, encoder):
    assert _kinds(config(*TEXT), data) == [TextExtension]
    assert _kinds(config(*TEXT, "data.lowres=4"), data) == [TextExtension, SuperResExtension]


@pytest.mark.parametrize(
    "overrides, paired, match",
    [
        (["data.lowres=4", "latent.vae=somewhere"], False, "latent.vae = '' or data.lowres = 0"),
        (["data.lowres=4", "diffusion.coupling=ot"], False, "coupling = 'independent'"),
        (["model.preset=mlp", "model.args={}", "latent.vae=somewhere"], False, "MLP"),
        (["data.lowres=4"], True, "super-resolution"),
        (["diffusion.coupling=ot"], True, "fixes the coupling"),
        (["text.encoder=minilm", "data.conditional=false"], True, "no captions"),
    ],
)
def test_combinations_that_do_not_compose_are_one_config_error(overrides, paired, match):
    cfg = load_config(DIGITS, overrides)
    with pytest.raises(ConfigError, match=match):
        check_combinations(cfg, paired=paired)


def test_pairs_with_the_vlb_loss_are_refused_before_training(tmp_path, data):
    cfg = config(
        "diffusion.process=ddpm-linear",
        "diffusion.process_args={T=8}",
        "diffusion.prediction=eps",
        "diffusion.t_dist=discrete",
        "diffusion.loss=vlb",
        "data.conditional=false",
    )
    pairs = PairedImageDataset(data.images, None, None, None, "digits", noise=torch.randn_like(data.images))
    with pytest.raises(ConfigError, match="diffusion.loss = 'simple'"):
        Trainer(cfg, tmp_path, progress=False, pictures=False, data=pairs)


def test_text_and_super_resolution_compose(tmp_path, data, encoder):
    cfg = config(*TEXT, "data.lowres=4", "diffusion.aug_max=0.05", "data.p_uncond=0.3")
    trainer = Trainer(cfg, tmp_path, progress=False, pictures=False, data=data)
    assert trainer.net.config["context_dim"] == 384 and trainer.net.config["in_extra_channels"] == 1
    _, cond, _ = trainer.batch(0)
    assert set(cond) == {"context", "context_mask", "pooled", "image", "aug_level"}
    assert cond["image"].shape == (8, 1, 8, 8)
    assert trainer.run().step == 2
    assert trainer.sample_images(2).shape == (2, 1, 8, 8)
    model = load_trained(tmp_path)
    assert model.text is not None and model.superres is not None and model.superres.lowres == 4


# ----------------------------------------------------------------------------------------------
# checkpoints are model artifacts


def test_pixel_checkpoint_loads_as_a_model(tmp_path, data):
    Trainer(config("data.conditional=true"), tmp_path, progress=False, pictures=False, data=data).run()
    model = load_trained(tmp_path)
    assert model.data_shape == (1, 8, 8) and model.output_shape == (1, 8, 8)
    assert model.num_classes == 10 and model.text is None and isinstance(model.codec, IdentityCodec)
    assert model.step == 2 and model.config["train"]["steps"] == 2
    state = load_training_state(latest_checkpoint(tmp_path))
    assert state.step == 2 and len(state.losses) == 2 and len(state.emas) == len(model.ema_decays)


def test_mlp_checkpoint_keeps_the_image_shape(tmp_path, data):
    cfg = config("model.preset=mlp", "model.args={}", "data.conditional=false")
    Trainer(cfg, tmp_path, progress=False, pictures=False, data=data).run()
    model = load_trained(tmp_path)
    assert model.data_shape == (64,) and model.output_shape == (1, 8, 8) and model.num_classes == 0


def test_latent_checkpoint_loads_with_its_codec(tmp_path, data, vae_dir):
    cfg = config(f"latent.vae={vae_dir.as_posix()}", "data.conditional=false", "diffusion.sigma_data=1.0")
    Trainer(cfg, tmp_path, progress=False, pictures=False, data=data).run()
    model = load_trained(tmp_path)
    assert isinstance(model.codec, VAECodec)
    assert model.data_shape == (2, 4, 4) and model.output_shape == (1, 8, 8)
    out = model.sample(2, steps=2)
    assert out.x.shape == (2, 1, 8, 8)


def test_a_presets_input_channels_follow_the_data_it_trains_on(tmp_path, data, vae_dir):
    """unet-mnist is written for 1-channel pixels; on 2-channel latents it takes 2 channels, and an
    explicit model.args.in_channels that contradicts the data is one config error."""
    small = "model.args={model_channels=8, num_res_blocks=1, num_groups=2, num_head_channels=8}"
    latent = (f"latent.vae={vae_dir.as_posix()}", "diffusion.sigma_data=1.0", "model.preset=unet-mnist")
    trainer = Trainer(config(*latent, small), tmp_path / "a", progress=False, pictures=False, data=data)
    assert trainer.net.config["in_channels"] == 2
    wrong = small.replace("{", "{in_channels=1, ")
    with pytest.raises(ConfigError, match="model.args.in_channels = 1 but .* needs 2: drop"):
        Trainer(config(*latent, wrong), tmp_path / "b", progress=False, pictures=False, data=data)


def test_text_checkpoint_loads_with_its_text_spec(tmp_path, data, encoder):
    Trainer(config(*TEXT), tmp_path, progress=False, pictures=False, data=data).run()
    model = load_trained(tmp_path)
    assert model.text is not None and model.text.encoder == "minilm" and model.text.dim == 384
    assert model.text.captions == "templates" and model.num_classes == 0
    assert model.data_shape == (1, 8, 8) and isinstance(model.codec, IdentityCodec)


def test_a_model_checkpoint_is_not_a_training_state(tmp_path):
    save_tensors(tmp_path / "model", {"model.w": torch.zeros(1)}, {"kind": "hwaksan-model"})
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_training_state(tmp_path / "model")
