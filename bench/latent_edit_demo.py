"""Inpainting and SDEdit with a latent text-to-image model, through ``TrainedModel.apply``.

Held-out emoji (the ``val`` split, never trained on) are encoded; RePaint fills their right half
in latent space (the pixel mask min-pooled to the 8x8 latent grid) under their own caption, and
SDEdit re-draws them at strength 0.6 under another caption. Rows: original, masked input,
inpainted, SDEdit result; the captions are printed.

    python bench/latent_edit_demo.py --run runs/latent/emoji-ldm --out docs/img/latent-edit.png
"""

from __future__ import annotations

import argparse
import sys

import torch

from hwaksan.conditioning.text import load_text_encoder, null_cond
from hwaksan.data.images import load_dataset
from hwaksan.guidance import ClassifierFreeGuidance
from hwaksan.io.artifact import load_trained
from hwaksan.plotting import save_image_grid
from hwaksan.tasks.edit import sdedit
from hwaksan.tasks.inpaint import inpaint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/latent/emoji-ldm")
    ap.add_argument("--n", type=int, default=8, help="held-out emoji")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--edit-prompt", default="red apple", help="caption of the SDEdit row")
    ap.add_argument("--strength", type=float, default=0.6)
    ap.add_argument("--out", default="docs/img/latent-edit.png")
    args = ap.parse_args()
    torch.set_num_threads(1)

    model = load_trained(args.run)  # a run folder's newest checkpoint, EMA 0
    if not model.is_latent or model.text is None:
        raise SystemExit(f"{model.path} is not a latent text-to-image model")
    enc = load_text_encoder(model.text.max_length, model.text.encoder)
    guided = ClassifierFreeGuidance(model.denoiser, args.guidance, uncond=null_cond(1, 1, enc.dim))
    val = load_dataset("emoji", "val", 32)
    pick = torch.linspace(0, len(val) - 1, args.n).long()
    x = val.images[pick]
    captions = [val.captions[i] for i in pick.tolist()]
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 16:] = 0  # the right half is unknown
    gens = [torch.Generator().manual_seed(i) for i in range(args.n)]
    with torch.no_grad():
        filled = model.apply(inpaint, x, mask=mask, denoiser=guided, sampler="ddpm", steps=50, jump=5,
                             resample=3, cond=enc.cond(captions), generator=gens).x  # fmt: skip
        gens = [torch.Generator().manual_seed(i) for i in range(args.n)]
        edited = model.apply(sdedit, x, args.strength, denoiser=guided, steps=18,
                             cond=enc.cond([args.edit_prompt] * args.n), generator=gens).x  # fmt: skip
    masked = x * mask + (1 - mask) * 0.0
    save_image_grid(torch.cat([x, masked, filled, edited]), args.out, nrow=args.n, scale=3)
    print(f"wrote {args.out}: rows original / masked / inpainted (own caption) / SDEdit s={args.strength} "
          f"to {args.edit_prompt!r}; captions: {captions}", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
