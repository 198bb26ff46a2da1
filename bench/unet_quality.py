"""Sample quality of the U-Nets of the throughput benchmark, trained the same way.

The throughput bar compares hwaksan's fastest U-Net with diffusers' ``UNet2DModel`` at equal
parameter count and attention resolution, "with the same or better sample quality". This script
trains each network on MNIST (28x28 padded with background to 32x32, unconditional) with one recipe
-- EDM process and preconditioning (sigma_data 0.6), EDM loss weighting and noise-level
distribution, AdamW lr 1e-3 with 200 warm-up steps and cosine decay, gradient clipping at 1, EMA
0.999, bf16 autocast, batch 64, the same data order and noise -- then draws the same 2000 prior
samples through Heun (12 steps, Karras grid, 23 evaluations) with each EMA network and reports the
Frechet distance to 5000 MNIST test images in two feature spaces (the 64-d MNIST classifier and
EfficientNet-Lite0), on the centre 28x28 crop.

    python bench/unet_quality.py train --net hwaksan-fast --steps 2000   # one network per process
    python bench/unet_quality.py train --net diffusers --steps 2000
    python bench/unet_quality.py report                                  # FD table of trained nets

Runs live in ``runs/unet-quality/<net>/`` (EMA weights as safetensors, losses as JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import DiffusersUNet  # noqa: E402

from hwaksan.data.images import load_dataset  # noqa: E402
from hwaksan.evaluation import frechet_distance, image_features  # noqa: E402
from hwaksan.evaluation.features import load_split, subset_indices  # noqa: E402
from hwaksan.losses import denoising_loss  # noqa: E402
from hwaksan.models.presets import build_model  # noqa: E402
from hwaksan.parameterizations import ModelDenoiser  # noqa: E402
from hwaksan.processes import make_process  # noqa: E402
from hwaksan.samplers import sample  # noqa: E402
from hwaksan.training.ema import EMA  # noqa: E402

NETS = {
    "hwaksan-fast": lambda: build_model("unet-32-fast"),
    # variants measured on the way to the preset (docs/benchmarks.md)
    "hwaksan-fast-g16": lambda: build_model("unet-32-fast", num_groups=32),  # 16 groups: 1 ch/group at 32x32
    "hwaksan-fast-20": lambda: build_model("unet-32-fast", model_channels=20, channel_mult=[1, 2, 4]),
    "hwaksan": lambda: build_model("unet-32"),
    "diffusers": DiffusersUNet,
}
ROOT = Path("runs/unet-quality")
SIGMA_DATA = 0.6


def model_for(name: str) -> ModelDenoiser:
    torch.manual_seed(0)
    net = NETS[name]()
    return ModelDenoiser(
        net, make_process("edm", sigma_data=SIGMA_DATA), prediction="edm", sigma_data=SIGMA_DATA
    )


def pad32(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (2, 2, 2, 2), value=-1.0)


def train(name: str, steps: int, batch: int, lr: float, warmup: int, run: str | None = None) -> None:
    out = ROOT / (run or name)
    out.mkdir(parents=True, exist_ok=True)
    images = pad32(load_dataset("mnist", "train").images)
    model = model_for(name)
    net = model.net
    opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ema = EMA(net, (0.999,))
    gen = torch.Generator().manual_seed(0)  # the same batches and noise for every network
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = denoising_loss(model, images[idx], t_dist="edm", weighting="edm", generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(net)
        losses.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            recent = sum(losses[-100:]) / len(losses[-100:])
            print(f"{name} step {step} loss {recent:.4f} {time.perf_counter() - t0:.0f}s", flush=True)
    ema.copy_to(net)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "ema.safetensors"))
    meta = {
        "net": name,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "seconds": time.perf_counter() - t0,
        "losses": losses,
    }
    (out / "train.json").write_text(json.dumps(meta))


@torch.no_grad()
def generate(name: str, folder: Path, n: int, batch: int = 250) -> torch.Tensor:
    model = model_for(name)
    model.net.load_state_dict(load_file(str(folder / "ema.safetensors")))
    model.net.eval()
    gen = torch.Generator().manual_seed(1234)  # the same prior noise for every network
    outs = []
    for _ in range(0, n, batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            res = sample(model, (batch, 1, 32, 32), sampler="heun", steps=12, grid="karras", generator=gen)
        outs.append(res.x.float().clamp(-1, 1)[:, :, 2:30, 2:30])
    return torch.cat(outs)[:n]


def report(n: int, n_real: int) -> None:
    cached = ROOT / f"real-features-{n_real}.safetensors"
    if cached.exists():
        feats = load_file(str(cached))
    else:
        real = load_split("mnist", "test")
        real = real[subset_indices(len(real), n_real, seed=0)]
        feats = {space: image_features(real, space, dataset="mnist") for space in ("classifier", "effnet")}
        save_file(feats, str(cached))
    print("| network | params (M) | train steps | final loss (last 200) | FD-mnist-classifier | FD-EffNet |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(ROOT.iterdir()):
        if not (folder / "ema.safetensors").exists():
            continue
        meta = json.loads((folder / "train.json").read_text())
        name = meta.get("net", folder.name)
        cached = folder / f"samples-{n}.safetensors"  # regenerated when the weights are newer
        if cached.exists() and cached.stat().st_mtime > (folder / "ema.safetensors").stat().st_mtime:
            x = load_file(str(cached))["x"]
        else:
            x = generate(name, folder, n)
            save_file({"x": x.contiguous()}, str(cached))
        params = sum(p.numel() for p in NETS[name]().parameters()) / 1e6
        fds = [
            frechet_distance(image_features(x, space, dataset="mnist"), feats[space])
            for space in ("classifier", "effnet")
        ]
        last = sum(meta["losses"][-200:]) / len(meta["losses"][-200:])
        row = f"| {folder.name} | {params:.3f} | {meta['steps']} | {last:.4f} | {fds[0]:.2f} | {fds[1]:.2f} |"
        print(row, flush=True)
        grid = x[:64].reshape(8, 8, 28, 28).permute(0, 2, 1, 3).reshape(8 * 28, 8 * 28)
        Image.fromarray(((grid + 1) * 127.5).round().byte().numpy()).save(folder / "samples.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train one network")
    tr.add_argument("--net", choices=sorted(NETS), required=True, help="which network")
    tr.add_argument("--steps", type=int, default=2000, help="training steps")
    tr.add_argument("--batch", type=int, default=64, help="batch size")
    tr.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    tr.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    tr.add_argument("--threads", type=int, default=1, help="torch threads")
    tr.add_argument("--run", help="folder name under runs/unet-quality (default: the network's name)")
    rp = sub.add_parser("report", help="FD of every trained network")
    rp.add_argument("--n", type=int, default=2000, help="generated images per network")
    rp.add_argument("--n-real", type=int, default=5000, help="MNIST test images for the reference")
    rp.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("Command: `python bench/unet_quality.py " + " ".join(argv or sys.argv[1:]) + "`")
    if args.cmd == "train":
        train(args.net, args.steps, args.batch, args.lr, args.warmup, args.run)
    else:
        report(args.n, args.n_real)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
