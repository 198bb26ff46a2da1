"""Every named data set the trainers load, whatever its modality.

The image sets of :mod:`hwaksan.data.images` (and ``folder:PATH``) plus the sets of the other
modalities, each a loader ``loader(split, **args) -> ImageDataset`` in :data:`LOADERS` whose
``args`` come from the config's ``data.args`` (frame count, sample rate, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .audio import load_speech_digits, load_speech_digits_mel
from .dataset import ImageDataset
from .images import DATASETS as IMAGE_DATASETS
from .images import load_dataset
from .motion import load_stick_motion
from .video import moving_digits

__all__ = ["DATASET_NAMES", "LOADERS", "load_data"]

#: Loaders of the sets that are not images: ``loader(split, **args) -> ImageDataset``.
LOADERS: dict[str, Callable[..., ImageDataset]] = {
    "speech-digits": load_speech_digits,
    "speech-digits-mel": load_speech_digits_mel,
    "moving-mnist": moving_digits,
    "stick-motion": load_stick_motion,
}

DATASET_NAMES = (*IMAGE_DATASETS, *LOADERS)
"""Named sets; any folder of images loads as ``"folder:PATH"``."""


def load_data(
    name: str, split: str = "train", image_size: int | None = None, args: dict[str, Any] | None = None
) -> ImageDataset:
    """The data set ``name`` (a key of :data:`LOADERS`, an image set or ``folder:PATH``).

    Args:
        name: the set.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (what the set has).
        image_size: images only: resize to ``(s, s)`` (None or 0 keeps the native size).
        args: keyword arguments of the set's loader (a set without any takes none).

    Raises:
        ValueError: an unknown name or split, an argument the loader does not take, or
            ``image_size`` for a set that is not images.
    """
    args = dict(args or {})
    loader = LOADERS.get(name)
    if loader is None:
        if args:
            raise ValueError(f"the image set {name!r} takes no data.args (got {sorted(args)})")
        return load_dataset(name, split, image_size or None)
    if image_size:
        raise ValueError(f"{name!r} is not an image set: data.image_size applies to images only")
    try:
        return loader(split, **args)
    except TypeError as err:
        raise ValueError(f"data.args of {name!r}: {err}") from None
