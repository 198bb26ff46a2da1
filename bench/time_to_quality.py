"""Time to quality: MNIST sample quality per minute of training, hwaksan against diffusers, in one run.

Both sides train on MNIST (28x28 padded with background to 32x32, unconditional, the same 1.1 M
parameter U-Net layout unless ``--hwaksan-net`` says otherwise) in one process:

- **diffusers**: the recipe of its ``train_unconditional`` example scaled to the budget --
  ``UNet2DModel`` (bench/train_throughput.py's, 32/64/64 channels, attention at 8x8),
  ``DDPMScheduler(1000, "linear")``, epsilon prediction and MSE, AdamW (betas 0.95 / 0.999,
  weight decay 1e-6, eps 1e-8), linear warm-up then cosine decay, ``EMAModel`` with warm-up
  (inv_gamma 1, power 3/4, max decay 0.9999); sampled with ``DPMSolverMultistepScheduler`` and
  ``UniPCMultistepScheduler`` (its best few-step schedulers), the better one reported
  (``--diffusers-spacing``, ``--diffusers-karras``: other timesteps for those schedulers).
- **hwaksan**: EDM (Karras et al. 2022) process and preconditioning (sigma_data 0.6), EDM loss
  weighting and log-normal noise levels ``ln sigma ~ N(p_mean, p_std^2)`` (``--hwaksan-p-mean``,
  ``--hwaksan-p-std``; EDM's -1.2, 1.2 by default), AdamW (lr 1e-3) with warm-up and cosine decay,
  EMA 0.999 with the trainer's warm-up ``min(0.999, (1 + step) / (10 + step))``; sampled with Heun
  and DPM++(2M) on the Karras grid by default (``--hwaksan-samplers``, ``--hwaksan-grid``, and the
  grid's ends ``--hwaksan-sigma-max``, ``--hwaksan-sigma-min``), the better one reported.

Both use bf16 autocast and channels-last on a CPU with native bf16 (each side's own best setting;
``--fp32`` turns it off for both) and the same batch size.

**The clock.** Training alternates between the sides in chunks of ``--chunk`` seconds, so both see
the same load on a shared machine. A side's clock is the CPU time of the process spent in its own
training steps divided by the thread count: minutes of a machine with that many cores doing
nothing else. Wall-clock minutes would charge a side for the other programs of a shared machine.
At each checkpoint (``--minutes``) a side's EMA weights are kept; after training, every snapshot
draws ``--n`` images at 10 and 20 network evaluations (fixed seeds) and is scored by the Frechet
distance to the MNIST test set in two feature spaces (the project's MNIST classifier and
EfficientNet-Lite0) on the centre 28x28 crop.

    python bench/time_to_quality.py --minutes 2,5,10,20,30 --n 2000
    python bench/time_to_quality.py --minutes 0.2,0.5 --n 200 --out runs/ttq-smoke   # smoke run
    python bench/time_to_quality.py --sampling-speed runs/ttq/results.json   # NFE search, img/s
    python bench/time_to_quality.py --sides hwaksan --minutes 3.5,5 --schedule-minutes 30 --n 1000 \
        --hwaksan-batch 128 --out runs/sweep-b128                  # a recipe sweep on the 30-min schedule

Writes ``OUT/results.json``, ``OUT/table.md`` (FD per checkpoint; minutes to FD-classifier <= 2 and to
diffusers' final FD-EffNet), ``OUT/quality.png`` (FD vs minutes), sample grids and the EMA weights
of every checkpoint (``OUT/SIDE-Mmin.safetensors``); ``OUT/training.json`` (the clocks) lets
``--evaluate-saved OUT`` evaluate them again, and every evaluated row is appended to
``OUT/rows.jsonl`` as it is measured. ``--report OUT/results.json`` rewrites the table and plot of a
finished run. ``--sampling-speed OUT/results.json`` searches each side's last snapshot for the
smallest NFE at which one of the multistep samplers both libraries have (DPM-Solver++(2M), (3M),
UniPC) reaches FD-classifier <= 2, and times that setting at batches of 16 and 256
(``OUT/sampling.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import DiffusersUNet  # noqa: E402

from hwaksan.data.images import load_dataset  # noqa: E402
from hwaksan.evaluation import frechet_distance, image_features  # noqa: E402
from hwaksan.evaluation.features import load_split, subset_indices  # noqa: E402
from hwaksan.losses import denoising_loss, sample_t  # noqa: E402
from hwaksan.models.group_norm_act import fused_group_norm_available  # noqa: E402
from hwaksan.models.presets import build_model  # noqa: E402
from hwaksan.parameterizations import ModelDenoiser  # noqa: E402
from hwaksan.plotting import save_image_grid  # noqa: E402
from hwaksan.processes import make_process  # noqa: E402
from hwaksan.samplers import sample  # noqa: E402
from hwaksan.training.ema import EMA  # noqa: E402
from hwaksan.training.loop import native_bf16  # noqa: E402

SIGMA_DATA = 0.6
NFES = (10, 20)


def pad32(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (2, 2, 2, 2), value=-1.0)


def cosine_lr(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 at ``total`` steps (diffusers' schedule)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@dataclass
class Side:
    """One library's training run: its step, its clock and its snapshots."""

    name: str
    net: nn.Module
    lr: float
    batch: int = 64
    seconds: float = 0.0  # the side's clock (CPU seconds / threads)
    wall: float = 0.0
    step: int = 0
    total_steps: int | None = None
    losses: list[float] = field(default_factory=list)
    snapshots: dict[float, dict[str, torch.Tensor]] = field(default_factory=dict)

    def ema_state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def train_step(self, x0: torch.Tensor, gen: torch.Generator) -> float:
        raise NotImplementedError

    @torch.no_grad()
    def generate(
        self, state: dict[str, torch.Tensor], n: int, nfe: int, sampler: str, batch: int = 250
    ) -> tuple[torch.Tensor, int]:
        raise NotImplementedError


