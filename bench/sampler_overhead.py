"""Sampler overhead: wall time per step excluding the network.

A batch of 64 images of 1x32x32 is sampled with a trivial network (``net(x, c, cond) = 0 * x``, so
the denoiser costs only its conversions) on the EDM process and the linear DDPM table, 20 steps per
sampler. The time per step is compared with one forward pass of the ``unet-32`` preset on the same
batch: the overhead must be a small fraction of it. Peers (k-diffusion) are timed the same way when
installed.

    python bench/sampler_overhead.py            # markdown table on stdout
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from torch import nn

from hwaksan.models.presets import build_model
from hwaksan.parameterizations import ModelDenoiser
from hwaksan.processes import make_process
from hwaksan.samplers import SAMPLERS, make_grid

SHAPE = (64, 1, 32, 32)
STEPS = 20
#: options that keep a sampler at one network call per step or fewer extra passes
OPTIONS = {"annealed_langevin": {"n_steps_each": 1}, "pc": {"n_corrector": 1}}


class Zero(nn.Module):
    """The trivial network: zero output, one multiply."""

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, cond=None) -> torch.Tensor:
        return x * 0.0


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def time_hwaksan(process_name: str, repeats: int) -> list[tuple[str, int, float, float]]:
    process = make_process(process_name)
    den = ModelDenoiser(Zero(), process, prediction="eps" if process_name.startswith("ddpm") else "edm")
    rows = []
    for name, spec in SAMPLERS.items():
        if spec.nfe is None:  # adaptive: the controller decides the step count
            continue
        grid = "uniform" if name in ("ddpm", "euler_maruyama", "pc") else "karras"
        ts = make_grid(process, STEPS, grid)
        x = process.prior_sample(SHAPE, torch.Generator().manual_seed(0), t=float(ts[0]))
        opts = {**spec.defaults, **OPTIONS.get(name, {})}
        nfe = spec.nfe(ts, process, opts)

        def run(name=name, spec=spec, ts=ts, x=x, opts=opts):
            with torch.no_grad():
                spec.fn(den, x.clone(), ts, generator=torch.Generator().manual_seed(1), **opts)

        run()  # warm-up
        best, med = best_of(run, repeats)
        rows.append((name, nfe, best / nfe, med / nfe))
    return rows


def time_kdiffusion(repeats: int) -> list[tuple[str, int, float, float]]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        from peers import load_kdiffusion_sampling

        K = load_kdiffusion_sampling()
    except Exception as err:  # a peer that does not import is reported, not fatal
        print(f"# k-diffusion unavailable: {err}", file=sys.stderr)
        return []

    def model(x, sigma, **kw):
        return x * 0.0

    sigmas = K.get_sigmas_karras(STEPS, 0.002, 80.0, rho=7.0)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * 80.0
    rows = []
    for name, nfe in (("euler", STEPS), ("heun", 2 * STEPS - 1), ("dpmpp_2m", STEPS), ("lms", STEPS)):
        fn = getattr(K, f"sample_{name}")

        def run(fn=fn):
            with torch.no_grad():
                fn(model, x.clone(), sigmas, disable=True)

        run()
        best, med = best_of(run, repeats)
        rows.append((f"k-diffusion {name}", nfe, best / nfe, med / nfe))
    # SDE noise: k-diffusion's torchsde Brownian tree, one path for the batch (its default) and one
    # path per sample (per-sample seeds, what makes image i independent of the batch size)
    for label, seed in (("batch seed", None), ("per-sample seeds", list(range(SHAPE[0])))):

        def run_sde(seed=seed):
            ns = K.BrownianTreeNoiseSampler(x, 0.002, 80.0, seed=seed)
            with torch.no_grad():
                K.sample_dpmpp_2m_sde(model, x.clone(), sigmas, disable=True, noise_sampler=ns)

        run_sde()
        best, med = best_of(run_sde, repeats)
        rows.append((f"k-diffusion dpmpp_2m_sde ({label})", STEPS, best / STEPS, med / STEPS))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per sampler (best and median kept)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    net = build_model("unet-32").eval()
    x = torch.randn(SHAPE)
    c = torch.zeros(SHAPE[0])

    def unet():
        with torch.no_grad():
            net(x, c)

    unet()
    unet_best, unet_med = best_of(unet, args.repeats)
    params = sum(p.numel() for p in net.parameters())
    print("Command: `python bench/sampler_overhead.py " + " ".join(argv or sys.argv[1:]) + "`")
    print(f"Machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads.")
    print(
        f"Batch {SHAPE}, {STEPS} steps; one unet-32 forward ({params / 1e6:.2f} M params): "
        f"{unet_best * 1e3:.1f} ms (median {unet_med * 1e3:.1f} ms).\n"
    )
    print(
        "| process | sampler | NFE | overhead per NFE, best (ms) | median (ms) | fraction of one U-Net pass |"
    )
    print("|---|---|---|---|---|---|")
    for proc in ("edm", "ddpm-linear"):
        for name, nfe, best, med in time_hwaksan(proc, args.repeats):
            print(
                f"| {proc} | {name} | {nfe} | {best * 1e3:.3f} | {med * 1e3:.3f} | {best / unet_best:.2%} |"
            )
    for name, nfe, best, med in time_kdiffusion(args.repeats):
        print(f"| edm | {name} | {nfe} | {best * 1e3:.3f} | {med * 1e3:.3f} | {best / unet_best:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
