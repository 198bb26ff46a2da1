"""Contract tests for the image networks: U-Net, DiT, MoE-DiT and the presets."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from hwaksan.models.dit import DiT, MoEDiT, MoEFeedForward
from hwaksan.models.presets import (
    PRESET_INPUT_SHAPES,
    PRESETS,
    build_model,
    model_config,
    model_summary,
)
from hwaksan.models.unet import UNet, pad_to_multiple, unpack_cond, unpad

CTX_DIM = 8
N_CLASSES = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny networks gain nothing from intra-op threads, and under `pytest -n 2` two workers with
    # two threads each oversubscribe two cores (OpenMP barriers then cost 10x).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_unet(**kw) -> UNet:
    args = dict(
        in_channels=1,
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        num_head_channels=8,
    )
    args.update(kw)
    return UNet(**args)


def _tiny_dit(cls=DiT, **kw) -> DiT:
    args = dict(input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=2, num_heads=2)
    args.update(kw)
    return cls(**args)


# name -> (factory, input shape (C, H, W), expected output channels)
NETWORKS = {
    "unet": (lambda: _tiny_unet(), (1, 8, 8), 1),
    "unet-dropout-3levels": (
        lambda: _tiny_unet(channel_mult=(1, 2, 2), attention_levels=(0, 2), dropout=0.1),
        (1, 12, 12),
        1,
    ),
    "unet-class-cross-extra-sigma": (
        lambda: _tiny_unet(num_classes=N_CLASSES, context_dim=CTX_DIM, in_extra_channels=2, learn_sigma=True),
        (1, 8, 8),
        2,
    ),
    "unet-rgb-28-padded": (
        lambda: _tiny_unet(in_channels=3, channel_mult=(1, 1, 2, 2), attention_levels=(3,)),
        (3, 28, 28),
        3,
    ),
    "dit": (lambda: _tiny_dit(), (1, 8, 8), 1),
    "dit-class-cross-extra-sigma": (
        lambda: _tiny_dit(num_classes=N_CLASSES, context_dim=CTX_DIM, in_extra_channels=2, learn_sigma=True),
        (1, 8, 8),
        2,
    ),
    "dit-28-patch4-padded": (lambda: _tiny_dit(input_size=28, patch_size=4), (1, 30, 30), 1),
    "moe-top1": (lambda: _tiny_dit(MoEDiT, num_experts=4, top_k=1), (1, 8, 8), 1),
    "moe-top2-cross-sigma": (
        lambda: _tiny_dit(
            MoEDiT,
            num_experts=3,
            top_k=2,
            moe_every=2,
            context_dim=CTX_DIM,
            num_classes=N_CLASSES,
            learn_sigma=True,
        ),
        (1, 8, 8),
        2,
    ),
}


def _cond(net: torch.nn.Module, batch: int, shape, gen: torch.Generator):
    """The fullest condition the network accepts."""
    cfg = net.config
    cond = {}
    if cfg.get("num_classes"):
        cond["labels"] = torch.randint(0, cfg["num_classes"] + 1, (batch,), generator=gen)
    if cfg.get("context_dim"):
        cond["context"] = torch.randn(batch, 5, cfg["context_dim"], generator=gen)
        mask = torch.ones(batch, 5, dtype=torch.bool)
        mask[0, -2:] = False
        cond["context_mask"] = mask
    if cfg.get("in_extra_channels"):
        cond["image"] = torch.randn(batch, cfg["in_extra_channels"], *shape[1:], generator=gen)
    return cond or None


def _perturb_(net: torch.nn.Module, std: float = 0.05, seed: int = 0) -> None:
    """Add noise to every parameter, so that zero-initialised layers let gradients through."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)


def _output_layer(net: torch.nn.Module) -> torch.nn.Module:
    return net.conv_out if isinstance(net, UNet) else net.out


def _backward(net, x, s, cond, gen) -> None:
    net.zero_grad(set_to_none=True)
    out = net(x, s, cond)
    (out * torch.randn(out.shape, generator=gen)).sum().backward()


@pytest.mark.parametrize("name", list(NETWORKS))
def test_shapes_and_zero_output_at_init(name: str) -> None:
    factory, shape, c_out = NETWORKS[name]
    torch.manual_seed(0)
    net = factory()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, *shape, generator=gen)
    out = net(x, torch.randn(3, generator=gen), _cond(net, 3, shape, gen))
    assert out.shape == (3, c_out, *shape[1:])
    assert torch.all(out == 0)  # zero-initialised output layer
    json.dumps(net.config)  # JSON-serialisable


