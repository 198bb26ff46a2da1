"""A KL-regularised convolutional autoencoder for latent diffusion.

The first stage of Latent Diffusion (Rombach et al. 2022, sec. 3.1 and App. G): an encoder maps an
image ``x (B, C, H, W)`` to the mean and log-variance of a diagonal Gaussian posterior
``q(z | x) = N(mu, diag(exp(logvar)))`` over a latent ``z (B, c, H/f, W/f)`` with ``f = 2**(levels-1)``;
a decoder maps ``z`` back to an image. Training (see :mod:`hwaksan.training.vae`) minimises a
reconstruction loss plus a small weight times

    KL(q(z | x) || N(0, I)) = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)      (Kingma & Welling
                                                                                       2014, App. B)

which keeps the latent space smooth without forcing unit variance. Diffusion then runs on the
*scaled* latents ``(z - shift) * scale`` (``scale`` = 1 / std of the training latents, LDM sec. 4.3.2
and App. G; the shift, as in SD3, centres them), held in the buffers ``latent_scale`` and
``latent_shift`` so that they travel with the weights.

Architecture (the LDM autoencoder, shrunk): encoder ``conv_in``, per level ``num_res_blocks``
residual blocks (GroupNorm, SiLU, 3x3 convolutions) and a stride-2 convolution between levels,
a middle residual block with optional self-attention, ``GroupNorm -> SiLU -> conv`` to ``2c``
channels; the decoder mirrors it with nearest-neighbour upsampling. The log-variance is clamped to
``[-30, 20]`` as in LDM.

Shapes: ``encode(x) -> (mean, logvar)`` each ``(B, c, H/f, W/f)``; ``decode(z) -> (B, C, H, W)``;
sides must be multiples of ``f``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .unet import _group_norm, _SpatialAttention

__all__ = ["AutoencoderKL", "DiagonalGaussian", "kl_standard_normal"]

LOGVAR_RANGE = (-30.0, 20.0)


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` per sample, summed over all but the batch dim.

    ``1/2 sum (mean^2 + exp(logvar) - 1 - logvar)`` (Kingma & Welling 2014, App. B). Shapes:
    ``(B, ...)`` -> ``(B,)``.
    """
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.reshape(kl.shape[0], -1).sum(1)


class DiagonalGaussian:
    """The posterior ``q(z | x)``: a diagonal Gaussian from ``mean`` and ``logvar`` ``(B, c, h, w)``."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean = mean
        self.logvar = logvar.clamp(*LOGVAR_RANGE)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = mean + std * eps`` (reparameterised, differentiable in mean and logvar)."""
        eps = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * eps

    def kl(self) -> torch.Tensor:
        """``KL(q || N(0, I))`` per sample ``(B,)``; see :func:`kl_standard_normal`."""
        return kl_standard_normal(self.mean, self.logvar)


