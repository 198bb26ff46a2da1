"""The moving-mnist clips: shape, determinism per (split, index), bouncing motion, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwaksan.data.catalog import load_data
from hwaksan.data.video import moving_digits, trajectories
from hwaksan.evaluation.video import digit_tracks

SMALL = {"frames": 6, "size": 16, "source": "digits"}


def test_clips_have_the_video_layout_and_labels():
    d = moving_digits("train", n=5, **SMALL)
    assert tuple(d.images.shape) == (5, 1, 6, 16, 16)
    assert d.modality == "video" and d.modality_params == {"fps": 4}
    assert d.images.dtype == torch.float32
    assert float(d.images.min()) == -1.0 and float(d.images.max()) <= 1.0
    assert d.labels.shape == (5,) and d.num_classes == 10
    assert d.ids == [f"moving-mnist/train/{i}" for i in range(5)]


def test_clip_i_depends_on_split_and_index_only():
    a = moving_digits("train", n=3, **SMALL)
    b = moving_digits("train", n=7, **SMALL)
    assert torch.equal(a.images, b.images[:3]) and torch.equal(a.labels, b.labels[:3])
    again = moving_digits("train", n=3, **SMALL)
    assert torch.equal(a.images, again.images)
    val = moving_digits("val", n=3, **SMALL)
    assert not torch.equal(a.images, val.images)


def test_digits_move_and_bounce_inside_the_frame():
    tr = trajectories("train", 200, 16, 32, 1, pool=10)
    assert tr.digit == 16
    assert int(tr.positions.min()) >= 0 and int(tr.positions.max()) <= 32 - 16
    step = np.abs(np.diff(tr.positions, axis=2)).max()
    # speed <= 3 px/frame per axis after rounding: |round(a) - round(b)| <= |a - b| + 1
    assert 1 <= step <= 4


def test_the_digit_track_is_the_pasted_position():
    """A digit pasted whole at integer position p has its centre of mass at p + (its own centre of
    mass): frame-to-frame differences of the track are the position differences exactly."""
    d = moving_digits("train", n=6, frames=8, size=32, source="digits")
    tr = trajectories("train", 6, 8, 32, 1, pool=len(load_data("digits", "train")))
    track = digit_tracks(d.images)
    expected = torch.from_numpy(np.diff(tr.positions[:, 0], axis=1)).float()
    torch.testing.assert_close(track.diff(dim=1), expected, atol=1e-3, rtol=0)


def test_two_digits_give_two_digit_labels():
    d = moving_digits("train", n=4, digits=2, **SMALL)
    assert d.num_classes == 100 and d.class_names[7] == "07"
    assert int(d.labels.max()) < 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"frames": 4}, "frames must be 8 to 16"),
        ({"size": 48}, "size must be one of"),
        ({"digits": 3}, "digits must be 1 or 2"),
        ({"n": 0}, "n (clips)"),
        ({"source": "cifar"}, "source must be one of"),
    ],
)
def test_bad_arguments_are_one_line(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        moving_digits("train", **args)
    assert "\n" not in str(err.value)


def test_the_catalog_loads_it_with_data_args():
    d = load_data("moving-mnist", "val", None, {"n": 2, **SMALL})
    assert tuple(d.images.shape) == (2, 1, 6, 16, 16)
    with pytest.raises(ValueError, match="data.args of 'moving-mnist'"):
        load_data("moving-mnist", "val", None, {"colour": True})
    with pytest.raises(ValueError, match="not an image set"):
        load_data("moving-mnist", "val", 28, {"n": 2, **SMALL})