@pytest.mark.parametrize("name", list(NETWORKS))
def test_gradient_flow(name: str) -> None:
    factory, shape, _ = NETWORKS[name]
    torch.manual_seed(0)
    net = factory()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, *shape, generator=gen)
    s = torch.randn(4, generator=gen)
    cond = _cond(net, 4, shape, gen)

    # At initialisation: every parameter gets a finite gradient; the zero output layer a nonzero one.
    _backward(net, x, s, cond, gen)
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
    assert all(p.grad.abs().sum() > 0 for p in _output_layer(net).parameters())

    # Once the zero-initialised layers have moved, every parameter gets a nonzero gradient.
    _perturb_(net)
    _backward(net, x, s, cond, gen)
    for pname, p in net.named_parameters():
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("name", ["unet", "dit", "moe-top2-cross-sigma"])
def test_samples_do_not_interact(name: str) -> None:
    factory, shape, _ = NETWORKS[name]
    torch.manual_seed(0)
    net = factory().eval()
    _perturb_(net)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, *shape, generator=gen)
    s = torch.randn(4, generator=gen)
    cond = _cond(net, 4, shape, gen)
    first = {k: v[:1] for k, v in cond.items()} if cond else None
    with torch.no_grad():
        torch.testing.assert_close(net(x, s, cond)[:1], net(x[:1], s[:1], first))


@pytest.mark.parametrize("name", ["unet-class-cross-extra-sigma", "moe-top2-cross-sigma"])
def test_bf16_autocast_and_float64_noise_level(name: str) -> None:
    factory, shape, c_out = NETWORKS[name]
    torch.manual_seed(0)
    net = factory()
    _perturb_(net)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, *shape, generator=gen)
    s = torch.randn(2, generator=gen, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, s, _cond(net, 2, shape, gen))
    assert out.shape == (2, c_out, *shape[1:])
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


# bf16 keeps 8 significant bits: one rounding of an O(1) value has relative RMS error
# 2**-8 / sqrt(3) ~ 0.0023 (uniform rounding error). Independent roundings along the network add in
# quadrature, so the ~30 rounded activations on these tiny networks' paths give ~0.012, and 0.05 is
# the error of ~500 such roundings: a margin that never flakes but is crossed by one layer that
# computes in the wrong precision (a noise level rounded to bf16 before its embedding, an
# attention softmax over bf16 logits) or ignores autocast's casts.
BF16_RELATIVE_ERROR = 0.05


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_bf16_autocast_matches_fp32(name: str) -> None:
    """Under bf16 autocast every network gives its fp32 output up to bf16 rounding (relative
    L2 error below ``BF16_RELATIVE_ERROR``), at a float64 noise level spanning sigma 1e-2 .. 80."""
    factory, shape, _ = NETWORKS[name]
    torch.manual_seed(0)
    net = factory().eval()
    _perturb_(net)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(8, *shape, generator=gen)
    s = torch.linspace(math.log(1e-2), math.log(80.0), 8, dtype=torch.float64) / 4  # EDM's c_noise
    cond = _cond(net, 8, shape, gen)
    with torch.no_grad():
        reference = net(x, s, cond)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x, s, cond)
    assert reference.dtype == torch.float32
    error = (low.float() - reference).norm() / reference.norm()
    assert error < BF16_RELATIVE_ERROR, f"{name}: relative error {error:.4f} under bf16 autocast"


def test_28x28_gives_28x28() -> None:
    for net in (
        _tiny_unet(channel_mult=(1, 2, 2)),  # 3 levels: 28 = 4 * 7, no padding
        _tiny_unet(channel_mult=(1, 1, 2, 2)),  # 4 levels: padded to 32, cropped back
        _tiny_dit(input_size=28, patch_size=2),
        _tiny_dit(input_size=28, patch_size=3),  # padded to 30, cropped back
    ):
        _perturb_(net)
        with torch.no_grad():
            out = net(torch.randn(2, 1, 28, 28), torch.zeros(2))
        assert out.shape == (2, 1, 28, 28)
        assert out.abs().sum() > 0


def test_pad_round_trip() -> None:
    x = torch.randn(2, 3, 13, 28)
    padded, pad = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (16, 32)
    assert pad == (2, 2, 1, 2)
    torch.testing.assert_close(unpad(padded, pad), x)


def test_learned_sigma_doubles_channels() -> None:
    x, s = torch.randn(2, 3, 8, 8), torch.zeros(2)
    for make in (_tiny_unet, _tiny_dit):
        assert make(in_channels=3)(x, s).shape[1] == 3
        assert make(in_channels=3, learn_sigma=True)(x, s).shape[1] == 6


