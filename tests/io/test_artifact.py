"""The trained-model artifact: checkpoints of every kind (and of the previous code) load into one
typed object, and its codecs map between data space and output space."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hwaksan.io.artifact import TrainedModel, load_trained, model_metadata
from hwaksan.io.checkpoint import CheckpointError, load_tensors, save_tensors
from hwaksan.io.codec import IdentityCodec, VAECodec, apply_through_codec, min_pool_mask
from hwaksan.io.vae import vae_from_tensors
from hwaksan.models.mlp import MLP
from hwaksan.parameterizations import ModelDenoiser
from hwaksan.processes import make_process
from hwaksan.samplers import SampleResult

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"


def _state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------------------------
# checkpoints written by the previous code


def test_legacy_2d_model_loads():
    m = load_trained(LEGACY / "toy2d")
    assert isinstance(m, TrainedModel)
    assert m.data_shape == m.output_shape == (2,)
    assert m.is_lowdim and not m.is_latent and not m.is_image
    assert m.dataset == "moons" and m.source == "gaussian" and m.num_classes == 0
    assert m.ema is None  # 2-D runs kept no EMA: the raw weights
    assert m.info["train_steps"] == 5
    x = m.sample(5, sampler="heun", steps=3, generator=torch.Generator().manual_seed(0)).x
    assert x.shape == (5, 2) and torch.isfinite(x).all()


def test_legacy_pixel_model_loads_each_ema():
    tensors, _ = load_tensors(LEGACY / "pixel" / "checkpoints" / "step_0000002")
    m = load_trained(LEGACY / "pixel")
    assert m.data_shape == m.output_shape == (1, 8, 8)
    assert m.num_classes == 10 and m.dataset == "digits" and m.step == 2
    assert m.ema_decays == (0.9, 0.99) and m.ema == 0
    for ema, prefix in ((0, "ema."), (1, "ema1."), (None, "model.")):
        net = load_trained(LEGACY / "pixel", ema=ema).network
        for k, v in _state(tensors, prefix).items():
            assert torch.equal(net.state_dict()[k], v), (ema, k)
    with pytest.raises(CheckpointError, match="EMAs 0..1"):
        load_trained(LEGACY / "pixel", ema=2)
    assert m.labels(4).tolist() == [0, 1, 2, 3]
    assert m.labels(3, label=7).tolist() == [7, 7, 7]


def test_legacy_latent_model_decodes_with_its_own_autoencoder():
    path = LEGACY / "latent" / "checkpoints" / "step_0000002"
    m = load_trained(path)
    assert m.is_latent and m.is_image
    assert m.data_shape == (2, 4, 4) and m.output_shape == (1, 8, 8)
    tensors, meta = load_tensors(path)
    vae = vae_from_tensors(tensors, meta["latent"], prefix="vae.")  # an independent rebuild
    z = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(m.decode(z), vae.decode_latents(z).clamp(-1, 1))
    out = m.sample(3, sampler="euler", steps=2, grid="karras", generator=torch.Generator().manual_seed(0))
    assert out.x.shape == (3, 1, 8, 8) and out.x.abs().max() <= 1
    latents = m.sample(3, sampler="euler", steps=2, grid="karras", decode=False,
                       generator=torch.Generator().manual_seed(0)).x  # fmt: skip
    assert torch.equal(m.decode(latents), out.x)


def test_other_checkpoints_are_refused_with_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="autoencoder|vae checkpoint, not a diffusion model"):
        load_trained(LEGACY / "vae" / "vae")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_trained(tmp_path)
    bad = tmp_path / "bad"
    shutil.copy(LEGACY / "toy2d" / "model.safetensors", bad.with_suffix(".safetensors"))
    meta = json.loads((LEGACY / "toy2d" / "model.json").read_text())
    meta["network"]["config"]["width"] = "wide"
    bad.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as info:
        load_trained(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    del meta["network"]
    bad.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="lacks 'network'"):
        load_trained(bad)


# ----------------------------------------------------------------------------------------------
# writing: model_metadata is what load_trained reads


def test_model_metadata_round_trips_a_flattened_image_mlp(tmp_path):
    torch.manual_seed(0)
    net = MLP(dim=12, width=16, depth=1, num_classes=3)
    model = ModelDenoiser(net, make_process("vp"), "eps")
    meta = model_metadata(model, dataset="toy-images", data_shape=(12,), output_shape=(3, 2, 2),
                          num_classes=3, info={"seconds": 1.5})  # fmt: skip
    save_tensors(tmp_path / "m", {f"model.{k}": v for k, v in net.state_dict().items()}, meta)
    m = load_trained(tmp_path / "m")
    assert m.data_shape == (12,) and m.output_shape == (3, 2, 2) and m.num_classes == 3
    assert m.dataset == "toy-images" and m.info == {"seconds": 1.5} and m.ema is None
    x, t = torch.randn(4, 12), torch.full((4,), 0.3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    assert torch.equal(m.denoiser(x, t, y), model.eval()(x, t, y))
    images = torch.randn(2, 3, 2, 2)
    assert torch.equal(m.decode(m.encode(images)), images)
    assert m.sample(2, sampler="ddim", steps=2, cond=y[:2]).x.shape == (2, 3, 2, 2)


# ----------------------------------------------------------------------------------------------
# codecs


def test_identity_codec_reshapes_and_moves_masks():
    codec = IdentityCodec((12,), (3, 2, 2))
    x = torch.arange(24.0).reshape(2, 3, 2, 2)
    assert torch.equal(codec.encode(x), x.reshape(2, 12))
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    assert torch.equal(codec.data_mask(mask), mask.expand(1, 3, 2, 2).reshape(1, 12))
    with pytest.raises(ValueError, match=r"\(B, 3, 2, 2\)"):
        codec.encode(torch.zeros(2, 1, 2, 2))
    with pytest.raises(ValueError, match="differ in size"):
        IdentityCodec((5,), (2, 2))


def test_min_pool_mask_keeps_only_fully_known_cells():
    mask = torch.ones(1, 1, 4, 4)
    mask[0, 0, 0, 1] = 0  # one unknown pixel in the top-left 2x2 patch
    mask[0, 0, 3, 3] = 0.0
    got = min_pool_mask(mask, 2)
    assert got.shape == (1, 1, 2, 2)
    assert got.flatten().tolist() == [0.0, 1.0, 1.0, 0.0]
    three = torch.ones(1, 3, 4, 4)
    three[0, 2, 2, 0] = 0  # unknown in one channel only: the cell is unknown
    assert min_pool_mask(three, 2).flatten().tolist() == [1.0, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="multiples of the factor 3"):
        min_pool_mask(mask, 3)


class _HalvingAutoencoder:
    """Latents = 2x2 average pool (x 2); decoding = nearest upsampling (/ 2): lossy, exactly known."""

    factor, latent_channels = 2, 1

    def to(self, device):
        return self

    def encode_latents(self, x):
        return 2 * torch.nn.functional.avg_pool2d(x, 2)

    def decode_latents(self, z):
        return torch.nn.functional.interpolate(z / 2, scale_factor=2, mode="nearest")


def test_apply_through_codec_runs_in_data_space_and_pastes_known_pixels():
    codec = VAECodec(_HalvingAutoencoder(), (1, 4, 4))
    assert codec.data_shape == (1, 2, 2)
    seen = {}

    def task(denoiser, z, *, mask=None, scale=1.0):  # a stand-in task: records what it was given
        seen.update(z=z, mask=mask, denoiser=denoiser)
        return SampleResult(scale * z, torch.zeros(1), 0)

    images = torch.rand(1, 1, 4, 4) * 2 - 1
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1  # top half known
    out = apply_through_codec(task, "D", codec, images, mask=mask, scale=1.0)
    assert seen["denoiser"] == "D"
    assert torch.allclose(seen["z"], 2 * torch.nn.functional.avg_pool2d(images, 2))
    assert seen["mask"].flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    assert torch.equal(out.x[..., :2, :], images[..., :2, :])  # known pixels exact
    expected = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(images, 2), scale_factor=2)
    assert torch.allclose(out.x[..., 2:, :], expected[..., 2:, :])
