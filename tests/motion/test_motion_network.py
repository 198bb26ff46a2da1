"""MotionTransformer: shapes, conditioning, identity start, registry and rebuild."""

from __future__ import annotations

import pytest
import torch

from hwaksan.models.motion_transformer import MotionTransformer, sincos_pos_embed_1d
from hwaksan.models.presets import PRESET_INPUT_SHAPES, build_model, input_arguments, model_config


def _perturbed(**kw) -> MotionTransformer:
    net = MotionTransformer(in_channels=6, hidden_size=16, depth=1, num_heads=2, max_frames=8, **kw)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return net


def test_output_shapes_and_any_length() -> None:
    net = _perturbed(num_classes=3)
    x = torch.randn(4, 6, 8)
    assert net(x, torch.zeros(4), torch.tensor([0, 1, 2, 3])).shape == (4, 6, 8)  # 3 = the null class
    assert net(torch.randn(2, 6, 12), torch.zeros(2)).shape == (2, 6, 12)  # longer than max_frames
    assert _perturbed(learn_sigma=True)(x, torch.zeros(4)).shape == (4, 12, 8)


def test_starts_as_zero_and_reads_its_condition() -> None:
    net = MotionTransformer(in_channels=6, hidden_size=16, depth=2, num_heads=2, num_classes=3)
    assert (
        float(net(torch.randn(2, 6, 8), torch.zeros(2)).detach().abs().max()) == 0.0
    )  # zero-initialised output
    net = _perturbed(num_classes=3)
    x, s = torch.randn(2, 6, 8), torch.zeros(2)
    a, b = net(x, s, torch.tensor([0, 0])), net(x, s, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    assert torch.equal(net(x, s, None), net(x, s, torch.tensor([3, 3])))  # None = the null class
    assert not torch.allclose(net(x, s), net(x, s + 1.0))


def test_wrong_input_is_one_clear_error() -> None:
    net = _perturbed()
    with pytest.raises(ValueError, match=r"takes sequences \(B, 6, T\)"):
        net(torch.randn(2, 5, 8), torch.zeros(2))


def test_positions_are_the_sinusoids() -> None:
    pe = sincos_pos_embed_1d(4, 3)
    t = torch.arange(3.0)
    assert torch.allclose(pe[:, 0], t.sin()) and torch.allclose(pe[:, 2], t.cos())
    assert torch.allclose(pe[:, 1], (t / 100).sin())  # 10000^(-1/2) = 1/100


def test_preset_and_rebuild() -> None:
    net = build_model("motion-stick")
    assert net(torch.randn(2, *PRESET_INPUT_SHAPES["motion-stick"]), torch.zeros(2)).shape == (2, 30, 32)
    again = build_model(model_config(net))
    assert again.config == net.config
    assert input_arguments("motion-transformer", (30, 48)) == {"in_channels": 30, "max_frames": 48}
    with pytest.raises(ValueError, match="takes sequences"):
        input_arguments("motion-transformer", (1, 8, 8))
