"""Confirm the Fashion-MNIST held-out-phrasing accuracy at the chosen weight with fresh seeds (issue 9).

``bench/latent_fashion_text.py`` picks the guidance weight on seeds 0..12; this re-draws the same 520
(phrasing, class) cells with seeds 1000..1012 at that weight and reports overall and per-class accuracy.

    python bench/latent_fashion_confirm.py    # writes runs/latent/fashion-confirm.json
"""

import json
import sys

import torch

sys.path.insert(0, "bench")
from latent_fashion_text import generate  # noqa: E402

from hwaksan.conditioning.text import load_text_encoder  # noqa: E402
from hwaksan.data.images import class_captions  # noqa: E402
from hwaksan.evaluation import class_accuracy  # noqa: E402
from hwaksan.io.checkpoint import (
    load_model,  # noqa: E402
    resolve_checkpoint,  # noqa: E402
)

torch.set_num_threads(1)
path = resolve_checkpoint("runs/latent/fashion-text")
model, meta = load_model(path)
enc = load_text_encoder(meta["text"]["max_length"], meta["text"]["encoder"])
caps, labels, seeds = [], [], []
for k, row in enumerate(class_captions("fashion", held_out=True)):
    for phrase in row:
        for j in range(13):
            caps.append(phrase)
            labels.append(k)
            seeds.append(1000 + j)
y = torch.tensor(labels)
x = generate(model, enc, caps, (y, seeds), tuple(meta["data_shape"]), 3.0, "dpmpp_2m", 10)
acc = class_accuracy(x, y, "fashion")
per_class = {k: class_accuracy(x[y == k], y[y == k], "fashion") for k in range(10)}
out = {"checkpoint": str(path), "guidance": 3.0, "seeds": "1000..1012", "n": len(caps), "accuracy": acc,
       "per_class": per_class}  # fmt: skip
with open("runs/latent/fashion-confirm.json", "w") as f:
    json.dump(out, f, indent=1)
print(json.dumps(out))
