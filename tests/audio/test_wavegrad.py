"""The WaveGrad network: shapes, a zero output at initialisation, the condition's checks."""

from __future__ import annotations

import pytest
import torch

from hwaksan.models.presets import build_model, input_arguments
from hwaksan.models.wavegrad import WaveGrad


def tiny(**kw) -> WaveGrad:
    return WaveGrad(n_mels=8, factors=(4, 2), channels=(16, 8), down_channels=(4, 8), mel_channels=16, **kw)


@pytest.mark.parametrize("frames", [2, 5, 16])
@torch.no_grad()
def test_shapes_any_length_and_zero_start(frames: int) -> None:
    net = tiny(num_classes=10)
    t = 8 * frames
    x, mel = torch.randn(3, 1, t), torch.randn(3, 8, frames)
    out = net(x, torch.randn(3), {"signal": mel, "labels": torch.tensor([0, 1, 2])})
    assert out.shape == (3, 1, t) and float(out.abs().max()) == 0.0  # zero-initialised output layer
    torch.nn.init.normal_(net.out.weight)
    out = net(x, torch.randn(3), {"signal": mel})
    assert out.shape == (3, 1, t) and float(out.abs().max()) > 0


@torch.no_grad()
def test_the_mel_conditions_the_output() -> None:
    torch.manual_seed(0)
    net = tiny()
    torch.nn.init.normal_(net.out.weight)
    x, s = torch.randn(1, 1, 32), torch.zeros(1)
    a = net(x, s, {"signal": torch.randn(1, 8, 4)})
    b = net(x, s, {"signal": torch.randn(1, 8, 4)})
    assert not torch.allclose(a, b)


def test_wrong_condition_shape_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"needs \(B, 8, 4\)"):
        tiny()(torch.randn(1, 1, 32), torch.zeros(1), {"signal": torch.randn(1, 8, 5)})


def test_preset_and_data_axes() -> None:
    net = build_model("wavegrad-speech")
    assert net.hop == 256 and WaveGrad.data_axes == 1
    assert input_arguments("wavegrad", (1, 1024)) == {"in_channels": 1}
    with pytest.raises(ValueError, match="sequences"):
        input_arguments("wavegrad", (1, 32, 32))


def test_mel_envelope_constants_are_the_feature_normalisation() -> None:
    import inspect

    from hwaksan.data.audio_features import LOG_MEL_CENTRE, LOG_MEL_SCALE
    from hwaksan.models.wavegrad import mel_envelope

    params = inspect.signature(mel_envelope).parameters
    assert (params["centre"].default, params["scale"].default) == (LOG_MEL_CENTRE, LOG_MEL_SCALE)


def test_mel_envelope_is_the_frame_rms_interpolated_between_centres() -> None:
    from hwaksan.data.audio_features import normalise_log_mel
    from hwaksan.models.wavegrad import mel_envelope

    # Two frames whose mel magnitudes are 2 and 4 in every band: frame RMS 2 and 4; hop 4 puts the
    # centres at samples 1.5 and 5.5 (slope 0.5 per sample between them), so the envelope at
    # samples 0..7 is 2, 2, 2.25, 2.75, 3.25, 3.75, 4, 4.
    mags = torch.tensor([2.0, 4.0])[None, None].expand(1, 3, 2)
    env = mel_envelope(normalise_log_mel(mags.log()), 4, gain=0.5, floor=1.1)
    expected = 0.5 * torch.tensor([2, 2, 2.25, 2.75, 3.25, 3.75, 4, 4.0])
    assert torch.allclose(env[0, 0], expected.clamp_min(1.1), atol=1e-5)


@pytest.mark.parametrize("process_name", ["edm", "vp"])
@torch.no_grad()
def test_envelope_prior_is_edm_preconditioning_with_the_envelope_as_data_std(process_name: str) -> None:
    """With ``F = 0`` (the zero-initialised output), the denoiser is ``s^2 / (s^2 + sigma~^2) x~``:
    this pins the read-back of ``x~`` and ``sigma~`` from the library's network input for a process
    with ``alpha = 1`` and one with ``alpha < 1``."""
    from hwaksan.models.wavegrad import mel_envelope
    from hwaksan.parameterizations import ModelDenoiser
    from hwaksan.processes import make_process

    net = tiny(envelope_prior=True, sigma_data=0.3, envelope_gain=0.05, envelope_floor=1e-3)
    process = make_process(process_name)
    model = ModelDenoiser(net, process, prediction="x0", sigma_data=0.3)
    mel = torch.randn(2, 8, 4) * 0.3
    t = torch.tensor([0.3, 0.8]) if process_name == "vp" else torch.tensor([0.05, 3.0])
    x = torch.randn(2, 1, 32)
    d = model(x, t, {"signal": mel}).double()
    alpha = process.alpha(t).double()[:, None, None]
    sigma_t = process.sigma(t).double()[:, None, None] / alpha
    s = mel_envelope(mel, 8, gain=0.05, floor=1e-3).double()
    expected = s**2 / (s**2 + sigma_t**2) * x.double() / alpha
    assert torch.allclose(d, expected, rtol=1e-4, atol=1e-6)
    # With any F, a silent mel keeps D within the floor's reach of zero at a high noise level.
    torch.nn.init.normal_(net.out.weight)
    silent = torch.full((2, 8, 4), -5.0)
    d = model(x, torch.tensor([3.0, 3.0]) if process_name == "edm" else torch.tensor([0.9, 0.9]),
                 {"signal": silent})  # fmt: skip
    assert float(d.abs().max()) < 1e-2


def test_envelope_prior_needs_positive_settings() -> None:
    with pytest.raises(ValueError, match="envelope"):
        tiny(envelope_prior=True, envelope_gain=0.0)
