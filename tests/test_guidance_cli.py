"""``hwaksan train-classifier`` and the guidance options of ``hwaksan sample`` on tiny digits models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hwaksan.cli import main
from hwaksan.data.images import ImageDataset, load_dataset
from hwaksan.guidance import ClassifierFreeGuidance, ClassifierGuidance
from hwaksan.io.artifact import load_trained
from hwaksan.training.config import load_config
from hwaksan.training.trainer import Trainer

DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits.toml"
TINY = [
    "model.preset=unet",
    "model.args={model_channels=8, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[], "
    "mid_attention=false, num_head_channels=8, num_groups=2}",
    "train.batch_size=16",
    "train.threads=1",
    "train.steps=2",
    "train.sample_every=0",
    "train.max_seconds=0",
    "optim.warmup=1",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    full = load_dataset("digits", "train")
    data = ImageDataset(full.images[:64].clone(), full.labels[:64].clone(), None, full.class_names, "digits")
    out = tmp_path_factory.mktemp("run")
    Trainer(load_config(DIGITS, TINY), out, progress=False, pictures=False, data=data).run()
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clf") / "clf"
    rc = main(
        ["train-classifier", "--data", "digits", "--steps", "3", "--batch-size", "16", "--channels", "8"]
        + ["--sigma-data", "0.75", "--threads", "1", "--no-progress", "--out", str(out)]
    )
    assert rc == 0
    return out


def test_train_classifier_reports_accuracies_and_the_checkpoint(classifier, capsys, tmp_path):
    assert classifier.with_suffix(".safetensors").exists() and classifier.with_suffix(".json").exists()
    rc = main(
        ["train-classifier", "--data", "digits", "--steps", "2", "--batch-size", "8", "--channels", "8"]
        + ["--clean", "--threads", "1", "--no-progress", "--out", str(tmp_path / "c")]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out and "clean" in out and str(tmp_path / "c") in out
    with pytest.raises(SystemExit) as exit_info:  # a usage error: argparse refuses --steps 0
        main(["train-classifier", "--data", "digits", "--steps", "0"])
    assert exit_info.value.code == 2


def _sample(run_dir, tmp_path, *extra):
    png = tmp_path / "g.png"
    args = ["sample", str(run_dir), "--n", "4", "--steps", "2", "--out", str(png), "--device", "cpu"]
    return main([*args, *extra]), png


@pytest.mark.parametrize(
    "extra",
    [
        ["--class", "3", "--guidance", "3"],
        ["--label", "3", "--guidance", "2", "--negative-class", "1", "--guidance-rescale", "0.7"],
        ["--guidance", "4", "--guidance-interval", "0.5", "5"],
        ["--uncond", "--class", "7", "--classifier-scale", "2"],  # + --classifier below
        ["--class", "7", "--guidance", "2", "--classifier-scale", "1"],
    ],
    ids=["cfg", "negative-rescale", "interval", "classifier-uncond", "cfg+classifier"],
)
def test_sample_with_guidance_writes_a_grid(run_dir, classifier, tmp_path, capsys, extra):
    if "--classifier-scale" in extra:
        extra = [*extra, "--classifier", str(classifier)]
    rc, png = _sample(run_dir, tmp_path, *extra)
    assert rc == 0 and png.exists()
    assert "guidance:" in capsys.readouterr().err


def test_the_hook_builds_the_wrappers_the_options_name(run_dir, classifier):
    from argparse import Namespace

    from hwaksan.cli.guidance import guided_denoiser

    model = load_trained(run_dir)
    base = dict(
        guidance=1.0,
        negative_class=None,
        guidance_rescale=0.0,
        guidance_interval=None,
        classifier=None,
        classifier_scale=1.0,
        label=None,
        n=4,
    )
    cond = torch.arange(4) % 10
    d, c = guided_denoiser(model, cond, Namespace(**base))
    assert d is model.denoiser and c is cond  # no option: the model itself
    d, _ = guided_denoiser(model, cond, Namespace(**{**base, "guidance": 3.0, "guidance_rescale": 0.7}))
    assert (
        isinstance(d, ClassifierFreeGuidance) and d.scale == 3.0 and d.rescale == 0.7 and d.null_class == 10
    )
    d, c = guided_denoiser(model, None, Namespace(**{**base, "classifier": str(classifier), "label": 7}))
    assert isinstance(d, ClassifierGuidance) and not d.condition_model and torch.equal(c, torch.full((4,), 7))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--uncond", "--guidance", "3"], "drop --uncond"),
        (["--guidance-rescale", "0.7"], "add --guidance"),
        (["--guidance", "3", "--negative-class", "11"], "--negative-class"),
        (["--classifier", "/nonexistent/clf"], "--classifier"),
    ],
)
def test_bad_guidance_options_give_one_clear_error(run_dir, tmp_path, capsys, extra, message):
    rc, _ = _sample(run_dir, tmp_path, *extra)
    assert rc == 1
    assert message in capsys.readouterr().err
