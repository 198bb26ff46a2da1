"""Image training runs that cannot be corrupted or blocked: one writer per run folder, no silent
overwrite of a user's files, resume past a torn metrics line or a corrupt newest checkpoint, a full
disk and an oversized batch stopped with one line, absurd config values refused."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest
import torch

import hwaksan.io.checkpoint as checkpoint_io
import hwaksan.training.memory as memory
from hwaksan.data.images import ImageDataset, load_dataset
from hwaksan.io.checkpoint import CheckpointError, list_checkpoints
from hwaksan.io.outputs import OutputError
from hwaksan.io.runlock import RunLock, RunLockedError
from hwaksan.io.training_state import load_training_state
from hwaksan.training.config import Config, ConfigError, load_config
from hwaksan.training.trainer import MemoryBudgetError, Trainer

# A two-level U-Net of 4 channels on 24 of the 8x8 digits: a few ms a step on one core.
TINY = [
    "model.preset=unet",
    "model.args={model_channels=4, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[], "
    "mid_attention=false, num_head_channels=4, num_groups=2}",
    "train.batch_size=8",
    "train.threads=1",
    "train.log_every=1",
    "train.sample_every=0",
    "train.checkpoint_every=1",
    "train.keep_last=10",
    "optim.warmup=1",
    "ema.decays=[0.9]",
]


def config(*extra: str) -> Config:
    return load_config(None, [*TINY, *extra])


@pytest.fixture(scope="module")
def data() -> ImageDataset:
    full = load_dataset("digits", "train")
    return ImageDataset(full.images[:24].clone(), full.labels[:24].clone(), None, full.class_names, "digits")


def trainer(out: Path, data: ImageDataset, *extra: str, **kwargs) -> Trainer:
    return Trainer(config(*extra), out, progress=False, pictures=False, data=data, **kwargs)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ----------------------------------------------------------------------------------------------
# one writer per run folder


def test_a_second_training_into_the_same_folder_is_refused_before_it_writes(tmp_path, data):
    first = trainer(tmp_path, data, "train.steps=2")
    second = trainer(tmp_path, data, "train.steps=2")
    refused = []
    step = first.train_step

    def step_and_start_another(k: int):
        if not refused:
            before = files(tmp_path)
            with pytest.raises(RunLockedError) as err:
                second.run()
            refused.append(one_line(err))
            assert files(tmp_path) == before  # the refused run wrote nothing
        return step(k)

    first.train_step = step_and_start_another
    assert first.run().step == 2
    assert refused and f"PID {os.getpid()}" in refused[0]
    with RunLock(tmp_path):  # released when the first run is done
        pass


# ----------------------------------------------------------------------------------------------
# no silent overwrite


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl"])
def test_a_fresh_run_refuses_to_replace_a_file_hwaksan_did_not_write(tmp_path, data, name):
    mine = tmp_path / name
    mine.write_text('{"mine": true}\n')
    with pytest.raises(OutputError) as err:
        trainer(tmp_path, data, "train.steps=1").run()
    assert name in one_line(err) and "--overwrite" in str(err.value)
    assert mine.read_text() == '{"mine": true}\n'
    assert not (tmp_path / "checkpoints").exists()
    trainer(tmp_path, data, "train.steps=1", overwrite=True).run()
    assert mine.read_text() != '{"mine": true}\n'


def test_files_hwaksan_wrote_may_be_replaced_and_a_resume_keeps_its_own_run(tmp_path, data):
    trainer(tmp_path, data, "train.steps=2").run(stop_after=1)
    for f in (tmp_path / "checkpoints").iterdir():
        f.unlink()
    trainer(tmp_path, data, "train.steps=2").run(stop_after=1)  # a re-run of a run with no checkpoint
    (tmp_path / ".hwaksan-outputs.json").unlink()  # e.g. a run folder of an earlier version
    result = trainer(tmp_path, data, "train.steps=2").run(resume=True)
    assert result.step == 2


# ----------------------------------------------------------------------------------------------
# resume past what a kill leaves


def test_resume_drops_a_torn_last_metrics_line_and_rewrites_the_file(tmp_path, data, capsys):
    trainer(tmp_path, data, "train.steps=4").run(stop_after=2)
    metrics = tmp_path / "metrics.jsonl"
    with metrics.open("a") as fh:
        fh.write('{"step": 3, "loss": 0.')  # killed in the middle of a write
    capsys.readouterr()
    assert trainer(tmp_path, data, "train.steps=4").run(resume=True).step == 4
    assert "dropped 1 unreadable line" in capsys.readouterr().err
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, data, capsys):
    steps = "train.steps=4"
    trainer(tmp_path, data, steps).run(stop_after=3)
    folder = tmp_path / "checkpoints"
    (folder / "step_0000003.safetensors").write_bytes(b"\x10\x00\x00\x00garbage")
    (folder / "step_0000002.safetensors").write_bytes(b"")
    (folder / ".step_0000004.safetensors.x1y2.tmp").write_bytes(b"")  # what a kill leaves
    (tmp_path / ".metrics.jsonl.a1b2.tmp").write_bytes(b"half")
    capsys.readouterr()
    resumed = trainer(tmp_path, data, steps)
    result = resumed.run(resume=True, stop_after=1)
    err = capsys.readouterr().err
    assert "skipping the checkpoint step_0000003" in err and "skipping the checkpoint step_0000002" in err
    assert "resuming from" in err and "step_0000001" in err
    assert result.step == 2
    assert not list(tmp_path.rglob("*.tmp"))
    assert (folder / "step_0000003.safetensors.corrupt").exists()  # kept, but out of the way
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 2]
    load_training_state(folder / "step_0000002")  # written again by the resumed run

    # The resumed run replays the steps of an uninterrupted one exactly.
    full = trainer(tmp_path / "full", data, steps)
    full.run(stop_after=2)
    assert full.losses == resumed.losses


def test_resume_with_no_checkpoint_that_loads_is_one_line(tmp_path, data):
    trainer(tmp_path, data, "train.steps=2").run(stop_after=1)
    (tmp_path / "checkpoints" / "step_0000001.json").write_text('{"kind": "hwaksan-train", "optimizer": 5}')
    with pytest.raises(CheckpointError) as err:
        trainer(tmp_path, data, "train.steps=2").run(resume=True)
    assert "step_0000001" in one_line(err) and "no checkpoint" in str(err.value)


# ----------------------------------------------------------------------------------------------
# a full disk


def test_a_full_disk_keeps_the_last_checkpoint_and_names_it(tmp_path, data, monkeypatch):
    trainer(tmp_path, data, "train.steps=4").run(stop_after=1)
    real = checkpoint_io._atomic_write

    def full_disk(target: Path, write) -> None:
        def write_half(tmp: str) -> None:
            Path(tmp).write_bytes(b"x" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        real(target, write_half if target.suffix == ".json" else write)

    monkeypatch.setattr(checkpoint_io, "_atomic_write", full_disk)
    with pytest.raises(CheckpointError) as err:
        trainer(tmp_path, data, "train.steps=4").run(resume=True)
    message = one_line(err)
    assert "no space left" in message and "step_0000001" in message and "--resume" in message
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step_0000001.json",
        "step_0000001.safetensors",
    ]
    assert load_training_state(tmp_path / "checkpoints" / "step_0000001").step == 1


# ----------------------------------------------------------------------------------------------
# memory


def test_a_batch_that_cannot_fit_is_refused_before_training(tmp_path, data, monkeypatch):
    t = trainer(tmp_path, data, "train.steps=1", "train.batch_size=4096")
    start = time.perf_counter()
    t.check_memory()  # fits here
    assert time.perf_counter() - start < 1.0
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**20)
    with pytest.raises(MemoryBudgetError) as err:
        t.run()
    message = one_line(err)
    assert "train.batch_size = 4096" in message and "--set train.batch_size=" in message
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "checkpoints").exists()


def test_the_estimate_grows_with_the_batch_and_names_a_batch_that_fits():
    m = memory.StepMemory(per_sample=2**20, fixed=2**20, state=2**20)
    assert m.need(200) > m.need(100) > 100 * 2**20
    with pytest.raises(MemoryBudgetError, match=r"--set train\.batch_size=64\b"):
        memory.check_step_memory(m, 100_000, torch.device("cpu"), available=150 * 2**20)
    memory.check_step_memory(m, 64, torch.device("cpu"), available=150 * 2**20)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
)
def test_running_out_of_memory_in_a_step_is_one_line(tmp_path, data, error):
    t = trainer(tmp_path, data, "train.steps=3")
    t.run(stop_after=1)
    t = trainer(tmp_path, data, "train.steps=3")

    def step(k: int):
        raise error

    t.train_step = step
    with pytest.raises(MemoryBudgetError) as err:
        t.run(resume=True)
    message = one_line(err)
    assert "out of memory" in message and "train.batch_size=4" in message and "step_0000001" in message


# ----------------------------------------------------------------------------------------------
# config values


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("train.steps=1e20", ">= 1 and <= 1000000000"),
        ("train.batch_size=100000000", ">= 1 and <= 1048576"),
        ("train.checkpoint_every=1e12", "<= 1000000000"),
        ("sample.n=1e9", "<= 10000"),
        ("data.image_size=100000", "1 to 4096"),
    ],
)
def test_absurd_integers_are_refused_with_the_allowed_range(override, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert override.split("=")[0] in one_line(err) and allowed in str(err.value)


def test_a_fraction_for_an_integer_is_refused_and_a_whole_float_is_read_as_an_integer():
    with pytest.raises(ConfigError, match=r"train\.steps = 1\.5: expected an integer"):
        load_config(None, ["train.steps=1.5"])
    assert load_config(None, ["train.steps=3e3"]).train.steps == 3000


def test_a_run_killed_before_its_first_record_can_be_started_again(tmp_path, data):
    """A run killed after writing config.json but before the first metrics record leaves a log
    hwaksan never recorded; a fresh run into that folder replaces it (it is that config's log),
    while a metrics.jsonl beside no hwaksan config stays protected."""
    trainer(tmp_path, data, "train.steps=1").run()
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "lo')  # the killed run's torn log
    for p in (tmp_path / "checkpoints").iterdir():
        p.unlink()
    assert trainer(tmp_path, data, "train.steps=1").run().step == 1
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 1

    user = tmp_path / "user"
    user.mkdir()
    (user / "metrics.jsonl").write_text("mine\n")
    with pytest.raises(OutputError):
        trainer(user, data, "train.steps=1").run()
    assert (user / "metrics.jsonl").read_text() == "mine\n"
