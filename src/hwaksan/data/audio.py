"""Spoken digits synthesised offline with espeak-ng: waveforms and their log-mel spectrograms.

``speech-digits``: the words "zero" .. "nine" spoken by :data:`VOICES` (espeak-ng's ``en-us``
voice with 12 variants) at :data:`RATES` words per minute and :data:`PITCHES`, resampled from
espeak's 22,050 Hz to 16 kHz (``scipy.signal.resample_poly``), cut from the first sample above
1 % of the peak, peak-normalised to 0.95 and zero-padded (or cut) to ``clip_length`` samples
(default 16,384 = 1.02 s). Samples ``(N, 1, T)`` in [-1, 1]; ``labels`` = the digit;
``modality = "audio"`` with ``modality_params = {"sample_rate": 16000, **mel settings}``
(:class:`hwaksan.data.audio_features.MelSettings`: the vocoder's condition).

``speech-digits-mel``: the same clips as normalised log-mel spectrograms, one-channel images
``(N, 1, n_mels, frames)`` clamped to [-1, 1] (:func:`hwaksan.data.audio_features.normalise_log_mel`),
for a class-conditional model of spectrograms that a vocoder turns into sound.

The split is by voice, the same on every machine: ``val`` = the voices of :data:`VAL_VOICES`,
``train`` = the others, ``all`` = both; a validation clip is a voice no training clip has.
10 digits x 12 voices x 3 rates x 3 pitches = 1,080 clips (810 train, 270 val).

The clips are synthesised once (about 10 s on 2 cores) and cached as an ``.npz`` under the user
cache directory (``$XDG_CACHE_HOME/hwaksan``), keyed by a format version, the espeak-ng version
and the clip length. espeak-ng is the Debian package ``espeak-ng`` (``make data`` installs it); a
machine without it raises :class:`~hwaksan.data.dataset.DatasetUnavailable`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
import zipfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .audio_features import MelSettings, log_mel, normalise_log_mel
from .dataset import DatasetUnavailable, ImageDataset
from .images import _cache_root, _write_cache

__all__ = [
    "DIGIT_WORDS",
    "PITCHES",
    "RATES",
    "SAMPLE_RATE",
    "VAL_VOICES",
    "VOICES",
    "load_speech_digits",
    "load_speech_digits_mel",
    "synthesise",
]

SAMPLE_RATE = 16000
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = tuple(f"en-us+{v}" for v in ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"))
VAL_VOICES = ("en-us+m3", "en-us+m6", "en-us+f3")
RATES = (140, 170, 200)
PITCHES = (35, 50, 65)
_MEL_ARGS = "n_mels, n_fft, hop, fmin, fmax"
_CACHE_VERSION = 1
_ESPEAK_RATE = 22050
_INSTALL = (
    "espeak-ng is not installed: run `make data` (it runs apt-get install espeak-ng); without apt, "
    "install espeak-ng by other means"
)


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DatasetUnavailable(_INSTALL)
    return exe


@lru_cache(maxsize=1)
def _espeak_version() -> str:
    out = subprocess.run([_espeak(), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def synthesise(word: str, voice: str, rate: int, pitch: int, clip_length: int = 16384) -> np.ndarray:
    """One clip: ``word`` spoken by espeak-ng, float32 ``(clip_length,)`` at 16 kHz (module docstring)."""
    from scipy.signal import resample_poly

    with tempfile.TemporaryDirectory(prefix="hwaksan-espeak") as tmp:
        path = os.path.join(tmp, "w.wav")
        cmd = [_espeak(), "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", path, word]
        subprocess.run(cmd, check=True, capture_output=True)
        with wave.open(path, "rb") as f:
            if f.getframerate() != _ESPEAK_RATE or f.getsampwidth() != 2:
                raise DatasetUnavailable(f"espeak-ng wrote {f.getframerate()} Hz / {f.getsampwidth()} bytes")
            pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    x = resample_poly(pcm.astype(np.float64) / 32768.0, SAMPLE_RATE // 50, _ESPEAK_RATE // 50)
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    x = x[loud[0] :] if len(loud) else x
    x = 0.95 * x / max(np.abs(x).max(), 1e-9)
    out = np.zeros(clip_length, dtype=np.float32)
    out[: min(len(x), clip_length)] = x[:clip_length]
    return out


def _items() -> list[tuple[int, str, int, int]]:
    return [(d, v, r, p) for v in VOICES for d in range(10) for r in RATES for p in PITCHES]


def _all_clips(clip_length: int, cache: bool, cache_dir: Any) -> np.ndarray:
    """All clips ``(len(_items()), clip_length)`` float32, from the cache or synthesised."""
    key = f"{_CACHE_VERSION}|{_espeak_version()}|{clip_length}|{VOICES}|{RATES}|{PITCHES}"
    file = _cache_root(cache_dir) / f"speech-digits-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if cache and file.is_file():
        try:
            with np.load(file, allow_pickle=False) as z:
                return z["clips"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable cache: synthesise again and overwrite
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        clips = np.stack(
            list(
                pool.map(
                    lambda it: synthesise(DIGIT_WORDS[it[0]], it[1], it[2], it[3], clip_length), _items()
                )
            )
        )
    if cache:
        _write_cache(file, clips=clips)
    return clips


def _select(split: str) -> list[int]:
    if split not in ("train", "val", "all"):
        raise ValueError(f"speech-digits has the splits 'train', 'val' and 'all', got {split!r}")
    return [
        i
        for i, (_, v, _, _) in enumerate(_items())
        if split == "all" or (v in VAL_VOICES) == (split == "val")
    ]


def load_speech_digits(
    split: str = "train",
    clip_length: int = 16384,
    n_mels: int = 32,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    **settings: Any,
) -> ImageDataset:
    """The ``speech-digits`` waveforms ``(N, 1, clip_length)`` (module docstring).

    Args:
        split: ``"train"``, ``"val"`` (held-out voices) or ``"all"``.
        clip_length: samples per clip, a multiple of the mel hop (256 by default).
        n_mels, settings: the mel settings recorded in ``modality_params`` (the vocoder's
            condition; :class:`~hwaksan.data.audio_features.MelSettings`); other keys are the
            audio extension's (``window``, ``stride``), passed through unused.
        cache, cache_dir: read / write the synthesised clips under the user cache directory.

    Raises:
        DatasetUnavailable: espeak-ng is not installed.
        ValueError: an unknown split or a clip length that is not a multiple of the hop.
    """
    unknown = sorted(
        set(settings) - set(MelSettings.__dataclass_fields__) - {"window", "stride", "sample_rate"}
    )
    if unknown:
        raise TypeError(
            f"unexpected arguments {unknown}: speech-digits takes clip_length, window, stride and {_MEL_ARGS}"
        )
    mel = MelSettings.from_dict({"n_mels": n_mels, **settings, "sample_rate": SAMPLE_RATE})
    if clip_length % mel.hop or clip_length < mel.n_fft:
        raise ValueError(
            f"clip_length must be a multiple of hop = {mel.hop} and >= {mel.n_fft}, got {clip_length}"
        )
    idx = _select(split)
    clips = _all_clips(int(clip_length), cache, cache_dir)[idx]
    items = [_items()[i] for i in idx]
    return ImageDataset(
        images=torch.from_numpy(np.ascontiguousarray(clips))[:, None],
        labels=torch.tensor([d for d, *_ in items], dtype=torch.long),
        captions=None,
        class_names=[str(d) for d in range(10)],
        name="speech-digits",
        ids=[f"speech-digits/{DIGIT_WORDS[d]}/{v}/s{r}/p{p}" for d, v, r, p in items],
        modality="audio",
        modality_params={**mel.to_dict(), "clip_length": int(clip_length)},
    )


def load_speech_digits_mel(
    split: str = "train", clip_length: int = 16384, n_mels: int = 32, **kw: Any
) -> ImageDataset:
    """``speech-digits-mel``: the clips' normalised log-mels as images ``(N, 1, n_mels, frames)``
    in [-1, 1] (module docstring); arguments as :func:`load_speech_digits`."""
    wav = load_speech_digits(split, clip_length, n_mels, **kw)
    settings = MelSettings.from_dict(wav.modality_params)
    mels = normalise_log_mel(log_mel(wav.images, settings)).clamp(-1, 1)
    return ImageDataset(
        images=mels[:, None].contiguous(),
        labels=wav.labels,
        captions=None,
        class_names=wav.class_names,
        name="speech-digits-mel",
        ids=wav.ids,
    )
