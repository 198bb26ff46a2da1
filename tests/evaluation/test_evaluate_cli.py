"""``hwaksan evaluate`` on a tiny digits checkpoint: report files and keys, resume, errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from hwaksan.cli import main
from hwaksan.evaluation import features as features_module
from hwaksan.evaluation.generate import SampleSpec, generate_samples
from hwaksan.io.artifact import load_trained
from hwaksan.io.checkpoint import latest_checkpoint
from hwaksan.training.config import load_config
from hwaksan.training.trainer import Trainer

DIGITS = Path(__file__).resolve().parents[2] / "configs" / "digits.toml"
TINY_UNET = [
    "model.preset=unet",
    "model.args={model_channels=8, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[], "
    "mid_attention=false, num_head_channels=8, num_groups=2}",
    "train.batch_size=16",
    "train.threads=1",
    "train.steps=2",
    "train.log_every=1",
    "train.sample_every=0",
    "train.max_seconds=0",
    "optim.warmup=1",
]
HAS_EFFNET = importlib.util.find_spec("efficientnet_lite_pytorch") is not None


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits-run")
    Trainer(load_config(DIGITS, TINY_UNET), out, progress=False, pictures=False).run()
    return latest_checkpoint(out)


def _args(checkpoint: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    features = "effnet,classifier" if HAS_EFFNET else "classifier"
    return ["evaluate", str(checkpoint), "--n", "12", "--steps", "2", "--shard-size", "5",
            "--batch-size", "4", "--features", features, "--out", str(out), "--cache-dir", str(cache),
            "--no-progress", *extra]  # fmt: skip


def test_writes_report_json_and_html(checkpoint, tiny_classifier, tmp_path, capsys, monkeypatch):
    out = tmp_path / "eval"
    metrics = "fd,precision,recall,accuracy,nn"
    assert main(_args(checkpoint, out, tiny_classifier, "--metrics", metrics, "--seeds", "2")) == 0
    err = capsys.readouterr().err
    assert str(out / "report.html") in err and str(out / "report.json") in err
    report = json.loads((out / "report.json").read_text())
    assert {
        "checkpoint",
        "sampler",
        "n",
        "seeds",
        "reference",
        "metrics",
        "warnings",
        "samples",
        "files",
    } <= set(report)
    assert report["n"] == 12 and report["seeds"] == 2 and report["sampler"]["nfe"] == 3  # heun, 2 steps
    assert report["reference"] == {"dataset": "digits", "split": "val", "train_split": "train"}
    m = report["metrics"]
    spaces = ["FD-digits"] + (["FD-EffNet"] if HAS_EFFNET else [])
    assert set(m) == {*spaces, "accuracy", "nn"}
    for space in spaces:
        assert m[space]["n_fake"] == 12 and m[space]["n_real"] == 12
        for key in ("fd", "precision", "recall"):
            assert len(m[space][key]["per_seed"]) == 2 and m[space][key]["std"] is not None
        assert m[space]["fd"]["value"] > 0 and 0 <= m[space]["precision"]["value"] <= 1
    assert 0 <= m["accuracy"]["accuracy"]["value"] <= 1 and m["accuracy"]["n"] == 12
    assert m["nn"]["n"] == 12 and m["nn"]["train_n"] > 1000 and m["nn"]["median"] > 0
    assert any("2 x dim" in w for w in report["warnings"])  # 12 samples in a 16-d space
    for name in ("report.html", "samples.png", "nearest_neighbours.png"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "samples").rglob("shard_*.safetensors"))) == 5  # 24 images in shards of 5

    # resume: nothing is sampled again and no feature network runs again; the same numbers come back
    n_spaces = len(spaces)
    assert len(list((out / "samples").rglob("features-*.safetensors"))) == 2 * n_spaces  # 2 seed runs

    def no_network(*args, **kwargs):
        raise AssertionError("features of generated or real images computed again on --resume")

    monkeypatch.setattr(features_module, "image_features", no_network)
    assert (
        main(_args(checkpoint, out, tiny_classifier, "--metrics", metrics, "--seeds", "2", "--resume")) == 0
    )
    again = json.loads((out / "report.json").read_text())
    assert again["samples"]["reused"] == 24
    assert again["metrics"]["FD-digits"]["fd"] == m["FD-digits"]["fd"]
    # without --resume an existing folder is refused
    assert main(_args(checkpoint, out, tiny_classifier, "--metrics", metrics)) == 1
    assert "--resume" in capsys.readouterr().err


def test_nfe_sweep_adds_a_plot(checkpoint, tiny_classifier, tmp_path):
    out = tmp_path / "sweep"
    args = _args(checkpoint, out, tiny_classifier, "--metrics", "fd", "--features", "classifier",
                 "--nfe-sweep", "euler,heun", "--sweep-steps", "1,2")  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert [(r["sampler"], r["nfe"]) for r in report["sweep"]] == [
        ("euler", 1),
        ("euler", 2),
        ("heun", 1),
        ("heun", 3),
    ]
    assert all("fd:FD-digits" in r for r in report["sweep"])
    assert (out / "nfe_FD-digits.png").stat().st_size > 0
    assert report["files"]["nfe_FD-digits"] == "nfe_FD-digits.png"
    # heun-2 is also the main setting: the sweep reuses its samples (no second folder, no clash)
    folders = sorted(p.name for p in (out / "samples").iterdir())
    assert folders == ["euler-1-karras-s0", "euler-2-karras-s0", "heun-1-karras-s0", "heun-2-karras-s0"]


def test_shards_do_not_change_the_images(checkpoint, tmp_path):
    model = load_trained(checkpoint)
    spec = SampleSpec("heun", 2)
    a = generate_samples(model, spec, 7, tmp_path / "a", shard_size=3, batch_size=2, progress=False)
    b = generate_samples(model, spec, 7, tmp_path / "b", shard_size=7, batch_size=7, progress=False)
    # float32 convolutions round differently at other batch sizes (~1e-7), which the ODE carries to
    # ~1e-4 here; a seed or label mix-up between shards would change pixels by O(1)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=1e-3)
    assert a.labels.tolist() == [0, 1, 2, 3, 4, 5, 6] and a.images.shape == (7, 1, 8, 8)


def test_guided_samples_are_the_cfg_combination(checkpoint, tmp_path):
    # one Euler step to sigma = 0 returns the denoiser's output at sigma_max, so with the same noise
    # the guided sample is uncond + w (cond - uncond) (Ho & Salimans 2022, eq. 6) exactly
    model = load_trained(checkpoint)
    kw = {"shard_size": 4, "batch_size": 4, "progress": False}
    cond = generate_samples(model, SampleSpec("euler", 1), 4, tmp_path / "c", **kw)
    uncond = generate_samples(model, SampleSpec("euler", 1, uncond=True), 4, tmp_path / "u", **kw)
    spec = SampleSpec("euler", 1, guidance=3.0)
    guided = generate_samples(model, spec, 4, tmp_path / "g", **kw)
    expected = uncond.images + 3.0 * (cond.images - uncond.images)
    torch.testing.assert_close(guided.images, expected, rtol=0, atol=1e-4)
    assert "guidance" not in SampleSpec().to_json()  # the record of unguided shards is unchanged
    assert spec.folder_name() != SampleSpec("euler", 1).folder_name()
    with pytest.raises(ValueError, match="guidance needs class-conditional samples"):
        generate_samples(model, SampleSpec("euler", 1, uncond=True, guidance=2.0), 1, tmp_path / "x", **kw)


def test_unknown_metrics_fail_before_any_work(checkpoint, tmp_path, capsys):
    assert main(["evaluate", str(checkpoint), "--metrics", "fid", "--out", str(tmp_path / "x")]) == 1
    assert "unknown metric" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_nll_and_vlb_are_wired_to_the_likelihood_functions(checkpoint, tmp_path, monkeypatch):
    """The likelihood estimators are tested in their own files; here: what evaluate passes and
    stores (the functions are replaced by recorders, so this test takes no ODE solve)."""
    import hwaksan.evaluation.pipeline as pipeline

    calls = []

    class Result:
        def __init__(self, n):
            self.bits_per_dim, self.std_error, self.n = 1.25, 0.01, n

    def recorder(model, images, *, generator=None, progress=True):
        calls.append((images.shape, len(generator), float(images.min()), float(images.max())))
        return Result(len(images))

    monkeypatch.setattr(pipeline, "_likelihood_function", lambda metric: recorder)
    out = tmp_path / "lik"
    args = ["evaluate", str(checkpoint), "--metrics", "nll,vlb", "--n", "2", "--steps", "1",
            "--likelihood-n", "5", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert calls == [((5, 1, 8, 8), 5, calls[0][2], calls[0][3])] * 2
    assert -1.0 <= calls[0][2] and calls[0][3] <= 1.0  # real val images in [-1, 1]
    report = json.loads((out / "report.json").read_text())
    for metric in ("nll", "vlb"):
        assert report["metrics"][metric] | {"seconds": 0} == {
            "bits_per_dim": 1.25, "std_error": 0.01, "n": 5, "split": "val", "condition": None, "seconds": 0
        }  # fmt: skip


def test_a_2d_checkpoint_gets_the_low_dimensional_metrics(tmp_path, capsys):
    """8 Gaussians have a density: sw, mmd and loglik, each with the two-true-sets floor."""
    run = tmp_path / "toy"
    train = ["train", "--data", "8gaussians", "--train-steps", "5", "--batch-size", "64", "--width", "16",
             "--depth", "1", "--out", str(run)]  # fmt: skip
    assert main(train) == 0
    out = tmp_path / "eval"
    args = ["evaluate", str(run), "--n", "200", "--seeds", "2", "--steps", "3", "--out", str(out),
            "--nfe-sweep", "euler", "--sweep-steps", "2,3", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model_kind"] == "2d" and report["checkpoint"]["dataset"] == "8gaussians"
    for key in ("sw", "mmd", "loglik"):
        entry = report["metrics"][key]
        assert entry["n_fake"] == entry["n_real"] == 200 and len(entry["metric"]["per_seed"]) == 2
        assert "floor" in entry
    assert report["metrics"]["sw"]["metric"]["value"] > report["metrics"]["sw"]["floor"]["value"]  # 5 steps
    assert [r["nfe"] for r in report["sweep"]] == [2, 3] and {"sw", "mmd"} <= set(report["sweep"][0])
    assert (out / "samples.png").exists() and (out / "nfe_sw.png").exists()
    assert main(["evaluate", str(run), "--metrics", "fd", "--out", str(tmp_path / "x")]) == 1
    assert "cannot be measured on a 2-D model" in capsys.readouterr().err
