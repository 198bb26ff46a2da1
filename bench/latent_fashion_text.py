"""Text-to-image on Fashion-MNIST: class accuracy of samples from held-out phrasings.

A text-conditional U-Net (``configs/fashion-text.toml``) learned the six training templates per class
("a photo of a sneaker", ...). Here it is sampled from the four *held-out* templates of
:data:`hwaksan.data.images.HELD_OUT_TEMPLATES` ("a catalogue picture of a sneaker", ...), never seen
in training, and from the training templates for comparison, at several classifier-free guidance
weights; the data-set classifier of :mod:`hwaksan.evaluation` (trained on Fashion-MNIST, cached)
names the class of every sample. Image ``j`` of a (phrasing, class) cell uses seed ``j``.

    python bench/latent_fashion_text.py --run runs/latent/fashion-text --per-cell 13 \
        --guidance 1 2 3 4 --out runs/latent/fashion-text.json --grid docs/img/latent-fashion-heldout.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from hwaksan.conditioning.text import load_text_encoder, null_cond
from hwaksan.data.images import CAPTION_TEMPLATES, HELD_OUT_TEMPLATES, class_captions
from hwaksan.evaluation import class_accuracy
from hwaksan.guidance import ClassifierFreeGuidance
from hwaksan.io.artifact import TrainedModel, load_trained
from hwaksan.plotting import save_image_grid


def text_encoder(model: TrainedModel):
    """The prompt encoder the text-conditional ``model`` was trained with."""
    if model.text is None:
        raise SystemExit(f"{model.path} is not a text-conditional model")
    return load_text_encoder(model.text.max_length, model.text.encoder)


@torch.no_grad()
def generate(model: TrainedModel, enc, captions, labels, w, sampler, steps, batch=200):
    """Decoded samples of ``model`` for ``captions`` (image i: seed ``labels[1][i]``), CFG weight ``w``."""
    out = []
    for s in range(0, len(captions), batch):
        part = captions[s : s + batch]
        cond = enc.cond(part)
        den = None if w == 1.0 else ClassifierFreeGuidance(model.denoiser, w, uncond=null_cond(1, 1, enc.dim))
        gens = [torch.Generator().manual_seed(int(j)) for j in labels[1][s : s + batch]]
        out.append(
            model.sample(len(part), denoiser=den, sampler=sampler, steps=steps, cond=cond, generator=gens).x
        )
    return torch.cat(out).clamp(-1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/latent/fashion-text", help="run folder or checkpoint")
    ap.add_argument("--per-cell", type=int, default=13, help="samples per (phrasing, class)")
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0], help="CFG weights")
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--train-phrasings", action="store_true", help="also score the training templates")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/latent/fashion-text.json")
    ap.add_argument("--grid", default=None, help="PNG of held-out samples at the best weight")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = load_trained(args.run)  # a run folder's newest checkpoint, EMA 0
    path = model.path
    enc = text_encoder(model)
    sets = {"held_out": (class_captions("fashion", held_out=True), HELD_OUT_TEMPLATES["fashion"])}
    if args.train_phrasings:
        sets["training"] = (class_captions("fashion"), CAPTION_TEMPLATES["fashion"])
    results = {"checkpoint": str(path), "sampler": args.sampler, "steps": args.steps, "rows": []}
    best = None
    for name, (table, templates) in sets.items():
        caps, labels, seeds, which = [], [], [], []
        for k, row in enumerate(table):
            for p, phrase in enumerate(row):
                for j in range(args.per_cell):
                    caps.append(phrase)
                    labels.append(k)
                    seeds.append(j)
                    which.append(p)
        y = torch.tensor(labels)
        for w in args.guidance:
            t0 = time.perf_counter()
            x = generate(model, enc, caps, (y, seeds), w, args.sampler, args.steps)
            acc = class_accuracy(x, y, "fashion")
            per_phrase = {}
            for p, template in enumerate(templates):
                sel = torch.tensor([i for i, q in enumerate(which) if q == p])
                per_phrase[template] = class_accuracy(x[sel], y[sel], "fashion")
            row = {"phrasings": name, "guidance": w, "n": len(caps), "accuracy": acc,
                   "per_phrasing": per_phrase, "seconds": time.perf_counter() - t0}  # fmt: skip
            results["rows"].append(row)
            print(json.dumps(row), file=sys.stderr)
            if name == "held_out" and (best is None or acc > best[0]):
                best = (acc, w, x, seeds)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    if args.grid and best is not None:
        acc, w, x, seeds = best
        pick = [i for i in range(len(x)) if seeds[i] < 2]  # per class: 2 seeds x each held-out phrasing
        save_image_grid(x[torch.tensor(pick)], args.grid, nrow=2 * len(sets["held_out"][1]), scale=3)
        print(f"grid at w={w:g} (held-out accuracy {acc:.3f}): {args.grid}", file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
