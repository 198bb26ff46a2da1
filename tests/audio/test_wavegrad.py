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
