"""A latent-diffusion model through the commands: sample, edit, inpaint, invert and plan-steps encode
IMAGEs of the output (pixel) size, work on the latents and decode; reflow and upscale refuse it in
one line.

The model is the tiny latent U-Net kept in tests/data/legacy/latent (its autoencoder inside the
checkpoint): 1x8x8 pixels, 2x4x4 latents, unconditional.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hwaksan.cli import main
from hwaksan.io.artifact import load_trained

LATENT = str(Path(__file__).resolve().parents[1] / "data" / "legacy" / "latent")
SCALE = 12  # 96 px per image / 8 px
GAP = 2  # pixels between grid cells (save_image_grid's padding)


def _grid_size(rows: int, cols: int, side: int = 8) -> tuple[int, int]:
    """(width, height) of a PNG grid of rows x cols images of side x side pixels at SCALE."""
    return ((cols * (side + GAP) + GAP) * SCALE, (rows * (side + GAP) + GAP) * SCALE)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def _first_image(path) -> np.ndarray:
    """The first 8x8 image of a grid."""
    return _png(path)[::SCALE, ::SCALE][GAP : GAP + 8, GAP : GAP + 8]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("latent-cli")
    img = root / "digit.png"
    Image.fromarray(np.tile(np.arange(8, dtype=np.uint8) * 32, (8, 1))).save(img)
    mask = root / "left.png"
    Image.fromarray(np.where(np.arange(8)[None, :] < 4, 255, 0).repeat(8, 0).astype(np.uint8)).save(mask)
    return {"img": str(img), "mask": str(mask)}


def test_the_fixture_is_a_latent_model():
    model = load_trained(LATENT)
    assert model.is_latent and model.output_shape == (1, 8, 8) and model.data_shape == (2, 4, 4)


def test_sample_decodes_to_pixels(tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = ["sample", LATENT, "--n", "4", "--steps", "2", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    with Image.open(out) as im:  # 2 x 2 images of 8x8 pixels, not 4x4 latents
        assert im.size == _grid_size(2, 2)
    assert "4 images" in capsys.readouterr().err


def test_edit_takes_and_gives_pixels(files, tmp_path, capsys):
    out = tmp_path / "e.png"
    argv = ["edit", files["img"], "--checkpoint", LATENT, "--strength", "0.5", "--n", "2", "--steps", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == _grid_size(1, 2)
    assert (tmp_path / "e-compare.png").exists()
    assert str(out) in capsys.readouterr().out


def test_inpaint_keeps_the_known_pixels(files, tmp_path, capsys):
    out = tmp_path / "i.png"
    argv = ["inpaint", files["img"], files["mask"], "--checkpoint", LATENT, "--steps", "4", "--jump", "2"]
    assert main([*argv, "--resample", "2", "--n", "1", "--out", str(out)]) == 0
    got, ref = _first_image(out), _png(files["img"])
    assert got.shape == (8, 8)
    assert np.array_equal(got[:, :4], ref[:, :4])  # the known (white) half, exactly
    assert "max error there 0" in capsys.readouterr().out


def test_invert_reconstructs_through_the_autoencoder(files, tmp_path, capsys):
    out = tmp_path / "inv.png"
    assert main(["invert", files["img"], "--checkpoint", LATENT, "--steps", "3", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == _grid_size(1, 1)
    latent = tmp_path / "inv.latent.safetensors"
    from safetensors.torch import load_file

    assert load_file(str(latent))["latent"].shape == (1, 2, 4, 4)  # the latent of the latent grid
    assert "reconstruction RMSE" in capsys.readouterr().out


def test_plan_steps_plans_in_latent_space_and_sample_uses_the_plan(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    argv = ["plan-steps", LATENT, "--sampler", "dpmpp_2m", "--steps", "3", "--n", "8", "--max-evals", "6"]
    assert main([*argv, "--out", str(plan)]) == 0
    record = json.loads(plan.read_text())
    assert len(record["ts"]) == 4 and record["sampler"] == "dpmpp_2m"
    capsys.readouterr()
    png = tmp_path / "planned.png"
    assert (
        main(["sample", LATENT, "--plan", str(plan), "--n", "4", "--out", str(png), "--device", "cpu"]) == 0
    )
    with Image.open(png) as im:
        assert im.size == _grid_size(2, 2)
    assert "dpmpp_2m 3 steps" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["reflow", LATENT, "--pairs", "4", "--steps", "2", "--no-progress"],
        ["upscale", "IMG", "--checkpoint", LATENT],
    ],
    ids=["reflow", "upscale"],
)
def test_reflow_and_upscale_refuse_a_latent_model_in_one_line(files, tmp_path, capsys, argv):
    out = tmp_path / ("x.png" if argv[0] == "upscale" else "x")  # upscale writes a PNG
    argv = [files["img"] if a == "IMG" else a for a in argv] + ["--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"hwaksan {argv[0]}: error:") and "latent-diffusion model" in err
    assert not out.exists()  # refused before any work


def test_the_latent_model_samples_the_same_images_at_any_batch_size(tmp_path):
    model = load_trained(LATENT)
    gens = lambda n: [torch.Generator().manual_seed(i) for i in range(n)]  # noqa: E731
    a = model.sample(3, sampler="euler", steps=2, generator=gens(3)).x
    b = model.sample(1, sampler="euler", steps=2, generator=gens(1)).x
    assert a.shape == (3, 1, 8, 8)
    torch.testing.assert_close(a[:1], b, atol=1e-5, rtol=1e-5)
