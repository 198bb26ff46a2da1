"""Log-mel spectrograms: librosa.feature.melspectrogram vs torch.stft + librosa.filters.mel.

    .venv/bin/python bench/audio_mel_speed.py

Times both routes on the 270 validation clips of speech-digits (16,384 samples each) and reports
the largest difference of the log-mels (docs/benchmarks-audio.md).
"""

from __future__ import annotations

import time

import librosa
import numpy as np
import torch

from hwaksan.data.audio import load_speech_digits
from hwaksan.data.audio_features import LOG_MEL_FLOOR, MelSettings, log_mel


def librosa_log_mel(x: np.ndarray, s: MelSettings) -> np.ndarray:
    pad = (s.n_fft - s.hop) // 2
    padded = np.pad(x, [(0, 0), (pad, pad)], mode="reflect")
    mel = librosa.feature.melspectrogram(
        y=padded,
        sr=s.sample_rate,
        n_fft=s.n_fft,
        hop_length=s.hop,
        center=False,
        power=1.0,
        n_mels=s.n_mels,
        fmin=s.fmin,
        fmax=s.fmax,
    )
    return np.log(np.maximum(mel, LOG_MEL_FLOOR))


def main() -> None:
    torch.set_num_threads(2)
    data = load_speech_digits("val")
    s = MelSettings.from_dict(data.modality_params)
    x = data.images[:, 0]
    log_mel(x[:2], s), librosa_log_mel(x[:2].numpy(), s)  # warm-up (filter bank, numba)
    rows = []
    for name, fn in (
        ("torch.stft + librosa.filters.mel", lambda: log_mel(x, s).numpy()),
        ("librosa.feature.melspectrogram", lambda: librosa_log_mel(x.numpy(), s)),
    ):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        rows.append((name, min(times), out))
    diff = np.abs(rows[0][2] - rows[1][2]).max()
    print(f"{len(x)} clips x {x.shape[1]} samples, n_fft {s.n_fft}, hop {s.hop}, {s.n_mels} mels, 2 threads")
    for name, t, _ in rows:
        print(f"  {name:36s} {1000 * t:8.1f} ms  ({1e6 * t / len(x):7.1f} us / clip)")
    print(f"  max |difference| of the log-mels: {diff:.2e}")


if __name__ == "__main__":
    main()
