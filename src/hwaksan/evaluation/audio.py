"""Measuring generated audio: spectral distances to reference clips, a Griffin-Lim baseline, and a
spoken-digit classifier for class-conditional samples.

- :func:`log_spectral_distance` (LSD, in dB): for power spectrograms ``P = |STFT|^2`` of an estimate
  and its reference (Hann window 1024, hop 256 at 16 kHz, the mel settings' STFT), both floored at
  ``max(P_ref) * 10^(-top_db / 10)`` (80 dB below the reference's peak),

      LSD = mean_frames sqrt( mean_freq (10 log10(P_ref / P_est))^2 ).

  Identical clips give 0; it does not depend on the phase (Gray & Markel 1976).
- :func:`mel_cepstral_distortion` (MCD, in dB): mel-cepstra ``c = DCT-II(ln mel)`` (orthonormal,
  the log-mel of :mod:`hwaksan.data.audio_features`), coefficients 1..12 (``c_0``, the loudness,
  left out), frame by frame without time warping (the clips are aligned by construction),

      MCD = (10 / ln 10) sqrt(2 sum_{d=1}^{12} (c_d - c'_d)^2), averaged over frames

  (Kubichek 1993).
- :func:`griffin_lim`: inversion of the same mel spectrogram (librosa: the mel filter bank's
  non-negative least-squares pseudo-inverse, then 32 Griffin-Lim iterations, Griffin & Lim 1984),
  the classical baseline a neural vocoder must beat.
- :func:`train_digit_classifier`: the library's clean classifier
  (:func:`hwaksan.training.classifier.train_classifier`) on the normalised log-mels of the
  ``speech-digits`` training voices (``speech-digits-mel``); its accuracy on the validation voices is
  the ceiling the class-conditional samples are read against (:func:`digit_accuracy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.audio import load_speech_digits_mel
from ..data.audio_features import (
    DEFAULT_MEL,
    MelSettings,
    log_mel,
    magnitude_stft,
    mel_to_magnitude,
    normalise_log_mel,
)
from ..training.classifier import train_classifier

__all__ = [
    "DigitClassifier",
    "digit_accuracy",
    "griffin_lim",
    "log_spectral_distance",
    "mel_cepstral_distortion",
    "train_digit_classifier",
]


def _wave(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0] if x.ndim == 3 else x).float()


def log_spectral_distance(
    x: torch.Tensor, ref: torch.Tensor, settings: MelSettings = DEFAULT_MEL, top_db: float = 80.0
) -> torch.Tensor:
    """LSD in dB (module docstring) of waveforms ``x`` against ``ref``, each ``(B, T)`` or
    ``(B, 1, T)``: ``(B,)``."""
    p = magnitude_stft(_wave(x), settings).square()
    q = magnitude_stft(_wave(ref), settings).square()
    floor = q.amax((1, 2), keepdim=True) * 10 ** (-top_db / 10)
    d = 10 * (torch.maximum(q, floor).log10() - torch.maximum(p, floor).log10())
    return d.square().mean(1).sqrt().mean(1)


def mel_cepstra(x: torch.Tensor, settings: MelSettings = DEFAULT_MEL, n: int = 13) -> torch.Tensor:
    """Mel-cepstra ``(B, n, frames)``: orthonormal DCT-II of the log-mel over the mel axis."""
    from scipy.fft import dct

    m = log_mel(_wave(x), settings).double().numpy()
    return torch.from_numpy(dct(m, type=2, axis=1, norm="ortho")[:, :n])


def mel_cepstral_distortion(
    x: torch.Tensor, ref: torch.Tensor, settings: MelSettings = DEFAULT_MEL, n: int = 13
) -> torch.Tensor:
    """MCD in dB (module docstring) of waveforms ``x`` against ``ref``: ``(B,)``."""
    c, r = mel_cepstra(x, settings, n)[:, 1:], mel_cepstra(ref, settings, n)[:, 1:]
    return (10 / math.log(10) * (2 * (c - r).square().sum(1)).sqrt()).mean(1).float()


def griffin_lim(mel: torch.Tensor, settings: MelSettings = DEFAULT_MEL, n_iter: int = 32) -> torch.Tensor:
    """Waveforms ``(B, 1, F * hop)`` from normalised log-mels ``(B, n_mels, F)`` by mel-filter-bank
    pseudo-inversion and Griffin-Lim (module docstring), framed as :func:`log_mel` frames."""
    import librosa

    s = settings
    pad = (s.n_fft - s.hop) // 2
    out = []
    for stft in mel_to_magnitude(mel, s).double().numpy():
        y = librosa.griffinlim(
            stft, n_iter=n_iter, hop_length=s.hop, n_fft=s.n_fft, center=False, random_state=0
        )
        t = stft.shape[-1] * s.hop
        y = np.pad(y, (0, max(0, pad + t - len(y))))[pad : pad + t]
        out.append(torch.from_numpy(np.ascontiguousarray(y)).float())
    return torch.stack(out)[:, None].clamp(-1, 1)


@dataclass
class DigitClassifier:
    """A spoken-digit classifier on normalised log-mels ``(B, 1, n_mels, F)``.

    Attributes:
        net: the :class:`~hwaksan.models.classifier.Classifier`.
        settings: the mel settings its inputs use.
        val_accuracy: accuracy on the validation voices of ``speech-digits``.
    """

    net: Any
    settings: MelSettings
    val_accuracy: float

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Digits ``(B,)`` of waveforms ``(B, 1, T)`` (through their log-mel) or of normalised
        log-mels ``(B, 1, n_mels, F)``."""
        mel = x if x.ndim == 4 else normalise_log_mel(log_mel(_wave(x), self.settings))[:, None]
        self.net.eval()
        return self.net(mel.clamp(-1, 1).float(), torch.zeros(len(mel))).argmax(-1)


def train_digit_classifier(
    settings: MelSettings = DEFAULT_MEL,
    *,
    steps: int = 400,
    seed: int = 0,
    progress: bool = False,
    **data_args: Any,
) -> DigitClassifier:
    """Train the spoken-digit classifier on the training voices (module docstring); about a minute
    on 2 CPU cores."""
    args = {"n_mels": settings.n_mels, "hop": settings.hop, "n_fft": settings.n_fft, **data_args}
    train = load_speech_digits_mel("train", **args)
    val = load_speech_digits_mel("val", **args)
    result = train_classifier(
        train,
        net_args={"model_channels": 16, "channel_mult": [1, 2, 4], "num_res_blocks": 1, "attention": False},
        steps=steps,
        batch_size=64,
        lr=1e-2,
        weight_decay=0.05,
        max_shift=4,
        seed=seed,
        val=val,
        progress=progress,
    )
    return DigitClassifier(result.net, settings, float(result.val_accuracy))


def digit_accuracy(classifier: DigitClassifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of clips (waveforms or log-mels, :meth:`DigitClassifier.predict`) read as ``labels``."""
    return float((classifier.predict(x) == labels.to(torch.long)).float().mean())
