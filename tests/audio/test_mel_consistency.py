"""The inverse STFT and the mel-consistency step of the vocoder, against closed forms."""

from __future__ import annotations

import pytest
import torch

from hwaksan.data.audio_features import (
    MelSettings,
    inverse_stft,
    log_mel,
    magnitude_stft,
    mel_basis,
    mel_consistent,
    mel_magnitudes,
    mel_projection,
    normalise_log_mel,
    stft,
)
from hwaksan.processes import make_process
from hwaksan.tasks.vocode import ProjectedDenoiser

S = MelSettings()


def noise(n: int = 2, t: int = 4096, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(n, t, generator=torch.Generator().manual_seed(seed))


def covered(spec: torch.Tensor) -> torch.Tensor:
    """``spec`` with the frequency bins that no mel band weighs (``B^T 1 = 0``) set to zero."""
    return spec * (mel_basis(S).sum(0) > 0)[:, None]


def kl(target: torch.Tensor, x: torch.Tensor) -> float:
    """The generalised KL divergence ``sum t log(t / m) - t + m`` of Lee & Seung (2001, eq. 3)."""
    m = (mel_basis(S) @ magnitude_stft(x, S)).clamp_min(1e-12)
    t = target
    return float(torch.where(t > 0, t * (t / m).log(), torch.zeros_like(t)).sum() - t.sum() + m.sum())


def test_inverse_stft_inverts_stft() -> None:
    """The weighted overlap-add of Griffin & Lim (1984, eq. 6) is exact on a consistent STFT (float32
    rounding of a 1024-point FFT: ~1e-7 relative)."""
    x = noise()
    y = inverse_stft(stft(x, S), S)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("gain", [1.0, 0.5, 3.0])
def test_a_uniform_gain_is_applied_in_one_step(gain: float) -> None:
    """With target = c B|STFT(x)| every band ratio is c, so the update scales every covered bin by
    c and keeps the phase: one step returns c istft(covered(STFT(x))). At c = 1 the mel of the
    signal is a fixed point up to the two bins no band weighs (DC and Nyquist here)."""
    x = noise()
    target = gain * mel_basis(S) @ magnitude_stft(x, S)
    y = mel_consistent(x, target, S, iterations=1)
    want = gain * inverse_stft(covered(stft(x, S)), S)
    torch.testing.assert_close(y, want, atol=1e-6 * gain, rtol=0)


def test_divergence_to_the_target_falls_from_noise() -> None:
    """From noise towards a real clip's mel the KL divergence falls with the iterations (the
    magnitude step never raises it; the inverse STFT that follows is a least-squares step, so the
    test asks for a strict fall over 1, 4, 16 steps and a large fall overall)."""
    target = mel_basis(S) @ magnitude_stft(noise(seed=1), S)
    x = noise(seed=2)
    d = [kl(target, mel_consistent(x, target, S, iterations=k)) for k in (0, 1, 4, 16)]
    assert d[0] > d[1] > d[2] > d[3] and d[3] < 0.2 * d[0]


def test_mel_magnitudes_take_the_floor_as_silence() -> None:
    x = torch.cat([noise(1), torch.zeros(1, 4096)])
    m = mel_magnitudes(normalise_log_mel(log_mel(x, S)))
    torch.testing.assert_close(m[0], mel_basis(S) @ magnitude_stft(x[:1], S)[0], rtol=1e-4, atol=1e-6)
    assert float(m[1].abs().max()) == 0.0


class Echo:
    """A denoiser that returns its input: the wrapped estimate is then ``project(x)``."""

    def __init__(self) -> None:
        self.process = make_process("edm")

    def __call__(self, x, t, cond=None):
        return x


def test_projected_denoiser_holds_the_estimate_to_the_mel() -> None:
    """A log-mel of twice the signal's band energies: one projection step doubles every covered
    bin (the closed form above; exp(log(.)) in float32 costs ~1e-6 relative)."""
    x = noise()
    mel = normalise_log_mel((2.0 * mel_basis(S) @ magnitude_stft(x, S)).log())
    d = ProjectedDenoiser(Echo(), mel_projection(mel, S, iterations=1))
    y = d(x[:, None], torch.ones(2))
    assert y.shape == (2, 1, 4096) and d.process is not None
    torch.testing.assert_close(y[:, 0], 2.0 * inverse_stft(covered(stft(x, S)), S), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="iterations"):
        mel_projection(mel, S, iterations=0)
