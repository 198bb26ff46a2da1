"""stick-motion: shapes, range, determinism per (split, i), labels, modality params, bad arguments."""

from __future__ import annotations

import pytest
import torch

from hwaksan.data.catalog import load_data
from hwaksan.data.motion import ACTIONS, FEET, JOINTS, PARENTS, bone_pairs, load_stick_motion


def test_shape_range_labels_and_params() -> None:
    data = load_stick_motion("train", n=40, frames=24)
    assert data.images.shape == (40, 2 * len(JOINTS), 24) and data.images.dtype == torch.float32
    assert data.modality == "motion" and data.name == "stick-motion"
    assert float(data.images.abs().max()) <= 1.0  # the normalisation keeps every figure in [-1, 1]
    assert data.labels.tolist() == [i % len(ACTIONS) for i in range(40)]
    assert data.class_names == list(ACTIONS)
    params = data.modality_params
    assert params["parents"] == list(PARENTS) and params["feet"] == list(FEET) and params["fps"] > 0
    assert len(bone_pairs()) == len(JOINTS) - 1


def test_sample_i_depends_on_split_and_i_only() -> None:
    a = load_stick_motion("val", n=10)
    b = load_stick_motion("val", n=3)
    assert torch.equal(a.images[:3], b.images)
    assert not torch.equal(load_stick_motion("train", n=3).images, b.images)


def test_bones_keep_their_length_over_time() -> None:
    x = load_stick_motion("val", n=8).images
    p = x.reshape(8, len(JOINTS), 2, -1)
    for parent, child in bone_pairs():
        length = (p[:, child] - p[:, parent]).norm(dim=1)  # (N, T)
        # forward kinematics: a bone is a rigid segment, up to float32 rounding
        assert float((length - length[:, :1]).abs().max()) < 1e-5


def test_catalog_and_bad_arguments() -> None:
    data = load_data("stick-motion", "test", None, {"frames": 16, "n": 4, "velocity_weight": 1.0})
    assert data.images.shape == (4, 30, 16)
    with pytest.raises(ValueError, match="frames must be an integer from 8"):
        load_stick_motion("train", frames=4)
    with pytest.raises(ValueError, match="splits"):
        load_stick_motion("all")
    with pytest.raises(ValueError, match="data.args of 'stick-motion'"):
        load_data("stick-motion", "train", None, {"joints": 3})