class HwaksanSide(Side):
    def __init__(
        self, net_name: str, lr: float, warmup: int, autocast, ema: float = 0.999, ema_warmup: bool = True
    ) -> None:
        torch.manual_seed(0)
        net = build_model(net_name).to(memory_format=torch.channels_last)
        super().__init__("hwaksan", net, lr)
        self.process = make_process("edm", sigma_data=SIGMA_DATA)
        self.model = ModelDenoiser(net, self.process, prediction="edm", sigma_data=SIGMA_DATA)
        self.opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
        self.ema = EMA(net, (ema,))
        self.ema_warmup = ema_warmup
        self.warmup, self.autocast = warmup, autocast
        self.net_name = net_name
        self.grid = "karras"  # the time grid of its samplers (--hwaksan-grid)
        self.sigma_max: float | None = None  # top of that grid (--hwaksan-sigma-max; None: the grid's own)
        self.sigma_min: float | None = None  # its last noise level before 0 (--hwaksan-sigma-min)
        self.p_mean, self.p_std = -1.2, 1.2  # the log-normal noise levels (--hwaksan-p-mean, --hwaksan-p-std)

    def train_step(self, x0, gen):
        for g in self.opt.param_groups:
            g["lr"] = self.lr * cosine_lr(self.step, self.warmup, self.total_steps or 10**9)
        with self.autocast():
            t = sample_t(self.process, len(x0), "edm", gen, p_mean=self.p_mean, p_std=self.p_std)
            loss = denoising_loss(self.model, x0, t=t, weighting="edm", generator=gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.ema.update(self.net, self.step if self.ema_warmup else None)  # the trainer's [ema] warmup
        return float(loss.detach())

    def ema_state(self):
        return {k: v.detach().clone() for k, v in self.ema.state(0).items()}

    @torch.no_grad()
    def generate(self, state, n, nfe, sampler, batch=250):
        net = build_model(self.net_name).to(memory_format=torch.channels_last)
        net.load_state_dict(state)
        net.eval()
        model = ModelDenoiser(net, self.process, prediction="edm", sigma_data=SIGMA_DATA)
        steps = (nfe + 1) // 2 if sampler == "heun" else nfe  # Heun: 2 steps - 1 evaluations
        gen = torch.Generator().manual_seed(1234)
        options = {
            k: v for k, v in (("sigma_max", self.sigma_max), ("sigma_min", self.sigma_min)) if v is not None
        }
        outs = []
        for start in range(0, n, batch):
            with self.autocast():
                res = sample(model, (min(batch, n - start), 1, 32, 32), sampler=sampler, steps=steps,
                             grid=self.grid, grid_options=options, generator=gen)  # fmt: skip
            outs.append(res.x.float())
        return torch.cat(outs), res.nfe


class DiffusersSide(Side):
    def __init__(self, lr: float, warmup: int, autocast) -> None:
        from diffusers import DDPMScheduler
        from diffusers.training_utils import EMAModel

        torch.manual_seed(0)
        net = DiffusersUNet().unet.to(memory_format=torch.channels_last)
        super().__init__("diffusers", net, lr)
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
        self.opt = torch.optim.AdamW(
            net.parameters(), lr=lr, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8
        )
        self.ema = EMAModel(net.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
        self.warmup, self.autocast = warmup, autocast
        self.scheduler_options: dict = {}  # extra options of its sampling schedulers (--diffusers-spacing)

    def train_step(self, x0, gen):
        for g in self.opt.param_groups:
            g["lr"] = self.lr * cosine_lr(self.step, self.warmup, self.total_steps or 10**9)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (x0.shape[0],), generator=gen)
        xt = self.scheduler.add_noise(x0, noise, t)
        with self.autocast():
            pred = self.net(xt, t).sample
        loss = F.mse_loss(pred.float(), noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)  # the example's max_grad_norm
        self.opt.step()
        self.ema.step(self.net.parameters())
        return float(loss.detach())

    def ema_state(self):
        copy = DiffusersUNet().unet
        copy.load_state_dict(self.net.state_dict())
        self.ema.copy_to(copy.parameters())
        return {k: v.detach().clone() for k, v in copy.state_dict().items()}

    @torch.no_grad()
    def generate(self, state, n, nfe, sampler, batch=250):
        from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

        unet = DiffusersUNet().unet.to(memory_format=torch.channels_last)
        unet.load_state_dict(state)
        unet.eval()
        kind, options = {
            "dpmpp_2m": (DPMSolverMultistepScheduler, {}),
            "dpmpp_3m": (DPMSolverMultistepScheduler, {"solver_order": 3}),
            "unipc": (UniPCMultistepScheduler, {}),
        }[sampler]
        options |= self.scheduler_options
        gen = torch.Generator().manual_seed(1234)
        outs = []
        for start in range(0, n, batch):
            sched = kind.from_config(self.scheduler.config, **options)
            sched.set_timesteps(nfe)  # multistep: one evaluation per step
            x = torch.randn((min(batch, n - start), 1, 32, 32), generator=gen) * sched.init_noise_sigma
            for t in sched.timesteps:
                with self.autocast():
                    eps = unet(sched.scale_model_input(x, t), t).sample
                x = sched.step(eps.float(), t, x).prev_sample
            outs.append(x.float())
        return torch.cat(outs), nfe


SAMPLERS = {"hwaksan": ("heun", "dpmpp_2m"), "diffusers": ("dpmpp_2m", "unipc")}


def train(
    sides: list[Side],
    minutes: list[float],
    chunk: float,
    threads: int,
    schedule: float | None = None,
) -> None:
    """Train every side to ``max(minutes)``; the cosine learning-rate schedule ends at ``schedule``
    minutes (default: the budget), so a short sweep can follow the schedule of a longer run."""
    images = pad32(load_dataset("mnist", "train").images).contiguous(memory_format=torch.channels_last)
    gens = {s.name: torch.Generator().manual_seed(0) for s in sides}
    budget = max(minutes) * 60
    while any(s.seconds < budget for s in sides):
        for side in sides:
            if side.seconds >= budget:
                continue
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            side.net.train()
            while True:
                gen = gens[side.name]
                idx = torch.randint(len(images), (side.batch,), generator=gen)
                side.losses.append(side.train_step(images[idx], gen))
                side.step += 1
                used = (time.process_time() - start_cpu) / threads
                clock = side.seconds + used
                for m in minutes:
                    if m not in side.snapshots and clock >= m * 60:
                        side.snapshots[m] = side.ema_state()
                if used >= chunk or clock >= budget:
                    break
            side.seconds += (time.process_time() - start_cpu) / threads
            side.wall += time.perf_counter() - start_wall
            if side.total_steps is None:  # the cosine schedule ends at the budget
                end = (schedule or max(minutes)) * 60
                side.total_steps = max(side.step + 1, int(side.step / side.seconds * end))
            recent = sum(side.losses[-50:]) / len(side.losses[-50:])
            print(
                f"{side.name:9s} {side.seconds / 60:6.2f} min  step {side.step:6d}  loss {recent:.4f}  "
                f"({side.step / side.seconds:.1f} steps/s)",
                flush=True,
            )


def evaluate(
    sides: list[Side], n: int, n_real: int, out: Path, samplers: dict[str, tuple[str, ...]] | None = None
) -> list[dict]:
    """FD-classifier and FD-EffNet of ``n`` samples of every snapshot at each NFE, with each side's
    samplers (``samplers[name]``, default :data:`SAMPLERS`)."""
    samplers = samplers or {}
    real = load_split("mnist", "test")
    real = real[subset_indices(len(real), n_real, seed=0)]
    feats = {space: image_features(real, space, dataset="mnist") for space in ("classifier", "effnet")}
    rows = []
    for side in sides:
        for minute, state in sorted(side.snapshots.items()):
            for nfe in NFES:
                for sampler in samplers.get(side.name, SAMPLERS[side.name]):
                    t0 = time.perf_counter()
                    x, used = side.generate(state, n, nfe, sampler)
                    seconds = time.perf_counter() - t0
                    x = x.clamp(-1, 1)[:, :, 2:30, 2:30]
                    fd = {s: frechet_distance(image_features(x, s, dataset="mnist"), feats[s]) for s in feats}
                    row = {"side": side.name, "minutes": minute, "nfe": used, "target_nfe": nfe}
                    row |= {"sampler": sampler, "fd_classifier": fd["classifier"], "fd_effnet": fd["effnet"]}
                    rows.append(row | {"sample_images_per_s": n / seconds})
                    with open(out / "rows.jsonl", "a") as f:  # what is done survives an interruption
                        f.write(json.dumps(rows[-1]) + "\n")
                    print(
                        f"{side.name:9s} {minute:5.1f} min  {sampler:8s} {used:2d} NFE  "
                        f"FD-classifier {fd['classifier']:7.2f}  FD-EffNet {fd['effnet']:7.2f}",
                        flush=True,
                    )
                    if minute == max(side.snapshots) and nfe == max(NFES):
                        save_image_grid(x[:64], out / f"samples-{side.name}-{sampler}.png", nrow=8, scale=2)
    return rows


def best_rows(rows: list[dict]) -> list[dict]:
    """Per side, checkpoint and NFE: the sampler with the lower FD-classifier."""
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (r["side"], r["minutes"], r["target_nfe"])
        if key not in best or r["fd_classifier"] < best[key]["fd_classifier"]:
            best[key] = r
    return [best[k] for k in sorted(best)]


def minutes_to_reach(best: list[dict], side: str, nfe: int, metric: str, target: float) -> float | None:
    """Training minutes at which ``side`` first reaches ``metric <= target`` at ``nfe``: between the
    last checkpoint above and the first at or below, interpolated linearly in ``log metric`` against
    ``log minutes``; None when no checkpoint reaches it. At the first checkpoint: its minutes."""
    pts = sorted((r["minutes"], r[metric]) for r in best if r["side"] == side and r["target_nfe"] == nfe)
    for i, (m, v) in enumerate(pts):
        if v <= target:
            if i == 0:
                return m
            (m0, v0) = pts[i - 1]
            f = (math.log(v0) - math.log(target)) / (math.log(v0) - math.log(v))
            return math.exp(math.log(m0) + f * (math.log(m) - math.log(m0)))
    return None


def time_to_quality_lines(best: list[dict], fd_target: float = 2.0) -> list[str]:
    """The table of minutes to FD-classifier <= ``fd_target`` and to the FD-EffNet diffusers ends at,
    per NFE, with hwaksan's time as a fraction of diffusers'."""
    lines = [
        "| NFE | target | hwaksan minutes | diffusers minutes | hwaksan / diffusers |",
        "|---|---|---|---|---|",
    ]

    def fmt(m: float | None, cap: float) -> str:
        return f"{m:.1f}" if m is not None else f"> {cap:g}"

    for nfe in NFES:
        caps = {
            s: max((r["minutes"] for r in best if r["side"] == s), default=0.0)
            for s in ("hwaksan", "diffusers")
        }
        final = [
            r
            for r in best
            if r["side"] == "diffusers" and r["target_nfe"] == nfe and r["minutes"] == caps["diffusers"]
        ]
        targets = [("fd_classifier", fd_target, f"FD-classifier <= {fd_target:g}")]
        if final:
            targets.append(("fd_effnet", final[0]["fd_effnet"], f"FD-EffNet <= {final[0]['fd_effnet']:.1f}"))
        for metric, target, label in targets:
            h = minutes_to_reach(best, "hwaksan", nfe, metric, target)
            d = minutes_to_reach(best, "diffusers", nfe, metric, target)
            ratio = (
                f"{h / d:.2f}"
                if h is not None and d is not None
                else (
                    f"< {h / caps['diffusers']:.2f}"
                    if h is not None and d is None and caps["diffusers"]
                    else "-"
                )
            )
            lines.append(
                f"| {nfe} | {label} | {fmt(h, caps['hwaksan'])} | {fmt(d, caps['diffusers'])} | {ratio} |"
            )
    return lines


SEARCH_SAMPLERS = ("dpmpp_2m", "dpmpp_3m", "unipc")
"""The multistep samplers both libraries have (hwaksan's on the Karras grid; diffusers' schedulers
on their default timesteps), tried at each NFE of the sampling-speed search."""


def time_sampling(side: Side, state: dict, nfe: int, sampler: str, batch: int, repeats: int = 3) -> float:
    """Images/s of ``side`` drawing one batch of ``batch`` (best of ``repeats`` after a warm-up)."""
    side.generate(state, batch, nfe, sampler, batch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        side.generate(state, batch, nfe, sampler, batch)
        times.append(time.perf_counter() - t0)
    return batch / min(times)


def sampling_speed(
    sides: list[Side], nfes: list[int], n: int, n_real: int, fd_target: float = 2.0
) -> tuple[list[str], list[dict]]:
    """For each side's last snapshot: FD-classifier of ``n`` samples with each of
    :data:`SEARCH_SAMPLERS` at each NFE of ``nfes`` (ascending, stopping at the first NFE where one
    reaches ``fd_target``); that NFE with its best sampler is timed at batches of 16 and 256.
    Returns the table's lines and the search rows."""
    real = load_split("mnist", "test")
    real_feats = image_features(
        real[subset_indices(len(real), n_real, seed=0)], "classifier", dataset="mnist"
    )
    lines = [
        "| side | NFE | sampler | FD-classifier | batch 16 img/s | batch 256 img/s |",
        "|---|---|---|---|---|---|",
    ]
    rows, speeds = [], {}
    for side in sides:
        state = side.snapshots[max(side.snapshots)]
        found = None
        for nfe in sorted(nfes):
            for sampler in SEARCH_SAMPLERS:
                x, used = side.generate(state, n, nfe, sampler)
                fd = frechet_distance(image_features(x.clamp(-1, 1)[:, :, 2:30, 2:30], "classifier",
                                                     dataset="mnist"), real_feats)  # fmt: skip
                rows.append({"side": side.name, "nfe": used, "sampler": sampler, "fd_classifier": fd})
                print(f"{side.name:9s} {sampler:8s} {used:2d} NFE  FD-classifier {fd:6.2f}", flush=True)
                if fd <= fd_target and (found is None or fd < found[2]):
                    found = (nfe, sampler, fd, used)
            if found:
                break
        if found is None:
            lines.append(f"| {side.name} | > {max(nfes)} | - | > {fd_target:g} | - | - |")
            continue
        nfe, sampler, fd, used = found
        speeds[side.name] = [time_sampling(side, state, nfe, sampler, b) for b in (16, 256)]
        lines.append(
            f"| {side.name} | {used} | {sampler} | {fd:.2f} | {speeds[side.name][0]:.0f} | "
            f"{speeds[side.name][1]:.0f} |"
        )
    if len(speeds) == 2:
        h, d = speeds["hwaksan"], speeds["diffusers"]
        lines.append(f"| hwaksan / diffusers | | | | {h[0] / d[0]:.2f}x | {h[1] / d[1]:.2f}x |")
    return lines, rows


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's machine type."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def write_report(sides: list, rows: list[dict], out: Path, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = best_rows(rows)
    lines = [
        f"Command: `{command}`",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
        f"fused GroupNorm kernel: {fused_group_norm_available()}",
        "",
        "| side | minutes | steps | NFE | sampler | FD-classifier | FD-EffNet | sampling img/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    steps_at = {s.name: s.step / s.seconds for s in sides}
    for r in best:
        steps = int(steps_at[r["side"]] * r["minutes"] * 60)
        lines.append(
            f"| {r['side']} | {r['minutes']:g} | ~{steps} | {r['nfe']} | {r['sampler']} | "
            f"{r['fd_classifier']:.2f} | {r['fd_effnet']:.2f} | {r['sample_images_per_s']:.0f} |"
        )
    lines += ["", *time_to_quality_lines(best)]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("fd_classifier", "fd_effnet"), strict=True):
        for side in sides:
            for nfe, style in zip(NFES, ("--", "-"), strict=True):
                pts = [
                    (r["minutes"], r[metric])
                    for r in best
                    if r["side"] == side.name and r["target_nfe"] == nfe
                ]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, marker="o", label=f"{side.name}, {nfe} NFE")
        ax.set_xlabel("training minutes (CPU time / threads)")
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "quality.png", dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", default="2,5,10,20,30", help="checkpoints, training minutes per side")
    ap.add_argument("--chunk", type=float, default=20.0, help="seconds a side trains before the other")
    ap.add_argument("--batch", type=int, default=64, help="batch size of both sides")
    ap.add_argument("--hwaksan-samplers", default="heun,dpmpp_2m", help="hwaksan's samplers to evaluate")
    ap.add_argument("--diffusers-samplers", default="dpmpp_2m,unipc", help="diffusers' samplers to evaluate")
    ap.add_argument("--diffusers-spacing", choices=("linspace", "leading", "trailing"), default=None,
                    help="timestep_spacing of diffusers' schedulers (default: linspace)")  # fmt: skip
    ap.add_argument("--diffusers-karras", action="store_true",
                    help="use_karras_sigmas=True in diffusers' sampling schedulers")  # fmt: skip
    ap.add_argument("--hwaksan-batch", type=int, default=None, help="hwaksan's batch size (default: --batch)")
    ap.add_argument("--hwaksan-net", default="unet-32", help="hwaksan's network preset")
    ap.add_argument("--hwaksan-lr", type=float, default=1e-3, help="hwaksan's peak learning rate")
    ap.add_argument("--diffusers-lr", type=float, default=2e-4,
                    help="diffusers' peak learning rate (its example: 1e-4 at batch 16)")  # fmt: skip
    ap.add_argument("--hwaksan-ema", type=float, default=0.999, help="hwaksan's EMA decay")
    ap.add_argument("--no-ema-warmup", action="store_true",
                    help="hwaksan's EMA without the warm-up min(d, (1+step)/(10+step))")  # fmt: skip
    ap.add_argument("--warmup", type=int, default=200, help="warm-up steps of both sides")
    ap.add_argument("--schedule-minutes", type=float, default=None,
                    help="minutes where the cosine schedule ends (default: the last checkpoint)")  # fmt: skip
    ap.add_argument("--n", type=int, default=2000, help="generated images per snapshot, NFE and sampler")
    ap.add_argument("--n-real", type=int, default=5000, help="MNIST test images of the reference")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast on either side")
    ap.add_argument("--sides", default="hwaksan,diffusers", help="which sides to run")
    ap.add_argument("--out", default="runs/time-to-quality", help="output folder")
    ap.add_argument(
        "--report", metavar="RESULTS.json", help="only rewrite the table and plot of a finished run"
    )
    ap.add_argument(
        "--sampling-speed",
        metavar="RESULTS.json",
        help="only search each side's last snapshot of a finished run for the smallest NFE that reaches "
        "FD-classifier <= 2 (--n samples) and time sampling there",
    )
    ap.add_argument("--hwaksan-grid", default="karras", choices=("karras", "log_snr", "uniform"),
                    help="the time grid of hwaksan's samplers")  # fmt: skip
    ap.add_argument("--hwaksan-sigma-max", type=float, default=None,
                    help="top noise level of hwaksan's sampling grid (default: 80, EDM's)")  # fmt: skip
    ap.add_argument("--hwaksan-sigma-min", type=float, default=None,
                    help="hwaksan's last nonzero sampling noise level (default: EDM's 0.002)")  # fmt: skip
    ap.add_argument("--hwaksan-p-mean", type=float, default=-1.2,
                    help="hwaksan's training noise levels: ln sigma ~ N(p_mean, p_std^2)")  # fmt: skip
    ap.add_argument("--hwaksan-p-std", type=float, default=1.2, help="see --hwaksan-p-mean")
    ap.add_argument("--search-nfes", default="3,4,5,6,8,10",
                    help="NFEs the --sampling-speed search tries, ascending")  # fmt: skip
    ap.add_argument(
        "--evaluate-saved",
        metavar="OUT",
        help="only evaluate the snapshots a finished training left in OUT (OUT/training.json)",
    )
    args = ap.parse_args(argv)
    if args.report:
        done = json.loads(Path(args.report).read_text())
        sides = [
            SimpleNamespace(name=k, step=v["steps"], seconds=v["seconds"]) for k, v in done["sides"].items()
        ]
        write_report(sides, done["rows"], Path(args.report).parent, done["command"])
        return 0
    torch.set_num_threads(args.threads)
    command = "python bench/time_to_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    minutes = sorted(float(m) for m in args.minutes.split(","))
    bf16 = not args.fp32 and native_bf16(torch.device("cpu"))

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    names = args.sides.split(",")
    sides: list[Side] = []
    if "hwaksan" in names:
        sides.append(
            HwaksanSide(
                args.hwaksan_net,
                args.hwaksan_lr,
                args.warmup,
                autocast,
                args.hwaksan_ema,
                ema_warmup=not args.no_ema_warmup,
            )
        )
    if "hwaksan" in names:
        sides[0].grid, sides[0].sigma_max = args.hwaksan_grid, args.hwaksan_sigma_max
        sides[0].sigma_min = args.hwaksan_sigma_min
        sides[0].p_mean, sides[0].p_std = args.hwaksan_p_mean, args.hwaksan_p_std
    if "diffusers" in names:
        sides.append(DiffusersSide(args.diffusers_lr, args.warmup, autocast))
        if args.diffusers_spacing:
            sides[-1].scheduler_options["timestep_spacing"] = args.diffusers_spacing
        if args.diffusers_karras:
            sides[-1].scheduler_options["use_karras_sigmas"] = True
    if args.sampling_speed:
        done = json.loads(Path(args.sampling_speed).read_text())
        folder = Path(args.sampling_speed).parent
        for side in sides:  # the last checkpoint's weights
            last = max(float(r["minutes"]) for r in done["rows"] if r["side"] == side.name)
            side.snapshots[last] = load_file(str(folder / f"{side.name}-{last:g}min.safetensors"))
        nfes = [int(v) for v in args.search_nfes.split(",")]
        lines, rows = sampling_speed(sides, nfes, args.n, args.n_real)
        lines = [
            f"Command: `{command}`",
            f"Machine: {cpu_name()}, {torch.get_num_threads()} threads, "
            f"fused GroupNorm kernel: {fused_group_norm_available()}",
            "",
            *lines,
        ]
        (folder / "sampling.md").write_text("\n".join(lines) + "\n")
        (folder / "sampling.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
        print("\n".join(lines))
        return 0
    out = Path(args.out)
    if args.evaluate_saved:  # the snapshots and clocks of a run whose evaluation did not finish
        out = Path(args.evaluate_saved)
        done = json.loads((out / "training.json").read_text())
        command = done["command"]
        for side in sides:
            clock = done["sides"][side.name]
            side.step, side.seconds, side.wall = clock["steps"], clock["seconds"], clock["wall"]
            side.batch = clock.get("batch", args.batch)
            for path in sorted(out.glob(f"{side.name}-*min.safetensors")):
                side.snapshots[float(path.stem.split("-")[1].removesuffix("min"))] = load_file(str(path))
    else:
        out.mkdir(parents=True, exist_ok=True)
        print(f"{command}\nbf16 autocast: {bf16}; sides: {[s.name for s in sides]}", flush=True)
        for side in sides:
            side.batch = args.batch
        if args.hwaksan_batch and sides[0].name == "hwaksan":
            sides[0].batch = args.hwaksan_batch
        train(sides, minutes, args.chunk, args.threads, args.schedule_minutes)
        for side in sides:  # the EMA weights of every checkpoint, for later evaluation and timing
            for m, state in side.snapshots.items():
                path = out / f"{side.name}-{m:g}min.safetensors"
                save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    summary = {
        s.name: {"steps": s.step, "seconds": s.seconds, "wall": s.wall, "batch": s.batch} for s in sides
    }
    if not args.evaluate_saved:
        (out / "training.json").write_text(json.dumps({"command": command, "sides": summary}, indent=1))
    rows = evaluate(
        sides,
        args.n,
        args.n_real,
        out,
        {
            "hwaksan": tuple(args.hwaksan_samplers.split(",")),
            "diffusers": tuple(args.diffusers_samplers.split(",")),
        },
    )
    (out / "results.json").write_text(
        json.dumps({"command": command, "sides": summary, "rows": rows}, indent=1)
    )
    write_report(sides, rows, out, command)
    print(f"outputs: {out}/table.md, {out}/quality.png, {out}/results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
