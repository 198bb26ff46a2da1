"""The one SplitMix64 of :mod:`hwaksan.utils`: its int and int64-tensor paths agree, and
``mix_seed`` (which pins the random streams of training runs) keeps its values."""

from __future__ import annotations

import random

import pytest
import torch

from hwaksan.utils import mix_seed, splitmix64, wrap_int64

MASK64 = (1 << 64) - 1


def _reference(z: int) -> int:
    """SplitMix64 as in Vigna's C reference (uint64 arithmetic, written out here)."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def test_tensor_and_int_paths_agree():
    rng = random.Random(0)
    values = [rng.getrandbits(64) for _ in range(300)]
    values += [0, 1, (1 << 63) - 1, 1 << 63, MASK64]  # the int64 edges
    got = splitmix64(torch.tensor([wrap_int64(v) for v in values], dtype=torch.int64))
    assert got.dtype == torch.int64
    for v, h in zip(values, got.tolist(), strict=True):
        assert h & MASK64 == splitmix64(v) == _reference(v)


def test_tensor_path_keeps_shape_and_rejects_other_dtypes():
    z = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    assert splitmix64(z).shape == (3, 4)
    with pytest.raises(ValueError, match="int64"):
        splitmix64(torch.arange(3, dtype=torch.int32))


def test_wrap_int64():
    assert wrap_int64(MASK64) == -1 and wrap_int64(1 << 63) == -(1 << 63) and wrap_int64(-5) == -5


def test_mix_seed_values_are_pinned():
    """Values from before the int and tensor SplitMix64 were merged into one function."""
    assert mix_seed(1, 2, 3) == 5797055558538453683
    assert mix_seed(0) == 7070836379803831727
    assert mix_seed(-1, 2**64 + 5, 7) == 1029534771456853882
    assert mix_seed() == 0
    assert 0 <= mix_seed(2**63, 12345) < 2**63
