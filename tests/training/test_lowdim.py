"""2-D training (``hwaksan train --data``, ``hwaksan demo``): seeded, checkpointed, exactly resumable,
safe with its output folder, and the same command line as the image trainer."""

from __future__ import annotations

import errno
import json
import os
import re

import pytest
import torch

import hwaksan.cli.demo as demo
import hwaksan.training.lowdim as lowdim
import hwaksan.training.simple as simple
from hwaksan.cli import main
from hwaksan.io.artifact import load_trained
from hwaksan.io.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_tensors
from hwaksan.io.outputs import OutputError
from hwaksan.io.runlock import RunLock
from hwaksan.training.lowdim import LowdimConfig, TrainingInterrupted, train_lowdim

SMALL = ["--data", "moons", "--width", "16", "--depth", "1", "--batch-size", "32", "--no-progress"]
CFG = LowdimConfig(data="moons", width=16, depth=1, batch_size=32, steps=12, checkpoint_every=4)


def _train(out, *extra: str, steps: int = 12) -> int:
    return main(["train", *SMALL, "--train-steps", str(steps), "--out", str(out), *extra])


def _bytes(out) -> bytes:
    return (out / "model.safetensors").read_bytes()


def _stop_at(k: int):
    """A callback that raises KeyboardInterrupt once ``k`` steps are done."""

    def callback(done: int, loss: float) -> None:
        if done == k:
            raise KeyboardInterrupt

    return callback


def test_two_identical_runs_give_identical_bytes_and_the_seed_matters(tmp_path):
    assert _train(tmp_path / "a") == 0 and _train(tmp_path / "b") == 0
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert _train(tmp_path / "c", "--seed", "1") == 0
    assert _bytes(tmp_path / "c") != _bytes(tmp_path / "a")
    # --set train.seed is the same option as --seed
    assert _train(tmp_path / "d", "--set", "train.seed=1") == 0
    assert _bytes(tmp_path / "d") == _bytes(tmp_path / "c")


def test_demo_checkpoint_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_SAMPLERS", {"ddim": ("uniform", (2,)), "heun": ("karras", (2,))})
    args = ["demo", *SMALL, "--train-steps", "8", "--n", "40"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert _bytes(tmp_path / "a" / "checkpoint") == _bytes(tmp_path / "b" / "checkpoint")
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())["results"]
    # a re-run into the same folder reuses the training (same options) and gives the same metrics
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["results"] == first