def test_dit_blocks_start_as_identity() -> None:
    torch.manual_seed(0)
    net = _tiny_dit(MoEDiT, depth=3, num_experts=3, top_k=2, moe_every=2, context_dim=CTX_DIM)
    x = torch.randn(2, 16, 32)
    c = torch.randn(2, 32)
    ctx = torch.randn(2, 4, CTX_DIM)
    for block in net.blocks:
        assert torch.equal(block(x, c), x)
        assert torch.equal(block(x, c, ctx), x)


def test_null_class_is_the_default() -> None:
    gen = torch.Generator().manual_seed(4)
    x, s = torch.randn(2, 1, 8, 8, generator=gen), torch.randn(2, generator=gen)
    for net in (_tiny_unet(num_classes=N_CLASSES), _tiny_dit(num_classes=N_CLASSES)):
        _perturb_(net)
        null = torch.full((2,), N_CLASSES)
        with torch.no_grad():
            torch.testing.assert_close(net(x, s), net(x, s, null))
            assert not torch.allclose(net(x, s), net(x, s, torch.zeros(2, dtype=torch.long)))


@pytest.mark.parametrize("make", [_tiny_unet, _tiny_dit], ids=["unet", "dit"])
def test_masked_context_token_has_no_effect(make) -> None:
    torch.manual_seed(0)
    net = make(context_dim=CTX_DIM).eval()
    _perturb_(net, std=0.2)
    gen = torch.Generator().manual_seed(5)
    x, s = torch.randn(2, 1, 8, 8, generator=gen), torch.randn(2, generator=gen)
    ctx = torch.randn(2, 4, CTX_DIM, generator=gen)
    pad_token = 10 * torch.randn(2, 1, CTX_DIM, generator=gen)
    with torch.no_grad():
        ref = net(x, s, {"context": ctx})
        # A padding token in the middle of the sequence, masked out.
        padded = torch.cat([ctx[:, :2], pad_token, ctx[:, 2:]], dim=1)
        mask = torch.tensor([True, True, False, True, True]).expand(2, 5)
        out = net(x, s, {"context": padded, "context_mask": mask})
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        # The same token unmasked does change the output (so the test is not vacuous).
        assert not torch.allclose(net(x, s, {"context": padded}), ref, atol=1e-4)
        # A fully masked sequence acts as no context at all (and gives no NaN).
        empty = net(x, s, {"context": ctx, "context_mask": torch.zeros(2, 4, dtype=torch.bool)})
        torch.testing.assert_close(empty, net(x, s))
        assert not torch.allclose(empty, ref, atol=1e-4)


def test_cond_dataclass_and_errors() -> None:
    @dataclasses.dataclass
    class Cond:
        context: torch.Tensor
        context_mask: torch.Tensor | None = None

    net = _tiny_unet(context_dim=CTX_DIM, in_extra_channels=1)
    _perturb_(net)
    x, s = torch.randn(2, 1, 8, 8), torch.zeros(2)
    ctx, image = torch.randn(2, 3, CTX_DIM), torch.randn(2, 1, 8, 8)
    parts = unpack_cond(Cond(ctx))
    assert parts.context is ctx and parts.labels is None and parts.image is None
    with pytest.raises(ValueError, match="unknown cond keys"):
        unpack_cond({"contxt": ctx})
    with pytest.raises(ValueError, match="in_extra_channels"):
        net(x, s, {"context": ctx})
    with torch.no_grad():
        torch.testing.assert_close(
            net(x, s, {"context": ctx, "image": image}),
            net(x, s, {"context": ctx, "image": image, "context_mask": None}),
        )


# --------------------------------------------------------------------------- mixture of experts


