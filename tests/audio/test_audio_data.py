"""speech-digits: synthesis is deterministic, the split is by voice, the log-mel matches librosa."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hwaksan.data import audio as audio_data
from hwaksan.data.audio import DIGIT_WORDS, VAL_VOICES, load_speech_digits, synthesise
from hwaksan.data.audio_features import LOG_MEL_FLOOR, MelSettings, log_mel
from hwaksan.data.catalog import load_data
from hwaksan.data.dataset import DatasetUnavailable

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make data installs it)"
)


@needs_espeak
def test_split_by_voice_and_shapes() -> None:
    train, val = load_speech_digits("train"), load_speech_digits("val")
    voices = lambda d: {i.split("/")[2] for i in d.ids}  # noqa: E731
    assert voices(val) == set(VAL_VOICES) and not voices(train) & voices(val)
    assert (len(train), len(val)) == (810, 270)
    assert train.images.shape[1:] == (1, 16384) and train.modality == "audio"
    assert train.modality_params["sample_rate"] == 16000
    assert float(train.images.abs().max()) <= 0.95 + 1e-6
    assert torch.equal(torch.bincount(val.labels), torch.full((10,), 27))
    for i in (0, 400):
        assert DIGIT_WORDS[int(train.labels[i])] == train.ids[i].split("/")[1]


@needs_espeak
def test_synthesis_is_deterministic_and_the_cache_holds_it() -> None:
    val = load_speech_digits("val")
    word, voice, rate, pitch = val.ids[5].split("/")[1:]
    clip = synthesise(word, voice, int(rate[1:]), int(pitch[1:]))
    assert np.array_equal(clip, synthesise(word, voice, int(rate[1:]), int(pitch[1:])))
    assert np.array_equal(clip, val.images[5, 0].numpy())


@needs_espeak
def test_mel_set_is_the_normalised_log_mel() -> None:
    mel = load_data("speech-digits-mel", "val")
    assert mel.images.shape == (270, 1, 32, 64) and mel.modality == "image"
    assert float(mel.images.min()) >= -1 and float(mel.images.max()) <= 1


def test_missing_espeak_names_make_data(monkeypatch) -> None:
    monkeypatch.setattr(audio_data.shutil, "which", lambda name: None)
    audio_data._espeak_version.cache_clear()
    with pytest.raises(DatasetUnavailable, match="make data"):
        load_speech_digits("val", cache=False)
    audio_data._espeak_version.cache_clear()


def test_unknown_argument_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected arguments"):
        load_data("speech-digits", "val", args={"windw": 3})


def test_log_mel_matches_librosa() -> None:
    """torch.stft + librosa's filter bank against librosa.feature.melspectrogram on the same padded
    signal. Both sum ~1024 float32 products per bin (relative rounding ~1e-7 * sqrt(1024) ~ 1e-5 of
    a bin's magnitude); the log turns a relative error into an absolute one, and bins far below the
    floor are clamped alike, so 1e-3 on the log-mel bounds it with margin."""
    import librosa

    s = MelSettings()
    x = torch.randn(2, 4096, generator=torch.Generator().manual_seed(0)) * 0.1
    pad = (s.n_fft - s.hop) // 2
    padded = np.pad(x.numpy(), [(0, 0), (pad, pad)], mode="reflect")
    ref = librosa.feature.melspectrogram(
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
    ref = np.log(np.maximum(ref, LOG_MEL_FLOOR))
    ours = log_mel(x, s)
    assert ours.shape == (2, s.n_mels, 4096 // s.hop)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-3)
    with pytest.raises(ValueError, match="multiple of hop"):
        log_mel(x[:, :1000], s)
