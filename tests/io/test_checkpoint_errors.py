"""Unreadable or corrupt checkpoints and malformed metadata are one CheckpointError line naming the
file, never a SafetensorError, KeyError or TypeError trace; the temporaries a killed writer left
are removed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import SafetensorError

import hwaksan.io.checkpoint as checkpoint_io
from hwaksan.io.artifact import load_trained, model_metadata
from hwaksan.io.checkpoint import (
    CheckpointError,
    load_tensors,
    read_metadata,
    remove_partial_writes,
    save_tensors,
)
from hwaksan.io.training_state import TrainingState, load_training_state, save_training_state
from hwaksan.models.mlp import MLP
from hwaksan.parameterizations import ModelDenoiser
from hwaksan.processes import make_process


def _model() -> tuple[MLP, dict[str, Any]]:
    torch.manual_seed(0)
    net = MLP(dim=4, width=8, depth=1)
    return net, model_metadata(ModelDenoiser(net, make_process("vp"), "eps"), dataset="toy", data_shape=(4,))


@pytest.fixture
def training_checkpoint(tmp_path) -> Path:
    """A valid training checkpoint of a tiny MLP with one AdamW step of state."""
    net, meta = _model()
    opt = torch.optim.AdamW(net.parameters())
    net(torch.randn(2, 4), torch.zeros(2), None).sum().backward()
    opt.step()
    state = TrainingState(
        step=1, config={"train": {}}, model=net.state_dict(), emas=[], optimizer=opt.state_dict(),
        scheduler={"last_epoch": 1}, losses=[0.5], rng=torch.get_rng_state(),
    )  # fmt: skip
    path = tmp_path / "step_0000001"
    save_training_state(path, state, meta)
    load_training_state(path)  # valid as written
    return path


def _expect_one_line(call: Callable[[], Any], *names: str) -> str:
    with pytest.raises(CheckpointError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message, message
    for name in names:
        assert name in message, (name, message)
    return message


@pytest.mark.parametrize(
    "corrupt",
    [
        b"",  # a zero-byte file
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",  # a broken header
        b"\xff" * 8 + b"x",  # a header length beyond the file
    ],
    ids=["empty", "bad-header", "too-long"],
)
def test_a_corrupt_safetensors_file_is_one_line_naming_it(training_checkpoint, corrupt):
    st = training_checkpoint.with_name(training_checkpoint.name + ".safetensors")
    st.write_bytes(corrupt)
    _expect_one_line(lambda: load_tensors(training_checkpoint), str(st), "corrupt")
    _expect_one_line(lambda: load_training_state(training_checkpoint), str(st))
    _expect_one_line(lambda: load_trained(training_checkpoint), str(st))


def test_a_truncated_safetensors_file_is_one_line_naming_it(training_checkpoint):
    st = training_checkpoint.with_name(training_checkpoint.name + ".safetensors")
    st.write_bytes(st.read_bytes()[:-40])
    _expect_one_line(lambda: load_tensors(training_checkpoint), str(st))


@pytest.mark.parametrize("text", ["[1, 2]", '"a string"', "null", "{bad json"])
def test_metadata_that_is_not_a_json_object_is_one_line(training_checkpoint, text):
    js = training_checkpoint.with_name(training_checkpoint.name + ".json")
    js.write_text(text)
    _expect_one_line(lambda: read_metadata(training_checkpoint), str(js))
    _expect_one_line(lambda: load_training_state(training_checkpoint), str(js))
    _expect_one_line(lambda: load_trained(training_checkpoint), str(js))


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    js = path.with_name(path.name + ".json")
    meta = json.loads(js.read_text())
    change(meta)
    js.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(optimizer=5),
        lambda m: m.update(step="soon"),
        lambda m: m["optimizer"].update(param_ids=["x"]),
        lambda m: m["optimizer"].update(scalars=[1]),
        lambda m: m["optimizer"].update(param_groups={"lr": 1}),
        lambda m: m.update(scheduler=[1]),
        lambda m: m.pop("scheduler"),
        lambda m: m.update(ema_decays=7),
    ],
    ids=["optimizer", "step", "param_ids", "scalars", "param_groups", "scheduler", "no-scheduler", "ema"],
)
def test_malformed_but_valid_json_training_state_is_one_line(training_checkpoint, change):
    _edit(training_checkpoint, change)
    _expect_one_line(lambda: load_training_state(training_checkpoint), str(training_checkpoint))


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(network=[1]),
        lambda m: m["network"].update(config={"dim": "four"}),
        lambda m: m["network"]["config"].update(width=16),  # weights no longer fit
        lambda m: m.update(ema_decays="abc"),
        lambda m: m["denoiser"].pop("prediction"),
        lambda m: m["denoiser"].update(prediction="noise"),
        lambda m: m.update(data_shape=["x"]),
        lambda m: m.update(num_classes="many"),
    ],
    ids=["network", "config", "weights", "ema", "no-prediction", "prediction", "data-shape", "classes"],
)
def test_malformed_model_metadata_is_one_line_for_load_trained(training_checkpoint, change):
    _edit(training_checkpoint, change)
    _expect_one_line(lambda: load_trained(training_checkpoint), str(training_checkpoint))


def test_remove_partial_writes_deletes_only_the_writers_temporaries(tmp_path):
    net, meta = _model()
    save_tensors(tmp_path / "m", dict(net.state_dict()), meta)
    leftovers = [tmp_path / ".m.safetensors.abc123.tmp", tmp_path / ".step_0000002.json.x.tmp"]
    for f in leftovers:
        f.write_bytes(b"")
    (tmp_path / "notes.tmp").write_text("mine")
    assert sorted(remove_partial_writes(tmp_path)) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors", "notes.tmp"]
    assert remove_partial_writes(tmp_path / "missing") == []


@pytest.mark.parametrize("code", [28, 27])  # ENOSPC (a full disk), EFBIG (over the file-size limit)
def test_a_failed_tensor_write_is_the_os_error_and_leaves_nothing(tmp_path, monkeypatch, code):
    """safetensors reports a failed write as a SafetensorError carrying the OS code; the writer
    raises the OSError of that code (what the trainer turns into one line) and leaves no temporary
    and no half checkpoint."""

    def failing_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"x" * 64)
        raise SafetensorError(f"Error while serializing: IoError(Os {{ code: {code}, kind: Other }})")

    monkeypatch.setattr(checkpoint_io, "save_file", failing_save)
    with pytest.raises(OSError) as err:
        save_tensors(tmp_path / "ck", {"w": torch.zeros(2)}, {"kind": "x"})
    assert err.value.errno == code
    assert list(tmp_path.iterdir()) == []


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path):
    for step in (1, 2, 3, 4):
        save_tensors(tmp_path / "checkpoints" / f"step_{step:07d}", {"w": torch.zeros(1)}, {"step": step})
    checkpoint_io.prune_checkpoints(tmp_path, 2)
    assert [s for s, _ in checkpoint_io.list_checkpoints(tmp_path)] == [3, 4]
    assert len(list((tmp_path / "checkpoints").iterdir())) == 4  # two pairs, nothing else
    with pytest.raises(ValueError):
        checkpoint_io.prune_checkpoints(tmp_path, 0)
