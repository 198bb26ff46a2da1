"""Time to quality: MNIST sample quality per minute of training, hwaksan against diffusers, in one run.

Both sides train on MNIST (28x28 padded with background to 32x32, unconditional, the same 1.1 M
parameter U-Net layout unless ``--hwaksan-net`` says otherwise) in one process:

- **diffusers**: the recipe of its ``train_unconditional`` example scaled to the budget --
  ``UNet2DModel`` (bench/train_throughput.py's, 32/64/64 channels, attention at 8x8),
  ``DDPMScheduler(1000, "linear")``, epsilon prediction and MSE, AdamW (betas 0.95 / 0.999,
  weight decay 1e-6, eps 1e-8), linear warm-up then cosine decay, ``EMAModel`` with warm-up
  (inv_gamma 1, power 3/4, max decay 0.9999); sampled with ``DPMSolverMultistepScheduler`` and
  ``UniPCMultistepScheduler`` (its best few-step schedulers), the better one reported.
- **hwaksan**: EDM (Karras et al. 2022) process and preconditioning (sigma_data 0.6), EDM loss
  weighting and log-normal noise levels, AdamW with warm-up and cosine decay, EMA 0.999; sampled
  with Heun and DPM++(2M) on the Karras grid, the better one reported.

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

Writes ``OUT/results.json``, ``OUT/table.md`` (FD per checkpoint; minutes to FD-classifier <= 2 and to
diffusers' final FD-EffNet), ``OUT/quality.png`` (FD vs minutes), sample grids and the EMA weights
of every checkpoint (``OUT/SIDE-Mmin.safetensors``). ``--report OUT/results.json`` rewrites the
table and plot of a finished run.
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
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import DiffusersUNet  # noqa: E402

from hwaksan.data.images import load_dataset  # noqa: E402
from hwaksan.evaluation import frechet_distance, image_features  # noqa: E402
from hwaksan.evaluation.features import load_split, subset_indices  # noqa: E402
from hwaksan.losses import denoising_loss  # noqa: E402
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
    def __init__(self, net_name: str, lr: float, warmup: int, autocast) -> None:
        torch.manual_seed(0)
        net = build_model(net_name).to(memory_format=torch.channels_last)
        super().__init__("hwaksan", net, lr)
        self.process = make_process("edm", sigma_data=SIGMA_DATA)
        self.model = ModelDenoiser(net, self.process, prediction="edm", sigma_data=SIGMA_DATA)
        self.opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
        self.ema = EMA(net, (0.999,))
        self.warmup, self.autocast = warmup, autocast
        self.net_name = net_name

    def train_step(self, x0, gen):
        for g in self.opt.param_groups:
            g["lr"] = self.lr * cosine_lr(self.step, self.warmup, self.total_steps or 10**9)
        with self.autocast():
            loss = denoising_loss(self.model, x0, t_dist="edm", weighting="edm", generator=gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.ema.update(self.net)
        return float(loss.detach())

    def ema_state(self):
        return {k: v.detach().clone() for k, v in self.ema.state(0).items()}

    @torch.no_grad()
    def generate(self, state, n, nfe, sampler, batch=250):
        net = build_model(self.net_name).to(memory_format=torch.channels_last)
        net.load_state_dict(state)
        net.eval()
        model = ModelDenoiser(net, self.process, prediction="edm", sigma_data=SIGMA_DATA)
        steps = {"heun": (nfe + 1) // 2, "dpmpp_2m": nfe}[sampler]  # Heun: 2 steps - 1 evaluations
        gen = torch.Generator().manual_seed(1234)
        outs = []
        for start in range(0, n, batch):
            with self.autocast():
                res = sample(model, (min(batch, n - start), 1, 32, 32), sampler=sampler, steps=steps,
                             grid="karras", generator=gen)  # fmt: skip
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
        kind = {"dpmpp_2m": DPMSolverMultistepScheduler, "unipc": UniPCMultistepScheduler}[sampler]
        gen = torch.Generator().manual_seed(1234)
        outs = []
        for start in range(0, n, batch):
            sched = kind.from_config(self.scheduler.config)
            sched.set_timesteps(nfe)  # multistep: one evaluation per step
            x = torch.randn((min(batch, n - start), 1, 32, 32), generator=gen) * sched.init_noise_sigma
            for t in sched.timesteps:
                with self.autocast():
                    eps = unet(sched.scale_model_input(x, t), t).sample
                x = sched.step(eps.float(), t, x).prev_sample
            outs.append(x.float())
        return torch.cat(outs), nfe


SAMPLERS = {"hwaksan": ("heun", "dpmpp_2m"), "diffusers": ("dpmpp_2m", "unipc")}


def train(sides: list[Side], minutes: list[float], chunk: float, batch: int, threads: int) -> None:
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
                idx = torch.randint(len(images), (batch,), generator=gen)
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
                side.total_steps = max(side.step + 1, int(side.step / side.seconds * budget))
            recent = sum(side.losses[-50:]) / len(side.losses[-50:])
            print(
                f"{side.name:9s} {side.seconds / 60:6.2f} min  step {side.step:6d}  loss {recent:.4f}  "
                f"({side.step / side.seconds:.1f} steps/s)",
                flush=True,
            )


def evaluate(sides: list[Side], n: int, n_real: int, out: Path) -> list[dict]:
    real = load_split("mnist", "test")
    real = real[subset_indices(len(real), n_real, seed=0)]
    feats = {space: image_features(real, space, dataset="mnist") for space in ("classifier", "effnet")}
    rows = []
    for side in sides:
        for minute, state in sorted(side.snapshots.items()):
            for nfe in NFES:
                for sampler in SAMPLERS[side.name]:
                    t0 = time.perf_counter()
                    x, used = side.generate(state, n, nfe, sampler)
                    seconds = time.perf_counter() - t0
                    x = x.clamp(-1, 1)[:, :, 2:30, 2:30]
                    fd = {s: frechet_distance(image_features(x, s, dataset="mnist"), feats[s]) for s in feats}
                    row = {"side": side.name, "minutes": minute, "nfe": used, "target_nfe": nfe}
                    row |= {"sampler": sampler, "fd_classifier": fd["classifier"], "fd_effnet": fd["effnet"]}
                    rows.append(row | {"sample_images_per_s": n / seconds})
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


def sampling_speed(sides: list[Side], best: list[dict], fd_target: float = 2.0) -> list[str]:
    """Images/s of each side at the smallest NFE where its last checkpoint reaches FD-classifier <=
    ``fd_target`` (its better sampler there), for batches of 16 and 256 (best of 3 timed runs after a
    warm-up; the weights are the side's last snapshot, or the live network's)."""
    lines = [
        "| side | NFE | sampler | FD-classifier | batch 16 img/s | batch 256 img/s |",
        "|---|---|---|---|---|---|",
    ]
    speeds = {}
    for side in sides:
        last = max((r["minutes"] for r in best if r["side"] == side.name), default=None)
        ok = sorted(
            (
                r
                for r in best
                if r["side"] == side.name and r["minutes"] == last and r["fd_classifier"] <= fd_target
            ),
            key=lambda r: r["nfe"],
        )
        if not ok:
            lines.append(f"| {side.name} | - | - | > {fd_target:g} at every NFE | - | - |")
            continue
        r = ok[0]
        state = side.snapshots.get(last) or {k: v.detach() for k, v in side.net.state_dict().items()}
        row = []
        for batch in (16, 256):
            side.generate(state, batch, r["target_nfe"], r["sampler"], batch)  # warm-up
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                side.generate(state, batch, r["target_nfe"], r["sampler"], batch)
                times.append(time.perf_counter() - t0)
            row.append(batch / min(times))
        speeds[side.name] = row
        lines.append(
            f"| {side.name} | {r['nfe']} | {r['sampler']} | {r['fd_classifier']:.2f} | "
            f"{row[0]:.0f} | {row[1]:.0f} |"
        )
    if len(speeds) == 2:
        h, d = speeds["hwaksan"], speeds["diffusers"]
        lines.append(f"| hwaksan / diffusers | | | | {h[0] / d[0]:.2f}x | {h[1] / d[1]:.2f}x |")
    return lines


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
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads",
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
    ap.add_argument("--hwaksan-net", default="unet-32", help="hwaksan's network preset")
    ap.add_argument("--hwaksan-lr", type=float, default=1e-3, help="hwaksan's peak learning rate")
    ap.add_argument("--diffusers-lr", type=float, default=2e-4,
                    help="diffusers' peak learning rate (its example: 1e-4 at batch 16)")  # fmt: skip
    ap.add_argument("--warmup", type=int, default=200, help="warm-up steps of both sides")
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
        help="only time sampling at the NFE where each side of a finished run reaches FD-classifier <= 2",
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
        sides.append(HwaksanSide(args.hwaksan_net, args.hwaksan_lr, args.warmup, autocast))
    if "diffusers" in names:
        sides.append(DiffusersSide(args.diffusers_lr, args.warmup, autocast))
    if args.sampling_speed:
        done = json.loads(Path(args.sampling_speed).read_text())
        folder = Path(args.sampling_speed).parent
        from safetensors.torch import load_file

        for side in sides:  # the last checkpoint's weights where the run saved them
            last = max(float(r["minutes"]) for r in done["rows"] if r["side"] == side.name)
            path = folder / f"{side.name}-{last:g}min.safetensors"
            if path.exists():
                side.snapshots[last] = load_file(str(path))
        lines = sampling_speed(sides, best_rows(done["rows"]))
        lines = [
            f"Command: `{command}`",
            f"Machine: {cpu_name()}, {torch.get_num_threads()} threads",
            "",
            *lines,
        ]
        (folder / "sampling.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{command}\nbf16 autocast: {bf16}; sides: {[s.name for s in sides]}", flush=True)
    train(sides, minutes, args.chunk, args.batch, args.threads)
    from safetensors.torch import save_file

    for side in sides:  # the EMA weights of every checkpoint, for later sampling measurements
        for m, state in side.snapshots.items():
            save_file(
                {k: v.contiguous() for k, v in state.items()}, str(out / f"{side.name}-{m:g}min.safetensors")
            )
    rows = evaluate(sides, args.n, args.n_real, out)
    summary = {s.name: {"steps": s.step, "seconds": s.seconds, "wall": s.wall} for s in sides}
    (out / "results.json").write_text(
        json.dumps({"command": command, "sides": summary, "rows": rows}, indent=1)
    )
    write_report(sides, rows, out, command)
    print(f"outputs: {out}/table.md, {out}/quality.png, {out}/results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
