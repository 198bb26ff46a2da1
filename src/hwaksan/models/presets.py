"""Named network configurations, a builder, and a parameter / FLOP summary.

A config is a plain, JSON-serialisable dict: ``{"arch": NAME, **constructor_arguments}`` with
``NAME`` a key of :data:`ARCHITECTURES`. :func:`model_config` returns that dict for a built network
(``{"arch": ..., **net.config}``), so ``build_model(model_config(net))`` rebuilds it for a
checkpoint.

Example:
    >>> net = build_model("unet-digits")
    >>> summary = model_summary(net, (1, 8, 8))
    >>> summary["params"] == sum(p.numel() for p in net.parameters())
    True
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from .classifier import Classifier
from .dit import DiT, MoEDiT
from .mlp import MLP
from .motion_transformer import MotionTransformer
from .unet import UNet
from .video_unet import VideoUNet
from .wavegrad import WaveGrad

__all__ = [
    "ARCHITECTURES",
    "PRESETS",
    "PRESET_INPUT_SHAPES",
    "build_model",
    "flop_counter",
    "input_arguments",
    "model_config",
    "model_summary",
    "preset_table",
]

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "unet": UNet,
    "dit": DiT,
    "moe-dit": MoEDiT,
    "classifier": Classifier,
    "wavegrad": WaveGrad,
    "motion-transformer": MotionTransformer,
    "video-unet": VideoUNet,
}

PRESETS: dict[str, dict[str, Any]] = {
    # 1xT waveforms at 16 kHz from 32-band log-mels at hop 256 (speech-digits): WaveGrad's UBlocks /
    # DBlocks / FiLM (Chen et al. 2021) scaled to a CPU, four x4 upsamplings.
    "wavegrad-speech": {
        "arch": "wavegrad",
        "in_channels": 1,
        "n_mels": 32,
        "factors": [4, 4, 4, 4],
        "channels": [64, 32, 16, 8],
        "down_channels": [4, 8, 16, 32],
        "mel_channels": 64,
        "emb_dim": 128,
    },
    # 1x8x8 digits: two levels (8x8, 4x4), attention at 4x4.
    "unet-digits": {
        "arch": "unet",
        "in_channels": 1,
        "model_channels": 32,
        "channel_mult": [1, 2],
        "num_res_blocks": 2,
        "attention_levels": [1],
        "num_classes": 10,
    },
    # 1x28x28 MNIST / Fashion-MNIST: three levels (28, 14, 7), attention at 7x7; no padding.
    "unet-mnist": {
        "arch": "unet",
        "in_channels": 1,
        "model_channels": 32,
        "channel_mult": [1, 2, 2],
        "num_res_blocks": 2,
        "attention_levels": [2],
        "num_classes": 10,
    },
    # 1x32x32, about 1.1 M parameters with three levels (32, 16, 8) and GroupNorm with 8 groups: the
    # layout of the diffusers UNet2DModel of the throughput benchmark. (With 32 groups of one channel
    # at the 32-channel level, torch's channels-last GroupNorm made a bf16 training step 1.6x slower.)
    "unet-32": {
        "arch": "unet",
        "in_channels": 1,
        "model_channels": 32,
        "channel_mult": [1, 2, 2],
        "num_res_blocks": 1,
        "attention_levels": [2],
        "emb_dim": 64,
        "num_groups": 8,
    },
    # The same size budget (1.15 M params, attention at 8x8) spent where pixels are few: 16 channels
    # at 32x32, 48 at 16x16, 80 at 8x8, GroupNorm with 8 groups (with 32 groups the 16-channel level
    # would normalise every channel alone). 0.31 GFLOP/img instead of 0.50: the fastest U-Net of
    # bench/train_throughput.py at equal parameters; its sample quality against diffusers' at equal
    # training: bench/unet_quality.py (docs/benchmarks.md).
    "unet-32-fast": {
        "arch": "unet",
        "in_channels": 1,
        "model_channels": 16,
        "channel_mult": [1, 3, 5],
        "num_res_blocks": 1,
        "attention_levels": [2],
        "emb_dim": 64,
        "num_groups": 8,
    },
    # 3x64x64 RGB (emoji, image folders): four levels (64, 32, 16, 8), attention at 16 and 8.
    "unet-64": {
        "arch": "unet",
        "in_channels": 3,
        "model_channels": 32,
        "channel_mult": [1, 2, 2, 2],
        "num_res_blocks": 2,
        "attention_levels": [2, 3],
    },
    # DiT on 1x28x28 with 2x2 patches (196 tokens).
    "dit-mnist": {
        "arch": "dit",
        "input_size": 28,
        "patch_size": 2,
        "in_channels": 1,
        "hidden_size": 128,
        "depth": 6,
        "num_heads": 4,
        "num_classes": 10,
    },
    # The same with a 4-expert, top-1 MoE in every block: same FLOPs, ~3x the MLP parameters.
    "moe-mnist": {
        "arch": "moe-dit",
        "input_size": 28,
        "patch_size": 2,
        "in_channels": 1,
        "hidden_size": 128,
        "depth": 6,
        "num_heads": 4,
        "num_classes": 10,
        "num_experts": 4,
        "top_k": 1,
    },
    # 1x8x32x32 clips (moving-mnist), sized for a CPU: 2x2 pixels folded into channels, then three
    # levels (16, 8, 4) of 2-D convolutions per frame, a temporal convolution after every block,
    # temporal attention at 8x8, 4x4 and in the middle. 1.4 M params, 1.1 GFLOP per 8-frame clip.
    "video-unet-32": {
        "arch": "video-unet",
        "in_channels": 1,
        "model_channels": 32,
        "channel_mult": [1, 2, 2],
        "num_res_blocks": 1,
        "temporal_attention_levels": [1, 2],
        "patch_size": 2,
        "emb_dim": 128,
        "num_groups": 8,
        "num_classes": 10,
    },
    # 30x32 stick-figure motion (stick-motion): MDM-style transformer over 32 frame tokens, width
    # 128, 4 adaLN-Zero blocks, 8 action classes (+ the null class of classifier-free guidance).
    "motion-stick": {
        "arch": "motion-transformer",
        "in_channels": 30,
        "hidden_size": 128,
        "depth": 4,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "num_classes": 8,
        "max_frames": 32,
    },
}

PRESET_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "wavegrad-speech": (1, 1024),
    "unet-digits": (1, 8, 8),
    "unet-mnist": (1, 28, 28),
    "unet-32": (1, 32, 32),
    "unet-32-fast": (1, 32, 32),
    "unet-64": (3, 64, 64),
    "dit-mnist": (1, 28, 28),
    "moe-mnist": (1, 28, 28),
    "video-unet-32": (1, 8, 32, 32),
    "motion-stick": (30, 32),
}


def build_model(name_or_config: str | dict[str, Any], **overrides: Any) -> nn.Module:
    """Build a network from a preset name or a config dict.

    Args:
        name_or_config: a key of :data:`PRESETS`, or ``{"arch": NAME, **kwargs}``.
        **overrides: constructor arguments replacing the config's.

    Returns:
        The network (in training mode, freshly initialised).

    Raises:
        ValueError: unknown preset, unknown architecture, or an argument the architecture does
            not take (the message lists the allowed ones).
    """
    if isinstance(name_or_config, str):
        if name_or_config not in PRESETS:
            raise ValueError(f"unknown preset {name_or_config!r}: choose from {sorted(PRESETS)}")
        config = copy.deepcopy(PRESETS[name_or_config])
    else:
        config = copy.deepcopy(dict(name_or_config))
    config.update(overrides)
    arch = config.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}: choose from {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    allowed = _constructor_args(cls)
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"{arch} does not take {unknown}: allowed keys are {allowed}")
    return cls(**config)


def input_arguments(arch: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """The constructor arguments of ``arch`` that follow the per-sample data ``shape`` ``(C, *axes)``.

    A network class may say which data it takes with two class attributes: ``data_axes`` (the
    number of axes after the channel it convolves over: 2 for images, 1 for sequences, 3 for clips;
    None for a network of flat vectors) and ``input_arguments(shape) -> dict`` (a static method;
    default ``{"in_channels": C}``).

    Raises:
        ValueError: an unknown ``arch``, or a shape with the wrong number of axes for it.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}: choose from {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    axes = getattr(cls, "data_axes", 2)
    if axes is not None and len(shape) != axes + 1:
        kind = {1: "sequences (C, T)", 2: "images (C, H, W)", 3: "clips (C, F, H, W)"}.get(
            axes, f"{axes} axes"
        )
        raise ValueError(
            f"the {arch} network takes {kind}, but the data has samples of shape {tuple(shape)}: "
            "choose a network for this data"
        )
    custom = getattr(cls, "input_arguments", None)
    return dict(custom(tuple(shape))) if custom is not None else {"in_channels": int(shape[0])}


def _constructor_args(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is nn.Module or not issubclass(klass, nn.Module):
            break
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                if p.name not in names:
                    names.append(p.name)
        if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(klass.__init__).parameters.values()):
            break
    return names


def model_config(net: nn.Module) -> dict[str, Any]:
    """The JSON-serialisable config that rebuilds ``net``: ``{"arch": NAME, **net.config}``."""
    for name, cls in ARCHITECTURES.items():
        if type(net) is cls:
            return {"arch": name, **copy.deepcopy(net.config)}
    raise ValueError(f"{type(net).__name__} is not a registered architecture")


def _sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def flop_counter(display: bool = False) -> FlopCounterMode:
    """A :class:`~torch.utils.flop_counter.FlopCounterMode` that also counts attention on CPU.

    PyTorch's counter knows the CUDA attention kernels but not
    ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its backward), which
    :func:`torch.nn.functional.scaled_dot_product_attention` runs on CPU; without this mapping,
    attention would count zero FLOPs there. Same convention: ``2 B H N L d`` per product.
    """
    mapping = {}
    aten = torch.ops.aten
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_flop
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_backward_flop
    return FlopCounterMode(display=display, custom_mapping=mapping)


def model_summary(
    net: nn.Module,
    input_shape: Sequence[int],
    cond: Any = None,
) -> dict[str, Any]:
    """Parameter count and forward FLOPs per sample.

    FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` (see
    :func:`flop_counter`) on one forward pass of a single sample, with its convention: a
    multiply-add counts 2 (matmul, convolution and attention only; normalisation, activations and
    element-wise ops are not counted). A training step costs about 3x the forward.

    Args:
        net: a network ``net(x, noise_level, cond)``.
        input_shape: ``(C, H, W)`` of one sample (no batch dimension).
        cond: condition for the counting pass; by default none (class-conditional networks then
            use their null class; cross-attention is skipped: pass a context to count it). A
            zero image is supplied to networks with ``in_extra_channels``.

    Returns:
        ``{"params", "trainable_params", "flops", "gflops", "input_shape"}``, ``flops`` per
        sample.
    """
    params = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    p0 = next(net.parameters())
    x = torch.zeros(1, *input_shape, device=p0.device, dtype=p0.dtype)
    extra = getattr(net, "config", {}).get("in_extra_channels", 0)
    if cond is None and extra:
        cond = {"image": torch.zeros(1, extra, *input_shape[1:], device=p0.device)}
    was_training = net.training
    net.eval()
    counter = flop_counter()
    try:
        with torch.no_grad(), counter:
            net(x, torch.zeros(1, device=p0.device), cond)
    finally:
        net.train(was_training)
    flops = int(counter.get_total_flops())
    return {
        "params": params,
        "trainable_params": trainable,
        "flops": flops,
        "gflops": flops / 1e9,
        "input_shape": list(input_shape),
    }


def preset_table() -> list[dict[str, Any]]:
    """One row per preset: name, arch, input shape, parameters and GFLOPs per sample."""
    rows = []
    for name, config in PRESETS.items():
        summary = model_summary(build_model(name), PRESET_INPUT_SHAPES[name])
        rows.append({"name": name, "arch": config["arch"], **summary})
    return rows
