"""MDM's geometric losses: closed forms, the objective they extend, and training through the loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hwaksan.data.motion import FEET, PARENTS, load_stick_motion
from hwaksan.losses import denoising_loss
from hwaksan.models.motion_transformer import MotionTransformer
from hwaksan.parameterizations import ModelDenoiser
from hwaksan.processes import make_process
from hwaksan.training.config import ConfigError, load_config
from hwaksan.training.motion import geometric_losses, make_motion_extension
from hwaksan.training.trainer import Trainer
from hwaksan.utils import generators_from_seeds

MOTION = Path(__file__).resolve().parents[2] / "configs" / "motion.toml"
TINY = [
    "model.args={hidden_size=16, depth=1, num_heads=2}",
    "train.batch_size=8",
    "train.steps=2",
    "train.threads=1",
    "train.log_every=1",
    "train.sample_every=0",
    "train.max_seconds=0",
    "optim.warmup=1",
    "sample.n=4",
    "sample.steps=2",
]
J = len(PARENTS)


def test_closed_forms() -> None:
    """A still figure ``x0`` (every foot in contact) and a prediction drifting at ``v`` per frame
    along x: ``L_vel = v^2 / 2`` (half the coordinates move), ``L_foot = v^2``, ``L_bone = 0``."""
    t, v = 8, 0.03
    pose = torch.randn(2, 2 * J, 1, dtype=torch.float64)
    x0 = pose.expand(2, 2 * J, t).clone()
    drift = torch.zeros(2, 2 * J, t, dtype=torch.float64)
    drift[:, 0::2] = v * torch.arange(t, dtype=torch.float64)
    out = geometric_losses(x0, x0 + drift, (2 * J, t), list(PARENTS), list(FEET))
    assert torch.allclose(out["vel"], torch.full((2,), v**2 / 2, dtype=torch.float64))
    assert torch.allclose(out["foot"], torch.full((2,), v**2, dtype=torch.float64))
    assert float(out["bone"].abs().max()) < 1e-24
    same = geometric_losses(x0, x0, (2 * J, t), list(PARENTS), list(FEET))
    assert all(float(v.abs().max()) == 0.0 for v in same.values())


def test_the_objective_is_l_simple_plus_the_weighted_terms() -> None:
    data = load_stick_motion("val", n=4, frames=16)
    weights = ["data.args={frames=16, velocity_weight=2.0, bone_weight=0.5, foot_weight=1.0}"]
    ext = make_motion_extension(load_config(MOTION, [*TINY, *weights]), data)
    net = MotionTransformer(30, hidden_size=16, depth=1, num_heads=2, num_classes=8)
    with torch.no_grad():
        net.pose_out.weight.normal_(0, 0.1)  # a non-zero prediction
    model = ModelDenoiser(net, make_process("ddpm-cosine"), prediction="x0", sigma_data=0.26)
    x0, y = data.images, data.labels
    total = ext.loss(model, x0, y, generators_from_seeds(range(4)), ctx=None)
    terms = ext.metrics()
    simple = denoising_loss(model, x0, cond=y, t_dist="discrete", generator=generators_from_seeds(range(4)))
    expected = simple.detach() + 2.0 * terms["loss_vel"] + 0.5 * terms["loss_bone"] + 1.0 * terms["loss_foot"]
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_trains_through_the_loop_and_logs_its_terms(tmp_path) -> None:
    on = "data.args={frames=16, n=32, velocity_weight=1.0, bone_weight=1.0, foot_weight=1.0}"
    Trainer(load_config(MOTION, [*TINY, on]), tmp_path / "on", progress=False, pictures=False).run()
    record = json.loads((tmp_path / "on" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2 and {"loss_vel", "loss_bone", "loss_foot"} <= set(record)
    off = "data.args={frames=16, n=32}"
    Trainer(load_config(MOTION, [*TINY, off]), tmp_path / "off", progress=False, pictures=False).run()
    record = json.loads((tmp_path / "off" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "loss_vel" not in record  # all weights 0: the loop's own loss


def test_a_negative_weight_is_refused() -> None:
    config = load_config(MOTION, [*TINY, "data.args={frames=16, n=8, bone_weight=-1.0}"])
    with pytest.raises(ConfigError, match="bone_weight must be a number >= 0"):
        make_motion_extension(config, load_stick_motion("val", n=8, frames=16))
