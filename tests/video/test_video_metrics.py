"""The clip measures on real clips give their floor (exact where the construction makes it so)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hwaksan.data.catalog import load_data
from hwaksan.data.video import moving_digits, trajectories
from hwaksan.evaluation.video import digit_crops, prediction_metrics, read_clips, video_metrics

ARGS = {"frames": 8, "size": 32, "source": "digits"}


def pixel_readout(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stand-in for the MNIST classifier: 7x7 pooled pixels as features, 10 of them as logits."""
    feats = F.avg_pool2d(crops, 4).flatten(1)
    return feats[:, 17:27], feats


def test_a_moving_digit_keeps_its_crop_identity_and_real_motion():
    """Real clips translate a digit by whole pixels without clipping it: its crop is the same in
    every frame (agreement 1, feature steps 0 up to the float32 centre of mass), and the measured
    displacement is the mean |p_{f+1} - p_f| of the positions the data set pasted."""
    real = moving_digits("train", n=24, **ARGS)
    r = read_clips(real.images, pixel_readout)
    assert float(r.agreement.min()) == 1.0
    assert float(r.step_feature_distance.max()) < 1e-3
    crops = digit_crops(real.images)
    assert float((crops - crops[:, :1]).abs().max()) < 1e-3
    pool = len(load_data("digits", "train"))
    positions = trajectories("train", 24, 8, 32, 1, pool).positions[:, 0].astype(np.float64)
    expected = np.linalg.norm(np.diff(positions, axis=1), axis=-1).mean(1)
    np.testing.assert_allclose(r.displacement.numpy(), expected, atol=1e-3)


def test_real_against_itself_is_the_floor():
    real = moving_digits("val", n=40, **ARGS)
    m = video_metrics(real.images, real.images, real.labels, pixel_readout)
    assert m["fd_frames"] < 1e-6
    assert m["displacement_ratio"] == 1.0
    assert m["frame_agreement"] == m["frame_agreement_real"] == 1.0
    assert m["acceleration"] == m["acceleration_real"]


def test_frozen_clips_do_not_move_and_shuffled_frames_do_not_agree():
    real = moving_digits("val", n=20, **ARGS).images
    frozen = real[:, :, :1].expand_as(real).contiguous()
    m = video_metrics(frozen, real, readout=pixel_readout)
    assert m["displacement"] == 0.0 and m["displacement_ratio"] == 0.0
    # each frame from another clip: the identity changes along the clip
    mixed = torch.stack([real[(i + torch.arange(8)) % 20, :, torch.arange(8)] for i in range(20)])
    mixed = mixed.permute(0, 2, 1, 3, 4)
    assert video_metrics(mixed, real, readout=pixel_readout)["frame_agreement"] < 1.0


def test_prediction_of_the_real_continuation_scores_zero():
    real = moving_digits("test", n=6, **ARGS).images
    m = prediction_metrics(real, real, keep=[0, 1, 2, 3])
    assert m["kept_max_error"] == 0.0 and m["mse_future"] == 0.0 and m["track_error"] == 0.0
    assert m["mse_copy_last"] > 0 and m["track_error_copy_last"] > 0
    wrong = real.clone()
    wrong[:, :, 0] = -1.0
    assert prediction_metrics(wrong, real, keep=[0, 1, 2, 3])["kept_max_error"] > 0
