"""The container every trainer takes: samples of one shape, with optional labels and captions.

A sample is a tensor ``(C, *axes)``: an image ``(C, H, W)``, a waveform ``(1, T)``, a motion
sequence ``(D, T)``, a clip ``(C, F, H, W)``. The training loop, the samplers and the guidance
modes see only that shape; what the axes mean (a sample rate, a frame rate, a skeleton) is the
data set's :attr:`ImageDataset.modality` and :attr:`ImageDataset.modality_params`, which the model
artifact records so that ``hwaksan sample`` writes the right files
(:mod:`hwaksan.io.media`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["DatasetUnavailable", "ImageDataset", "MODALITIES", "SPATIAL_DIMS"]

#: The modalities and the number of axes after the channel axis their samples have.
SPATIAL_DIMS: dict[str, int] = {"image": 2, "audio": 1, "motion": 1, "video": 3}
MODALITIES = tuple(SPATIAL_DIMS)


class DatasetUnavailable(RuntimeError):
    """A data source is not installed; the message names the command that installs it."""


@dataclass
class ImageDataset:
    """Samples in [-1, 1] (images by default) with optional labels and captions.

    Attributes:
        images: float32 ``(N, C, *axes)``: ``(N, C, H, W)`` images, ``(N, C, T)`` sequences,
            ``(N, C, F, H, W)`` clips (the number of axes is :data:`SPATIAL_DIMS` of the modality).
        labels: long ``(N,)`` or None.
        captions: N strings or None.
        class_names: one name per label value or None.
        name: the data set's name (``"mnist"``, ``"speech-digits"``).
        ids: N stable identifiers of the source items (``"mnist/train/17"``, ``"U+1F98A"``, a
            relative path) or None.
        modality: ``"image"``, ``"audio"``, ``"video"`` or ``"motion"``.
        modality_params: JSON facts of the modality that outputs need (``{"sample_rate": 16000}``,
            ``{"fps": 8}``); recorded in the model artifact.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    captions: list[str] | None
    class_names: list[str] | None
    name: str
    ids: list[str] | None = None
    modality: str = "image"
    modality_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        x = self.images
        if self.modality not in SPATIAL_DIMS:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        dims = SPATIAL_DIMS[self.modality]
        if x.ndim != dims + 2 or x.dtype != torch.float32:
            axes = {1: "T", 2: "H, W", 3: "F, H, W"}[dims]
            raise ValueError(
                f"{self.modality} samples must be float32 (N, C, {axes}), got {x.dtype} {tuple(x.shape)}"
            )
        n = x.shape[0]
        if self.labels is not None and tuple(self.labels.shape) != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(self.labels.shape)}")
        for field_name in ("captions", "ids"):
            value = getattr(self, field_name)
            if value is not None and len(value) != n:
                raise ValueError(f"{field_name} has {len(value)} entries for {n} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> tuple[int, ...]:
        """The axes after the channel: ``(height, width)`` of images, ``(T,)``, ``(F, H, W)``."""
        return tuple(self.images.shape[2:])

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for an unlabelled set)."""
        return len(self.class_names) if self.class_names else 0
