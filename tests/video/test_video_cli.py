"""A tiny clip model through the unchanged loop, then `hwaksan sample` and `hwaksan complete`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hwaksan.cli import main
from hwaksan.data.catalog import load_data
from hwaksan.io.artifact import load_trained
from hwaksan.training.config import load_config
from hwaksan.training.trainer import Trainer

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "moving-mnist.toml"
DATA_ARGS = '{frames = 4, size = 16, n = 16, digits = 1, source = "digits"}'
TINY = [
    f"data.args={DATA_ARGS}",
    "model.args={model_channels = 8, channel_mult = [1, 2], num_groups = 4, num_head_channels = 8, "
    "patch_size = 1, emb_dim = 32, temporal_attention_levels = [1]}",
    "train.steps=3",
    "train.batch_size=4",
    "train.threads=1",
    "train.log_every=1",
    "train.sample_every=3",
    "train.checkpoint_every=3",
    "train.max_seconds=0",
    "optim.warmup=1",
    "sample.n=3",
    "sample.steps=2",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("video") / "run"
    result = Trainer(load_config(CONFIG, TINY), out, progress=False).run()
    assert result.files["samples"].is_file()
    return out


def test_the_loop_trains_a_clip_model_and_records_the_modality(run):
    model = load_trained(run)
    assert model.modality == "video" and model.modality_params == {"fps": 4}
    assert tuple(model.output_shape) == (1, 4, 16, 16)
    assert model.num_classes == 10
    with Image.open(run / "samples" / "latest.png") as im:  # 3 clips in a column, 4 frames each
        assert im.width > im.height


def test_sample_writes_the_strip_png_and_an_animated_gif(run, tmp_path):
    out = tmp_path / "clips.png"
    rc = main(["sample", str(run), "--n", "3", "--steps", "2", "--out", str(out)])
    assert rc == 0
    with Image.open(out) as im:
        assert im.format == "PNG"
    with Image.open(tmp_path / "clips.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 4 and gif.info["duration"] == 250  # 4 fps
    again = tmp_path / "again.png"
    assert main(["sample", str(run), "--n", "3", "--steps", "2", "--out", str(again)]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))  # same seeds


def test_complete_keeps_the_first_frames_exactly(run, tmp_path):
    out = tmp_path / "future.png"
    rc = main(
        ["complete", str(run), "--from-data", "val:1", "--keep", "0:2", "--n", "2", "--steps", "3",
         "--jump", "1", "--resample", "2", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    completed = torch.from_numpy(np.load(tmp_path / "future.npy"))
    real = load_data("moving-mnist", "val", None, {"frames": 4, "size": 16, "n": 2, "source": "digits"})
    assert torch.equal(completed[:, :, :2], real.images[1:2, :, :2].expand(2, -1, -1, -1, -1))
    assert (tmp_path / "future.gif").is_file()


def test_a_clip_of_the_wrong_frame_count_is_one_clear_line(run, tmp_path, capsys):
    bad = tmp_path / "clip.npy"
    np.save(bad, np.zeros((1, 6, 16, 16), dtype=np.float32))
    rc = main(["complete", str(run), "--input", str(bad), "--keep", "0:2", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1 and "give 4 frames" in err


def test_bad_data_args_stop_training_with_one_line(tmp_path, capsys):
    rc = main(["train", "--config", str(CONFIG), "--set", "data.args.frames=4", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert err.splitlines() == ["hwaksan train: error: data.args.frames must be 8 to 16, got 4"]


def test_evaluate_measures_clips_beside_the_real_floor(run, tmp_path, capsys, monkeypatch):
    import hwaksan.evaluation.sequence_eval as sequence_eval

    def pixel_readout(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # a stand-in for the MNIST classifier (trained on first use): pooled pixels as features
        feats = torch.nn.functional.avg_pool2d(crops, 4).flatten(1)
        return feats[:, 17:27], feats

    monkeypatch.setattr(sequence_eval, "mnist_readout", lambda **kwargs: pixel_readout)
    out = tmp_path / "eval"
    argv = ["evaluate", str(run), "--n", "6", "--steps", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model_kind"] == "video" and report["checkpoint"]["data_shape"] == [1, 4, 16, 16]
    m = report["metrics"]["video"]
    assert m["n_fake"] == 6 and m["n_real"] >= 6
    # a real clip translates one digit by whole pixels: every frame's crop is the same digit
    assert m["real"]["frame_agreement"] == 1.0
    for key in ("frame_agreement", "first_frame_accuracy", "displacement_ratio", "fd_frames"):
        assert key in m["generated"] and key in m["real"]
    assert 0.0 <= m["generated"]["frame_agreement"]["value"] <= 1.0
    assert (out / "report.html").is_file() and (out / "samples.png").is_file()
    assert "video: frame_agreement" in capsys.readouterr().out


def test_evaluate_refuses_image_metrics_on_clips_in_one_line(run, tmp_path, capsys):
    rc = main(["evaluate", str(run), "--metrics", "fd", "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and "fd cannot be measured on a video model; choose from video" in err
