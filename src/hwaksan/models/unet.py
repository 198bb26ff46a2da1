"""A U-Net denoiser for images.

The architecture follows the "ablated diffusion model" of Dhariwal & Nichol 2021 (ADM, sec. 3 and
App. A), itself a refinement of the DDPM U-Net (Ho et al. 2020, App. B): residual blocks with
GroupNorm and SiLU, the noise-level embedding injected by scale-shift of the second normalisation
("adaptive group normalisation", ADM eq. 2: ``AdaGN(h, y) = y_s GroupNorm(h) + y_b``), multi-head
self-attention at chosen resolutions, skip connections between the down and up paths, and an
optional class embedding added to the noise-level embedding. Optional extras:

- cross-attention to a sequence of condition vectors with a padding mask (Rombach et al. 2022,
  Latent Diffusion, sec. 3.3), placed after each self-attention;
- extra input channels for image conditioning by concatenation (Saharia et al. 2022, SR3);
- a second output of the same size for the learned variance (Nichol & Dhariwal 2021, sec. 3.1).

The network knows nothing about diffusion: ``net(x, noise_level, cond=None) -> Tensor``.

**Pad policy.** Sizes need not be powers of two. The input is zero-padded (split as evenly as
possible between the two sides) up to a multiple of ``2 ** (len(channel_mult) - 1)``, the total
down-sampling factor, and the output is cropped back to the input size. With three levels a 28x28
input needs no padding (28 = 4 * 7); with four levels it is padded to 32x32.

**Conditioning.** ``cond`` is ``None``, a ``(B,)`` long tensor of class labels (index
``num_classes`` is the null class of classifier-free guidance, also used when no label is given),
or a dict / dataclass with any of the fields ``labels``, ``context`` ``(B, L, Dc)``,
``context_mask`` ``(B, L)`` bool (True = real token), ``image`` ``(B, Ce, H, W)`` and ``pooled``
``(B, Dp)``, read by :class:`hwaksan.models.conditioning.NetworkCondition` (shared with the DiT). A
U-Net built with ``aug_conditioning=True`` also reads ``aug_level`` ``(B,)``, the noise-conditioning
augmentation level of a super-resolution model (Ho et al. 2022, cascades), embedded like the noise
level and added to the embedding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import (
    CondParts,
    NetworkCondition,
    check_aug_level,
    cond_field,
    labels_or_null,
    unpack_cond,
)
from .embeddings import NoiseLevelEmbedding
from .group_norm_act import GroupNorm

__all__ = [
    "CondParts",
    "MultiHeadAttention",
    "UNet",
    "cond_field",
    "pad_to_multiple",
    "unpad",
    "unpack_cond",
]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two dims of ``x`` to multiples of ``multiple``.

    Returns the padded tensor and the ``(left, right, top, bottom)`` padding, which
    :func:`unpad` undoes. The padding is split as evenly as possible (the extra pixel, if any, goes
    to the right / bottom).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph or pw:
        x = F.pad(x, pad)
    return x, pad


def unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Crop the ``(left, right, top, bottom)`` padding of :func:`pad_to_multiple` off ``x``."""
    left, right, top, bottom = pad
    if not any(pad):
        return x
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


def _group_norm(channels: int, max_groups: int) -> GroupNorm:
    # The largest group count <= max_groups that divides the channels (32 groups for ch >= 32
    # powers of two, as in ADM; fewer for tiny test widths).
    return GroupNorm(math.gcd(channels, max_groups), channels)


