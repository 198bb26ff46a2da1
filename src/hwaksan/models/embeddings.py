"""Embeddings of the noise level fed to networks.

Networks in hwaksan see a *noise level* (a real number, by default ``c_noise = -lambda/8`` with
``lambda`` the log-SNR; see :mod:`hwaksan.parameterizations`), never an integer step index.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FourierEmbedding", "SinusoidalEmbedding", "NoiseLevelEmbedding"]


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a scalar (Vaswani et al. 2017, sec. 3.5).

    ``emb(s) = [cos(s * scale * f_i), sin(s * scale * f_i)]`` with ``f_i = max_period^(-i/half)``.
    The ``scale`` (default 1000) spreads a noise level of order one over the frequencies the way a
    step index in ``[0, 1000)`` would.

    Shapes: ``(B,)`` -> ``(B, dim)``.
    """

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs * scale, persistent=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        arg = s.float()[:, None] * self.freqs[None]
        return torch.cat([arg.cos(), arg.sin()], dim=-1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar (Tancik et al. 2020; Song et al. 2021 NCSN++).

    ``emb(s) = [cos(2 pi W s), sin(2 pi W s)]`` with fixed ``W ~ N(0, scale^2)``.
    Shapes: ``(B,)`` -> ``(B, dim)``.
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * s.float()[:, None] * self.weight[None]
        return torch.cat([arg.cos(), arg.sin()], dim=-1)


class NoiseLevelEmbedding(nn.Module):
    """Sinusoidal features followed by a two-layer MLP: ``(B,)`` -> ``(B, out_dim)``."""

    def __init__(self, out_dim: int, freq_dim: int = 128, kind: str = "sinusoidal") -> None:
        super().__init__()
        if kind == "sinusoidal":
            self.features = SinusoidalEmbedding(freq_dim)
        elif kind == "fourier":
            self.features = FourierEmbedding(freq_dim)
        else:
            raise ValueError(f"unknown embedding kind {kind!r}: use 'sinusoidal' or 'fourier'")
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        # features in float32 (a float64 or bf16 noise level keeps its precision), then the MLP's dtype
        return self.mlp(self.features(s).to(self.mlp[0].weight.dtype))
