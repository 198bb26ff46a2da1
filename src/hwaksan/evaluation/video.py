"""Measures of generated Moving-MNIST clips: identity, motion, per-frame quality, prediction.

A clip is ``(C, F, H, W)`` in [-1, 1] holding one bright digit on black (:mod:`hwaksan.data.video`).
Every measure reads the digit through two things a frame gives without any model:

- its **track**: the intensity-weighted centre of mass ``c_f = sum_p w_p p / sum_p w_p`` of frame
  ``f`` (``w = (x + 1) / 2``), ``(F, 2)`` per clip, in pixels ``(row, col)``;
- its **crop**: the ``digit x digit`` window centred on ``c_f``, resized to MNIST's 20x20 box and
  padded to 28x28 (MNIST centres its digits by centre of mass in a 20x20 box: LeCun et al. 1998), so
  the project's MNIST classifier (:func:`hwaksan.evaluation.classifier.dataset_classifier`) reads it.

From these, :func:`video_metrics` gives (``fake`` vs ``real`` clips):

- ``frame_agreement``: the mean share of a clip's frames whose predicted class is the clip's
  most frequent one (identity kept across frames; real clips give the classifier's own rate);
- ``first_frame_accuracy``, ``frame_accuracy``: predicted class of frame 0 / of every frame vs the
  clip's label (class-conditional samples);
- ``displacement``: the mean ``|c_{f+1} - c_f|`` in pixels per frame, and its ratio to the real
  clips' (the digits move as much as real ones);
- ``acceleration``: the mean ``|c_{f+1} - 2 c_f + c_{f-1}|`` (0 for uniform motion; real clips have
  it only at bounces and from rounding): the smoothness of the trajectory;
- ``step_feature_distance``: the mean distance between the classifier features of consecutive
  frames' crops (how much the digit's appearance changes per frame), fake and real;
- ``fd_frames``: the Frechet distance between the classifier features of the frames' crops, fake
  vs real (per-frame quality in the FD-mnist space of :mod:`hwaksan.evaluation.features`).

:func:`prediction_metrics` scores a completion of the future frames against the real continuation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .classifier import dataset_classifier
from .frechet import frechet_distance

__all__ = [
    "ClipReadout",
    "digit_crops",
    "digit_tracks",
    "mnist_readout",
    "prediction_metrics",
    "read_clips",
    "video_metrics",
]

_BOX, _SIDE = 20, 28  # MNIST: a 20x20 box centred in 28x28

#: ``readout(crops (M, 1, 28, 28)) -> (logits (M, K), features (M, D))``.
Readout = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _check_clips(clips: torch.Tensor, name: str = "clips") -> torch.Tensor:
    if clips.ndim != 5 or clips.shape[1] != 1:
        raise ValueError(f"{name} must be one-channel clips (N, 1, F, H, W), got shape {tuple(clips.shape)}")
    return clips.detach().float().cpu()


def digit_tracks(clips: torch.Tensor) -> torch.Tensor:
    """The centre of mass ``(N, F, 2)`` (row, col, in pixels) of every frame of ``clips (N, 1, F, H,
    W)`` with weights ``(x + 1) / 2``; a black frame gives the frame's centre."""
    x = (_check_clips(clips)[:, 0].clamp(-1, 1) + 1) / 2  # (N, F, H, W)
    h, w = x.shape[-2:]
    mass = x.sum((-2, -1))
    rows = (x.sum(-1) * torch.arange(h, dtype=x.dtype)).sum(-1)
    cols = (x.sum(-2) * torch.arange(w, dtype=x.dtype)).sum(-1)
    centre = torch.tensor([(h - 1) / 2, (w - 1) / 2])
    safe = mass.clamp_min(1e-6)
    com = torch.stack([rows / safe, cols / safe], -1)
    return torch.where((mass > 1e-6)[..., None], com, centre)


