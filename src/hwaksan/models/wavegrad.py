"""A WaveGrad vocoder network (Chen et al. 2021, "WaveGrad", sec. 3 and figs. 3-6), scaled to a CPU.

The network predicts from a noisy waveform ``x (B, 1, T)``, its noise level and a log-mel
spectrogram ``cond["signal"] (B, n_mels, F)`` with ``T = F * prod(factors)`` (a mel hop of
``prod(factors)`` samples):

- **UBlocks** upsample the mel frames to the waveform's rate: block ``i`` upsamples by
  ``factors[i]`` (nearest neighbour) and runs four dilated 3-tap convolutions (dilations 1, 2, 4, 8)
  in two residual halves (fig. 3);
- **DBlocks** downsample the noisy waveform by the same factors in reverse (fig. 4), giving a
  feature map at the output rate of every UBlock;
- **FiLM** modules (fig. 5) turn each DBlock feature map, plus the embedding of the noise level
  (and of the class label, if any), into a scale ``gamma`` and a shift ``beta`` that modulate the
  UBlock at the same rate: ``h <- gamma * h + beta`` (Perez et al. 2018).

The noise level is the library's scaled noise level (:mod:`hwaksan.parameterizations`), embedded
with sinusoidal features and an MLP, as in the other networks: WaveGrad's continuous noise-level
conditioning (sec. 3.1, eq. 5) with the noise level of any process. The network is fully
convolutional: it trains on windows and vocodes whole clips. The output convolution starts at
zero, so the untrained network outputs exactly zero.

**Envelope prior** (``envelope_prior=True``, an option): speech is silent between words, and a
small vocoder that must cancel the input noise there by itself fills the pauses with hiss. PriorGrad
(Lee et al. 2022, sec. 3) gives each sample position a prior standard deviation from the frame
energy of its mel. Here the same data-dependent scale enters the EDM preconditioning (Karras et al.
2022, eq. 7 and App. B.6, whose ``c_skip``, ``c_out``, ``c_in`` hold elementwise for a per-element
data std): with ``s (B, 1, T)`` the mel's amplitude envelope (:func:`mel_envelope`, the frame RMS of
the mel magnitudes times a gain fitted on the training clips, floored, linearly interpolated to the
waveform rate), the network returns the denoised waveform

    D = s^2 / (s^2 + sigma~^2) x~ + sigma~ s / sqrt(s^2 + sigma~^2) F(x~ / sqrt(s^2 + sigma~^2), ...)

so where the mel is silent ``D`` stays within ``s`` of zero at every noise level, whatever ``F``
does. The network then is an x0-predictor: train it with ``prediction = "x0"``. It reads
``x~ = x / alpha`` and ``sigma~ = sigma / alpha`` back from the library's network input
``c_in x = x~ / sqrt(sd^2 + sigma~^2)`` and noise level ``c_noise = ln(sigma~) / 4``
(:func:`hwaksan.parameterizations.input_scale` and :func:`~hwaksan.parameterizations.noise_level`,
with ``sd = sigma_data``), so it works with every process.

Shapes: ``x (B, 1, T)``, ``noise_level (B,)``, ``cond`` with ``signal (B, n_mels, T / hop)`` and
optionally ``labels (B,)`` -> ``(B, 1, T)``.

Example:
    >>> net = WaveGrad(n_mels=8, factors=(2, 2), channels=(16, 8), down_channels=(4, 8))
    >>> net(torch.randn(2, 1, 32), torch.zeros(2), {"signal": torch.randn(2, 8, 8)}).shape
    torch.Size([2, 1, 32])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import NetworkCondition, labels_or_null
from .embeddings import NoiseLevelEmbedding

__all__ = ["WaveGrad", "mel_envelope"]

_SLOPE = 0.2  # leaky ReLU slope (WaveGrad figs. 3-5)


def mel_envelope(
    mel: torch.Tensor,
    hop: int,
    *,
    gain: float = 1.0,
    floor: float = 0.0,
    centre: float = -4.0,
    scale: float = 7.5,
) -> torch.Tensor:
    """The amplitude envelope ``s (B, 1, F * hop)`` of normalised log-mels ``mel (B, n_mels, F)``.

    The log-mel magnitudes ``M = centre + scale * mel`` (the inverse of
    :func:`hwaksan.data.audio_features.normalise_log_mel`, whose constants are the defaults) give
    the frame envelope ``e_f = sqrt(mean_k exp(2 M_kf))``; ``s = max(gain * e, floor)`` is placed at
    the frame centres ``f * hop + hop / 2`` and interpolated linearly between them (held constant
    before the first and after the last centre).
    """
    log_mag = centre + scale * mel.float()
    frame = (2 * log_mag).exp().mean(1, keepdim=True).sqrt()  # (B, 1, F)
    env = F.interpolate(frame, scale_factor=hop, mode="linear", align_corners=False)
    return (gain * env).clamp_min(floor)


class _FiLM(nn.Module):
    """FiLM (fig. 5): ``h = lrelu(conv(feat) + W emb)``, ``(gamma, beta) = conv(h)``, each
    ``(B, C_out, L)``."""

    def __init__(self, cin: int, cout: int, emb_dim: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv1d(cin, cin, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cin)
        self.conv_out = nn.Conv1d(cin, 2 * cout, 3, padding=1)

    def forward(self, feat: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.leaky_relu(self.conv_in(feat) + self.emb(emb)[:, :, None], _SLOPE)
        gamma, beta = self.conv_out(h).chunk(2, dim=1)
        return gamma, beta


class _UBlock(nn.Module):
    """UBlock (fig. 3): upsample by ``factor``, four dilated convolutions in two residual halves,
    each modulated by the FiLM ``(gamma, beta)`` of the matching DBlock."""

    def __init__(self, cin: int, cout: int, factor: int, dilations: Sequence[int] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.factor = factor
        self.skip = nn.Conv1d(cin, cout, 1)
        d = list(dilations)
        self.convs = nn.ModuleList(
            [nn.Conv1d(cin if i == 0 else cout, cout, 3, dilation=di, padding=di) for i, di in enumerate(d)]
        )

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        h = self.convs[0](F.leaky_relu(up, _SLOPE))
        h = self.convs[1](F.leaky_relu(gamma * h + beta, _SLOPE))
        out = h + self.skip(up)
        h = self.convs[2](F.leaky_relu(gamma * out + beta, _SLOPE))
        h = self.convs[3](F.leaky_relu(gamma * h + beta, _SLOPE))
        return out + h


class _DBlock(nn.Module):
    """DBlock (fig. 4): downsample by ``factor`` (a strided convolution), three dilated convolutions,
    plus a 1x1 residual path."""

    def __init__(self, cin: int, cout: int, factor: int) -> None:
        super().__init__()
        self.down = nn.Conv1d(cin, cin, 2 * factor + 1, stride=factor, padding=factor)
        self.skip = nn.Conv1d(cin, cout, 1)
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(cin if i == 0 else cout, cout, 3, dilation=d, padding=d)
                for i, d in enumerate((1, 2, 4))
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        h = x
        for conv in self.convs:
            h = conv(F.leaky_relu(h, _SLOPE))
        return h + self.skip(x)


class WaveGrad(nn.Module):
    """A WaveGrad network (see the module docstring).

    Args:
        in_channels: waveform channels (1).
        n_mels: mel bands of the condition ``cond["signal"]``.
        factors: upsampling factor of each UBlock, lowest rate first; their product is the mel hop.
        channels: output width of each UBlock (lowest rate first).
        down_channels: width of the DBlock features at each rate, full rate first (the first is the
            input convolution's; the FiLM at rate ``T / prod(factors[i+1:])`` reads entry
            ``len(factors) - 1 - i``).
        mel_channels: width of the convolution on the mel frames.
        emb_dim: width of the noise-level embedding.
        num_classes: if given, a class embedding (``num_classes + 1`` rows, the last is the null class
            of classifier-free guidance) added to the noise-level embedding.
        envelope_prior: precondition with the mel's amplitude envelope and return ``D`` (module
            docstring; train with ``prediction = "x0"``).
        sigma_data: the ``sigma_data`` of the denoiser's input scaling (read back by the envelope
            prior).
        envelope_gain, envelope_floor: ``gain`` and ``floor`` of :func:`mel_envelope` (the trainer's
            audio extension fits the gain on the training clips).

    Shapes: ``x (B, 1, T)``, ``noise_level (B,)`` -> ``(B, 1, T)``.
    """

    data_axes = 1

    def __init__(
        self,
        in_channels: int = 1,
        n_mels: int = 32,
        factors: Sequence[int] = (4, 4, 4, 4),
        channels: Sequence[int] = (128, 96, 64, 32),
        down_channels: Sequence[int] = (16, 32, 64, 96),
        mel_channels: int = 128,
        emb_dim: int = 128,
        num_classes: int | None = None,
        envelope_prior: bool = False,
        sigma_data: float = 1.0,
        envelope_gain: float = 1.0,
        envelope_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        factors, channels, down_channels = (
            [int(f) for f in factors],
            [int(c) for c in channels],
            [int(c) for c in down_channels],
        )
        if not (len(factors) == len(channels) == len(down_channels)) or not factors:
            raise ValueError(
                f"factors, channels and down_channels need one entry per block, got {factors}, {channels}, "
                f"{down_channels}"
            )
        self.config = {
            "in_channels": in_channels,
            "n_mels": n_mels,
            "factors": factors,
            "channels": channels,
            "down_channels": down_channels,
            "mel_channels": mel_channels,
            "emb_dim": emb_dim,
            "num_classes": num_classes,
            "envelope_prior": bool(envelope_prior),
            "sigma_data": float(sigma_data),
            "envelope_gain": float(envelope_gain),
            "envelope_floor": float(envelope_floor),
        }
        if envelope_prior and not (sigma_data > 0 and envelope_gain > 0 and envelope_floor > 0):
            raise ValueError(
                f"the envelope prior needs sigma_data, envelope_gain and envelope_floor > 0, got "
                f"{sigma_data}, {envelope_gain}, {envelope_floor}"
            )
        self.hop = math.prod(factors)
        self.num_classes = num_classes
        self.noise_embed = NoiseLevelEmbedding(emb_dim, freq_dim=64)
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

        self.mel_in = nn.Conv1d(n_mels, mel_channels, 3, padding=1)
        self.ublocks = nn.ModuleList()
        cin = mel_channels
        for f, c in zip(factors, channels, strict=True):
            self.ublocks.append(_UBlock(cin, c, f))
            cin = c
        self.out = nn.Conv1d(cin, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

        # DBlocks run from the full rate down; dblock j maps rate level j to j + 1.
        self.x_in = nn.Conv1d(in_channels, down_channels[0], 5, padding=2)
        rev = factors[::-1]
        self.dblocks = nn.ModuleList(
            [_DBlock(down_channels[j], down_channels[j + 1], rev[j]) for j in range(len(factors) - 1)]
        )
        # FiLM of UBlock i (output rate level L - 1 - i from the full rate) reads down level L - 1 - i.
        n = len(factors)
        self.films = nn.ModuleList([_FiLM(down_channels[n - 1 - i], channels[i], emb_dim) for i in range(n)])

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Run the network.

        Args:
            x: noisy waveforms ``(B, 1, T)``.
            noise_level: ``(B,)`` scaled noise level (e.g. ``c_noise``).
            cond: ``{"signal": (B, n_mels, T / hop), "labels": (B,)}``, both optional (no
                ``signal``: zeros, the null condition; no labels: the null class).

        Raises:
            ValueError: a ``signal`` whose shape does not match ``(B, n_mels, T / hop)``.
        """
        c = NetworkCondition.parse(cond, network=type(self).__name__)
        b, _, t = x.shape
        mel = c.signal
        if mel is None:  # the null condition: a all-zero mel input (an unconditional model)
            mel = x.new_zeros(b, self.config["n_mels"], t // self.hop)
        if mel.shape[1:] != (self.config["n_mels"], t // self.hop) or t % self.hop:
            raise ValueError(
                f"cond['signal'] has shape {tuple(mel.shape)}, but a waveform of {t} samples needs "
                f"(B, {self.config['n_mels']}, {t // self.hop}) with T a multiple of the hop {self.hop}"
            )
        if self.config["envelope_prior"]:
            return self._envelope_denoiser(x, noise_level, c.labels, mel)
        return self._body(x, noise_level, c.labels, mel)

    def _envelope_denoiser(
        self, x: torch.Tensor, noise_level: torch.Tensor, labels: torch.Tensor | None, mel: torch.Tensor
    ) -> torch.Tensor:
        """``D`` of the envelope prior (module docstring) from ``x = c_in x~`` and ``c_noise``."""
        cfg = self.config
        sigma = (4 * noise_level.float()).exp()[:, None, None]  # sigma~ = exp(4 c_noise)
        x_tilde = x.float() * (cfg["sigma_data"] ** 2 + sigma**2).sqrt()
        s = mel_envelope(mel, self.hop, gain=cfg["envelope_gain"], floor=cfg["envelope_floor"])
        total = (s**2 + sigma**2).sqrt()
        f = self._body((x_tilde / total).to(x.dtype), noise_level, labels, mel).float()
        return (s**2 / total**2 * x_tilde + sigma * s / total * f).to(x.dtype)

    def _body(
        self, x: torch.Tensor, noise_level: torch.Tensor, labels: torch.Tensor | None, mel: torch.Tensor
    ) -> torch.Tensor:
        """The UBlock / DBlock / FiLM network ``F`` (module docstring)."""
        b = x.shape[0]
        emb = self.noise_embed(noise_level)
        if self.class_embed is not None:
            emb = emb + self.class_embed(labels_or_null(labels, b, self.num_classes, x.device))
        feats = [self.x_in(x)]
        for block in self.dblocks:
            feats.append(block(feats[-1]))
        h = self.mel_in(mel.to(x.dtype))
        n = len(self.ublocks)
        for i, (block, film) in enumerate(zip(self.ublocks, self.films, strict=True)):
            gamma, beta = film(feats[n - 1 - i], emb)
            h = block(h, gamma, beta)
        return self.out(F.leaky_relu(h, _SLOPE))