def _num_heads(dim: int, head_dim: int) -> int:
    heads = max(1, dim // head_dim)
    if dim % heads:
        raise ValueError(f"width {dim} is not divisible into heads of {head_dim} channels")
    return heads


#: Key sequences up to this length take :func:`explicit_attention` when a reduced-precision CPU
#: training step needs the gradient: torch's fused CPU attention kernel has a slow bf16 backward on
#: short sequences (64 tokens, 2 heads of 32, batch 64: 14 ms forward + backward against 3 ms; a
#: bf16 training step of the ``unet-32`` preset took 14 % less time with the explicit product).
#: From about 256 keys on the fused kernel is the faster one, and for inference it always is.
EXPLICIT_ATTENTION_MAX_KEYS = 128


def explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``softmax(Q K^T / sqrt(d)) V`` (Vaswani et al. 2017, eq. 1) with the scores and the softmax
    in at least float32, whatever the dtype of ``q, k, v`` ``(B, heads, N | L, d)``; ``attn_mask``
    is a bool mask broadcastable to ``(B, heads, N, L)`` (True = attend; every row keeps one key)."""
    exact = torch.promote_types(q.dtype, torch.float32)
    with torch.autocast(q.device.type, enabled=False):
        scores = torch.matmul(q.to(exact), k.to(exact).transpose(-2, -1)) * q.shape[-1] ** -0.5
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        return torch.matmul(scores.softmax(-1).to(v.dtype), v)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Scaled dot-product attention ``(B, heads, N, d)`` through
    :func:`torch.nn.functional.scaled_dot_product_attention`, or :func:`explicit_attention` (the
    same function) for a reduced-precision CPU training step on at most
    :data:`EXPLICIT_ATTENTION_MAX_KEYS` keys, where it is several times faster."""
    short = (
        q.device.type == "cpu"
        and q.dtype in (torch.bfloat16, torch.float16)
        and k.shape[-2] <= EXPLICIT_ATTENTION_MAX_KEYS
        and torch.is_grad_enabled()
        and (q.requires_grad or k.requires_grad or v.requires_grad)
    )
    if short:
        return explicit_attention(q, k, v, attn_mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


class MultiHeadAttention(nn.Module):
    """Multi-head (self- or cross-) attention over token sequences (Vaswani et al. 2017, eq. 1).

    ``softmax(Q K^T / sqrt(d)) V`` per head through :func:`attention`.

    Args:
        dim: token width C (queries and output).
        num_heads: number of heads; ``dim`` must be divisible by it.
        context_dim: width of the keys' sequence for cross-attention; ``None`` for self-attention.

    Shapes: ``x (B, N, C)``, ``context (B, L, Dc)``, ``mask (B, L)`` bool (True = attend) ->
    ``(B, N, C)``. A sample whose mask is all False gets an output of exactly zero, the same as
    if the attention layer were absent; a masked token has no effect at all.
    """

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.cross = context_dim is not None
        if self.cross:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(context_dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        if self.cross:
            if context is None:
                raise ValueError("cross-attention needs a context")
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (heads, c // heads)).transpose(1, 2) for t in (q, k, v))
        attn_mask = keep = None
        if mask is not None:
            mask = mask.to(torch.bool)
            keep = mask.any(dim=-1)
            # Rows with no real token attend everywhere (no NaN) and are zeroed below.
            attn_mask = (mask | ~keep[:, None])[:, None, None, :]
        out = attention(q, k, v, attn_mask)
        out = self.proj(out.transpose(1, 2).reshape(b, n, c))
        if keep is not None:
            out = out * keep[:, None, None].to(out.dtype)
        return out


class _ResBlock(nn.Module):
    """ADM residual block with AdaGN: ``h = conv2(drop(silu(AdaGN(conv1(silu(GN(x))), emb))))``."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = _group_norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.norm1(x, silu=True))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h, scale, shift, silu=True)  # silu(GN(h) (1 + scale) + shift), ADM eq. 2
        h = self.conv2(self.dropout(h))
        return self.skip(x) + h


class _SpatialAttention(nn.Module):
    """Residual attention on the pixels of a feature map: ``x + Attn(GN(x))`` (self or cross)."""

    def __init__(self, channels: int, head_dim: int, groups: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.norm = _group_norm(channels, groups)
        self.attn = MultiHeadAttention(channels, _num_heads(channels, head_dim), context_dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        out = self.attn(tokens, context, mask)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class _Layer(nn.Module):
    """One U-Net step: a residual block, then optional self-attention and cross-attention."""

    def __init__(
        self,
        cin: int,
        cout: int,
        emb_dim: int,
        dropout: float,
        groups: int,
        attention: bool,
        head_dim: int,
        context_dim: int | None,
    ) -> None:
        super().__init__()
        self.res = _ResBlock(cin, cout, emb_dim, dropout, groups)
        self.attn = _SpatialAttention(cout, head_dim, groups) if attention else None
        self.cross = (
            _SpatialAttention(cout, head_dim, groups, context_dim)
            if attention and context_dim is not None
            else None
        )

    def forward(
        self,
        h: torch.Tensor,
        emb: torch.Tensor,
        context: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        h = self.res(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        if self.cross is not None and context is not None:
            h = self.cross(h, context, mask)
        return h


class _Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """ADM-style U-Net (Dhariwal & Nichol 2021, sec. 3; Ho et al. 2020, App. B).

    Level ``i`` (0 = full resolution) works at ``H / 2**i`` with ``model_channels *
    channel_mult[i]`` channels and ``num_res_blocks`` residual blocks on the way down
    (``num_res_blocks + 1`` on the way up, each fed a skip connection). Between levels: a stride-2
    convolution down, nearest-neighbour x2 and a convolution up. The middle is
    residual block, self-attention (if ``mid_attention``), residual block. The output convolution
    starts at zero, so the untrained network outputs exactly zero.

    Args:
        in_channels: image channels C.
        model_channels: width of level 0.
        channel_mult: width multiplier per level; its length is the number of levels.
        num_res_blocks: residual blocks per level on the way down.
        attention_levels: levels (0 = full resolution) with self-attention (and cross-attention
            when ``context_dim`` is set). Levels, not pixel sizes, so that one config serves any
            input size. Default: the lowest resolution only; ``[]`` for none.
        mid_attention: self-attention (and cross-attention) in the middle block.
        dropout: dropout rate inside residual blocks.
        num_classes: if given, a class embedding with ``num_classes + 1`` rows (the last is the
            null class of classifier-free guidance, used when no label is given) is added to the
            noise-level embedding.
        context_dim: width Dc of the condition sequence for cross-attention (``None``: off).
        in_extra_channels: channels Ce of a conditioning image ``cond["image"]`` concatenated to
            the input (SR3-style image conditioning).
        learn_sigma: double the output channels: ``[prediction (C), variance v (C)]``, with ``v``
            raw (interpolation coefficient of Nichol & Dhariwal 2021 eq. 14 before ``(v+1)/2``).
        out_channels: output channels before doubling (default ``in_channels``).
        aug_conditioning: read ``cond["aug_level"]`` ``(B,)`` (a super-resolution model's
            noise-conditioning augmentation level, Ho et al. 2022 sec. 3.2; 0 when absent), embed it
            like the noise level and add it to the embedding. Off by default.
        pooled_dim: width of a pooled condition vector ``cond["pooled"]`` ``(B, Dp)`` (e.g. a sentence
            embedding) projected linearly and added to the noise-level embedding, as Imagen adds its
            pooled text embedding (Saharia et al. 2022, sec. 2.1 / App. E); ``None``: off. Zeros
            when absent, and for a sample whose ``context_mask`` is all False (the null caption).
        num_head_channels: channels per attention head (one head if the width is smaller).
        emb_dim: width of the noise-level embedding (default ``4 * model_channels``).
        num_groups: maximum number of GroupNorm groups.

    Shapes: ``x (B, C, H, W)``, ``noise_level (B,)`` -> ``(B, C_out, H, W)`` with ``C_out =
    out_channels * (2 if learn_sigma else 1)``.

    Example:
        >>> net = UNet(in_channels=1, model_channels=16, channel_mult=(1, 2), num_res_blocks=1)
        >>> net(torch.randn(2, 1, 28, 28), torch.zeros(2)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        in_channels: int = 1,
        model_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] | None = None,
        mid_attention: bool = True,
        dropout: float = 0.0,
        num_classes: int | None = None,
        context_dim: int | None = None,
        in_extra_channels: int = 0,
        learn_sigma: bool = False,
        out_channels: int | None = None,
        aug_conditioning: bool = False,
        pooled_dim: int | None = None,
        num_head_channels: int = 32,
        emb_dim: int | None = None,
        num_groups: int = 32,
    ) -> None:
        super().__init__()
        channel_mult = [int(m) for m in channel_mult]
        if not channel_mult:
            raise ValueError("channel_mult must name at least one level")
        if attention_levels is None:
            attention_levels = [len(channel_mult) - 1]
        attention_levels = sorted(int(a) for a in attention_levels)
        bad = [a for a in attention_levels if not 0 <= a < len(channel_mult)]
        if bad:
            raise ValueError(f"attention_levels {bad} out of range: levels are 0..{len(channel_mult) - 1}")
        out_channels = in_channels if out_channels is None else out_channels
        emb_dim = 4 * model_channels if emb_dim is None else emb_dim
        self.config = {
            "in_channels": in_channels,
            "model_channels": model_channels,
            "channel_mult": channel_mult,
            "num_res_blocks": num_res_blocks,
            "attention_levels": attention_levels,
            "mid_attention": mid_attention,
            "dropout": dropout,
            "num_classes": num_classes,
            "context_dim": context_dim,
            "in_extra_channels": in_extra_channels,
            "learn_sigma": learn_sigma,
            "out_channels": out_channels,
            "num_head_channels": num_head_channels,
            "emb_dim": emb_dim,
            "num_groups": num_groups,
        }
        if aug_conditioning:  # only when on: configs of older checkpoints stay as they were
            self.config["aug_conditioning"] = True
        if pooled_dim:  # likewise
            self.config["pooled_dim"] = pooled_dim
        self.num_classes = num_classes
        self.in_extra_channels = in_extra_channels
        self.factor = 2 ** (len(channel_mult) - 1)

        self.noise_embed = NoiseLevelEmbedding(emb_dim, freq_dim=model_channels + model_channels % 2)
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        freq = model_channels + model_channels % 2
        self.aug_embed = NoiseLevelEmbedding(emb_dim, freq_dim=freq) if aug_conditioning else None
        self.pooled_proj = nn.Linear(pooled_dim, emb_dim) if pooled_dim else None

        def layer(cin: int, cout: int, attention: bool) -> _Layer:
            return _Layer(cin, cout, emb_dim, dropout, num_groups, attention, num_head_channels, context_dim)

        ch = model_channels * channel_mult[0]
        self.conv_in = nn.Conv2d(in_channels + in_extra_channels, ch, 3, padding=1)
        skip_channels = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.down.append(layer(ch, model_channels * mult, level in attention_levels))
                ch = model_channels * mult
                skip_channels.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(_Downsample(ch))
                skip_channels.append(ch)

        self.mid = nn.ModuleList([layer(ch, ch, mid_attention), layer(ch, ch, False)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                cin = ch + skip_channels.pop()
                self.up.append(layer(cin, model_channels * mult, level in attention_levels))
                ch = model_channels * mult
            if level > 0:
                self.up.append(_Upsample(ch))

        c_out = out_channels * (2 if learn_sigma else 1)
        self.norm_out = _group_norm(ch, num_groups)
        self.conv_out = nn.Conv2d(ch, c_out, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(
        self, noise_level: torch.Tensor, labels: torch.Tensor | None, aug_level: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Noise-level embedding plus class embedding (plus the augmentation-level embedding when
        ``aug_conditioning``): ``(B,)`` -> ``(B, emb_dim)``."""
        emb = self.noise_embed(noise_level)
        if self.class_embed is not None:
            emb = emb + self.class_embed(labels_or_null(labels, emb.shape[0], self.num_classes, emb.device))
        check_aug_level(aug_level, self.aug_embed is not None, type(self).__name__)
        if self.aug_embed is not None:
            aug = torch.zeros(emb.shape[:1], device=emb.device) if aug_level is None else aug_level
            aug = torch.as_tensor(aug, device=emb.device)
            emb = emb + self.aug_embed(aug.expand(emb.shape[0]) if aug.ndim == 0 else aug)
        return emb

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Run the network.

        Args:
            x: noisy images ``(B, C, H, W)``.
            noise_level: ``(B,)`` scaled noise level (e.g. ``c_noise``), not a step index.
            cond: see :class:`hwaksan.models.conditioning.NetworkCondition`.

        Returns:
            ``(B, C_out, H, W)``.
        """
        c = NetworkCondition.parse(
            cond,
            network=type(self).__name__,
            in_extra_channels=self.in_extra_channels,
            reads_aug_level=self.aug_embed is not None,
        )
        if noise_level.ndim == 0:
            noise_level = noise_level.expand(x.shape[0])
        emb = self.embed(noise_level, c.labels, c.aug_level)
        if self.pooled_proj is not None:
            emb = emb + self.pooled_proj(c.pooled_vector(emb, self.pooled_proj.in_features))
        emb = F.silu(emb)  # the SiLU before each block's Linear
        if self.in_extra_channels:
            x = torch.cat([x, c.image.to(x.dtype)], dim=1)
        context, mask = c.context, c.context_mask
        if context is not None:
            context = context.to(x.dtype)

        h, pad = pad_to_multiple(x, self.factor)
        h = self.conv_in(h)
        skips = [h]
        for module in self.down:
            h = module(h, emb, context, mask) if isinstance(module, _Layer) else module(h)
            skips.append(h)
        for module in self.mid:
            h = module(h, emb, context, mask)
        for module in self.up:
            if isinstance(module, _Layer):
                h = module(torch.cat([h, skips.pop()], dim=1), emb, context, mask)
            else:
                h = module(h)
        h = self.conv_out(self.norm_out(h, silu=True))
        return unpad(h, pad)
