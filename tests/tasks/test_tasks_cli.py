"""The editing sub-commands: hwaksan edit, invert, inpaint, upscale, cascade (tiny digits checkpoints)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hwaksan.cli import main
from hwaksan.training.config import load_config
from hwaksan.training.trainer import Trainer

NET = (
    "{model_channels = 8, channel_mult = [1, 2], num_res_blocks = 1, attention_levels = [], "
    "num_head_channels = 8}"
)


def _train(out, *overrides):
    cfg = load_config(
        None,
        [
            "data.name=digits",
            "model.preset=unet",
            f"model.args={NET}",
            "train.steps=2",
            "train.batch_size=8",
            "sample.n=2",
            "sample.steps=2",
            *overrides,
        ],
    )
    Trainer(cfg, out, progress=False, pictures=False).run()
    return str(out)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    base8 = _train(root / "base8")
    sr = _train(root / "sr", "data.lowres=4", "data.conditional=false", "diffusion.aug_max=0.01")
    base4 = _train(root / "base4", "data.image_size=4", "model.args.channel_mult=[1]")
    img = root / "digit.png"
    Image.fromarray(np.tile(np.arange(8, dtype=np.uint8) * 32, (8, 1))).save(img)
    masks = {}
    for name, arr in {
        "left": np.where(np.arange(8)[None, :] < 4, 255, 0).repeat(8, 0).astype(np.uint8),
        "small": np.full((6, 6), 255, np.uint8),
    }.items():
        masks[name] = str(root / f"mask-{name}.png")
        Image.fromarray(arr).save(masks[name])
    masks["colour"] = str(root / "mask-colour.png")
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(masks["colour"])
    rgb_img = root / "colour.png"
    Image.fromarray(rgb).save(rgb_img)
    big = root / "big.png"
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(big)
    return {
        "base8": base8,
        "sr": sr,
        "base4": base4,
        "img": str(img),
        "rgb": str(rgb_img),
        "big": str(big),
        **masks,
    }


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def _first_image(path) -> np.ndarray:
    """The first 8x8 image of a grid saved 12x magnified with a 2-pixel white gap."""
    return _png(path)[::12, ::12][2:10, 2:10]


def test_edit_strength_zero_writes_the_input(ckpts, tmp_path, capsys):
    out = tmp_path / "e.png"
    rc = main(
        [
            "edit",
            ckpts["img"],
            "--checkpoint",
            ckpts["base8"],
            "--strength",
            "0",
            "--n",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert np.array_equal(_first_image(out), _png(ckpts["img"]))
    printed = capsys.readouterr().out
    assert str(out) in printed and "e-compare.png" in printed
    rc = main(
        [
            "edit",
            ckpts["img"],
            "--checkpoint",
            ckpts["base8"],
            "--strength",
            "0.5",
            "--class",
            "3",
            "--steps",
            "2",
        ]
        + ["--guidance", "2", "--out", str(tmp_path / "g.png")]
    )
    assert rc == 0 and (tmp_path / "g-compare.png").exists()


def test_inpaint_keeps_the_known_pixels(ckpts, tmp_path, capsys):
    out = tmp_path / "i.png"
    args = ["inpaint", ckpts["img"], ckpts["left"], "--checkpoint", ckpts["base8"], "--steps", "4"]
    rc = main(args + ["--jump", "2", "--resample", "2", "--n", "1", "--out", str(out)])
    assert rc == 0
    got, ref = _first_image(out), _png(ckpts["img"])
    assert np.array_equal(got[:, :4], ref[:, :4])
    assert "max error there 0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        ("img", "small", "is 6x6 but the image is 8x8"),
        ("img", "colour", "must be grey-scale"),
        ("rgb", "left", "has 3 channel"),
        ("big", "left", "pass --resize"),
    ],
)
def test_inpaint_errors_name_the_fix(ckpts, tmp_path, capsys, image, mask, message):
    rc = main(
        [
            "inpaint",
            ckpts[image],
            ckpts[mask],
            "--checkpoint",
            ckpts["base8"],
            "--out",
            str(tmp_path / "x.png"),
        ]
    )
    assert rc == 2
    assert message in capsys.readouterr().err


def test_invert_upscale_cascade(ckpts, tmp_path, capsys):
    rc = main(
        [
            "invert",
            ckpts["img"],
            "--checkpoint",
            ckpts["base8"],
            "--steps",
            "4",
            "--class",
            "1",
            "--to-class",
            "2",
        ]
        + ["--out", str(tmp_path / "inv.png")]
    )
    assert rc == 0 and (tmp_path / "inv.latent.safetensors").exists()
    assert "reconstruction RMSE" in capsys.readouterr().out
    rc = main(
        [
            "upscale",
            ckpts["img"],
            "--checkpoint",
            ckpts["sr"],
            "--steps",
            "2",
            "--n",
            "2",
            "--out",
            str(tmp_path / "u.png"),
        ]
    )
    assert rc == 0 and "PSNR" in capsys.readouterr().out  # a full-size image is downsampled and scored
    rc = main(["upscale", ckpts["big"], "--checkpoint", ckpts["sr"], "--out", str(tmp_path / "u2.png")])
    assert rc == 2 and "give a 4x4 low-resolution image" in capsys.readouterr().err
    rc = main(["upscale", ckpts["img"], "--checkpoint", ckpts["base8"], "--out", str(tmp_path / "u3.png")])
    assert rc == 2 and "not a super-resolution model" in capsys.readouterr().err
    out = tmp_path / "c.png"
    rc = main(
        [
            "cascade",
            ckpts["base4"],
            ckpts["sr"],
            "--n",
            "3",
            "--steps",
            "2",
            "--sr-steps",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and out.exists() and "4 -> 8 pixels" in capsys.readouterr().out
    rc = main(["cascade", ckpts["base8"], ckpts["sr"], "--n", "1", "--out", str(out)])
    assert rc == 2 and "upscales 4x4 but receives 8x8" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["edit", "invert", "inpaint", "upscale", "cascade"])
def test_help(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--out" in capsys.readouterr().out


def test_loaded_image_round_trips(tmp_path):
    from hwaksan.cli.images import load_image

    arr = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", 1, (8, 8))
    assert x.shape == (1, 1, 8, 8)
    assert torch.equal(((x + 1) * 127.5).round().byte()[0, 0], torch.from_numpy(arr))
