"""Audio samples as files: a WAV per clip and a PNG of each clip's waveform over its log-mel.

Samples are waveforms ``x (n, 1, T)`` in [-1, 1] at ``params["sample_rate"]`` (16 kHz by default);
``params`` are the data set's ``modality_params`` (:mod:`hwaksan.data.audio`), whose mel settings
draw the spectrograms (:mod:`hwaksan.data.audio_features`).

- :func:`write_wav`: 16-bit PCM mono (the standard library's :mod:`wave`), clipped to [-1, 1];
  :func:`read_wav` reads one back (mono 16-bit PCM only, one clear error otherwise).
- :func:`audio_preview`: one PNG, a panel per clip (``nrow`` panels per row): the waveform on top,
  its log-mel spectrogram (time x mel band) below.
- :func:`audio_names` / :func:`audio_files`: ``{stem}_{i:03d}.wav`` for clip ``i``.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.audio_features import MelSettings, log_mel

__all__ = ["audio_files", "audio_names", "audio_preview", "read_wav", "write_wav"]


def write_wav(path: str | Path, x: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write a mono waveform ``(T,)`` or ``(1, T)`` in [-1, 1] as 16-bit PCM; returns ``path``."""
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).reshape(-1)
    pcm = np.round(np.clip(a, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())
    return Path(path)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A mono 16-bit PCM WAV file as float32 ``(T,)`` in [-1, 1] and its sample rate.

    Raises:
        ValueError: not a WAV file, not mono, or not 16-bit PCM (the message says which).
    """
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            frames = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as err:
        raise ValueError(f"{path} is not a WAV file ({err})") from None
    if channels != 1:
        raise ValueError(f"{path} has {channels} channels: give a mono WAV (e.g. sox in.wav -c 1 out.wav)")
    if width != 2:
        raise ValueError(
            f"{path} has {8 * width}-bit samples: give 16-bit PCM (e.g. sox in.wav -b 16 out.wav)"
        )
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate


def audio_names(stem: Path, n: int, params: dict[str, Any]) -> list[Path]:
    """``{stem}_{i:03d}.wav`` for ``i < n``."""
    return [stem.with_name(f"{stem.name}_{i:03d}.wav") for i in range(n)]


def audio_files(x: torch.Tensor, stem: Path, params: dict[str, Any]) -> list[Path]:
    """Write clip ``i`` of ``x (n, 1, T)`` to ``{stem}_{i:03d}.wav``; returns the paths."""
    rate = int(params.get("sample_rate", 16000))
    return [write_wav(p, x[i, 0], rate) for i, p in enumerate(audio_names(stem, len(x), params))]


def audio_preview(x: torch.Tensor, path: Path, params: dict[str, Any], nrow: int | None) -> None:
    """One PNG of clips ``x (n, 1, T)``: for each, the waveform above its log-mel spectrogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = MelSettings.from_dict({**params, "sample_rate": int(params.get("sample_rate", 16000))})
    n, t = x.shape[0], x.shape[-1]
    wave_ = x[:, 0].clamp(-1, 1)
    usable = t - t % settings.hop
    mels = log_mel(wave_[:, :usable], settings).numpy() if usable >= settings.n_fft else None
    cols = max(1, min(nrow or min(n, 5), n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        2 * rows, cols, figsize=(2.6 * cols, 2.4 * rows), squeeze=False, gridspec_kw={"hspace": 0.15}
    )
    seconds = np.arange(t) / settings.sample_rate
    for k in range(rows * cols):
        top, bottom = axes[2 * (k // cols), k % cols], axes[2 * (k // cols) + 1, k % cols]
        if k >= n:
            top.axis("off"), bottom.axis("off")
            continue
        top.plot(seconds, wave_[k].numpy(), lw=0.4, color="tab:blue")
        top.set_ylim(-1, 1)
        top.set_xlim(0, seconds[-1])
        top.set_xticks([]), top.set_yticks([])
        if mels is not None:
            bottom.imshow(mels[k], origin="lower", aspect="auto", cmap="magma", vmin=np.log(1e-5), vmax=3.5)
        bottom.set_xticks([]), bottom.set_yticks([])
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
