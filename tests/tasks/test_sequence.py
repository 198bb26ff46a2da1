"""Sequences through the unchanged loop, and inpainting in time (``hwaksan complete``).

A sequence network of the test's own (registered for the test only) trains on ``(N, D, T)`` data
of a modality other than images; the artifact keeps the modality, every sampler takes the shape,
and ``hwaksan complete`` keeps the given frames exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hwaksan.cli import main
from hwaksan.cli.common import UserError
from hwaksan.cli.studio_command import load_served
from hwaksan.data.dataset import ImageDataset
from hwaksan.io import media
from hwaksan.io.artifact import load_trained
from hwaksan.models import presets
from hwaksan.models.embeddings import NoiseLevelEmbedding
from hwaksan.tasks.inpaint import inpaint
from hwaksan.tasks.sequence import parse_keep, time_mask
from hwaksan.training.config import ConfigError, load_config
from hwaksan.training.trainer import Trainer

DIGITS = Path(__file__).resolve().parents[2] / "configs" / "digits.toml"
D, T = 2, 12


class TinySequenceNet(nn.Module):
    """Two 1-D convolutions with a noise-level scale-shift: a sequence network ``(B, C, T)``."""

    data_axes = 1

    def __init__(self, in_channels: int = 2, width: int = 8, num_classes: int = 0) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "width": width, "num_classes": num_classes}
        self.embed = NoiseLevelEmbedding(width)
        self.conv_in = nn.Conv1d(in_channels, width, 3, padding=1)
        self.conv_out = nn.Conv1d(width, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, cond=None) -> torch.Tensor:
        if noise_level.ndim == 0:
            noise_level = noise_level.expand(x.shape[0])
        h = self.conv_in(x) + self.embed(noise_level)[:, :, None]
        return self.conv_out(torch.nn.functional.silu(h))


def _preview(x, path, params, nrow):
    np.save(Path(path).with_suffix(".preview.npy"), x.numpy())
    Path(path).write_bytes(b"\x89PNG test")


@pytest.fixture
def sequence_modality(monkeypatch):
    """The test network as an architecture and plain writers for the "motion" modality."""
    monkeypatch.setitem(presets.ARCHITECTURES, "tiny-seq", TinySequenceNet)
    writers = media.MEDIA.get("motion") or media.MediaWriters(_preview, media._no_names, media._no_files)
    monkeypatch.setitem(media.MEDIA, "motion", writers)


def _waves(n: int) -> ImageDataset:
    """``(n, 2, T)`` smooth sequences: a sine and a cosine of random phase, amplitude 0.8."""
    g = torch.Generator().manual_seed(0)
    phase = torch.rand(n, 1, generator=g) * 2 * torch.pi
    t = torch.linspace(0, 2 * torch.pi, T)
    x = 0.8 * torch.stack([torch.sin(t + phase), torch.cos(t + phase)], dim=1)
    return ImageDataset(x.float(), None, None, None, "digits", modality="motion", modality_params={"fps": 4})


def _config(tmp_path, *extra: str):
    return load_config(
        DIGITS,
        [
            "model.preset=tiny-seq",
            "model.args={}",
            "data.conditional=false",
            "train.batch_size=8",
            "train.steps=3",
            "train.threads=1",
            "train.log_every=1",
            "train.sample_every=0",
            "train.checkpoint_every=3",
            "train.max_seconds=0",
            "optim.warmup=1",
            *extra,
        ],
    )


def test_parse_keep_reads_indices_ranges_and_negative_frames():
    assert parse_keep("0:4", 10) == [0, 1, 2, 3]
    assert parse_keep("0,-1", 10) == [0, 9]
    assert parse_keep(":2, 5, -2:", 10) == [0, 1, 5, 8, 9]
    assert parse_keep("3,3,1", 10) == [1, 3]
    for bad in ("", "a", "0:11", "10", "-11", "1:2:3", "4:2"):
        with pytest.raises(ValueError):
            parse_keep(bad, 10)


def test_time_mask_marks_the_kept_frames_on_the_time_axis_only():
    mask = time_mask((3, 6, 4, 5), [0, 2])
    assert mask.shape == (1, 1, 6, 1, 1)
    assert mask.flatten().tolist() == [1, 0, 1, 0, 0, 0]
    full = mask.expand(2, 3, 6, 4, 5)
    assert float(full[:, :, [0, 2]].min()) == 1.0 and float(full[:, :, [1, 3, 4, 5]].max()) == 0.0


def test_a_sequence_model_trains_through_the_loop_and_keeps_its_modality(tmp_path, sequence_modality):
    cfg = _config(tmp_path)
    result = Trainer(cfg, tmp_path / "run", data=_waves(32), progress=False, pictures=False).run()
    assert result.step == 3 and all(np.isfinite(result.losses))
    model = load_trained(tmp_path / "run")
    assert model.modality == "motion" and model.modality_params == {"fps": 4}
    assert model.output_shape == (D, T) and not model.is_image and not model.is_lowdim
    for sampler in ("heun", "dpmpp_2m", "ddpm"):
        out = model.sample(3, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(1))
        assert out.x.shape == (3, D, T) and bool(torch.isfinite(out.x).all())


def test_an_image_network_on_sequences_is_one_config_error(tmp_path):
    cfg = _config(tmp_path, "model.preset=unet-digits")
    with pytest.raises(ConfigError, match=r"takes images \(C, H, W\).*shape \(2, 12\)"):
        Trainer(cfg, tmp_path / "run", data=_waves(16), progress=False, pictures=False)


def test_inpainting_in_time_keeps_the_given_frames_exactly(tmp_path, sequence_modality):
    Trainer(_config(tmp_path), tmp_path / "run", data=_waves(32), progress=False, pictures=False).run()
    model = load_trained(tmp_path / "run")
    x = _waves(1).images
    keep = [0, 1, 2, T - 1]
    res = inpaint(
        model.denoiser,
        x.repeat(2, 1, 1),
        time_mask((D, T), keep),
        steps=6,
        resample=2,
        jump=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(res.x[:, :, keep], x.repeat(2, 1, 1)[:, :, keep])
    assert not torch.equal(res.x, x.repeat(2, 1, 1))  # the rest is filled, not copied


def test_complete_command_writes_the_completions_and_refuses_bad_input(tmp_path, sequence_modality, capsys):
    Trainer(_config(tmp_path), tmp_path / "run", data=_waves(32), progress=False, pictures=False).run()
    x = _waves(1).images[0].numpy()
    np.save(tmp_path / "clip.npy", x)
    args = ["complete", str(tmp_path / "run"), "--input", str(tmp_path / "clip.npy"), "--keep", "0:4"]
    common = ["--n", "2", "--steps", "4", "--resample", "1"]
    assert main([*args, *common, "--out", str(tmp_path / "done.png")]) == 0
    done = np.load(tmp_path / "done.npy")
    assert done.shape == (2, D, T)
    np.testing.assert_array_equal(done[:, :, :4], np.broadcast_to(x[:, :4], (2, D, 4)))
    assert "kept 4 of 12 frames" in capsys.readouterr().err
    # with reconstruction guidance: the kept frames stay exact, the fill differs
    out = tmp_path / "guided.png"
    assert main([*args, *common, "--reconstruction", "2", "--out", str(out)]) == 0
    guided = np.load(tmp_path / "guided.npy")
    np.testing.assert_array_equal(guided[:, :, :4], done[:, :, :4])
    assert not np.array_equal(guided[:, :, 4:], done[:, :, 4:])
    assert "reconstruction guidance 2" in capsys.readouterr().err

    np.save(tmp_path / "short.npy", x[:, :8])
    assert (
        main([*args[:3], str(tmp_path / "short.npy"), *args[4:], *common, "--out", str(tmp_path / "b.png")])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert (
        "has shape (2, 8) but the model makes (2, 12): give 12 frames" in err and len(err.splitlines()) == 1
    )

    np.save(tmp_path / "loud.npy", 3 * x)
    assert (
        main([*args[:3], str(tmp_path / "loud.npy"), *args[4:], *common, "--out", str(tmp_path / "c.png")])
        == 1
    )
    assert "lie in [-1, 1]" in capsys.readouterr().err

    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert (
        main([*args[:3], str(tmp_path / "objects.npy"), *args[4:], *common, "--out", str(tmp_path / "d.png")])
        == 1
    )
    assert "not a plain numpy array" in capsys.readouterr().err

    assert main([*args[:4], "--keep", "0:20", *common, "--out", str(tmp_path / "e.png")]) == 1
    assert "outside the 12 frames" in capsys.readouterr().err


def test_the_studio_refuses_a_sequence_model_in_one_line(tmp_path, sequence_modality):
    Trainer(_config(tmp_path), tmp_path / "run", data=_waves(16), progress=False, pictures=False).run()
    with pytest.raises(UserError, match="is a motion model: use hwaksan sample"):
        load_served([str(tmp_path / "run")], "cpu")
