"""Small shared helpers: the one broadcast helper, per-sample noise and seeding.

Every stochastic function in hwaksan takes a ``generator`` argument of type :data:`GeneratorLike`:
``None`` (torch's global RNG), one ``torch.Generator`` for the whole batch, or a sequence of
generators, one per sample. With one generator per sample, sample ``i`` gets the same noise
whatever the batch size (EDM's habit), which the sampler contract tests pin.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

GeneratorLike = torch.Generator | Sequence[torch.Generator] | None

__all__ = [
    "GeneratorLike",
    "append_dims",
    "as_time",
    "generators_from_seeds",
    "randn",
    "randn_like",
    "rand",
    "downsample",
    "upsample",
    "mix_seed",
    "splitmix64",
    "wrap_int64",
]


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-sample tensor ``(batch,)`` (or a scalar) to ``(batch, 1, ..., 1)`` with ``ndim`` dims.

    This is the one broadcast helper: ``append_dims(alpha, x.ndim) * x``.
    """
    if v.ndim == 0:
        return v.reshape((1,) * ndim)
    if v.ndim > ndim:
        raise ValueError(f"cannot broadcast a {v.ndim}-d tensor to {ndim} dims")
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def as_time(t: float | torch.Tensor, batch: int | None = None, device=None) -> torch.Tensor:
    """Return ``t`` as a float64 tensor, expanded to ``(batch,)`` when ``batch`` is given."""
    t = torch.as_tensor(t, dtype=torch.float64, device=device)
    if batch is not None:
        if t.ndim == 0:
            t = t.expand(batch)
        elif t.shape != (batch,):
            raise ValueError(f"per-sample times must have shape ({batch},), got {tuple(t.shape)}")
    return t


def generators_from_seeds(seeds: Sequence[int] | int, device: str | torch.device = "cpu") -> list:
    """One ``torch.Generator`` per seed (``seeds`` may be a count: seeds 0..n-1)."""
    if isinstance(seeds, int):
        seeds = range(seeds)
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def _draw(fn, shape, generator: GeneratorLike, dtype, device) -> torch.Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return fn(shape, generator=generator, dtype=dtype, device=device)
    gens = list(generator)
    if len(gens) != shape[0]:
        raise ValueError(f"got {len(gens)} generators for a batch of {shape[0]}: give one per sample")
    return torch.stack([fn(shape[1:], generator=g, dtype=dtype, device=device) for g in gens])


def randn(
    shape: Sequence[int],
    generator: GeneratorLike = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Standard normal noise of ``shape``; per-sample when ``generator`` is a sequence."""
    return _draw(torch.randn, tuple(shape), generator, dtype, device)


def rand(
    shape: Sequence[int],
    generator: GeneratorLike = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Uniform [0, 1) noise of ``shape``; per-sample when ``generator`` is a sequence."""
    return _draw(torch.rand, tuple(shape), generator, dtype, device)


def randn_like(x: torch.Tensor, generator: GeneratorLike = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` (same dtype and device)."""
    return randn(x.shape, generator, dtype=x.dtype, device=x.device)


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    size = (int(size), int(size)) if isinstance(size, int) else tuple(int(v) for v in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"an image size is an int or (height, width) of positive ints, got {size}")
    return size


def downsample(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Antialiased bicubic downsampling of images in [-1, 1] to ``size``, clamped to [-1, 1].

    The same resize as ``load_dataset(..., image_size=...)`` of :mod:`hwaksan.data.images`, so a
    model trained on ``image_size = 14`` and a super-resolution model conditioned on
    ``downsample(x, 14)`` see the same low-resolution images. Shapes: ``(B, C, H, W)`` -> ``(B, C, h, w)``.
    """
    return F.interpolate(x, size=_size2(size), mode="bicubic", antialias=True, align_corners=False).clamp(
        -1.0, 1.0
    )


def upsample(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bicubic upsampling of images in [-1, 1] to ``size``, clamped to [-1, 1] (the conditioning
    image of a super-resolution model, and the bicubic baseline). Shapes: ``(B, C, h, w)`` ->
    ``(B, C, H, W)``."""
    return F.interpolate(x, size=_size2(size), mode="bicubic", align_corners=False).clamp(-1.0, 1.0)


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, SplitMix64's increment
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def wrap_int64(v: int) -> int:
    """The int64 value (two's complement) with the bits of ``v mod 2^64``: a python int that an
    int64 tensor accepts, e.g. a 64-bit hash constant."""
    v &= _MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


def _shr(v: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of an int64 tensor (torch's ``>>`` is arithmetic)."""
    return (v >> k) & ((1 << (64 - k)) - 1)


def splitmix64(z: int | torch.Tensor) -> int | torch.Tensor:
    """One SplitMix64 step (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number
    generators"; Vigna's reference code): ``z += 0x9E3779B97F4A7C15``, then the finaliser
    ``z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9``, ``z = (z ^ z >> 27) * 0x94D049BB133111EB``,
    ``z ^ z >> 31``, all modulo 2^64 with logical shifts.

    An ``int`` gives an int in ``[0, 2^64)`` (any int is read modulo 2^64). An int64 tensor (any
    shape) is hashed element-wise with wrapping arithmetic and returns int64 holding the same 64
    bits in two's complement, so ``splitmix64(t) & (2^64 - 1) == splitmix64(int(t))`` element by
    element (the counter-based noise of :class:`hwaksan.samplers.BrownianTree`).
    """
    if isinstance(z, torch.Tensor):
        if z.dtype != torch.int64:
            raise ValueError(f"splitmix64 hashes int64 tensors, got {z.dtype}: convert with .long()")
        z = z + wrap_int64(_GOLDEN)
        z = (z ^ _shr(z, 30)) * wrap_int64(_MIX1)
        z = (z ^ _shr(z, 27)) * wrap_int64(_MIX2)
        return z ^ _shr(z, 31)
    z = (int(z) + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (:func:`splitmix64` chained over the parts): distinct tuples give
    unrelated seeds, so ``mix_seed(seed, stream, step, j)`` names one independent random stream."""
    h = 0
    for p in parts:
        h = splitmix64(h ^ (int(p) & _MASK64))
    return h & ((1 << 63) - 1)