@pytest.mark.parametrize("k", [1, 2, 3])
def test_moe_sends_every_token_to_k_experts(k: int) -> None:
    torch.manual_seed(0)
    moe = MoEFeedForward(dim=8, hidden=16, num_experts=4, top_k=k)
    x = torch.randn(37, 8)
    experts, gates, probs = moe.route(x)
    assert experts.shape == (37, k)
    assert all(len(set(row.tolist())) == k for row in experts)  # k distinct experts per token
    if k == 1:
        torch.testing.assert_close(gates[:, 0], probs.max(dim=-1).values)
    else:
        torch.testing.assert_close(gates.sum(-1), torch.ones(37))

    out = moe(x)
    counts = torch.bincount(experts.reshape(-1), minlength=4)
    assert int(counts.sum()) == 37 * k
    torch.testing.assert_close(moe.usage, counts.float() / (37 * k))

    # The sorted dispatch equals the per-token definition sum_j g_j FFN_{e_j}(x).
    def expert(e: int, v: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.gelu(v @ moe.w1[e] + moe.b1[e], approximate="tanh")
        return h @ moe.w2[e] + moe.b2[e]

    ref = torch.stack(
        [sum(gates[i, j] * expert(int(experts[i, j]), x[i]) for j in range(k)) for i in range(37)]
    )
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_moe_network_exposes_aux_loss_and_usage() -> None:
    torch.manual_seed(0)
    net = _tiny_dit(MoEDiT, depth=3, num_experts=4, top_k=2, moe_every=1)
    _perturb_(net)
    net(torch.randn(2, 1, 8, 8), torch.zeros(2))
    assert isinstance(net.aux_loss, torch.Tensor) and net.aux_loss.ndim == 0
    assert net.aux_loss.requires_grad
    assert net.expert_usage.shape == (3, 4)
    torch.testing.assert_close(net.expert_usage.sum(-1), torch.ones(3))
    net.aux_loss.backward()
    assert all(b.mlp.router.weight.grad.abs().sum() > 0 for b in net.blocks)
    assert _tiny_dit().aux_loss is None  # dense DiT


def test_aux_loss_is_one_for_uniform_routing_and_larger_when_collapsed() -> None:
    n_exp = 4
    moe = MoEFeedForward(dim=n_exp, hidden=8, num_experts=n_exp, top_k=1)
    x = torch.eye(n_exp).repeat(8, 1)  # 32 tokens, 8 of each one-hot direction
    with torch.no_grad():
        moe.router.weight.copy_(20 * torch.eye(n_exp))  # token i -> expert i: balanced
    moe(x)
    torch.testing.assert_close(moe.usage, torch.full((n_exp,), 1 / n_exp))
    torch.testing.assert_close(moe.aux_loss, torch.tensor(1.0))

    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 20.0  # every token -> expert 0: collapsed
    moe(x)
    torch.testing.assert_close(moe.usage, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert moe.aux_loss > 3.9  # -> n_experts as the router saturates
    torch.testing.assert_close(moe.aux_loss, torch.tensor(float(n_exp)), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_build_run_and_round_trip(name: str) -> None:
    torch.manual_seed(0)
    net = build_model(name)
    shape = PRESET_INPUT_SHAPES[name]
    summary = model_summary(net, shape)
    assert summary["params"] == sum(p.numel() for p in net.parameters())
    assert summary["flops"] > 2 * summary["params"] * 0.5
    config = json.loads(json.dumps(model_config(net)))
    assert config["arch"] == PRESETS[name]["arch"]
    _perturb_(net)
    clone = build_model(config)
    clone.load_state_dict(net.state_dict())
    x, s = torch.randn(1, *shape), torch.randn(1)
    with torch.no_grad():
        out = net.eval()(x, s)
        assert out.shape == (1, *shape)
        torch.testing.assert_close(clone.eval()(x, s), out)


@pytest.mark.parametrize("name", ["unet-32", "unet-32-fast"])
def test_unet32_preset_size(name: str) -> None:
    # The throughput benchmark's condition: within 5% of diffusers' 1.11 M-parameter UNet2DModel.
    summary = model_summary(build_model(name), (1, 32, 32))
    assert abs(summary["params"] - 1.11e6) / 1.11e6 < 0.05


def test_unet32_fast_spends_fewer_flops() -> None:
    # Same budget moved to low resolution: a 3x3 convolution costs H W 9 Cin Cout, so halving the
    # 32x32 width must cut the FLOPs by well over a quarter (measured 0.31 vs 0.50 GFLOP).
    fast = model_summary(build_model("unet-32-fast"), (1, 32, 32))["flops"]
    base = model_summary(build_model("unet-32"), (1, 32, 32))["flops"]
    assert fast < 0.7 * base


def test_model_summary_counts_known_flops() -> None:
    # The FLOPs of one DiT block, by difference between depths 2 and 1 (attention included: the
    # CPU attention kernel is counted).
    a, b = _tiny_dit(depth=1), _tiny_dit(depth=2)
    fa, fb = model_summary(a, (1, 8, 8))["flops"], model_summary(b, (1, 8, 8))["flops"]
    n, d = 16, 32  # tokens, width
    # Per token: qkv 3 d^2, proj d^2, MLP 8 d^2; attention 2 N^2 d; adaLN d * 6d once; all x2.
    block = 2 * n * 12 * d * d + 2 * 2 * n * n * d + 2 * d * 6 * d
    assert fb - fa == block


def test_build_model_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("unet-huge")
    with pytest.raises(ValueError, match="unknown arch"):
        build_model({"arch": "resnet"})
    with pytest.raises(ValueError, match="bogus"):
        build_model({"arch": "unet", "bogus": 1})
    with pytest.raises(ValueError, match="attention_levels"):
        build_model("unet-digits", attention_levels=[5])
    net = build_model("moe-mnist", depth=2)
    assert isinstance(net, MoEDiT) and net.config["num_experts"] == 4