def digit_crops(clips: torch.Tensor, digit: int | None = None) -> torch.Tensor:
    """The digit of every frame in MNIST's layout: ``(N, F, 1, 28, 28)`` in [-1, 1].

    The ``digit x digit`` window (default ``H // 2``, the side :mod:`hwaksan.data.video` pastes)
    centred on the frame's centre of mass, resampled bilinearly to 20x20 (outside the frame is
    black) and padded to 28x28.
    """
    x = _check_clips(clips)
    n, _, frames, h, w = x.shape
    digit = digit or h // 2
    com = digit_tracks(x).reshape(-1, 2)  # (M, 2) row, col
    # sample points of a 20x20 grid over [c - digit/2, c + digit/2] (pixel centres), as grid_sample's
    # normalised coordinates (align_corners=False: -1 and 1 are the outer pixel edges)
    offsets = (torch.arange(_BOX, dtype=torch.float32) + 0.5) * digit / _BOX - digit / 2
    rows = com[:, :1] + offsets[None]  # (M, 20)
    cols = com[:, 1:] + offsets[None]
    gy = (2 * rows + 1) / h - 1
    gx = (2 * cols + 1) / w - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)  # (M, 20, 20, 2)
    frames01 = (x.transpose(1, 2).reshape(-1, 1, h, w) + 1) / 2
    box = F.grid_sample(frames01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    pad = (_SIDE - _BOX) // 2
    out = F.pad(box, (pad, pad, pad, pad)) * 2 - 1
    return out.view(n, frames, 1, _SIDE, _SIDE)


def mnist_readout(**classifier_kwargs: Any) -> Readout:
    """The readout of the project's 28x28 MNIST classifier (trained and cached on first use:
    ``hwaksan train-classifier``): its logits and penultimate features (FD-mnist's space)."""
    net = dataset_classifier("mnist", (_SIDE, _SIDE), **classifier_kwargs).net

    @torch.no_grad()
    def readout(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, feats = [], []
        for i in range(0, len(crops), 512):
            chunk = crops[i : i + 512]
            feats.append(net.features(chunk).float())
            logits.append(net(chunk).float())
        return torch.cat(logits), torch.cat(feats)

    return readout


@dataclass(frozen=True)
class ClipReadout:
    """What the measures read from clips ``(N, 1, F, H, W)``.

    Attributes:
        tracks: ``(N, F, 2)`` centres of mass (:func:`digit_tracks`).
        predictions: ``(N, F)`` the classifier's class of every frame's crop.
        features: ``(N, F, D)`` its features of every frame's crop.
    """

    tracks: torch.Tensor
    predictions: torch.Tensor
    features: torch.Tensor

    @property
    def modal_class(self) -> torch.Tensor:
        """``(N,)`` each clip's most frequent predicted class."""
        return self.predictions.mode(dim=1).values

    @property
    def agreement(self) -> torch.Tensor:
        """``(N,)`` the share of each clip's frames predicted as its modal class."""
        return (self.predictions == self.modal_class[:, None]).double().mean(1)

    @property
    def displacement(self) -> torch.Tensor:
        """``(N,)`` mean ``|c_{f+1} - c_f|`` in pixels per frame."""
        return self.tracks.diff(dim=1).norm(dim=-1).mean(1)

    @property
    def acceleration(self) -> torch.Tensor:
        """``(N,)`` mean ``|c_{f+1} - 2 c_f + c_{f-1}|`` in pixels per frame^2 (NaN below 3 frames)."""
        return self.tracks.diff(n=2, dim=1).norm(dim=-1).mean(1)

    @property
    def step_feature_distance(self) -> torch.Tensor:
        """``(N,)`` mean feature distance between consecutive frames."""
        return self.features.diff(dim=1).norm(dim=-1).mean(1)


def read_clips(clips: torch.Tensor, readout: Readout | None = None) -> ClipReadout:
    """Tracks, per-frame classes and features of ``clips (N, 1, F, H, W)`` (``readout`` default
    :func:`mnist_readout`)."""
    x = _check_clips(clips)
    n, _, frames = x.shape[:3]
    readout = readout or mnist_readout()
    logits, feats = readout(digit_crops(x).reshape(n * frames, 1, _SIDE, _SIDE))
    return ClipReadout(
        tracks=digit_tracks(x),
        predictions=logits.argmax(-1).view(n, frames),
        features=feats.view(n, frames, -1),
    )


def video_metrics(
    fake: torch.Tensor,
    real: torch.Tensor,
    labels: torch.Tensor | None = None,
    readout: Readout | None = None,
) -> dict[str, float]:
    """The measures of the module docstring for ``fake`` vs ``real`` clips ``(N, 1, F, H, W)``.

    Args:
        fake: generated clips.
        real: real clips of the same shape (any count).
        labels: ``(N_fake,)`` the classes the fake clips were asked for (accuracies), or None.
        readout: the classifier readout (default :func:`mnist_readout`).

    Returns:
        ``frame_agreement``, ``frame_agreement_real``, ``displacement``, ``displacement_real``,
        ``displacement_ratio``, ``acceleration``, ``acceleration_real``, ``step_feature_distance``,
        ``step_feature_distance_real``, ``fd_frames`` and, with labels, ``first_frame_accuracy``
        and ``frame_accuracy``.
    """
    fake, real = _check_clips(fake, "fake"), _check_clips(real, "real")
    if fake.shape[1:] != real.shape[1:]:
        raise ValueError(f"fake clips {tuple(fake.shape[1:])} and real clips {tuple(real.shape[1:])} differ")
    readout = readout or mnist_readout()
    a, b = read_clips(fake, readout), read_clips(real, readout)
    out = {
        "frame_agreement": float(a.agreement.mean()),
        "frame_agreement_real": float(b.agreement.mean()),
        "displacement": float(a.displacement.mean()),
        "displacement_real": float(b.displacement.mean()),
        "acceleration": float(a.acceleration.mean()),
        "acceleration_real": float(b.acceleration.mean()),
        "step_feature_distance": float(a.step_feature_distance.mean()),
        "step_feature_distance_real": float(b.step_feature_distance.mean()),
        "fd_frames": frechet_distance(
            a.features.flatten(0, 1).double(), b.features.flatten(0, 1).double(), warn=False
        ),
    }
    out["displacement_ratio"] = out["displacement"] / max(out["displacement_real"], 1e-12)
    if labels is not None:
        labels = labels.cpu().long()
        if labels.shape != (len(fake),):
            raise ValueError(f"labels must have shape ({len(fake)},), got {tuple(labels.shape)}")
        out["first_frame_accuracy"] = float((a.predictions[:, 0] == labels).double().mean())
        out["frame_accuracy"] = float((a.predictions == labels[:, None]).double().mean())
    return out


def prediction_metrics(completed: torch.Tensor, real: torch.Tensor, keep: Sequence[int]) -> dict[str, float]:
    """How well ``completed`` clips ``(N, 1, F, H, W)`` continue the ``real`` ones past the kept frames.

    Returns:
        ``kept_max_error``: ``max |completed - real|`` on the kept frames (0: kept exactly);
        ``mse_future``: the mean squared error on the other frames (values in [-1, 1]);
        ``mse_copy_last``: the same for the baseline that repeats the last kept frame before each
        frame (the first kept frame for frames before it);
        ``track_error``: the mean distance in pixels between the digit's centre of mass in the
        completed and the real frames (the other frames), and ``track_error_copy_last`` of the
        baseline.
    """
    completed, real = _check_clips(completed, "completed"), _check_clips(real, "real")
    if completed.shape != real.shape:
        raise ValueError(f"completed {tuple(completed.shape)} and real {tuple(real.shape)} clips differ")
    frames = real.shape[2]
    kept = sorted(set(int(k) for k in keep))
    free = [f for f in range(frames) if f not in kept]
    if not kept or not free:
        raise ValueError("keep must name some of the frames, not all or none")
    source = [max([k for k in kept if k <= f], default=kept[0]) for f in range(frames)]
    copy = real[:, :, source]
    track_real, track_fake, track_copy = (digit_tracks(c)[:, free] for c in (real, completed, copy))
    return {
        "kept_max_error": float((completed[:, :, kept] - real[:, :, kept]).abs().max()),
        "mse_future": float((completed[:, :, free] - real[:, :, free]).square().mean()),
        "mse_copy_last": float((copy[:, :, free] - real[:, :, free]).square().mean()),
        "track_error": float((track_fake - track_real).norm(dim=-1).mean()),
        "track_error_copy_last": float((track_copy - track_real).norm(dim=-1).mean()),
    }
