"""Moving-MNIST-style clips: handwritten digits bouncing in a square frame.

The set of Srivastava et al. 2015 ("Unsupervised learning of video representations using LSTMs",
sec. 3) made procedurally, in memory, in a second: each clip pastes ``digits`` MNIST digits of side
``size // 2`` (the 20x20 box of the MNIST digit, resized) into a black ``size x size`` frame, each
moving at a constant velocity and bouncing off the walls (its position is reflected back into
``[0, size - digit]``; the speed is kept). Overlapping digits combine by ``max``.

A clip is ``(1, F, H, W)`` in [-1, 1] (``modality = "video"``, ``modality_params = {"fps": ...}``).
Its label is the class of its digit (``digits = 1``, 10 classes) or the two-digit number
``10 a + b`` of its two digits (``digits = 2``, 100 classes ``"00"``..``"99"``).

**Determinism.** Clip ``i`` of a split is a function of ``(split, i, size, frames, digits, source)``
only: its digits and motion come from a NumPy generator seeded with ``(split, i)``, so the first
``n`` clips of a longer set are the same clips. The train clips take their digits from the MNIST
train split, ``val`` / ``test`` from MNIST's own val / test splits (no digit image is shared).

``source = "digits"`` takes the 8x8 scikit-learn digits upsampled instead (no MNIST needed; for
tests and quick checks).

Example:
    >>> clips = moving_digits("train", frames=4, size=16, n=3, source="digits")
    >>> tuple(clips.images.shape), clips.modality, clips.modality_params
    ((3, 1, 4, 16, 16), 'video', {'fps': 4})
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import ImageDataset
from .images import load_dataset

__all__ = ["DEFAULT_FPS", "SIZES", "SOURCES", "Trajectories", "moving_digits", "trajectories"]

SIZES = (32, 64)
SOURCES = ("mnist", "digits")
DEFAULT_FPS = 4
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2, "all": 3}
_STREAM = 0x4D4D  # "MM": the seed stream of this set
_MNIST_BOX = slice(4, 24)  # MNIST centres a 20x20 box in its 28x28 images (LeCun et al. 1998)


@dataclass(frozen=True)
class Trajectories:
    """The digits and motion of ``n`` clips.

    Attributes:
        positions: int64 ``(n, digits, F, 2)``: the top-left ``(row, col)`` of each digit in each
            frame, in ``[0, size - digit]``.
        sources: int64 ``(n, digits)``: the index of each digit in the source split.
        digit: the side of a digit in pixels.
    """

    positions: np.ndarray
    sources: np.ndarray
    digit: int


def _bounce(p: np.ndarray, limit: int) -> np.ndarray:
    """Reflect positions ``p`` into ``[0, limit]`` (a ball bouncing off two walls)."""
    period = 2 * limit
    q = np.mod(p, period)
    return np.where(q > limit, period - q, q)


def trajectories(
    split: str, n: int, frames: int, size: int, digits: int, pool: int, start: int = 0
) -> Trajectories:
    """The digits and bouncing positions of clips ``start .. start + n - 1`` of ``split``.

    Each digit starts at a uniform position in ``[0, size - digit]^2`` and moves at a uniform angle
    with a speed uniform in ``[size / 32, 3 size / 32]`` pixels per frame; position ``p_f = p_0 + f v``
    folded back into the frame (:func:`_bounce`) and rounded to whole pixels.

    Args:
        split: names the seed stream.
        n, frames, size, digits: clips, frames per clip, frame side, digits per clip.
        pool: the number of source digits to draw from.
        start: the index of the first clip.
    """
    digit = size // 2
    limit = size - digit
    positions = np.empty((n, digits, frames, 2), dtype=np.int64)
    sources = np.empty((n, digits), dtype=np.int64)
    f = np.arange(frames, dtype=np.float64)[:, None]
    for k in range(n):
        rng = np.random.default_rng([_STREAM, _SPLIT_CODE[split], start + k])
        sources[k] = rng.integers(0, pool, size=digits)
        for d in range(digits):
            p0 = rng.uniform(0, limit, size=2)
            angle = rng.uniform(0, 2 * np.pi)
            speed = rng.uniform(size / 32, 3 * size / 32)
            v = speed * np.array([np.sin(angle), np.cos(angle)])
            positions[k, d] = np.rint(_bounce(p0 + f * v, limit)).astype(np.int64)
    return Trajectories(positions, sources, digit)


def _source_digits(source: str, split: str, digit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The source digits ``(P, digit, digit)`` in [0, 1] and their labels ``(P,)``."""
    if source == "mnist":
        mnist_split = {"train": "train", "val": "val", "test": "test", "all": "all"}[split]
        ds = load_dataset("mnist", mnist_split)
        box = ds.images[:, :, _MNIST_BOX, _MNIST_BOX]
    else:  # the 8x8 digits fill their frame: no box to cut
        ds = load_dataset("digits", "val" if split == "test" else split)
        box = ds.images
    x = (box.float() + 1) / 2
    x = F.interpolate(x, size=(digit, digit), mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0].clamp(0, 1), ds.labels


