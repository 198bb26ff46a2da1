"""Confirm the Fashion-MNIST held-out-phrasing accuracy at the chosen weight with fresh seeds.

``bench/latent_fashion_text.py`` picks the guidance weight on seeds 0..12; this re-draws the same 520
(phrasing, class) cells with seeds 1000..1012 at that weight and reports overall and per-class accuracy.

    python bench/latent_fashion_confirm.py    # writes runs/latent/fashion-confirm.json
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latent_fashion_text import generate, text_encoder  # noqa: E402

from hwaksan.data.images import class_captions  # noqa: E402
from hwaksan.evaluation import class_accuracy  # noqa: E402
from hwaksan.io.artifact import load_trained  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/latent/fashion-text", help="run folder or checkpoint")
    ap.add_argument("--guidance", type=float, default=3.0, help="CFG weight (default 3)")
    ap.add_argument("--out", default="runs/latent/fashion-confirm.json", help="JSON results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_trained(args.run)  # a run folder's newest checkpoint, EMA 0
    enc = text_encoder(model)
    caps, labels, seeds = [], [], []
    for k, row in enumerate(class_captions("fashion", held_out=True)):
        for phrase in row:
            for j in range(13):
                caps.append(phrase)
                labels.append(k)
                seeds.append(1000 + j)
    y = torch.tensor(labels)
    x = generate(model, enc, caps, (y, seeds), args.guidance, "dpmpp_2m", 10)
    acc = class_accuracy(x, y, "fashion")
    per_class = {k: class_accuracy(x[y == k], y[y == k], "fashion") for k in range(10)}
    out = {"checkpoint": str(model.path), "guidance": args.guidance, "seeds": "1000..1012", "n": len(caps),
           "accuracy": acc, "per_class": per_class}  # fmt: skip
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
