"""hwaksan train / sample / complete on a tiny stick-motion model: the files each writes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hwaksan.cli import main
from hwaksan.data.motion import load_stick_motion
from hwaksan.io.media_motion import motion_preview

MOTION = Path(__file__).resolve().parents[2] / "configs" / "motion.toml"
TINY = [
    "model.args={hidden_size=16, depth=1, num_heads=2}",
    "data.args={frames=16, n=32}",
    "train.batch_size=8",
    "train.steps=2",
    "train.threads=1",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "train.max_seconds=0",
    "optim.warmup=1",
    "sample.n=8",
    "sample.steps=2",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("motion") / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["train", "--config", str(MOTION), "--out", str(out), "--no-progress", *sets]) == 0
    assert (out / "samples" / "latest.png").exists()  # the loop's grid went through the motion writer
    return out


def test_sample_writes_the_png_and_an_animated_gif(run, tmp_path) -> None:
    png = tmp_path / "moves.png"
    argv = ["sample", str(run), "--n", "4", "--steps", "3", "--sampler", "ddim", "--guidance", "2"]
    assert main([*argv, "--out", str(png)]) == 0
    gif = Image.open(png.with_suffix(".gif"))
    assert gif.n_frames == 16  # one frame per time step
    assert Image.open(png).size[0] > 0


def test_complete_keeps_the_frames_and_refuses_a_wrong_skeleton(run, tmp_path, capsys) -> None:
    out = tmp_path / "between.png"
    argv = ["complete", str(run), "--from-data", "val:1", "--keep", "0,-1", "--n", "2", "--steps", "3"]
    assert main([*argv, "--out", str(out)]) == 0
    done = np.load(out.with_suffix(".npy"))
    ref = load_stick_motion("val", n=2, frames=16).images[1].numpy()
    assert np.array_equal(done[:, :, [0, 15]], np.broadcast_to(ref[:, [0, 15]], (2, 30, 2)))
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((28, 16), dtype=np.float32))  # 14 joints instead of 15
    capsys.readouterr()
    argv = ["complete", str(run), "--input", str(bad), "--keep", "0:4", "--out", str(tmp_path / "x.png")]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "(28, 16)" in err and "(30, 16)" in err


def test_preview_cells(tmp_path) -> None:
    x = load_stick_motion("val", n=6, frames=16).images
    motion_preview(x, tmp_path / "p.png", load_stick_motion("val", n=1).modality_params, 3)
    assert Image.open(tmp_path / "p.png").size == (3 * 112, 2 * 112)
    with pytest.raises(ValueError, match=r"\(n, 2 J, T\)"):
        motion_preview(torch.zeros(2, 5, 4), tmp_path / "q.png", {}, None)


def test_evaluate_measures_motions_beside_the_real_floor(run, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    argv = ["evaluate", str(run), "--n", "16", "--steps", "2", "--sampler", "ddim", "--out", str(out)]
    assert main([*argv, "--guidance", "1.5", "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model_kind"] == "motion" and report["sampler"]["guidance"] == 1.5
    m = report["metrics"]["motion"]
    assert set(m["generated"]) == {"fd", "diversity", "jumps_over_real_p99", "accuracy", "multimodality"}
    # the threshold is the val motions' own 99th percentile (linearly interpolated): at most 1 % of
    # their N = n_real x 15 jumps exceed it, plus one for the rounding of 0.99 (N - 1)
    assert m["real"]["jumps_over_real_p99"] <= 0.01 + 1 / (m["n_real"] * 15)
    assert 0.0 <= m["generated"]["accuracy"]["value"] <= 1.0 and m["generated"]["fd"]["value"] >= 0.0
    assert (out / "report.html").is_file() and (out / "samples.png").is_file()
    assert "motion: accuracy" in capsys.readouterr().out
