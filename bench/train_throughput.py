"""Training and inference throughput: hwaksan's U-Net against diffusers' UNet2DModel.

All networks take 1x32x32 images, have three levels (32, 16, 8) with attention at 8x8 and 1.1 M
parameters (within 5%): diffusers' ``block_out_channels=(32, 64, 64)``, ``layers_per_block=1``,
attention in the lowest block; ours in the same layout (preset ``unet-32``, "hwaksan-32") and with the
same parameter budget moved to the low resolutions (preset ``unet-32-fast``, 16/48/80 channels,
"hwaksan-fast": 0.31 instead of 0.50 GFLOP/img; its sample quality against diffusers' at equal
training: bench/unet_quality.py). For each network and each setting
(fp32 / bf16 autocast, eager / ``torch.compile``, contiguous / channels-last) the script measures

- training: images/s of a full step (forward, MSE loss, backward, AdamW) at batch 64;
- inference: images/s of a forward pass at batch 256 under ``torch.no_grad``;

and the achieved GFLOP/s (forward FLOPs from torch's FlopCounterMode, x3 for a training step) as a
fraction of this machine's fp32 and bf16 matmul peaks, measured in the same run. A profile of our
best training setting closes the report.

    python bench/train_throughput.py                 # everything (compiling takes minutes)
    python bench/train_throughput.py --no-compile    # eager only
    python bench/train_throughput.py --quick         # smoke run
    python bench/train_throughput.py --nets hwaksan-fast,diffusers
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hwaksan.models.group_norm_act import fused_group_norm_available
from hwaksan.models.presets import build_model, flop_counter

SHAPE = (1, 32, 32)


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel behind our network signature ``net(x, noise_level, cond)``."""

    def __init__(self) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(
            sample_size=32,
            in_channels=1,
            out_channels=1,
            block_out_channels=(32, 64, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
            attention_head_dim=32,
        )

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, cond=None) -> torch.Tensor:
        # x1000: diffusers' sinusoidal embedding expects a step index in [0, 1000); ours spreads a
        # noise level of order one over the same frequencies (SinusoidalEmbedding's scale)
        return self.unet(x, 1000.0 * noise_level).sample


def networks() -> dict[str, Callable[[], nn.Module]]:
    nets: dict[str, Callable[[], nn.Module]] = {
        "hwaksan-fast": lambda: build_model("unet-32-fast"),
        "hwaksan-32": lambda: build_model("unet-32"),
    }
    try:
        DiffusersUNet()
        nets["diffusers"] = DiffusersUNet
    except Exception as err:  # a peer that does not import is reported, not fatal
        print(f"# diffusers unavailable: {err}", file=sys.stderr)
    return nets


