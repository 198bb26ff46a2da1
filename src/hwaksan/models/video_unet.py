"""A space-time factorised U-Net for short clips (Ho et al. 2022, "Video Diffusion Models", sec. 3).

The image U-Net of :mod:`hwaksan.models.unet` applied to every frame, with layers across frames
between its layers: each 2-D residual block (and spatial attention, where the level has it) works
on the frames as a batch of images, and is followed by

- a temporal convolution: ``h + Conv1d_3(SiLU(GN(h)))`` along the frame axis at every pixel (the
  "pseudo-3-D" convolution of Singer et al. 2022, Make-A-Video, sec. 3.2), and
- at the levels of ``temporal_attention_levels`` (and the middle), temporal attention:
  ``h + Attn(GN(h))`` over the F frames of each pixel, with a learned embedding of the frame index
  (Ho et al. 2022, sec. 3: "space-only 3-D convolution, then attention over time").

Both temporal layers start at zero (their output projection is zero-initialised), so the untrained
network is the per-frame image U-Net: temporal mixing is learnt on top of it. The noise-level and
class embedding is one per clip (every frame gets it). The frame count is not part of the weights
beyond ``max_frames`` (the rows of the frame-index embedding), so one network takes clips of any
length up to it.

The building blocks (residual block with AdaGN, attention, down / up sampling, the pad policy) are
the image U-Net's; see :class:`hwaksan.models.unet.UNet` for them and for the conditioning.

Shapes: ``x (B, C, F, H, W)``, ``noise_level (B,)`` -> ``(B, C, F, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import NetworkCondition, labels_or_null
from .embeddings import NoiseLevelEmbedding
from .unet import (
    MultiHeadAttention,
    _Downsample,
    _group_norm,
    _num_heads,
    _ResBlock,
    _SpatialAttention,
    _Upsample,
    pad_to_multiple,
    unpad,
)

__all__ = ["VideoUNet"]


def _frames_last(h: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B F, C, H, W)`` -> ``(B H W, C, F)``: one sequence over frames per pixel."""
    bf, c, hh, ww = h.shape
    return h.view(bf // frames, frames, c, hh, ww).permute(0, 3, 4, 2, 1).reshape(-1, c, frames)


def _frames_back(s: torch.Tensor, frames: int, hh: int, ww: int) -> torch.Tensor:
    """The inverse of :func:`_frames_last`: ``(B H W, C, F)`` -> ``(B F, C, H, W)``."""
    c = s.shape[1]
    return s.view(-1, hh, ww, c, frames).permute(0, 4, 3, 1, 2).reshape(-1, c, hh, ww)


class _TemporalConv(nn.Module):
    """``h + Conv1d(SiLU(GN(h)))`` along the frames of each pixel (zero-initialised)."""

    def __init__(self, channels: int, groups: int, kernel: int = 3) -> None:
        super().__init__()
        self.norm = _group_norm(channels, groups)
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        hh, ww = h.shape[-2:]
        # GroupNorm over (C/G, H, W) per frame, as in the spatial blocks
        s = _frames_last(self.norm(h, silu=True), frames)
        return h + _frames_back(self.conv(s), frames, hh, ww)


class _TemporalAttention(nn.Module):
    """``h + Attn(GN(h) + e_f)`` over the frames of each pixel, ``e_f`` a learned frame-index
    embedding (Ho et al. 2022, sec. 3); the output projection starts at zero."""

    def __init__(self, channels: int, head_dim: int, groups: int, max_frames: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels, groups)
        self.position = nn.Parameter(torch.zeros(max_frames, channels))
        nn.init.normal_(self.position, std=0.02)
        self.attn = MultiHeadAttention(channels, _num_heads(channels, head_dim))
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        hh, ww = h.shape[-2:]
        tokens = _frames_last(self.norm(h), frames).transpose(1, 2)  # (B H W, F, C)
        tokens = tokens + self.position[:frames].to(tokens.dtype)
        out = self.attn(tokens).transpose(1, 2)
        return h + _frames_back(out.contiguous(), frames, hh, ww)


class _SpaceTimeLayer(nn.Module):
    """Residual block and optional spatial attention per frame, then the temporal layers."""

    def __init__(
        self,
        cin: int,
        cout: int,
        emb_dim: int,
        dropout: float,
        groups: int,
        spatial_attention: bool,
        temporal_attention: bool,
        head_dim: int,
        max_frames: int,
    ) -> None:
        super().__init__()
        self.res = _ResBlock(cin, cout, emb_dim, dropout, groups)
        self.attn = _SpatialAttention(cout, head_dim, groups) if spatial_attention else None
        self.time_conv = _TemporalConv(cout, groups)
        self.time_attn = (
            _TemporalAttention(cout, head_dim, groups, max_frames) if temporal_attention else None
        )

    def forward(self, h: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        h = self.res(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        h = self.time_conv(h, frames)
        if self.time_attn is not None:
            h = self.time_attn(h, frames)
        return h


class VideoUNet(nn.Module):
    """Space-time factorised U-Net (Ho et al. 2022, sec. 3) on clips ``(B, C, F, H, W)``.

    The level structure is :class:`~hwaksan.models.unet.UNet`'s (level ``i`` at ``H / 2**i`` with
    ``model_channels * channel_mult[i]`` channels, ``num_res_blocks`` layers down and
    ``num_res_blocks + 1`` up with skip connections, a middle of two layers); every layer is a
    :class:`_SpaceTimeLayer`. Frames are never down-sampled.

    Args:
        in_channels: clip channels C.
        model_channels: width of level 0.
        channel_mult: width multiplier per level.
        num_res_blocks: layers per level on the way down.
        attention_levels: levels with spatial self-attention per frame (default: none; clips
            are costly).
        temporal_attention_levels: levels with temporal attention (default: the lowest
            resolution); the middle always has it when ``mid_attention``.
        mid_attention: spatial and temporal attention in the first middle layer.
        max_frames: the most frames a clip may have (rows of the frame-index embedding).
        patch_size: fold ``p x p`` pixels into channels before level 0 and back after the
            output (pixel unshuffle / shuffle, Shi et al. 2016): the U-Net runs at ``H / p``, about
            ``p^2`` times cheaper; 1 is off.
        dropout: dropout rate inside residual blocks.
        num_classes: a class embedding with ``num_classes + 1`` rows (the last is the null class of
            classifier-free guidance, used when no label is given), added to the noise embedding.
        num_head_channels: channels per attention head.
        emb_dim: width of the noise-level embedding (default ``4 * model_channels``).
        num_groups: maximum number of GroupNorm groups.

    Example:
        >>> net = VideoUNet(model_channels=8, channel_mult=(1, 2), num_groups=4)
        >>> net(torch.randn(2, 1, 5, 16, 16), torch.zeros(2)).shape
        torch.Size([2, 1, 5, 16, 16])
    """

    data_axes = 3

    def __init__(
        self,
        in_channels: int = 1,
        model_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (),
        temporal_attention_levels: Sequence[int] | None = None,
        mid_attention: bool = True,
        max_frames: int = 16,
        patch_size: int = 1,
        dropout: float = 0.0,
        num_classes: int | None = None,
        num_head_channels: int = 32,
        emb_dim: int | None = None,
        num_groups: int = 32,
    ) -> None:
        super().__init__()
        channel_mult = [int(m) for m in channel_mult]
        if not channel_mult:
            raise ValueError("channel_mult must name at least one level")
        levels = len(channel_mult)
        if temporal_attention_levels is None:
            temporal_attention_levels = [levels - 1]
        attention_levels = sorted(int(a) for a in attention_levels)
        temporal_attention_levels = sorted(int(a) for a in temporal_attention_levels)
        bad = [a for a in (*attention_levels, *temporal_attention_levels) if not 0 <= a < levels]
        if bad:
            raise ValueError(f"attention levels {bad} out of range: levels are 0..{levels - 1}")
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        emb_dim = 4 * model_channels if emb_dim is None else emb_dim
        self.config = {
            "in_channels": in_channels,
            "model_channels": model_channels,
            "channel_mult": channel_mult,
            "num_res_blocks": num_res_blocks,
            "attention_levels": attention_levels,
            "temporal_attention_levels": temporal_attention_levels,
            "mid_attention": mid_attention,
            "max_frames": max_frames,
            "patch_size": patch_size,
            "dropout": dropout,
            "num_classes": num_classes,
            "num_head_channels": num_head_channels,
            "emb_dim": emb_dim,
            "num_groups": num_groups,
        }
        self.num_classes = num_classes
        self.max_frames = max_frames
        self.patch_size = patch_size
        self.factor = 2 ** (levels - 1) * patch_size
        self.noise_embed = NoiseLevelEmbedding(emb_dim, freq_dim=model_channels + model_channels % 2)
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

        def layer(cin: int, cout: int, spatial: bool, temporal: bool) -> _SpaceTimeLayer:
            return _SpaceTimeLayer(
                cin, cout, emb_dim, dropout, num_groups, spatial, temporal, num_head_channels, max_frames
            )

        ch = model_channels * channel_mult[0]
        self.conv_in = nn.Conv2d(in_channels * patch_size**2, ch, 3, padding=1)
        skip_channels = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                cout = model_channels * mult
                self.down.append(
                    layer(ch, cout, level in attention_levels, level in temporal_attention_levels)
                )
                ch = cout
                skip_channels.append(ch)
            if level < levels - 1:
                self.down.append(_Downsample(ch))
                skip_channels.append(ch)
        self.mid = nn.ModuleList([layer(ch, ch, mid_attention, mid_attention), layer(ch, ch, False, False)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                cin, cout = ch + skip_channels.pop(), model_channels * mult
                self.up.append(
                    layer(cin, cout, level in attention_levels, level in temporal_attention_levels)
                )
                ch = cout
            if level > 0:
                self.up.append(_Upsample(ch))
        self.norm_out = _group_norm(ch, num_groups)
        self.conv_out = nn.Conv2d(ch, in_channels * patch_size**2, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Run the network.

        Args:
            x: noisy clips ``(B, C, F, H, W)``.
            noise_level: ``(B,)`` scaled noise level (e.g. ``c_noise``), not a step index.
            cond: class labels ``(B,)`` or a condition read by
                :class:`hwaksan.models.conditioning.NetworkCondition` (its ``labels``).

        Returns:
            ``(B, C, F, H, W)``.
        """
        if x.ndim != 5:
            raise ValueError(f"VideoUNet takes clips (B, C, F, H, W), got shape {tuple(x.shape)}")
        b, c, frames, hh, ww = x.shape
        if frames > self.max_frames:
            raise ValueError(
                f"clips of {frames} frames are longer than this network's max_frames = {self.max_frames}"
            )
        parsed = NetworkCondition.parse(cond, network=type(self).__name__)
        if noise_level.ndim == 0:
            noise_level = noise_level.expand(b)
        emb = self.noise_embed(noise_level)
        if self.class_embed is not None:
            labels = labels_or_null(parsed.labels, b, self.num_classes, emb.device)
            emb = emb + self.class_embed(labels)
        # one embedding per clip, shared by its frames: (B, E) -> (B F, E)
        emb = F.silu(emb).repeat_interleave(frames, dim=0)

        h = x.transpose(1, 2).reshape(b * frames, c, hh, ww)
        h, pad = pad_to_multiple(h, self.factor)
        p = self.patch_size
        h = self.conv_in(F.pixel_unshuffle(h, p) if p > 1 else h)
        skips = [h]
        for module in self.down:
            h = module(h, emb, frames) if isinstance(module, _SpaceTimeLayer) else module(h)
            skips.append(h)
        for module in self.mid:
            h = module(h, emb, frames)
        for module in self.up:
            if isinstance(module, _SpaceTimeLayer):
                h = module(torch.cat([h, skips.pop()], dim=1), emb, frames)
            else:
                h = module(h)
        h = self.conv_out(self.norm_out(h, silu=True))
        h = unpad(F.pixel_shuffle(h, p) if p > 1 else h, pad)
        return h.view(b, frames, c, hh, ww).transpose(1, 2)
