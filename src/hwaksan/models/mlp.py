"""An MLP denoiser for low-dimensional data.

A plain network: ``net(x, noise_level, cond=None) -> Tensor`` of the same shape as ``x``. It knows
nothing of diffusion: which quantity it predicts (eps, x0, v, velocity, ...) is decided by the
:class:`hwaksan.parameterizations.ModelDenoiser` that wraps it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .embeddings import NoiseLevelEmbedding

__all__ = ["MLP"]


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, 2 * width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.emb(emb).chunk(2, dim=-1)
        y = self.norm(h) * (1 + scale) + shift
        y = self.fc2(self.act(self.fc1(self.act(y))))
        return h + y


class MLP(nn.Module):
    """Residual MLP with a noise-level embedding injected by scale-shift in every block.

    Args:
        dim: data dimension D.
        width: hidden width.
        depth: number of residual blocks.
        emb_dim: width of the noise-level embedding.
        num_classes: if given, a class embedding (index ``num_classes`` is the null class used for
            classifier-free guidance) is added to the noise embedding.

    Shapes: ``x (B, D)``, ``noise_level (B,)``, ``cond (B,)`` long or None -> ``(B, D)``.
    """

    data_axes = None  # flat vectors: images are flattened by the trainer

    @staticmethod
    def input_arguments(shape: tuple[int, ...]) -> dict[str, int]:
        """The vector width follows the data: ``{"dim": prod(shape)}``."""
        return {"dim": math.prod(shape)}

    def __init__(
        self,
        dim: int = 2,
        width: int = 256,
        depth: int = 4,
        emb_dim: int = 128,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.config = {
            "dim": dim,
            "width": width,
            "depth": depth,
            "emb_dim": emb_dim,
            "num_classes": num_classes,
        }
        self.embed = NoiseLevelEmbedding(emb_dim)
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_ResidualBlock(width, emb_dim) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, noise_level: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        emb = self.embed(noise_level)
        if self.class_embed is not None:
            if cond is None:
                cond = torch.full((x.shape[0],), self.config["num_classes"], device=x.device)
            emb = emb + self.class_embed(cond.long())
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(torch.nn.functional.silu(self.out_norm(h)))
