"""A transformer over time for motion sequences (Tevet et al. 2023, MDM).

MDM (sec. 3, Fig. 2) denoises a motion ``x (B, D, T)`` (``D`` pose features per frame) with a
transformer encoder whose tokens are the frames: each pose is linearly projected to the model
width, given a position in time, and the noise level and the class condition the stack. MDM puts
them in as an extra token; here they condition every block by adaLN-Zero, as in DiT (Peebles &
Xie 2023, sec. 3.2: the same :class:`hwaksan.models.dit.DiTBlock`), which lets the blocks start as
the identity. The output is read back per frame by a zero-initialised linear map, so the network
is whatever the denoiser asks (MDM predicts the clean motion: ``diffusion.prediction = "x0"``).

    h_t = W_in x[:, :, t] + pos(t)                      (B, T, W) tokens, sine-cosine pos(t)
    c   = emb(noise_level) + E[y]                       y = num_classes is the null class (CFG)
    h   = Block_L(...Block_1(h, c)...)                  adaLN-Zero self-attention blocks
    out[:, :, t] = W_out adaLN(LN(h_t), c)              (B, D_out, T)

Class labels are optional; a class-conditional network has ``num_classes + 1`` class embeddings, the
last one the null class of classifier-free guidance (Ho & Salimans 2022), which MDM also trains
by dropping the condition.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import NetworkCondition, labels_or_null
from .dit import DiTBlock, sincos_pos_embed_1d
from .embeddings import NoiseLevelEmbedding

__all__ = ["MotionTransformer", "sincos_pos_embed_1d"]


class MotionTransformer(nn.Module):
    """MDM-style denoiser of sequences ``(B, D, T)`` (module docstring).

    Args:
        in_channels: pose features per frame ``D`` (2 x joints for 2-D skeletons).
        hidden_size: token width ``W``.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: feed-forward width over ``W``.
        num_classes: classes of the label condition (None: unconditional).
        max_frames: length the position table is precomputed for (other lengths work).
        learn_sigma: also output a variance channel per feature (``2 D`` outputs).
        out_channels: output features (default ``D``).

    Shapes: ``x (B, D, T)``, ``noise_level (B,)``, ``cond`` None / labels ``(B,)`` / a dict of
    :class:`~hwaksan.models.conditioning.NetworkCondition` -> ``(B, D_out, T)``.
    """

    data_axes = 1

    @staticmethod
    def input_arguments(shape: tuple[int, ...]) -> dict[str, int]:
        """The pose width and the position table follow the sequences ``(D, T)``."""
        return {"in_channels": int(shape[0]), "max_frames": int(shape[1])}

    def __init__(
        self,
        in_channels: int = 30,
        hidden_size: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        num_classes: int | None = None,
        max_frames: int = 64,
        learn_sigma: bool = False,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be a multiple of num_heads {num_heads}")
        self.config = {
            "in_channels": in_channels,
            "hidden_size": hidden_size,
            "depth": depth,
            "num_heads": num_heads,
            "mlp_ratio": mlp_ratio,
            "num_classes": num_classes,
            "max_frames": max_frames,
            "learn_sigma": learn_sigma,
            "out_channels": out_channels,
        }
        self.num_classes = num_classes
        self.c_out = out_channels * (2 if learn_sigma else 1)
        self.pose_in = nn.Linear(in_channels, hidden_size)
        self.register_buffer("pos_embed", sincos_pos_embed_1d(hidden_size, max_frames), persistent=False)
        self.noise_embed = NoiseLevelEmbedding(hidden_size, freq_dim=256)
        self.class_embed = nn.Embedding(num_classes + 1, hidden_size) if num_classes else None
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_out = nn.Linear(hidden_size, 2 * hidden_size)
        self.pose_out = nn.Linear(hidden_size, self.c_out)
        self._init_weights()

    def _init_weights(self) -> None:
        # DiT's initialisation with the conditioning vector at unit scale (as models/dit.py).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.class_embed is not None:
            nn.init.normal_(self.class_embed.weight, std=1.0)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN.weight)
            nn.init.zeros_(block.adaLN.bias)
        for m in (self.adaLN_out, self.pose_out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def _positions(self, length: int, like: torch.Tensor) -> torch.Tensor:
        if length <= self.pos_embed.shape[0]:
            return self.pos_embed[:length].to(like.dtype)
        return sincos_pos_embed_1d(like.shape[-1], length).to(like.device, like.dtype)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Denoise ``x (B, D, T)`` at ``noise_level (B,)`` (the scaled noise level, not a step
        index) under ``cond``; returns ``(B, D_out, T)``."""
        d = self.config["in_channels"]
        if x.ndim != 3 or x.shape[1] != d:
            raise ValueError(f"MotionTransformer takes sequences (B, {d}, T), got {tuple(x.shape)}")
        parsed = NetworkCondition.parse(cond, network=type(self).__name__)
        if noise_level.ndim == 0:
            noise_level = noise_level.expand(x.shape[0])
        c = self.noise_embed(noise_level)
        if self.class_embed is not None:
            c = c + self.class_embed(labels_or_null(parsed.labels, c.shape[0], self.num_classes, c.device))
        c = F.silu(c)
        h = self.pose_in(x.transpose(1, 2))  # (B, T, W)
        h = h + self._positions(h.shape[1], h)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.adaLN_out(c)[:, None].chunk(2, dim=-1)
        h = self.pose_out(self.norm_out(h) * (1 + scale) + shift)  # (B, T, D_out)
        return h.transpose(1, 2)
