"""The fused channels-last GroupNorm + scale-shift + SiLU kernel against float64 references.

Error bounds. The kernel sums in float32 over blocks of at most 256 pixels and in double across
blocks, so a sum of terms t_i carries an error of at most 256 u sum |t_i| (u = 2^-24, the standard
bound for recursive summation), and each term carries a few roundings of its own: GAMMA = 272 u
bounds the relative error of every sum against the sum of its absolute terms. bfloat16 outputs
add one rounding to nearest, 2^-8 relative (8 significant bits). The reference is computed in
float64 from the very same input values, so input rounding does not enter.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from hwaksan.models import group_norm_act as gna
from hwaksan.models.group_norm_act import GroupNorm, fused_group_norm_available, group_norm_act

U32 = 2.0**-24
GAMMA = 272 * U32
U_BF16 = 2.0**-8

pytestmark = pytest.mark.skipif(
    shutil.which("g++") is None, reason="no C++ compiler: the fused kernel cannot build here"
)

# (N, C, H, W, G): a remainder row (H W not a multiple of 512 / C), C of 24 (3 channels per
# group), more than 512 channels (one pixel per row), and a 1x2 image
SHAPES = [(3, 32, 9, 7, 8), (2, 24, 5, 5, 8), (2, 640, 2, 3, 32), (4, 16, 1, 2, 4)]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _reference(x, groups, weight, bias, eps, scale, shift, silu):
    """float64 quantities of the forward and the absolute-term sums the bounds need."""
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, -1)
    mean = xg.mean(-1, keepdim=True)
    rstd = (xg.var(-1, unbiased=False, keepdim=True) + eps).rsqrt()
    xhat = ((xg - mean) * rstd).reshape(x.shape)
    a = (weight * (1 + scale.reshape(n, c))).reshape(n, c, 1, 1)
    b = (bias * (1 + scale.reshape(n, c)) + shift.reshape(n, c)).reshape(n, c, 1, 1)
    z = a * xhat + b
    return xhat, a, b, z, (F.silu(z) if silu else z)


def _inputs(shape, dtype, seed=0):
    n, c, h, w, g = shape
    gen = torch.Generator().manual_seed(seed)
    x = (2 * torch.randn(n, c, h, w, generator=gen) + 0.5).to(dtype)
    weight = torch.randn(c, generator=gen)
    bias = torch.randn(c, generator=gen)
    scale = 0.5 * torch.randn(n, c, 1, 1, generator=gen)
    shift = torch.randn(n, c, 1, 1, generator=gen)
    dy = torch.randn(n, c, h, w, generator=gen).to(dtype)
    return g, _channels_last(x), weight, bias, scale, shift, _channels_last(dy)


def test_the_kernel_builds_where_a_compiler_is():
    assert fused_group_norm_available()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_float64(shape, silu, dtype):
    g, x, weight, bias, scale, shift, _ = _inputs(shape, dtype)
    assert gna._takes_kernel(x, g)
    y = group_norm_act(x, g, weight, bias, 1e-5, scale, shift, silu)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    xhat, a, b, z, ref = _reference(x.double(), g, weight.double(), bias.double(), 1e-5, scale.double(),
                                    shift.double(), silu)  # fmt: skip
    # z = a xhat + b from float32 moments: GAMMA relative to |a xhat| + |b|; silu' <= 1.1
    bound = 1.1 * GAMMA * (a.abs() * (xhat.abs() + 1) + b.abs()) + 1e-30
    if dtype == torch.bfloat16:
        bound = bound + U_BF16 * ref.abs()
    err = (y.double() - ref).abs()
    assert (err <= bound).all(), float((err / bound).max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_float64(shape, silu, dtype):
    g, x, weight, bias, scale, shift, dy = _inputs(shape, dtype, seed=1)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias, scale, shift)]
    y = group_norm_act(leaves[0], g, *leaves[1:3], 1e-5, *leaves[3:], silu)
    grads = torch.autograd.grad(y, leaves, dy)

    ref_leaves = [t.detach().double().requires_grad_() for t in (x, weight, bias, scale, shift)]
    xhat, a, b, z, ref = _reference(ref_leaves[0], g, *ref_leaves[1:3], 1e-5, *ref_leaves[3:], silu)
    ref_grads = torch.autograd.grad(ref, ref_leaves, dy.double())

    # the bounds: GAMMA times the sums of absolute terms of each gradient (float64)
    with torch.no_grad():
        n, c = x.shape[:2]
        xhat, a, z = xhat.detach(), a.detach(), z.detach()
        s = torch.sigmoid(z)
        dz = (dy.double() * s * (1 + z * (1 - s)) if silu else dy.double()).abs()
        count = xhat[0].numel() / g
        rstd = (x.double().reshape(n, g, -1).var(-1, unbiased=False) + 1e-5).rsqrt()
        rstd = rstd.repeat_interleave(c // g, 1).reshape(n, c, 1, 1)
        group_mean = lambda t: t.reshape(n, g, -1).sum(-1).repeat_interleave(c // g, 1).reshape(n, c, 1, 1)  # noqa: E731
        abs_dx = rstd * (a.abs() * dz + group_mean(a.abs() * dz) / count
                         + xhat.abs() * group_mean(a.abs() * dz * xhat.abs()) / count)  # fmt: skip
        abs_da = (dz * xhat.abs()).sum((2, 3))  # (N, C)
        abs_db = dz.sum((2, 3))
        one_plus = (1 + scale.double()).reshape(n, c).abs()
        abs_terms = [
            abs_dx,
            (abs_da * one_plus).sum(0),
            (abs_db * one_plus).sum(0),
            (abs_da * weight.double().abs() + abs_db * bias.double().abs()).reshape(n, c, 1, 1),
            abs_db.reshape(n, c, 1, 1),
        ]
    for name, got, want, terms in zip(
        ["x", "weight", "bias", "scale", "shift"], grads, ref_grads, abs_terms, strict=True
    ):
        bound = GAMMA * terms + 1e-30
        if name == "x" and dtype == torch.bfloat16:
            bound = bound + U_BF16 * want.abs()
        err = (got.double() - want).abs()
        assert (err <= bound).all(), (name, float((err / bound).max()))


def test_silu_tails_stay_accurate():
    # exp's argument is clamped to [-80, 80]: silu(z) for z < -80 is z / (1 + e^80) instead of
    # z / (1 + e^-z), an absolute error below |z| e^-80 ~ |z| 1.8e-35
    z = torch.tensor([-200.0, -100.0, -30.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 30.0, 100.0, 200.0])
    x = _channels_last(z.reshape(1, 1, 1, -1).repeat(2, 16, 3, 1))
    # normalisation off: weight = std, bias = mean gives z back up to the float32 moments' error
    xd = x.double().reshape(2, 1, -1)
    mean, std = xd.mean(-1), (xd.var(-1, unbiased=False) + 1e-5).sqrt()
    y = group_norm_act(x, 1, std[0].float().expand(16), mean[0].float().expand(16), 1e-5, silu=True)
    z_back = (x.double() - mean[0]) / std[0] * std[0] + mean[0]
    bound = GAMMA * 4 * z_back.abs().amax() + z_back.abs() * 1.9e-35
    assert ((y.double() - F.silu(z_back)).abs() <= bound).all()


def test_nan_stays_in_its_sample_and_group():
    for dtype in (torch.float32, torch.bfloat16):
        g, x, weight, bias, scale, shift, _ = _inputs((3, 32, 4, 4, 8), dtype)
        x = x.clone()
        x[1, 5, 2, 2] = float("nan")  # channel 5: group 1 of sample 1
        y = group_norm_act(x, g, weight, bias, 1e-5, scale, shift, silu=True)
        nan = y.isnan()
        assert nan[1, 4:8].all()
        nan[1, 4:8] = False
        assert not nan.any()


def test_results_do_not_depend_on_the_thread_count():
    g, x, weight, bias, scale, shift, dy = _inputs((5, 32, 6, 6, 8), torch.bfloat16)
    results = []
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            xr = x.clone().requires_grad_()
            y = group_norm_act(xr, g, weight, bias, 1e-5, scale, shift, silu=True)
            (dx,) = torch.autograd.grad(y, xr, dy)
            results.append((y, dx))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_dispatch():
    x = _channels_last(torch.randn(2, 32, 4, 4))
    assert gna._takes_kernel(x, 8)
    assert not gna._takes_kernel(x.contiguous(), 8)  # NCHW: torch's kernel is the fast one
    assert not gna._takes_kernel(x.double(), 8)
    assert not gna._takes_kernel(x.half(), 8)
    assert not gna._takes_kernel(x, 5)  # 32 channels in 5 groups: torch raises its own error
    assert not gna._takes_kernel(_channels_last(torch.randn(2, 1, 4, 4)), 1)  # C = 1: both layouts
    # under bf16 autocast both paths keep x's dtype, float32 weights or not
    w = torch.ones(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert group_norm_act(x.bfloat16(), 8, w, w, silu=True).dtype == torch.bfloat16
        assert group_norm_act(x.bfloat16().contiguous(), 8, w, w, silu=True).dtype == torch.bfloat16


def test_unet_channels_last_matches_nchw():
    from hwaksan.models.presets import build_model

    torch.manual_seed(0)
    net = build_model("unet-32")
    x, sigma = torch.randn(2, 1, 32, 32), torch.tensor([0.5, 2.0])
    ref = net(x, sigma)
    calls = []
    original = gna._forward
    gna._forward = lambda *a: calls.append(1) or original(*a)
    try:
        out = net.to(memory_format=torch.channels_last)(_channels_last(x), sigma)
    finally:
        gna._forward = original
    norms = sum(isinstance(m, GroupNorm) for m in net.modules())
    assert len(calls) == norms
    # each of the normalisations in sequence adds at most GAMMA relative to its output's scale
    assert (out - ref).abs().max() <= norms * GAMMA * ref.abs().max()


def test_torch_compile_calls_the_kernel():
    g, x, weight, bias, scale, shift, dy = _inputs((2, 32, 6, 6, 8), torch.bfloat16)

    def forward(x, weight, bias, scale, shift):
        return group_norm_act(x, g, weight, bias, 1e-5, scale, shift, silu=True)

    results = []
    torch._dynamo.reset()
    for fn in (forward, torch.compile(forward, fullgraph=True)):  # fullgraph: no break at the kernel
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias, scale, shift)]
        y = fn(*leaves)
        results.append((y, *torch.autograd.grad(y, leaves[:2], dy)))
    # the same kernel on both sides; a and b may be rounded differently by the compiled graph
    for want, got in zip(*results, strict=True):
        scale_of = want.double().abs().max()
        assert (got.double() - want.double()).abs().max() <= (GAMMA + U_BF16) * scale_of


def test_the_kernel_is_compiled_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWAKSAN_CACHE", str(tmp_path))
    gna._library.cache_clear()
    try:
        assert fused_group_norm_available()
        (built,) = (tmp_path / "kernels").glob("group_norm_act-*.so")
        stamp = built.stat().st_mtime_ns
        gna._library.cache_clear()
        assert fused_group_norm_available() and built.stat().st_mtime_ns == stamp
        assert [p.name for p in (tmp_path / "kernels").iterdir()] == [built.name]  # no temporaries left
        monkeypatch.setenv("HWAKSAN_FUSED_NORM", "0")
        gna._library.cache_clear()
        assert not fused_group_norm_available()
    finally:
        monkeypatch.undo()
        gna._library.cache_clear()