def test_fit_leaves_the_global_generator_alone():
    model = lowdim._build(CFG)
    before = torch.get_rng_state()
    simple.fit(model, lambda n, g: torch.randn(n, 2, generator=g), steps=3, batch_size=8, progress=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_interrupt_writes_a_checkpoint_and_resume_is_bit_identical(tmp_path):
    full = train_lowdim(tmp_path / "full", CFG, progress=False)
    with pytest.raises(TrainingInterrupted) as info:
        train_lowdim(tmp_path / "cut", CFG, progress=False, callback=_stop_at(6))
    assert info.value.checkpoint == tmp_path / "cut" / "checkpoints" / "step_0000006"
    assert [s for s, _ in list_checkpoints(tmp_path / "cut")] == [4, 6]  # periodic one and Ctrl-C's
    assert load_trained(tmp_path / "cut").step == 6  # the newest checkpoint is a loadable model
    resumed = train_lowdim(tmp_path / "cut", CFG, resume=True, progress=False)
    assert resumed.resumed_from == 6 and resumed.losses == full.losses
    assert _bytes(tmp_path / "cut") == _bytes(tmp_path / "full")
    a, _ = load_tensors(latest_checkpoint(tmp_path / "full"))
    b, _ = load_tensors(latest_checkpoint(tmp_path / "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k != "rng.torch")


def test_resume_from_a_periodic_checkpoint_is_bit_identical(tmp_path):
    """As after kill -9: only the periodic checkpoint of step 4 survives."""
    full = train_lowdim(tmp_path / "full", CFG, progress=False)
    with pytest.raises(TrainingInterrupted):
        train_lowdim(tmp_path / "cut", CFG, progress=False, callback=_stop_at(7))
    for suffix in (".json", ".safetensors"):
        (tmp_path / "cut" / "checkpoints" / f"step_0000007{suffix}").unlink()
    resumed = train_lowdim(tmp_path / "cut", CFG, resume=True, progress=False)
    assert resumed.resumed_from == 4
    assert _bytes(tmp_path / "cut") == _bytes(tmp_path / "full") and resumed.losses == full.losses


def test_cli_ctrl_c_exits_130_with_one_line_and_resume_matches(tmp_path, capsys, monkeypatch):
    assert _train(tmp_path / "full") == 0
    calls = []
    loss = simple.denoising_loss

    def interrupt_on_the_eighth_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return loss(*args, **kwargs)

    monkeypatch.setattr(simple, "denoising_loss", interrupt_on_the_eighth_step)
    capsys.readouterr()
    assert _train(tmp_path / "cut") == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--resume" in err and "step_0000007" in err  # seven complete steps were saved
    monkeypatch.setattr(simple, "denoising_loss", loss)
    assert _train(tmp_path / "cut", "--resume") == 0
    assert "resumed 'moons' at step 7" in capsys.readouterr().out
    assert _bytes(tmp_path / "cut") == _bytes(tmp_path / "full")


def test_an_existing_run_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    before = _bytes(out)
    capsys.readouterr()
    assert _train(out, "--seed", "3") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds" in err and "--overwrite" in err
    assert _bytes(out) == before
    assert _train(out, "--resume") == 0 and _bytes(out) == before  # nothing left to do
    assert _train(out, "--seed", "3", "--resume") == 1  # other settings than the checkpoint's
    assert "train.seed=0 (now 3)" in capsys.readouterr().err
    assert _train(out, "--seed", "3", "--overwrite") == 0 and _bytes(out) != before
    assert _train(tmp_path / "empty", "--resume") == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_output_folder_is_checked_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lowdim, "fit", lambda *a, **k: pytest.fail("trained before checking --out"))
    (tmp_path / "file").write_text("x")
    assert _train(tmp_path / "file") == 1
    assert "is a file" in capsys.readouterr().err
    (tmp_path / "dir" / "model.json").mkdir(parents=True)
    assert _train(tmp_path / "dir") == 1
    assert "is a folder" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "loss.png").write_text("not ours")
    assert _train(tmp_path / "foreign") == 1
    assert "not written by hwaksan" in capsys.readouterr().err
    with pytest.raises(OutputError):
        train_lowdim(tmp_path / "foreign", CFG, progress=False)


def test_a_second_writer_is_refused_naming_the_pid(tmp_path, capsys):
    with RunLock(tmp_path / "run"):
        assert _train(tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert f"PID {os.getpid()}" in err and len(err.strip().splitlines()) == 1


def test_set_applies_to_2d_options_or_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        _train(out, "--set", "train.steps=5", "--set", "optim.lr=1e-3", "--set", "train.checkpoint_every=2")
        == 0
    )
    tensors, meta = load_tensors(latest_checkpoint(out))
    assert meta["step"] == 5 and len(tensors["history.loss"]) == 5
    assert meta["config"]["optim"]["lr"] == 1e-3 and meta["config"]["train"]["steps"] == 5
    assert load_trained(out).info["train_steps"] == 5
    capsys.readouterr()
    assert _train(tmp_path / "x", "--set", "model.args.model_channels=8") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not apply to 2-D training" in err and "train.steps" in err
    assert _train(tmp_path / "x", "--set", "train.steps=many") == 1
    assert "takes an int" in capsys.readouterr().err
    assert _train(tmp_path / "x", "--set", "diffusion.process=nope") == 1
    assert "diffusion.process" in capsys.readouterr().err


def test_no_progress_hides_the_bar_and_the_final_loss_is_the_mean_it_averaged(tmp_path, capsys):
    assert _train(tmp_path / "a", steps=10) == 0
    captured = capsys.readouterr()
    assert "train" not in captured.err and "it/s" not in captured.err
    printed = float(re.search(r"final loss ([0-9.]+) \(mean of the last 10 steps\)", captured.out).group(1))
    losses = load_tensors(latest_checkpoint(tmp_path / "a"))[0]["history.loss"]
    assert printed == pytest.approx(float(losses.mean()), abs=1e-4) and printed > 0.3
    args = ["train", *[a for a in SMALL if a != "--no-progress"], "--train-steps", "3"]
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert "train" in capsys.readouterr().err  # the bar, when asked for


def test_a_failing_checkpoint_write_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    save = lowdim.save_training_state

    def disk_full_after_step_4(path, state, meta):
        if state.step > 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(path, state, meta)

    monkeypatch.setattr(lowdim, "save_training_state", disk_full_after_step_4)
    out = tmp_path / "run"
    assert _train(out, "--set", "train.checkpoint_every=4") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left" in err and "step_0000004" in err
    assert load_trained(out).step == 4
    monkeypatch.setattr(lowdim, "save_training_state", save)
    assert _train(out, "--set", "train.checkpoint_every=4", "--resume") == 0
    assert _train(tmp_path / "full") == 0 and _bytes(out) == _bytes(tmp_path / "full")


def test_config_refuses_bad_values_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="train.steps"):
        LowdimConfig(steps=0)
    with pytest.raises(ValueError, match="needs --process flow"):
        LowdimConfig(source="moons")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train_lowdim(tmp_path / "none", CFG, resume=True)
