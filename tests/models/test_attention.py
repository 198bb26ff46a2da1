"""The U-Net's attention: the explicit path a reduced-precision CPU training step takes equals
softmax(Q K^T / sqrt(d)) V computed in float64, with and without a key mask, and so does torch's
fused kernel that every other call takes."""

from __future__ import annotations

import pytest
import torch

from hwaksan.models.unet import EXPLICIT_ATTENTION_MAX_KEYS, MultiHeadAttention, attention, explicit_attention


def reference(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d)) V in float64 (Vaswani et al. 2017, eq. 1)."""
    q, k, v = q.double(), k.double(), v.double()
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def qkv(dtype, n=16, length=12, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 2, m, d, generator=gen).to(dtype) for m in (n, length, length)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_explicit_attention_is_softmax_qk_v(dtype):
    q, k, v = qkv(dtype)
    mask = torch.rand(3, 1, 1, 12, generator=torch.Generator().manual_seed(1)) < 0.6
    mask[..., 0] = True  # every row keeps a key
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for m in (None, mask):
        assert torch.allclose(explicit_attention(q, k, v, m).double(), reference(q, k, v, m), atol=tol)


def test_bf16_explicit_attention_is_within_bf16_rounding():
    # Scores and softmax in float32: the only bf16 roundings are the inputs', the probabilities'
    # (relative 2^-9 each) and the output's; outputs are convex combinations of |v| <= ~4, so an
    # error of a few times 2^-9 * 4 ~ 0.01 bounds them. The fused kernel has the same bound.
    q, k, v = qkv(torch.bfloat16, n=64, length=64, d=32)
    ref = reference(q, k, v)
    bound = 6 * 2**-9 * float(v.abs().max())
    assert float((explicit_attention(q, k, v).double() - ref).abs().max()) < bound
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert float((fused.double() - ref).abs().max()) < bound


def test_training_step_path_has_the_fused_kernels_gradients():
    # A bf16 CPU step with gradients takes the explicit path; its input gradients match the fused
    # kernel's (the same function) to bf16 accuracy: each path rounds the probabilities, the
    # incoming gradient's products and the 64-term sums to bf16 (2^-8 relative apiece), so the two
    # differ by a few such roundings of the gradients' scale; 0.03 is about 8 of them.
    q, k, v = (t.requires_grad_() for t in qkv(torch.bfloat16, n=64, length=64, d=32))
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    grads = []
    for fn in (attention, torch.nn.functional.scaled_dot_product_attention):
        for t in (q, k, v):
            t.grad = None
        fn(q, k, v).backward(grad_out)
        grads.append([t.grad.double() for t in (q, k, v)])
    for ours, fused in zip(*grads, strict=True):
        assert float((ours - fused).abs().max()) < 0.03 * float(fused.abs().max())


def test_dispatch_to_the_explicit_path(monkeypatch):
    calls = []

    def spy(*args):
        calls.append(args)
        return explicit_attention(*args)

    monkeypatch.setattr("hwaksan.models.unet.explicit_attention", spy)
    q, k, v = (t.requires_grad_() for t in qkv(torch.bfloat16))
    attention(q, k, v)
    assert len(calls) == 1  # bf16, CPU, with gradients, 12 keys
    with torch.no_grad():
        attention(q, k, v)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    attention(q32, k32, v32)
    long = [t.detach().requires_grad_() for t in qkv(torch.bfloat16, length=EXPLICIT_ATTENTION_MAX_KEYS + 1)]
    attention(*long)
    assert len(calls) == 1  # inference, float32 and long key sequences keep the fused kernel


def test_masked_sample_is_exactly_zero_on_both_paths():
    # MultiHeadAttention's contract: a sample whose mask is all False gets an output of zero.
    torch.manual_seed(0)
    layer = MultiHeadAttention(16, 2, context_dim=8)
    x = torch.randn(2, 5, 16)
    ctx = torch.randn(2, 3, 8)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x, ctx, mask)  # with gradients: the explicit path
        with torch.no_grad():
            out_fused = layer(x, ctx, mask)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.equal(out_fused[1], torch.zeros_like(out_fused[1]))
    assert torch.isfinite(out).all()
    # The two paths differ by bf16 roundings of the attention output and of the projection after it
    # (2^-8 relative apiece): a handful of them bound the difference.
    bound = 8 * 2**-8 * float(out_fused[0].abs().max())
    assert float((out[0].detach().float() - out_fused[0].float()).abs().max()) < bound
