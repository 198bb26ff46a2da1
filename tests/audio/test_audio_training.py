"""The audio extension trains a tiny vocoder through the unchanged loop; hwaksan sample and
hwaksan vocode write WAV and PNG files; bad inputs of vocode get one clear line."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from hwaksan.cli import main
from hwaksan.data.audio import load_speech_digits, load_speech_digits_mel
from hwaksan.data.audio_features import MelSettings, log_mel, mel_projection, normalise_log_mel
from hwaksan.io.artifact import load_trained
from hwaksan.io.media_audio import read_wav, write_wav
from hwaksan.tasks.edit import guided
from hwaksan.tasks.vocode import beta_grid, plan_vocoder_grid, vocode
from hwaksan.training.audio import cut_windows
from hwaksan.training.config import load_config
from hwaksan.training.trainer import Trainer
from hwaksan.utils import generators_from_seeds

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make data installs it)"
)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "speech-digits.toml"
TINY = [
    "model.args={channels=[16, 8, 8, 4], down_channels=[4, 4, 8, 8], mel_channels=16, emb_dim=16}",
    "data.args={window=1024, stride=1024}",
    "train.batch_size=4",
    "train.steps=2",
    "train.threads=1",
    "train.log_every=1",
    "train.sample_every=0",
    "train.checkpoint_every=0",
    "train.max_seconds=0",
    "optim.warmup=1",
    "sample.n=2",
    "sample.steps=2",
]


MEL_CONFIG = CONFIG.with_name("speech-digits-mel.toml")
MEL_TINY = [
    "model.args={model_channels=8, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[], "
    "mid_attention=false, num_head_channels=8, num_groups=4}",
    *[s for s in TINY if not s.startswith(("model.args", "data.args"))],
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    if not CONFIG.exists():
        pytest.skip("configs/speech-digits.toml is missing")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("vocoder")
    data = load_speech_digits("train")
    data.images = data.images[::81].contiguous()  # 10 clips, one voice each
    data.labels, data.ids = data.labels[::81], data.ids[::81]
    Trainer(load_config(CONFIG, TINY), out, progress=False, data=data).run()
    return out


def test_cut_windows_align_waveform_and_frames() -> None:
    clips = torch.randn(2, 1, 2048)
    mels = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    x, m, idx = cut_windows(clips, mels, 1024, 512, 256)
    assert x.shape == (6, 1, 1024) and m.shape == (6, 3, 4) and idx.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(x[4, 0], clips[1, 0, 512:1536]) and torch.equal(m[4], mels[1, :, 2:6])


@needs_espeak
def test_trains_through_the_loop_and_records_audio(run: Path) -> None:
    model = load_trained(run)
    assert model.modality == "audio" and model.modality_params["sample_rate"] == 16000
    assert model.data_shape == (1, 1024) and (run / "samples" / "latest.png").is_file()
    mel = torch.zeros(2, 32, 4)
    a = vocode(model, mel, sampler="ddim", steps=2, seed=3).x
    b = vocode(model, mel[:1], sampler="ddim", steps=2, seed=3).x
    assert a.shape == (2, 1, 1024) and torch.allclose(a[:1], b, atol=1e-6)  # same seed, same clip
    grid = beta_grid(model.process, [1e-4, 1e-3, 1e-2, 1e-1, 0.5, 0.7])
    r = vocode(model, mel, sampler="ddpm", grid=grid)
    assert r.nfe == 6 and torch.isfinite(r.x).all()


@needs_espeak
def test_mel_consistency_brings_the_output_to_its_mel(run: Path) -> None:
    """A two-step untrained vocoder ignores most of its mel; each estimate held to the mel
    (``mel_projection``) gives an output whose log-mel is closer to the condition (the KL update
    of ``mel_consistent`` moves the band energies to the target)."""
    model = load_trained(run)
    clip = load_speech_digits("val").images[:2, 0, :4096]
    mel = normalise_log_mel(log_mel(clip, MelSettings()))
    err = []
    for k in (0, 4):
        project = mel_projection(mel, MelSettings(), k) if k else None
        y = vocode(model, mel, sampler="ddim", steps=2, seed=0, project=project).x
        err.append(float((normalise_log_mel(log_mel(y[:, 0], MelSettings())) - mel).abs().mean()))
    assert err[1] < 0.5 * err[0], err


@needs_espeak
def test_plan_a_vocoder_grid(run: Path) -> None:
    """The planner binds each calibration waveform to its mel; its grid is never worse than the
    grid it starts from on the calibration batch, and it drives any sampler."""
    model = load_trained(run)
    mel = normalise_log_mel(log_mel(load_speech_digits("val").images[:2, 0, :1024], MelSettings()))
    plan = plan_vocoder_grid(model, mel, 3, max_evals=6)
    assert len(plan.ts) == 4 and float(plan.ts[-1]) == 0.0 and plan.error <= plan.initial_error
    assert torch.isfinite(vocode(model, mel, sampler="ddim", grid=plan.ts).x).all()


@needs_espeak
def test_sample_writes_wav_and_png(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    assert main(["sample", str(run), "--n", "2", "--steps", "2", "--out", str(out)]) == 0
    assert out.is_file()
    for i in range(2):
        x, rate = read_wav(tmp_path / f"s_{i:03d}.wav")
        assert rate == 16000 and x.shape == (1024,)


@needs_espeak
def test_vocode_a_wav(run: Path, tmp_path: Path) -> None:
    clip = load_speech_digits("val").images[0, 0, :3000]
    src = write_wav(tmp_path / "in.wav", clip, 16000)
    out = tmp_path / "out.wav"
    argv = ["vocode", str(run), "--input", str(src), "--out", str(out), "--steps", "2", "--consistency", "2"]
    assert main(argv) == 0
    y, rate = read_wav(out)
    assert rate == 16000 and y.shape == (3072,)  # padded to a multiple of the hop
    assert out.with_suffix(".png").is_file()


@pytest.fixture(scope="module")
def mel_run(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("mel-model")
    data = load_speech_digits_mel("train")
    data.images = data.images[::81].contiguous()
    data.labels, data.ids = data.labels[::81], data.ids[::81]
    Trainer(load_config(MEL_CONFIG, MEL_TINY), out, progress=False, data=data).run()
    return out


@needs_espeak
def test_vocode_the_samples_of_a_mel_model(run: Path, mel_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "seven.wav"
    argv = ["vocode", str(run), "--mel-model", str(mel_run), "--class", "7", "--guidance", "2", "--n", "2",
            "--mel-steps", "2", "--steps", "2", "--seed", "5", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert out.with_suffix(".png").is_file() and not out.exists()
    # the same chain by hand: the mel model's guided samples (seeds 5, 6), then the vocoder
    mel_model, vocoder = load_trained(mel_run), load_trained(run)
    with torch.no_grad():
        mels = mel_model.sample(2, denoiser=guided(mel_model.denoiser, 2.0), sampler="heun", steps=2,
                                grid="karras", cond=torch.full((2,), 7),
                                generator=generators_from_seeds([5, 6])).x  # fmt: skip
        y = vocode(vocoder, mels[:, 0].clamp(-1, 1), sampler="ddim", steps=2, grid="log_snr", seed=5,
                   project=mel_projection(mels[:, 0].clamp(-1, 1), MelSettings(), 8)).x  # fmt: skip
    for i in range(2):
        x, rate = read_wav(tmp_path / f"seven_{i:03d}.wav")
        assert rate == 16000 and x.shape == (64 * 256,)  # 64 mel frames x the hop
        # written as round(32767 a), read as / 32768: within 0.5 / 32768 + |a| / 32768 of a
        expected = y[i, 0].clamp(-1, 1).numpy()
        assert np.abs(x - expected).max() <= 1.5 / 32768 + 1e-6


@needs_espeak
def test_vocode_refuses_a_mel_model_of_another_shape(run: Path, tmp_path: Path, capsys) -> None:
    argv = ["vocode", str(run), "--mel-model", str(run), "--out", str(tmp_path / "o.wav")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the vocoder needs log-mels (1, 32, frames)" in err


def _stereo(path: Path) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes(np.zeros(4096, dtype="<i2").tobytes())


@needs_espeak
@pytest.mark.parametrize(
    "make, message",
    [
        (_stereo, "2 channels"),
        (lambda p: write_wav(p, np.zeros(4000), 22050), "22050 Hz but the model's rate is 16000"),
        (lambda p: write_wav(p, np.zeros(500), 16000), "at least one window of 1024"),
        (lambda p: p.write_text("not audio"), "is not a WAV file"),
    ],
)
def test_vocode_bad_input_is_one_line(run: Path, tmp_path: Path, capsys, make, message) -> None:
    src = tmp_path / "bad.wav"
    make(src)
    assert main(["vocode", str(run), "--input", str(src), "--out", str(tmp_path / "o.wav")]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_mel_settings_round_trip() -> None:
    s = MelSettings(n_mels=16)
    assert MelSettings.from_dict({**s.to_dict(), "clip_length": 5}) == s
    x = torch.randn(1, 2048)
    assert normalise_log_mel(log_mel(x, s)).shape == (1, 16, 8)


def test_envelope_gain_recovers_a_known_scale() -> None:
    """A clip and its copy at half the amplitude give the same gain (rms and envelope both halve);
    for white noise the fitted envelope matches the frame RMS to within the frame-to-frame scatter."""
    from hwaksan.models.wavegrad import mel_envelope
    from hwaksan.training.audio import envelope_gain

    gen = torch.Generator().manual_seed(0)
    clips = 0.1 * torch.randn(4, 1, 8192, generator=gen)
    mels = normalise_log_mel(log_mel(clips))
    half = normalise_log_mel(log_mel(clips / 2))
    g, g_half = envelope_gain(clips, mels, 256), envelope_gain(clips / 2, half, 256)
    assert abs(g_half / g - 1) < 1e-4
    rms = clips.reshape(4, -1, 256).square().mean(-1).sqrt()
    est = g * mel_envelope(mels, 1)[:, 0]
    assert float(((est - rms) / rms).abs().mean()) < 0.15


def test_envelope_prior_needs_x0_prediction(tmp_path: Path) -> None:
    from hwaksan.training.config import ConfigError

    data = load_speech_digits("train") if shutil.which("espeak-ng") else None
    if data is None:
        pytest.skip("espeak-ng is not installed")
    data.images, data.labels, data.ids = data.images[:2].contiguous(), data.labels[:2], data.ids[:2]
    cfg = load_config(CONFIG, [*TINY[1:], "model.args={envelope_prior=true}", "diffusion.prediction=edm"])
    with pytest.raises(ConfigError, match="prediction = 'x0'"):
        Trainer(cfg, tmp_path / "run", progress=False, data=data).run()
