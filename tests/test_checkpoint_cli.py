"""Checkpoints (safetensors + JSON, atomic) and the command line."""

from __future__ import annotations

import json

import pytest
import torch

from hwaksan.cli import main
from hwaksan.io.checkpoint import CheckpointError, load_model, save_model
from hwaksan.models.mlp import MLP
from hwaksan.parameterizations import ModelDenoiser
from hwaksan.processes import DiscreteVP


def test_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ModelDenoiser(MLP(dim=2, width=16, depth=1), DiscreteVP.cosine(T=100), "v")
    torch.nn.init.normal_(model.net.out.weight)
    path = save_model(tmp_path / "m", model)
    assert path.name == "m.safetensors" and (tmp_path / "m.json").exists()
    loaded, meta = load_model(tmp_path / "m")
    x, t = torch.randn(4, 2), torch.full((4,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(loaded(x, t), model(x, t))
    assert meta["denoiser"]["prediction"] == "v"
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


def test_bad_checkpoint_messages(tmp_path):
    with pytest.raises(CheckpointError, match="PATH.json"):
        load_model(tmp_path / "missing")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(tmp_path / "x")


def test_cli_train_sample_and_help(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--data",
            "moons",
            "--train-steps",
            "30",
            "--batch-size",
            "64",
            "--width",
            "32",
            "--depth",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert (out / "model.safetensors").exists() and (out / "loss.png").exists()
    png = tmp_path / "s.png"
    rc = main(
        [
            "sample",
            str(out / "model"),
            "--sampler",
            "dpmpp_2m",
            "--steps",
            "5",
            "--n",
            "50",
            "--out",
            str(png),
        ]
    )
    assert rc == 0 and png.exists() and png.with_suffix(".csv").exists()
    text = capsys.readouterr().out
    assert str(png) in text and "5 NFE" in text
    rc = main(["sample", str(tmp_path / "nope"), "--out", str(png)])
    assert rc == 1  # a user error, explained in one line
    assert "nope.json" in capsys.readouterr().err


def test_cli_samplers_lists_registry(capsys):
    assert main(["samplers"]) == 0
    assert "dpmpp_2m" in capsys.readouterr().out


def test_every_option_has_help():
    from hwaksan.cli import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices.values():
        for opt in action._actions:
            if opt.dest != "help":
                assert opt.help, f"{action.prog} {opt.dest} lacks --help text"


def test_demo_small(tmp_path):
    rc = main(
        ["demo", "--out", str(tmp_path), "--train-steps", "40", "--n", "200", "--width", "32", "--depth", "1"]
    )
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    names = {r["sampler"] for r in metrics["results"]}
    assert {"ddpm", "ddim", "euler_maruyama", "heun", "dpmpp_2m"} <= names
    assert all({"nfe", "sliced_wasserstein", "mmd"} <= set(r) for r in metrics["results"])
    for f in ("samples.png", "trajectories.png", "sw_vs_nfe.png"):
        assert (tmp_path / f).exists()


def test_plan_steps_cli_writes_a_grid_that_sample_accepts(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    rc = main(
        ["plan-steps", "--oracle", "2d", "--sampler", "dpmpp_2m", "--steps", "4", "--n", "16"]
        + ["--max-evals", "12", "--out", str(plan)]
    )
    assert rc == 0
    text = capsys.readouterr().out
    record = json.loads(plan.read_text())
    assert len(record["ts"]) == 5 and record["ts"][-1] == 0.0 and record["nfe"] == 4
    assert record["error"] <= record["initial_error"]  # the search starts from the better standard grid
    assert "estimated error" in text and str(plan) in text
    # the planned grid drives `hwaksan sample` on a 2-D checkpoint
    out = tmp_path / "toy"
    args = ["train", "--data", "moons", "--train-steps", "5", "--batch-size", "16", "--width", "16"]
    assert main([*args, "--depth", "1", "--out", str(out)]) == 0
    png = tmp_path / "planned.png"
    assert (
        main(
            ["sample", str(out), "--sampler", "dpmpp_2m", "--grid", str(plan), "--n", "8", "--out", str(png)]
        )
        == 0
    )
    assert png.exists() and "4 NFE" in capsys.readouterr().out
    assert main(["plan-steps", "--sampler", "dpmpp_2m"]) == 1  # neither a checkpoint nor --oracle


def test_models_lists_every_preset_with_its_parameter_count(capsys):
    from hwaksan.models.presets import PRESETS, build_model

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(PRESETS)
    for name, row in rows.items():
        assert row["params"] == sum(p.numel() for p in build_model(name).parameters())
        assert row["flops"] > 0