class _ResBlock(nn.Module):
    """``x + conv(SiLU(GN(conv(SiLU(GN(x))))))`` with a 1x1 skip when the width changes."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _group_norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.norm1(x, silu=True))
        h = self.conv2(self.norm2(h, silu=True))
        return self.skip(x) + h


class _Mid(nn.Module):
    """Residual block, optional self-attention, residual block (LDM's middle)."""

    def __init__(self, ch: int, groups: int, attention: bool, head_dim: int) -> None:
        super().__init__()
        self.res1 = _ResBlock(ch, ch, groups)
        self.attn = _SpatialAttention(ch, head_dim, groups) if attention else None
        self.res2 = _ResBlock(ch, ch, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res1(x)
        if self.attn is not None:
            x = self.attn(x)
        return self.res2(x)


class AutoencoderKL(nn.Module):
    """KL-regularised autoencoder (Rombach et al. 2022, sec. 3.1).

    Args:
        in_channels: image channels C.
        latent_channels: latent channels c (LDM's f4 models use 3; SD uses 4).
        model_channels: width of level 0.
        channel_mult: width multiplier per level; ``len - 1`` stride-2 steps give the down-sampling
            factor ``f = 2 ** (len(channel_mult) - 1)`` (``(1, 2, 2)``: f = 4).
        num_res_blocks: residual blocks per level (encoder; the decoder has one more, as in LDM).
        mid_attention: self-attention in the middle of encoder and decoder.
        num_groups: maximum number of GroupNorm groups.
        num_head_channels: channels per attention head.

    Buffers ``latent_scale`` and ``latent_shift`` (scalars, default 1 and 0) hold the latent
    normalisation used by :meth:`encode_latents` / :meth:`decode_latents`; set them with
    :meth:`set_latent_normalisation` after training.

    Example:
        >>> vae = AutoencoderKL(in_channels=3, latent_channels=4, model_channels=16)
        >>> mean, logvar = vae.encode(torch.randn(2, 3, 32, 32))
        >>> mean.shape, vae.decode(mean).shape
        (torch.Size([2, 4, 8, 8]), torch.Size([2, 3, 32, 32]))
    """

    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 4,
        model_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        mid_attention: bool = True,
        num_groups: int = 32,
        num_head_channels: int = 32,
    ) -> None:
        super().__init__()
        channel_mult = [int(m) for m in channel_mult]
        if not channel_mult:
            raise ValueError("channel_mult must name at least one level")
        self.config = {
            "in_channels": in_channels,
            "latent_channels": latent_channels,
            "model_channels": model_channels,
            "channel_mult": channel_mult,
            "num_res_blocks": num_res_blocks,
            "mid_attention": mid_attention,
            "num_groups": num_groups,
            "num_head_channels": num_head_channels,
        }
        self.factor = 2 ** (len(channel_mult) - 1)
        self.latent_channels = latent_channels
        widths = [model_channels * m for m in channel_mult]

        enc: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        ch = widths[0]
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                enc.append(_ResBlock(ch, width, num_groups))
                ch = width
            if level < len(widths) - 1:
                enc.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        enc += [
            _Mid(ch, num_groups, mid_attention, num_head_channels),
            _group_norm(ch, num_groups),
            nn.SiLU(),
            nn.Conv2d(ch, 2 * latent_channels, 3, padding=1),
        ]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [
            nn.Conv2d(latent_channels, ch, 3, padding=1),
            _Mid(ch, num_groups, mid_attention, num_head_channels),
        ]
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks + 1):
                dec.append(_ResBlock(ch, widths[level], num_groups))
                ch = widths[level]
            if level > 0:
                dec += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]
        dec += [_group_norm(ch, num_groups), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

        self.register_buffer("latent_scale", torch.tensor(1.0))
        self.register_buffer("latent_shift", torch.tensor(0.0))

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ValueError(
                f"the autoencoder needs (B, C, H, W) with H and W multiples of {self.factor}, got "
                f"{tuple(x.shape)}: resize the images (e.g. image_size = 32)"
            )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mean, logvar)``, each ``(B, c, H/f, W/f)`` (logvar clamped)."""
        self._check(x)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """``q(z | x)`` as a :class:`DiagonalGaussian`."""
        return DiagonalGaussian(*self.encode(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, f h, f w)`` from latents ``z (B, c, h, w)`` (unscaled)."""
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruction ``(B, C, H, W)`` through a posterior sample (or its mean) and the posterior."""
        q = self.posterior(x)
        z = q.sample(generator) if sample else q.mean
        return self.decode(z), q

    # ---------------------------------------------------------------------------------------
    # the normalised latent space diffusion runs in

    @torch.no_grad()
    def set_latent_normalisation(self, scale: float, shift: float = 0.0) -> None:
        """Store ``scale`` and ``shift`` so that ``(z - shift) * scale`` is the diffusion latent."""
        self.latent_scale.fill_(float(scale))
        self.latent_shift.fill_(float(shift))

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised posterior means ``(mean - shift) * scale`` ``(B, c, H/f, W/f)``."""
        mean, _ = self.encode(x)
        return (mean - self.latent_shift) * self.latent_scale

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Images from normalised latents: ``decode(z / scale + shift)``."""
        return self.decode(z / self.latent_scale + self.latent_shift)
