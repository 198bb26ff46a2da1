"""Audio metrics on real data give their floors and their closed forms."""

from __future__ import annotations

import math

import torch

from hwaksan.data.audio_features import MelSettings, log_mel, normalise_log_mel
from hwaksan.evaluation.audio import griffin_lim, log_spectral_distance, mel_cepstral_distortion
from hwaksan.processes import make_process
from hwaksan.tasks.vocode import beta_grid, wavegrad_candidates

S = MelSettings()


def noise(n: int = 2, t: int = 8192, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(n, 1, t, generator=torch.Generator().manual_seed(seed))


def test_identical_clips_give_zero() -> None:
    x = noise()
    assert float(log_spectral_distance(x, x, S).abs().max()) == 0.0
    assert float(mel_cepstral_distortion(x, x, S).abs().max()) == 0.0


def test_a_gain_is_a_constant_lsd_and_no_mcd() -> None:
    """Scaling by a multiplies every power bin by a^2: LSD = |10 log10 a^2| = 6.0206 dB for a = 2
    (white noise keeps every bin far above the 80 dB floor). In the cepstrum a gain is a constant
    ln(a) on every mel band, which the orthonormal DCT puts in c_0 alone: MCD (c_1..c_12) = 0 up
    to float rounding."""
    x = noise()
    lsd = log_spectral_distance(2 * x, x, S)
    assert torch.allclose(lsd, torch.full((2,), 20 * math.log10(2)), atol=1e-4)
    assert float(mel_cepstral_distortion(2 * x, x, S).max()) < 1e-3


def test_different_signals_are_far_apart() -> None:
    assert float(log_spectral_distance(noise(seed=1), noise(seed=2), S).min()) > 1.0


def test_griffin_lim_frames_and_range() -> None:
    x = noise(1, 4096)
    y = griffin_lim(normalise_log_mel(log_mel(x, S)), S, n_iter=2)
    assert y.shape == (1, 1, 4096) and float(y.abs().max()) <= 1


def test_beta_grid_is_the_schedule_in_sigma() -> None:
    """For EDM (alpha = 1) the grid's noise levels are sigma_n = sqrt((1 - alphabar_n) / alphabar_n)."""
    p = make_process("edm")
    betas = [1e-4, 1e-3, 1e-2, 0.1, 0.3, 0.5]
    ts = beta_grid(p, betas)
    ab = torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0)
    want = ((1 - ab) / ab).sqrt().flip(0)
    assert len(ts) == 7 and float(ts[-1]) == 0.0
    torch.testing.assert_close(p.sigma_tilde(ts[:-1]), want, rtol=1e-6, atol=0)
    cands = wavegrad_candidates(6)
    assert len(cands) == 20 and all(all(b < c for b, c in zip(s, s[1:], strict=False)) for s in cands)
