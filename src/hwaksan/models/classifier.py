"""An image classifier, optionally noise-aware.

One network serves two jobs:

- the *noise-aware* classifier ``p_phi(y | x_t, t)`` of classifier guidance (Dhariwal & Nichol 2021,
  sec. 4 and App. B: the U-Net's down path, then pooling and a linear head), trained on noised data
  and told the noise level exactly as a denoiser is (``noise_level = c_noise``);
- the clean *evaluation* classifier whose penultimate features give a data-set-specific Frechet
  distance and whose predictions give the class accuracy of generated samples (``noise_aware=False``).

It reuses the U-Net's residual block (GroupNorm, SiLU, scale-shift of the noise-level embedding) so the
two see images the same way. Without noise awareness the embedding is a learned constant.

Shapes: ``x (B, C, H, W)``, ``noise_level (B,)`` or None -> logits ``(B, num_classes)``;
:meth:`Classifier.features` -> ``(B, feature_dim)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import NoiseLevelEmbedding
from .unet import _Downsample, _group_norm, _ResBlock, _SpatialAttention, pad_to_multiple

__all__ = ["Classifier"]


class Classifier(nn.Module):
    """Convolutional classifier: residual levels with down-sampling, global average pooling, linear head.

    Args:
        in_channels: image channels C.
        num_classes: number of classes K.
        model_channels: width of level 0.
        channel_mult: width multiplier per level (its length is the number of levels).
        num_res_blocks: residual blocks per level.
        attention: self-attention after the last level (ADM's classifier attends at low resolution).
        noise_aware: embed ``noise_level`` and inject it into every block; otherwise the network
            ignores ``noise_level`` (and it may be None).
        dropout: dropout inside residual blocks and before the head.
        num_groups: maximum number of GroupNorm groups.
        num_head_channels: channels per attention head.

    Example:
        >>> net = Classifier(in_channels=1, num_classes=10, model_channels=16)
        >>> net(torch.randn(4, 1, 28, 28)).shape, net.features(torch.randn(4, 1, 28, 28)).shape
        (torch.Size([4, 10]), torch.Size([4, 64]))
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        model_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 1,
        attention: bool = True,
        noise_aware: bool = False,
        dropout: float = 0.0,
        num_groups: int = 32,
        num_head_channels: int = 32,
    ) -> None:
        super().__init__()
        channel_mult = [int(m) for m in channel_mult]
        if not channel_mult:
            raise ValueError("channel_mult must name at least one level")
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "model_channels": model_channels,
            "channel_mult": channel_mult,
            "num_res_blocks": num_res_blocks,
            "attention": attention,
            "noise_aware": noise_aware,
            "dropout": dropout,
            "num_groups": num_groups,
            "num_head_channels": num_head_channels,
        }
        self.noise_aware = noise_aware
        self.factor = 2 ** (len(channel_mult) - 1)
        emb_dim = 4 * model_channels
        if noise_aware:
            self.noise_embed = NoiseLevelEmbedding(emb_dim, freq_dim=model_channels + model_channels % 2)
        else:
            self.emb = nn.Parameter(torch.zeros(emb_dim))
        ch = model_channels * channel_mult[0]
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        blocks: list[nn.Module] = []
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                blocks.append(_ResBlock(ch, model_channels * mult, emb_dim, dropout, num_groups))
                ch = model_channels * mult
            if level < len(channel_mult) - 1:
                blocks.append(_Downsample(ch))
        self.blocks = nn.ModuleList(blocks)
        self.attn = _SpatialAttention(ch, num_head_channels, num_groups) if attention else None
        self.norm_out = _group_norm(ch, num_groups)
        self.feature_dim = ch
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(ch, num_classes)

    def _embedding(self, x: torch.Tensor, noise_level: torch.Tensor | None) -> torch.Tensor:
        if not self.noise_aware:
            return F.silu(self.emb).expand(x.shape[0], -1)
        if noise_level is None:
            raise ValueError("this classifier is noise-aware: pass noise_level (B,)")
        if noise_level.ndim == 0:
            noise_level = noise_level.expand(x.shape[0])
        return F.silu(self.noise_embed(noise_level.to(x.dtype)))

    def features(self, x: torch.Tensor, noise_level: torch.Tensor | None = None) -> torch.Tensor:
        """Penultimate features ``(B, feature_dim)``: pooled activations after the last level."""
        emb = self._embedding(x, noise_level)
        h, _ = pad_to_multiple(x, self.factor)
        h = self.conv_in(h)
        for block in self.blocks:
            h = block(h, emb) if isinstance(block, _ResBlock) else block(h)
        if self.attn is not None:
            h = self.attn(h)
        return self.norm_out(h, silu=True).mean(dim=(2, 3))

    def forward(
        self, x: torch.Tensor, noise_level: torch.Tensor | None = None, cond: Any = None
    ) -> torch.Tensor:
        """Logits ``(B, num_classes)``. ``cond`` is accepted for the network signature and ignored."""
        return self.head(self.dropout(self.features(x, noise_level)))
