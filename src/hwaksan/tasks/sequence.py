"""Inpainting in time: which frames of a sequence are kept, as a mask RePaint reads.

A sequence sample is ``(C, T, ...)``: the first axis after the channel is time (a waveform
``(1, T)``, a motion sequence ``(D, T)``, a clip ``(C, F, H, W)``). Future-frame prediction keeps a
prefix, in-betweening keeps keyframes, frame interpolation keeps the first and the last frame; each
is :func:`hwaksan.tasks.inpaint.inpaint` (Lugmayr et al. 2022) with the mask of
:func:`time_mask`, so every sampler and RePaint's resampling apply unchanged.

Example:
    >>> parse_keep("0:3,-1", 8)
    [0, 1, 2, 7]
    >>> time_mask((2, 8, 4, 4), [0, 7]).flatten().tolist()
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["TIME_AXIS", "parse_keep", "time_mask"]

TIME_AXIS = 1
"""The time axis of a sample ``(C, T, ...)`` (0 is the channel)."""


def parse_keep(spec: str, length: int) -> list[int]:
    """The kept frame indices of ``spec``, sorted and unique.

    ``spec`` is a comma-separated list of frames ``i`` and ranges ``a:b`` (``b`` excluded, as in
    Python; either end may be left out), negative indices counting from the end: ``"0:4"`` is a
    prefix of 4 frames, ``"0,-1"`` the first and the last, ``"::4"`` is not accepted (no steps).

    Raises:
        ValueError: a malformed item, an index outside ``[-length, length)``, or nothing kept.
    """
    if length < 1:
        raise ValueError(f"a sequence needs at least one frame, got length {length}")
    kept: set[int] = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        try:
            if ":" in item:
                ends = item.split(":")
                if len(ends) != 2:
                    raise ValueError
                a = int(ends[0]) if ends[0].strip() else 0
                b = int(ends[1]) if ends[1].strip() else length
                a, b = (a + length if a < 0 else a), (b + length if b < 0 else b)
                if not 0 <= a < b <= length:
                    raise IndexError
                kept.update(range(a, b))
            else:
                i = int(item)
                if not -length <= i < length:
                    raise IndexError
                kept.add(i % length)
        except IndexError:
            raise ValueError(f"frames {item!r} lie outside the {length} frames 0..{length - 1}") from None
        except ValueError:
            raise ValueError(
                f"cannot read the frames {item!r}: give indices and ranges such as '0:4' or '0,-1'"
            ) from None
    if not kept:
        raise ValueError(f"no frame is kept by {spec!r}: give indices and ranges such as '0:4' or '0,-1'")
    return sorted(kept)


def time_mask(shape: Sequence[int], keep: Sequence[int]) -> torch.Tensor:
    """The mask ``(1, *shape)`` (1 = kept) of the frames ``keep`` of samples of ``shape = (C, T, ...)``,
    broadcastable as :func:`hwaksan.tasks.inpaint.check_mask` asks (size 1 on every other axis)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"a sequence sample has shape (C, T, ...), got {shape}")
    length = shape[TIME_AXIS]
    mask_shape = [1] * (len(shape) + 1)
    mask_shape[TIME_AXIS + 1] = length
    mask = torch.zeros(mask_shape)
    index = torch.as_tensor(list(keep), dtype=torch.long)
    if index.numel() and not (0 <= int(index.min()) and int(index.max()) < length):
        raise ValueError(f"kept frames {list(keep)} lie outside 0..{length - 1}")
    mask.view(length)[index] = 1.0
    return mask
