"""DiT init: the conditioning vector starts at unit scale (DiT._init_weights), blocks as the identity."""

import math

import torch

from hwaksan.models.presets import build_model


def test_class_rows_start_standard_normal():
    torch.manual_seed(0)
    net = build_model("dit-mnist")
    w = net.class_embed.weight.detach().double()  # (11, 128) i.i.d. N(0, 1)
    n = w.numel()
    # std of a sample std of n normals ~ 1 / sqrt(2 n); mean's SE 1 / sqrt(n); 4 standard errors each
    assert abs(w.std().item() - 1.0) < 4 / math.sqrt(2 * n)
    assert abs(w.mean().item()) < 4 / math.sqrt(n)


def test_noise_level_changes_the_conditioning_vector_at_init():
    """Over the EDM range of c_noise = ln(sigma) / 4 (sigma 0.002..80) c must vary at order 0.1 or more,
    not at DiT's std-0.02 scale, so that the zero-initialised adaLN layers see the noise level."""
    torch.manual_seed(0)
    net = build_model("dit-mnist")
    c_noise = torch.log(torch.tensor([0.002, 0.05, 0.5, 2.0, 80.0])) / 4
    with torch.no_grad():
        c = net.noise_embed(c_noise)  # (5, 128)
    spread = (c - c.mean(0)).pow(2).mean().sqrt().item()
    assert spread > 0.1, spread


def test_blocks_start_as_identity_with_unit_scale_conditioning():
    torch.manual_seed(0)
    net = build_model("dit-mnist", patch_size=4)
    h = torch.randn(3, 49, 128)
    c = torch.nn.functional.silu(net.embed(torch.tensor([-1.0, 0.0, 1.0]), torch.tensor([0, 5, 10])))
    for block in net.blocks:
        torch.testing.assert_close(block(h, c), h, rtol=0, atol=0)