def forward_flops(net: nn.Module) -> int:
    x = torch.zeros(1, *SHAPE)
    counter = flop_counter()
    with torch.no_grad(), counter:
        net(x, torch.zeros(1))
    return int(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of a large square matmul in ``dtype`` (the machine's practical peak)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def measure(fn: Callable[[], None], batch: int, min_seconds: float, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    return batch * n / (time.perf_counter() - t0)


def setting_runner(make_net, bf16: bool, compiled: bool, channels_last: bool, batch: int, train: bool):
    torch.manual_seed(0)
    net = make_net()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    x = torch.randn(batch, *SHAPE).contiguous(memory_format=fmt)
    c = torch.rand(batch)
    target = torch.randn(batch, *SHAPE)
    run_net = torch.compile(net) if compiled else net
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    if train:
        net.train()
        # the trainer's optimizer (fused AdamW), the same for both networks
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)

        def step() -> None:
            with amp():
                out = run_net(x, c)
            loss = F.mse_loss(out.float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step
    net.eval()

    def infer() -> None:
        with torch.no_grad(), amp():
            run_net(x, c)

    return infer


def profile_table(make_net, bf16: bool, channels_last: bool, rows: int = 12) -> str:
    step = setting_runner(make_net, bf16, False, channels_last, 64, True)
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: short timings, eager only")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile settings")
    ap.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--force-bf16", action="store_true", help="time bf16 settings even where bf16 is slow")
    ap.add_argument("--nets", default="", help="comma-separated networks to time (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seconds = 1.0 if args.quick else args.seconds
    compiles = (False,) if (args.quick or args.no_compile) else (False, True)

    # bf16 at 1024^3: where bf16 is emulated a 2048^3 product takes a minute
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16, n=1024)
    nets = networks()
    if args.nets:
        wanted = args.nets.split(",")
        unknown = sorted(set(wanted) - set(nets))
        if unknown:
            ap.error(f"unknown networks {unknown}: choose from {sorted(nets)}")
        nets = {k: v for k, v in nets.items() if k in wanted}
    print("Command: `python bench/train_throughput.py " + " ".join(argv or sys.argv[1:]) + "`")
    print(
        f"Machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"fused channels-last GroupNorm kernel: {fused_group_norm_available()}."
    )
    print(f"Matmul peak: fp32 {peak32:.0f} GFLOP/s (2048^3), bf16 {peak16:.1f} GFLOP/s (1024^3).\n")
    bf16s = (False, True)
    if peak16 < peak32 and not args.force_bf16:
        bf16s = (False,)
        print(
            "bf16 matmul is slower than fp32 on this CPU (no native bf16 instructions: it is emulated), "
            "so bf16 autocast cannot help here and its settings are skipped (--force-bf16 runs them).\n"
        )
    flops = {}
    for name, make in nets.items():
        net = make()
        flops[name] = forward_flops(net)
        print(
            f"- {name}: {sum(p.numel() for p in net.parameters()) / 1e6:.3f} M params, "
            f"{flops[name] / 1e9:.3f} GFLOP/img forward"
        )
    print()
    print(
        "| network | mode | bf16 | compile | channels-last | img/s | GFLOP/s | of fp32 peak | of bf16 peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    best: dict[tuple[str, str], tuple[float, str]] = {}
    for mode, batch in (("train", 64), ("infer", 256)):
        for name, make in nets.items():
            for bf16, compiled, cl in itertools.product(bf16s, compiles, (False, True)):
                label = f"bf16={bf16} compile={compiled} cl={cl}"
                try:
                    fn = setting_runner(make, bf16, compiled, cl, batch, mode == "train")
                    ips = measure(fn, batch, seconds, warmup=3 if compiled else 1)
                except Exception as err:  # report the failure of a setting, keep going
                    why = f"failed: {type(err).__name__}"
                    print(f"| {name} | {mode} | {bf16} | {compiled} | {cl} | {why} | | | |")
                    continue
                gf = ips * flops[name] * (3 if mode == "train" else 1) / 1e9
                of16 = f"{gf / peak16:.0%}" if bf16 else "-"
                print(
                    f"| {name} | {mode} | {bf16} | {compiled} | {cl} | {ips:.1f} | {gf:.0f} | "
                    f"{gf / peak32:.0%} | {of16} |",
                    flush=True,
                )
                if ips > best.get((name, mode), (0.0, ""))[0]:
                    best[(name, mode)] = (ips, label)
    print("\nBest setting per network:\n")
    print("| mode | network | img/s | setting | ratio to diffusers |")
    print("|---|---|---|---|---|")
    for mode in ("train", "infer"):
        ref = best.get(("diffusers", mode), (float("nan"), ""))[0]
        for name in nets:
            ips, label = best.get((name, mode), (float("nan"), "-"))
            print(f"| {mode} | {name} | {ips:.1f} | {label} | {ips / ref:.2f}x |")
    if not args.quick:
        for name in (n for n in nets if n.startswith("hwaksan")):
            ours = best.get((name, "train"), (0.0, "bf16=False compile=False cl=False"))[1]
            bf16, cl = "bf16=True" in ours, "cl=True" in ours
            print(f"\nProfile of {name}'s training step (eager, bf16={bf16}, channels-last={cl}, 3 steps):\n")
            print("```")
            print(profile_table(nets[name], bf16, cl))
            print("```")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
