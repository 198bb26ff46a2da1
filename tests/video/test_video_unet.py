"""The space-time U-Net: shapes, what it reads across frames, presets and checkpoints."""

from __future__ import annotations

import pytest
import torch

from hwaksan.models.presets import PRESET_INPUT_SHAPES, build_model, input_arguments, model_config
from hwaksan.models.video_unet import VideoUNet

TINY = {"model_channels": 8, "channel_mult": [1, 2], "num_groups": 4, "num_head_channels": 8}


def _randomise(net: VideoUNet) -> VideoUNet:
    """Give the zero-initialised layers (output, temporal projections) random weights."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("patch_size", [1, 2])
def test_shapes_for_any_frame_count_and_odd_sizes(patch_size):
    net = VideoUNet(**TINY, patch_size=patch_size, num_classes=3)
    for shape in [(2, 1, 5, 16, 16), (1, 1, 3, 12, 20)]:
        x = torch.randn(shape)
        out = net(x, torch.zeros(shape[0]), torch.zeros(shape[0], dtype=torch.long))
        assert out.shape == x.shape
        assert not out.any()  # the output convolution starts at zero


@torch.no_grad()
def test_frames_talk_only_through_the_temporal_layers():
    net = _randomise(VideoUNet(**TINY)).eval()
    x = torch.randn(1, 1, 6, 16, 16)
    y = x.clone()
    y[:, :, 0] += 1.0  # change frame 0 only
    diff = (net(x, torch.zeros(1)) - net(y, torch.zeros(1))).abs().amax(dim=(0, 1, 3, 4))
    assert float(diff[5]) > 0  # the last frame sees the first (temporal conv + attention)
    for layer in net.modules():
        if hasattr(layer, "time_conv"):
            torch.nn.init.zeros_(layer.time_conv.conv.weight)
            torch.nn.init.zeros_(layer.time_conv.conv.bias)
            if layer.time_attn is not None:
                torch.nn.init.zeros_(layer.time_attn.attn.proj.weight)
                torch.nn.init.zeros_(layer.time_attn.attn.proj.bias)
    diff = (net(x, torch.zeros(1)) - net(y, torch.zeros(1))).abs().amax(dim=(0, 1, 3, 4))
    assert float(diff[1:].max()) == 0.0  # without them each frame is an image
    assert float(diff[0]) > 0


@torch.no_grad()
def test_a_clip_does_not_depend_on_its_batch():
    net = _randomise(VideoUNet(**TINY, num_classes=4)).eval()
    x = torch.randn(3, 1, 4, 8, 8)
    labels = torch.tensor([0, 2, 4])  # 4 = the null class
    noise = torch.rand(3)
    full = net(x, noise, labels)
    single = net(x[1:2], noise[1:2], labels[1:2])
    torch.testing.assert_close(full[1:2], single, atol=1e-5, rtol=1e-5)


def test_wrong_input_is_refused_in_one_line():
    net = VideoUNet(**TINY, max_frames=4)
    with pytest.raises(ValueError, match="max_frames = 4"):
        net(torch.randn(1, 1, 5, 8, 8), torch.zeros(1))
    with pytest.raises(ValueError, match=r"clips \(B, C, F, H, W\)"):
        net(torch.randn(1, 1, 8, 8), torch.zeros(1))
    with pytest.raises(ValueError, match="takes clips"):
        input_arguments("video-unet", (1, 28, 28))
    assert input_arguments("video-unet", (1, 8, 32, 32)) == {"in_channels": 1}


def test_the_preset_rebuilds_from_its_config():
    net = build_model("video-unet-32")
    assert PRESET_INPUT_SHAPES["video-unet-32"] == (1, 8, 32, 32)
    again = build_model(model_config(net))
    assert again.config == net.config
    assert sum(p.numel() for p in net.parameters()) < 2_000_000  # sized for a CPU
