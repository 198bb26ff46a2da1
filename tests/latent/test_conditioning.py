"""Text conditioning inside the networks: padding tokens, the pooled vector and the null caption.

The U-Net's cross-attention masking itself is pinned in tests/models/test_networks.py; here the
pieces text conditioning adds: ``pooled_dim`` (the sentence vector added to the noise embedding), the
rule that a caption with no real token has no pooled vector either, and that with both inputs a
masked padding token still has no effect.
"""

from __future__ import annotations

import pytest
import torch

from hwaksan.conditioning.text import null_cond
from hwaksan.models.dit import DiT
from hwaksan.models.unet import UNet

DIM = 12


def _unet(**kw) -> UNet:
    return UNet(
        1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=4, num_head_channels=8, **kw
    )


def _dit(**kw) -> DiT:
    return DiT(input_size=8, patch_size=2, in_channels=1, hidden_size=16, depth=1, num_heads=2, **kw)


def _perturb_(net: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen))
    return net.eval()


@pytest.mark.parametrize("make", [_unet, _dit], ids=["unet", "dit"])
def test_masked_token_has_no_effect_with_pooled(make) -> None:
    net = _perturb_(make(context_dim=DIM, pooled_dim=DIM))
    gen = torch.Generator().manual_seed(1)
    x, s = torch.randn(2, 1, 8, 8, generator=gen), torch.randn(2, generator=gen)
    ctx, pooled = torch.randn(2, 3, DIM, generator=gen), torch.randn(2, DIM, generator=gen)
    mask = torch.ones(2, 3, dtype=torch.bool)
    padded = torch.cat([ctx, 50 * torch.randn(2, 2, DIM, generator=gen)], 1)  # two padding tokens
    pmask = torch.cat([mask, torch.zeros(2, 2, dtype=torch.bool)], 1)
    with torch.no_grad():
        ref = net(x, s, {"context": ctx, "context_mask": mask, "pooled": pooled})
        out = net(x, s, {"context": padded, "context_mask": pmask, "pooled": pooled})
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        # the padding tokens would matter unmasked, and the pooled vector matters (the option is live)
        assert not torch.allclose(net(x, s, {"context": padded, "pooled": pooled}), ref, atol=1e-4)
        assert not torch.allclose(
            net(x, s, {"context": ctx, "context_mask": mask, "pooled": -pooled}), ref, atol=1e-4
        )


@pytest.mark.parametrize("make", [_unet, _dit], ids=["unet", "dit"])
def test_null_caption_is_no_condition(make) -> None:
    net = _perturb_(make(context_dim=DIM, pooled_dim=DIM))
    gen = torch.Generator().manual_seed(2)
    x, s = torch.randn(3, 1, 8, 8, generator=gen), torch.randn(3, generator=gen)
    with torch.no_grad():
        none = net(x, s)
        null = net(x, s, null_cond(3, 4, DIM))
        torch.testing.assert_close(null, none)
        # guidance.null_condition keeps the tokens and the pooled vector but masks every token:
        # the network then ignores both, so it is the same null
        masked = {
            "context": torch.randn(3, 4, DIM, generator=gen),
            "context_mask": torch.zeros(3, 4, dtype=torch.bool),
            "pooled": torch.randn(3, DIM, generator=gen),
        }
        torch.testing.assert_close(net(x, s, masked), none)


def test_pooled_dim_is_recorded_only_when_on() -> None:
    assert "pooled_dim" not in _unet().config and "pooled_dim" not in _dit().config
    net = _unet(pooled_dim=DIM)
    assert net.config["pooled_dim"] == DIM
    assert type(net)(**net.config).pooled_proj.in_features == DIM
