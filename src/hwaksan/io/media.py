"""Samples of every modality written as files a person can look at or listen to.

One table, :data:`MEDIA`, maps a modality (:data:`hwaksan.data.dataset.MODALITIES`) to its writers:

- ``preview(x, path, params, nrow)``: one PNG of ``n`` samples ``x (n, C, *axes)`` in [-1, 1]
  (an image grid; waveforms with their spectrograms; a frame strip per clip; trajectories). The
  trainer's sample grids and ``hwaksan sample``'s ``--out`` are this picture.
- ``names(stem, n, params)``: the media files ``files`` writes for ``n`` samples (checked before
  sampling, so no file is overwritten without ``--overwrite``).
- ``files(x, stem, params)``: writes them (WAV per clip, an animated GIF, ...); images write none.

``params`` are the data set's ``modality_params`` as the model artifact recorded them. The writers
of a modality live in its own module; this table is the one place that names them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..plotting import save_image_grid
from .media_audio import audio_files, audio_names, audio_preview
from .media_motion import motion_files, motion_names, motion_preview
from .media_video import save_strips, video_files, video_names

__all__ = ["MEDIA", "MediaWriters", "media_names", "save_media", "save_preview"]


@dataclass(frozen=True)
class MediaWriters:
    """The writers of one modality (see the module docstring)."""

    preview: Callable[[torch.Tensor, Path, dict[str, Any], int | None], None]
    names: Callable[[Path, int, dict[str, Any]], list[Path]]
    files: Callable[[torch.Tensor, Path, dict[str, Any]], list[Path]]


def _image_preview(x: torch.Tensor, path: Path, params: dict[str, Any], nrow: int | None) -> None:
    scale = int(params.get("scale") or max(1, 96 // max(x.shape[2:])))
    save_image_grid(x, path, nrow=nrow, scale=scale)


def _no_names(stem: Path, n: int, params: dict[str, Any]) -> list[Path]:
    return []


def _no_files(x: torch.Tensor, stem: Path, params: dict[str, Any]) -> list[Path]:
    return []


MEDIA: dict[str, MediaWriters] = {
    "image": MediaWriters(_image_preview, _no_names, _no_files),
    "audio": MediaWriters(audio_preview, audio_names, audio_files),
    "video": MediaWriters(save_strips, video_names, video_files),
    "motion": MediaWriters(motion_preview, motion_names, motion_files),
}


def _writers(modality: str) -> MediaWriters:
    if modality not in MEDIA:
        raise ValueError(f"no writers for the modality {modality!r}; have {sorted(MEDIA)}")
    return MEDIA[modality]


def save_preview(
    x: torch.Tensor,
    path: str | Path,
    modality: str = "image",
    params: dict[str, Any] | None = None,
    nrow: int | None = None,
) -> Path:
    """Write the PNG of samples ``x (n, C, *axes)`` in [-1, 1]; returns ``path``."""
    _writers(modality).preview(x.detach().float().cpu(), Path(path), dict(params or {}), nrow)
    return Path(path)


def media_names(
    stem: str | Path, n: int, modality: str = "image", params: dict[str, Any] | None = None
) -> list[Path]:
    """The media files :func:`save_media` writes for ``n`` samples beside ``stem`` (no suffix)."""
    return _writers(modality).names(Path(stem), n, dict(params or {}))


def save_media(
    x: torch.Tensor, stem: str | Path, modality: str = "image", params: dict[str, Any] | None = None
) -> list[Path]:
    """Write the media files of samples ``x (n, C, *axes)`` (none for images); returns their paths."""
    return _writers(modality).files(x.detach().float().cpu(), Path(stem), dict(params or {}))
