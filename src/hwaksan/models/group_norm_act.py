"""GroupNorm, a per-sample scale-shift and SiLU in one fused CPU kernel for channels-last tensors.

    y = silu(GroupNorm(x; weight, bias) * (1 + scale) + shift)

(GroupNorm: Wu & He 2018, eq. 1; the scale-shift is ADM's adaptive group normalisation, Dhariwal &
Nichol 2021, eq. 2; SiLU: Elfwing et al. 2018.) In torch these are five passes over the activations,
and torch's channels-last GroupNorm is 3x slower than its NCHW one on CPU; in a bf16 training step
of a small U-Net they took more time than the convolutions. :func:`group_norm_act` computes the
forward in one pass per sample (after the two passes for the moments) and the backward in two,
from the C++ source ``csrc/group_norm_act.cpp``, for float32 and bfloat16 tensors in channels-last
layout on the CPU. Every other tensor (NCHW, float64, float16, CUDA) takes the same composition of
torch ops, so the function is a drop-in for the composition. The kernel is registered as the torch
operators ``hwaksan::group_norm_act`` and ``hwaksan::group_norm_act_backward``, so graphs of
``torch.compile`` call it as well.

The kernel is compiled once per machine with the system's C++ compiler (``$CXX`` or ``g++``,
``-O3 -march=native -fno-trapping-math -fopenmp``) into ``$HWAKSAN_CACHE/kernels`` (default
``~/.cache/hwaksan/kernels``) and loaded with ctypes; it shares torch's OpenMP runtime and thread
count. Without a compiler, or with ``HWAKSAN_FUSED_NORM=0``, everything takes the torch ops.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GroupNorm", "fused_group_norm_available", "group_norm_act"]

_SOURCE = Path(__file__).with_name("csrc") / "group_norm_act.cpp"
_FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC")
_DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}


def _cache_dir() -> Path:
    root = os.environ.get("HWAKSAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hwaksan"
    )
    return Path(root) / "kernels"


def _cpu_flags() -> str:
    # -march=native code must not be loaded on another CPU sharing the cache directory
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


def _compile(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *_FLAGS, str(_SOURCE), "-o", tmp], check=True, capture_output=True, text=True
        )
        os.replace(tmp, target)  # atomic: a concurrent process sees no file or a whole one
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@functools.cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("HWAKSAN_FUSED_NORM", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256(
            "\0".join([_SOURCE.read_text(), " ".join(_FLAGS), version, _cpu_flags()]).encode()
        ).hexdigest()[:16]
        target = _cache_dir() / f"group_norm_act-{key}.so"
        if not target.exists():
            _compile(compiler, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        warnings.warn(
            f"hwaksan: the fused GroupNorm kernel did not build ({detail.strip()[:300]}); "
            "using torch's ops (set HWAKSAN_FUSED_NORM=0 to skip the attempt)",
            stacklevel=3,
        )
        return None
    ptr, i64, f64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    for suffix in _DTYPES.values():
        fwd = getattr(lib, f"gn_act_forward_{suffix}")
        fwd.argtypes = [ptr] * 6 + [i64] * 4 + [f64, i32, i32]
        fwd.restype = None
        bwd = getattr(lib, f"gn_act_backward_{suffix}")
        bwd.argtypes = [ptr] * 9 + [i64] * 4 + [i32, i32]
        bwd.restype = None
    return lib


@torch.compiler.assume_constant_result  # under torch.compile: evaluated once, at tracing
def fused_group_norm_available() -> bool:
    """Whether the fused kernel is built and loaded (compiling it on the first call)."""
    return _library() is not None


def _takes_kernel(x: torch.Tensor, num_groups: int) -> bool:
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.dtype in _DTYPES
        and x.shape[1] % num_groups == 0
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()  # NCHW or ambiguous (C == 1 or H W == 1): torch's kernel
        and fused_group_norm_available()
    )


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


# The kernel as torch operators (opaque to torch.compile, which calls them from its graphs).
# a, b: (N, C) float32, the per-sample affine map; mean, rstd: (N, G) float32.
@torch.library.custom_op("hwaksan::group_norm_act", mutates_args=(), device_types="cpu")
def _forward(
    x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, groups: int, eps: float, silu: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, a, b = _channels_last(x), a.contiguous(), b.contiguous()
    n, c, h, w = x.shape
    y = torch.empty_like(x, memory_format=torch.channels_last)
    mean = torch.empty(n, groups, dtype=torch.float32)
    rstd = torch.empty(n, groups, dtype=torch.float32)
    getattr(_library(), f"gn_act_forward_{_DTYPES[x.dtype]}")(
        x.data_ptr(), a.data_ptr(), b.data_ptr(), y.data_ptr(), mean.data_ptr(), rstd.data_ptr(),
        n, h * w, c, groups, eps, int(silu), torch.get_num_threads(),
    )  # fmt: skip
    return y, mean, rstd


@_forward.register_fake
def _(x, a, b, groups, eps, silu):
    stats = x.new_empty((x.shape[0], groups), dtype=torch.float32)
    return torch.empty_like(x, memory_format=torch.channels_last), stats, torch.empty_like(stats)


@torch.library.custom_op("hwaksan::group_norm_act_backward", mutates_args=(), device_types="cpu")
def _backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    groups: int,
    silu: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dy, x = _channels_last(dy.to(x.dtype)), _channels_last(x)
    n, c, h, w = x.shape
    dx = torch.empty_like(x, memory_format=torch.channels_last)
    da, db = torch.empty_like(a), torch.empty_like(b)
    getattr(_library(), f"gn_act_backward_{_DTYPES[x.dtype]}")(
        dy.data_ptr(), x.data_ptr(), a.data_ptr(), b.data_ptr(), mean.data_ptr(), rstd.data_ptr(),
        dx.data_ptr(), da.data_ptr(), db.data_ptr(), n, h * w, c, groups, int(silu),
        torch.get_num_threads(),
    )  # fmt: skip
    return dx, da, db


@_backward.register_fake
def _(dy, x, a, b, mean, rstd, groups, silu):
    return torch.empty_like(x, memory_format=torch.channels_last), torch.empty_like(a), torch.empty_like(b)


def _setup_context(ctx, inputs, output) -> None:
    x, a, b, groups, _, silu = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, a, b, mean, rstd)
    ctx.groups, ctx.silu = groups, silu


def _backward_rule(ctx, dy, _dmean, _drstd):
    dx, da, db = _backward(dy, *ctx.saved_tensors, ctx.groups, ctx.silu)
    return dx, da, db, None, None, None


_forward.register_autograd(_backward_rule, setup_context=_setup_context)


def group_norm_act(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    silu: bool = False,
) -> torch.Tensor:
    """``silu(GroupNorm(x) * (1 + scale) + shift)``, fused for channels-last CPU tensors.

    Args:
        x: (N, C, H, W) input; (N, C, *) takes the torch ops.
        num_groups: G, dividing C; statistics over the C/G x H x W values of each group.
        weight, bias: (C,) GroupNorm's affine parameters (ones / zeros when None).
        eps: added to the biased group variance.
        scale, shift: optional per-sample modulation, (N, C, 1, 1) or broadcastable to it (ADM eq. 2).
        silu: apply SiLU ``z * sigmoid(z)`` last.

    Returns:
        (N, C, H, W) in x's dtype and layout (the torch ops' result off the fused path).
    """
    if not _takes_kernel(x, num_groups):
        h = F.group_norm(x, num_groups, weight, bias, eps)
        if scale is not None:
            h = h * (1 + scale)
        if shift is not None:
            h = h + shift
        return F.silu(h) if silu else h
    n, c = x.shape[:2]
    a = (weight.float() if weight is not None else x.new_ones(c, dtype=torch.float32)).expand(n, c)
    b = (bias.float() if bias is not None else x.new_zeros(c, dtype=torch.float32)).expand(n, c)
    if scale is not None:
        factor = 1 + scale.float().expand(n, c, 1, 1).reshape(n, c)
        a, b = a * factor, b * factor
    if shift is not None:
        b = b + shift.float().expand(n, c, 1, 1).reshape(n, c)
    return _forward(x, a.contiguous(), b.contiguous(), num_groups, float(eps), silu)[0]


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state dict) whose forward also takes ADM's per-sample
    scale-shift and a SiLU, and runs :func:`group_norm_act`: ``norm(x, scale, shift, silu=True)``."""

    def forward(
        self,
        x: torch.Tensor,
        scale: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
        silu: bool = False,
    ) -> torch.Tensor:
        return group_norm_act(x, self.num_groups, self.weight, self.bias, self.eps, scale, shift, silu)
