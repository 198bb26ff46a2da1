"""Pixel-space vs latent-space text-to-image diffusion on emoji 32x32 (docs/benchmarks-latent.md).

Two checkpoints trained with the same captions, process, objective, optimiser, batch and time budget
(``configs/emoji-pixel.toml`` and ``configs/emoji-ldm.toml``) are compared on

- FD-EffNet (:mod:`hwaksan.evaluation`) of ``--n`` samples, one per training caption (the first
  ``n`` of a fixed permutation, same captions and seeds for both), against all training images;
  and, as the floor of the latent route, the FD of the autoencoder's reconstructions of the same
  training images;
- sampling time per image (same sampler and steps; the latent model's time includes decoding, the
  text encoding of the captions is done before the clock starts for both): wall and process CPU
  time of ``--timing-batch`` images, best of ``--repeats``;
- training: steps, images seen, CPU and wall time from each run's ``budget.json``
  (``bench/latent_train_budget.py``), else from its ``metrics.jsonl``.

    python bench/latent_vs_pixel.py --pixel runs/latent/emoji-pixel --latent runs/latent/emoji-ldm \
        --out runs/latent/compare.json --grid docs/img/latent-vs-pixel.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from hwaksan.conditioning.text import load_text_encoder, null_cond
from hwaksan.data.images import load_dataset
from hwaksan.evaluation import frechet_distance, image_features
from hwaksan.guidance import ClassifierFreeGuidance
from hwaksan.io.artifact import TrainedModel, load_trained
from hwaksan.plotting import save_image_grid


def text_encoder(model: TrainedModel):
    """The prompt encoder the text-conditional ``model`` was trained with."""
    if model.text is None:
        raise SystemExit(f"{model.path} is not a text-conditional model")
    return load_text_encoder(model.text.max_length, model.text.encoder)


def generate(model: TrainedModel, captions, *, seed, guidance, sampler, steps, batch, progress=True):
    """Images ``(N, 3, 32, 32)`` for ``captions`` (image i: seed ``seed + i``)."""
    enc = text_encoder(model)
    out = []
    for start in range(0, len(captions), batch):
        part = captions[start : start + batch]
        cond = enc.cond(part)
        gens = [torch.Generator().manual_seed(seed + start + i) for i in range(len(part))]
        out.append(draw(model, cond, gens, guidance, sampler, steps))
        if progress:
            print(f"  {start + len(part)}/{len(captions)}", file=sys.stderr, end="\r")
    return torch.cat(out)


@torch.no_grad()
def draw(model: TrainedModel, cond, gens, guidance, sampler, steps):
    """Sample in the model's data space and decode (the autoencoder of a latent model; a reshape of
    a pixel model), clamped to [-1, 1]."""
    den = model.denoiser
    if guidance != 1.0:
        den = ClassifierFreeGuidance(den, guidance, uncond=null_cond(1, 1, cond["context"].shape[-1]))
    x = model.sample(len(gens), denoiser=den, sampler=sampler, steps=steps, cond=cond, generator=gens).x
    return x.clamp(-1, 1)


def timing(model: TrainedModel, captions, *, guidance, sampler, steps, repeats):
    enc = text_encoder(model)
    cond = enc.cond(captions)
    best_wall = best_cpu = float("inf")
    for r in range(repeats):
        gens = [torch.Generator().manual_seed(10_000 + r * 1000 + i) for i in range(len(captions))]
        w0, c0 = time.perf_counter(), time.process_time()
        draw(model, cond, gens, guidance, sampler, steps)
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    n = len(captions)
    return {"wall_ms_per_image": 1000 * best_wall / n, "cpu_ms_per_image": 1000 * best_cpu / n}


def training_stats(run: str) -> dict:
    """The run's ``budget.json`` (bench/latent_train_budget.py), else totals from ``metrics.jsonl``."""
    folder = Path(run)
    if (folder / "budget.json").exists():
        return json.loads((folder / "budget.json").read_text())
    recs = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()]
    cfg = json.loads((folder / "config.json").read_text())
    last = recs[-1]
    return {
        "steps": last["step"],
        "images_seen": last["step"] * cfg["train"]["batch_size"],
        "wall_s": last["elapsed_s"],
        "images_per_s": last["step"] * cfg["train"]["batch_size"] / last["elapsed_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pixel", default="runs/latent/emoji-pixel", help="pixel-space run folder")
    ap.add_argument("--latent", default="runs/latent/emoji-ldm", help="latent-space run folder")
    ap.add_argument(
        "--n", type=int, default=1263, help="samples per model for the FD (default: every caption)"
    )
    ap.add_argument("--sampler", default="dpmpp_2m", help="sampler (default dpmpp_2m)")
    ap.add_argument("--steps", type=int, default=12, help="sampler steps (default 12)")
    ap.add_argument("--guidance", type=float, default=1.0, help="CFG weight (default 1: none)")
    ap.add_argument("--batch", type=int, default=128, help="images per sampling batch")
    ap.add_argument("--timing-batch", type=int, default=64, help="images in the timed batch")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats (best is kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default="runs/latent/compare.json", help="JSON results")
    ap.add_argument("--grid", default=None, help="PNG: captions in columns, pixel row over latent row")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset("emoji", "train", 32)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: args.n]
    captions = [data.captions[i] for i in perm.tolist()]
    real = image_features(data.images, "effnet")
    results = {"n": args.n, "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance}
    samples = {}
    for name, run in (("pixel", args.pixel), ("latent", args.latent)):
        model = load_trained(run)  # the newest checkpoint of the run folder, EMA 0
        path, shape = model.path, model.data_shape
        print(f"{name}: {path} (data shape {shape})", file=sys.stderr)
        t = timing(model, captions[: args.timing_batch], guidance=args.guidance,
                   sampler=args.sampler, steps=args.steps, repeats=args.repeats)  # fmt: skip
        x = generate(model, captions, seed=0, guidance=args.guidance,
                     sampler=args.sampler, steps=args.steps, batch=args.batch)  # fmt: skip
        samples[name] = x
        fd = frechet_distance(image_features(x, "effnet"), real, warn=False)
        results[name] = {"checkpoint": str(path), "fd_effnet": fd, **t, "train": training_stats(run)}
        if model.is_latent:
            with torch.no_grad():
                rec = torch.cat([model.decode(model.encode(c)) for c in data.images.split(256)])
            results[name]["fd_effnet_vae_reconstructions"] = frechet_distance(
                image_features(rec, "effnet"), real, warn=False
            )
        print(json.dumps({name: results[name]}, indent=1), file=sys.stderr)
    p, lat = results["pixel"], results["latent"]
    results["sampling_speedup_wall"] = p["wall_ms_per_image"] / lat["wall_ms_per_image"]
    results["sampling_speedup_cpu"] = p["cpu_ms_per_image"] / lat["cpu_ms_per_image"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    if args.grid:
        k = 12
        grid = torch.cat([samples["pixel"][:k], samples["latent"][:k]])
        save_image_grid(grid, args.grid, nrow=k, scale=3)
        (Path(args.grid).with_suffix(".txt")).write_text("\n".join(captions[:k]) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}" + (f" and {args.grid}" if args.grid else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
