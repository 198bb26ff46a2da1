"""Log-mel spectrograms of waveforms: the vocoder's condition and the audio metrics' features.

A waveform ``x (B, T)`` at ``sample_rate`` gives the magnitude STFT (Hann window of ``n_fft``,
hop ``hop``), projected on a mel filter bank of ``n_mels`` bands (Slaney mel scale and area
normalisation, librosa's defaults), and its natural log floored at ``1e-5`` (the HiFi-GAN /
WaveGrad convention):

    M = log(max(mel_basis @ |STFT(x)|, 1e-5))                                  (n_mels, frames)

The signal is reflect-padded by ``(n_fft - hop) / 2`` on both sides and framed without centring,
so ``frames = T / hop`` exactly and frame ``k`` covers samples ``[k hop, (k + 1) hop)`` of the
waveform at its centre: a vocoder upsamples ``M`` by ``hop`` to the waveform's rate (Chen et al.
2021, WaveGrad, sec. 3 uses hop 300 at 24 kHz; here hop 256 at 16 kHz).

The filter bank comes from ``librosa.filters.mel`` and the STFT from ``torch.stft`` (batched,
differentiable; the same numbers as ``librosa.feature.melspectrogram(power=1, center=False)`` on
the padded signal, within float32 rounding: ``tests/audio``; speed: ``docs/benchmarks-audio.md``).
librosa is imported inside the functions (it pulls numba): ``pip install 'hwaksan[audio]'``.

:func:`normalise_log_mel` maps ``M`` to about [-1, 1] for the networks:
``m = (M - LOG_MEL_CENTRE) / LOG_MEL_SCALE`` (``M`` spans [log 1e-5, ~3.5] on peak-normalised speech).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_MEL",
    "LOG_MEL_CENTRE",
    "LOG_MEL_FLOOR",
    "LOG_MEL_SCALE",
    "MelSettings",
    "denormalise_log_mel",
    "inverse_stft",
    "log_mel",
    "mel_basis",
    "mel_consistent",
    "mel_magnitudes",
    "mel_projection",
    "mel_to_magnitude",
    "normalise_log_mel",
    "stft",
]

LOG_MEL_FLOOR = 1e-5
LOG_MEL_CENTRE = -4.0
LOG_MEL_SCALE = 7.5


@dataclass(frozen=True)
class MelSettings:
    """How a waveform becomes a log-mel spectrogram (see the module docstring)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 32
    fmin: float = 0.0
    fmax: float = 8000.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> MelSettings:
        """The settings among ``params`` (e.g. a model's ``modality_params``); defaults for the rest."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in params.items() if k in names})


DEFAULT_MEL = MelSettings()
"""The settings of ``speech-digits``: 16 kHz, n_fft 1024, hop 256, 32 bands up to 8 kHz."""


def _librosa():
    try:
        import librosa
    except ImportError:
        raise RuntimeError(
            "audio features need librosa: pip install 'hwaksan[audio]' (or: pip install librosa)"
        ) from None
    return librosa


@lru_cache(maxsize=8)
def mel_basis(settings: MelSettings) -> torch.Tensor:
    """The mel filter bank ``(n_mels, n_fft // 2 + 1)`` float32 (``librosa.filters.mel``)."""
    basis = _librosa().filters.mel(
        sr=settings.sample_rate,
        n_fft=settings.n_fft,
        n_mels=settings.n_mels,
        fmin=settings.fmin,
        fmax=settings.fmax,
    )
    return torch.from_numpy(basis).float()


def stft(x: torch.Tensor, settings: MelSettings) -> torch.Tensor:
    """The complex STFT ``(B, n_fft // 2 + 1, T // hop)`` of waveforms ``x (B, T)`` float32, framed as
    in the module docstring (reflect padding, no centring)."""
    pad = (settings.n_fft - settings.hop) // 2
    padded = F.pad(x[:, None].float(), (pad, pad), mode="reflect")[:, 0]
    window = torch.hann_window(settings.n_fft, device=x.device)
    return torch.stft(padded, settings.n_fft, settings.hop, window=window, center=False, return_complex=True)


def magnitude_stft(x: torch.Tensor, settings: MelSettings) -> torch.Tensor:
    """``|STFT(x)|`` ``(B, n_fft // 2 + 1, T // hop)`` of waveforms ``x (B, T)`` (module docstring)."""
    return stft(x, settings).abs()


def inverse_stft(spec: torch.Tensor, settings: MelSettings) -> torch.Tensor:
    """Waveforms ``(B, F * hop)`` of complex spectrograms ``spec (B, n_fft // 2 + 1, F)``: the
    least-squares inverse of :func:`stft` (Griffin & Lim 1984, eq. 6),

        x(n) = sum_f w(n - f hop) y_f(n - f hop) / sum_f w(n - f hop)^2,   y_f = irfft(spec[:, :, f]),

    on the padded signal, then the padding cut off. ``inverse_stft(stft(x)) = x`` up to rounding;
    for a spectrogram that no signal has (a modified one) it is the signal whose STFT is nearest."""
    n_fft, hop = settings.n_fft, settings.hop
    frames = spec.shape[-1]
    window = torch.hann_window(n_fft, device=spec.device)
    y = torch.fft.irfft(spec, n=n_fft, dim=1) * window[:, None]  # (B, n_fft, F)
    length = (frames - 1) * hop + n_fft
    fold = dict(output_size=(1, length), kernel_size=(1, n_fft), stride=(1, hop))
    num = F.fold(y, **fold)[:, 0, 0]
    den = F.fold(window.square()[None, :, None].expand(1, n_fft, frames), **fold)[:, 0, 0]
    pad = (n_fft - hop) // 2
    return (num / den.clamp_min(1e-8))[:, pad : pad + frames * hop]


def mel_magnitudes(mel: torch.Tensor) -> torch.Tensor:
    """The mel-band magnitudes ``exp(M)`` ``(B, n_mels, F)`` of normalised log-mels ``mel``, with
    floored bins (``M = log 1e-5``, silence) taken as zero."""
    m = denormalise_log_mel(mel.float()).exp()
    return torch.where(m <= LOG_MEL_FLOOR * 1.0001, torch.zeros_like(m), m)


def mel_consistent(
    x: torch.Tensor, target: torch.Tensor, settings: MelSettings = DEFAULT_MEL, iterations: int = 1
) -> torch.Tensor:
    """Waveforms ``(B, T)`` whose mel spectrogram is nearer ``target (B, n_mels, T // hop)`` (mel-band
    magnitudes, :func:`mel_magnitudes`), from ``x (B, T)``: ``iterations`` times,

        Y = stft(x),   S <- S * (B^T (target / (B S))) / (B^T 1)   with S = |Y|,   x <- istft(S e^{i angle Y})

    (``B`` the mel filter bank). The magnitude step is Lee & Seung's (2001, eq. 5) multiplicative
    update of ``S >= 0`` for the divergence ``KL(target || B S)`` at fixed ``B``: it never increases
    the divergence, keeps the fine structure of ``S`` inside each band (every bin of a band is scaled
    by its bands' energy ratios) and leaves ``S`` unchanged when ``B S = target``, but for the bins no
    band weighs (``B^T 1 = 0``: DC and Nyquist with the default bank), which go to zero. The phase is
    kept and the inverse STFT makes the spectrogram consistent again (Griffin & Lim 1984). Started
    from noise this is a Griffin-Lim for mels; started from a vocoder's estimate, a projection of
    it towards its condition."""
    basis = mel_basis(settings).to(x.device)
    norm = basis.sum(0).clamp_min(1e-8)[:, None]  # (n_freq, 1): B^T 1
    target = target.to(x.device, torch.float32)
    for _ in range(iterations):
        spec = stft(x, settings)
        mag = spec.abs()
        ratio = target / (basis @ mag).clamp_min(1e-8)  # (B, n_mels, F)
        x = inverse_stft(spec * ((basis.T @ ratio) / norm), settings)
    return x


def mel_projection(
    mel: torch.Tensor, settings: MelSettings = DEFAULT_MEL, iterations: int = 8
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map ``x (B, 1, T) -> mel_consistent(x, mel_magnitudes(mel), settings, iterations)`` for
    normalised log-mels ``mel (B, n_mels, T // hop)``: what holds a vocoder's denoised estimates to
    their condition (:class:`hwaksan.tasks.vocode.ProjectedDenoiser`, GLA-Grad's idea)."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    target = mel_magnitudes(mel)

    def project(x: torch.Tensor) -> torch.Tensor:
        return mel_consistent(x[:, 0].float(), target, settings, iterations)[:, None]

    return project


def mel_to_magnitude(mel: torch.Tensor, settings: MelSettings = DEFAULT_MEL) -> torch.Tensor:
    """The linear magnitudes ``(B, n_fft // 2 + 1, F)`` float32 of normalised log-mels ``mel (B,
    n_mels, F)``: the non-negative least-squares solution of ``mel_basis @ S = exp(M)``
    (``librosa.feature.inverse.mel_to_stft``), with floored (silent) mel bins taken as zero."""
    mag = mel_magnitudes(mel.detach().cpu()).double().numpy()
    s = settings
    out = [
        _librosa().feature.inverse.mel_to_stft(
            m, sr=s.sample_rate, n_fft=s.n_fft, power=1.0, fmin=s.fmin, fmax=s.fmax
        )
        for m in mag
    ]
    return torch.from_numpy(np.stack(out)).float()


def log_mel(x: torch.Tensor, settings: MelSettings = DEFAULT_MEL) -> torch.Tensor:
    """``M = log(max(mel_basis @ |STFT(x)|, 1e-5))``: ``(B, T)`` or ``(B, 1, T)`` ->
    ``(B, n_mels, T // hop)`` float32 (module docstring).

    Raises:
        ValueError: ``T`` is not a multiple of ``hop`` or shorter than ``n_fft``.
    """
    if x.ndim == 3:
        x = x[:, 0]
    t = x.shape[-1]
    if t % settings.hop or t < settings.n_fft:
        raise ValueError(
            f"a waveform of {t} samples: need a multiple of hop = {settings.hop}, at least n_fft = "
            f"{settings.n_fft}"
        )
    mag = magnitude_stft(x, settings)
    mel = mel_basis(settings).to(mag.device) @ mag
    return mel.clamp_min(LOG_MEL_FLOOR).log()


def normalise_log_mel(m: torch.Tensor) -> torch.Tensor:
    """``(M - LOG_MEL_CENTRE) / LOG_MEL_SCALE``: the log-mel in about [-1, 1] (any shape)."""
    return (m - LOG_MEL_CENTRE) / LOG_MEL_SCALE


def denormalise_log_mel(m: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalise_log_mel`."""
    return m * LOG_MEL_SCALE + LOG_MEL_CENTRE
