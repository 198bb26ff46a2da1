"""A grid of emoji prompts from a text-to-image checkpoint, labelled, for the README.

One column per prompt, one row per seed (image ``(row, column)`` uses seed ``row``); a prompt that
is not one of the training captions is marked with ``*`` (held-out emoji names of the ``val`` split,
or free phrasings). Sampling: classifier-free guidance against the null caption.

    python bench/latent_emoji_prompts.py --run runs/latent/emoji-ldm --guidance 3 \
        --out docs/img/latent-emoji-prompts.png
"""

from __future__ import annotations

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from hwaksan.conditioning.text import load_text_encoder, null_cond  # noqa: E402
from hwaksan.data.images import load_dataset  # noqa: E402
from hwaksan.guidance import ClassifierFreeGuidance  # noqa: E402
from hwaksan.io.artifact import load_trained  # noqa: E402

PROMPTS = [
    "red apple",
    "fox face",
    "snowman",
    "rocket",
    "sunflower",
    "pizza",
    "red heart",
    "green apple",
    "a yellow star",
    "a happy face",
    "a red car",
    "a blue fish",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/latent/emoji-ldm", help="run folder or checkpoint")
    ap.add_argument("--prompts", nargs="+", default=PROMPTS, help="one column each")
    ap.add_argument("--seeds", type=int, default=4, help="rows (seeds 0..N-1)")
    ap.add_argument("--guidance", type=float, default=3.0, help="CFG weight")
    ap.add_argument("--sampler", default="heun")
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--out", default="docs/img/latent-emoji-prompts.png")
    args = ap.parse_args()
    torch.set_num_threads(1)

    model = load_trained(args.run)  # a run folder's newest checkpoint, EMA 0
    path = model.path
    if model.text is None:
        raise SystemExit(f"{path} is not a text-conditional model")
    enc = load_text_encoder(model.text.max_length, model.text.encoder)
    den = ClassifierFreeGuidance(model.denoiser, args.guidance, uncond=null_cond(1, 1, enc.dim))
    train_captions = set(load_dataset("emoji", "train", 32).captions)
    p, r = len(args.prompts), args.seeds
    texts = [args.prompts[i % p] for i in range(p * r)]  # row-major: row = seed
    gens = [torch.Generator().manual_seed(i // p) for i in range(p * r)]
    with torch.no_grad():  # sampled in the data space (latents or pixels), then decoded
        x = model.sample(
            p * r, denoiser=den, sampler=args.sampler, steps=args.steps, cond=enc.cond(texts), generator=gens
        ).x.clamp(-1, 1)
    imgs = ((x + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    fig, axes = plt.subplots(r, p, figsize=(1.15 * p, 1.2 * r + 0.5))
    for i, ax in enumerate(axes.flat):
        ax.imshow(imgs[i], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if i < p:
            label = args.prompts[i] + ("" if args.prompts[i] in train_captions else " *")
            ax.set_title(label, fontsize=7)
    fig.suptitle(
        f"hwaksan latent diffusion on emoji 32x32, CFG w={args.guidance:g} (* = not a training caption)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    novel = [q for q in args.prompts if q not in train_captions]
    print(f"wrote {args.out} from {path}; prompts not in the training captions: {novel}", file=sys.stderr)


if __name__ == "__main__":
    main()