def moving_digits(
    split: str = "train",
    *,
    frames: int = 8,
    size: int = 32,
    n: int = 4096,
    digits: int = 1,
    fps: int = DEFAULT_FPS,
    source: str = "mnist",
) -> ImageDataset:
    """The ``moving-mnist`` set: ``n`` clips ``(n, 1, frames, size, size)`` in [-1, 1].

    Args:
        split: ``"train"`` (digits from MNIST train), ``"val"``, ``"test"`` or ``"all"``.
        frames: frames per clip, 8 to 16 (2 to 16 for ``source="digits"``).
        size: the frame side, 32 or 64 (digits of side ``size // 2``; also 8 or 16 for
            ``source="digits"``).
        n: the number of clips.
        digits: digits per clip, 1 or 2.
        fps: the frame rate recorded for the GIFs.
        source: ``"mnist"`` or ``"digits"`` (the 8x8 scikit-learn digits upsampled; tests).

    Raises:
        ValueError: an argument out of range (one line naming the allowed values).
    """
    if split not in _SPLIT_CODE:
        raise ValueError(f"moving-mnist has the splits {sorted(_SPLIT_CODE)}, got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"data.args.source must be one of {SOURCES}, got {source!r}")
    lowest = 8 if source == "mnist" else 2  # short clips of the 8x8 digits: tests only
    if not lowest <= frames <= 16:
        raise ValueError(f"data.args.frames must be {lowest} to 16, got {frames}")
    if size not in SIZES and not (source == "digits" and size in (8, 16)):
        raise ValueError(f"data.args.size must be one of {SIZES}, got {size}")
    if digits not in (1, 2):
        raise ValueError(f"data.args.digits must be 1 or 2, got {digits}")
    if not 1 <= n <= 100_000:
        raise ValueError(f"data.args.n (clips) must be 1 to 100000, got {n}")
    if not 1 <= fps <= 60:
        raise ValueError(f"data.args.fps must be 1 to 60, got {fps}")
    glyphs, glyph_labels = _source_digits(source, split, size // 2)
    tr = trajectories(split, n, frames, size, digits, len(glyphs))
    g = glyphs.numpy()
    d = tr.digit
    clips = np.zeros((n, frames, size, size), dtype=np.float32)
    for k in range(n):
        for j in range(digits):
            glyph = g[tr.sources[k, j]]
            for f in range(frames):
                r, c = tr.positions[k, j, f]
                window = clips[k, f, r : r + d, c : c + d]
                np.maximum(window, glyph, out=window)
    images = torch.from_numpy(clips).unsqueeze(1).mul_(2).sub_(1)
    classes = glyph_labels[torch.from_numpy(tr.sources)]
    if digits == 1:
        labels, names = classes[:, 0].long(), [str(i) for i in range(10)]
    else:
        labels, names = (10 * classes[:, 0] + classes[:, 1]).long(), [f"{i:02d}" for i in range(100)]
    return ImageDataset(
        images=images,
        labels=labels,
        captions=None,
        class_names=names,
        name="moving-mnist",
        ids=[f"moving-mnist/{split}/{i}" for i in range(n)],
        modality="video",
        modality_params={"fps": int(fps)},
    )
