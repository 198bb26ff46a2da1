"""Text conditioning as a trainer extension: cached caption embeddings and the per-step condition.

The encoder and the condition format are in :mod:`hwaksan.conditioning.text`.

**Condition dropout** (classifier-free guidance, Ho & Salimans 2022) replaces a caption by the
**null embedding**, not by the empty caption: zero tokens with an all-False mask (so cross-attention
contributes exactly zero, see :class:`hwaksan.models.unet.MultiHeadAttention`) and a zero pooled
vector. The unconditional model of guidance is the network on that null condition
(:func:`null_cond`); a negative prompt replaces it by the prompt's embedding.

**Caption banks.** Training captions come from the data set (emoji: the Unicode names) or from the
class templates of :func:`hwaksan.data.images.class_captions` (MNIST, Fashion-MNIST: each image's
caption drawn per step among the templates of its class). Their embeddings are computed once and
cached under ``$XDG_CACHE_HOME/hwaksan/text/`` keyed by a hash of the captions, the encoder files and
``max_length``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..conditioning.text import TextEmbedding, TextEncoder, load_text_encoder
from ..data.images import ImageDataset, class_captions
from ..data.text import minilm_dir
from ..io.artifact import TextSpec
from ..io.checkpoint import load_tensors, save_tensors
from ..utils import mix_seed
from .config import Config, ConfigError
from .extension import Extension, RunContext, StepContext

__all__ = ["TextExtension", "caption_embeddings"]

# --------------------------------------------------------------------------------------------
# cached caption embeddings


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwaksan" / "text"


def caption_embeddings(
    captions: Sequence[str], encoder: TextEncoder, cache: bool = True, cache_dir: str | Path | None = None
) -> TextEmbedding:
    """Embeddings of ``captions`` (all padded to the longest), read from / written to a cache file.

    The key hashes the captions, the encoder's name, ``max_length`` and the weight file's size and
    modification time, so a changed caption list or encoder never reads stale vectors.
    """
    captions = list(captions)
    weights = minilm_dir() / "model.safetensors"
    st = weights.stat()
    h = hashlib.sha256()
    for part in (encoder.name, encoder.max_length, st.st_size, st.st_mtime_ns, len(captions)):
        h.update(f"{part}|".encode())
    for c in captions:
        h.update(c.encode("utf-8") + b"\0")
    path = Path(cache_dir) if cache_dir is not None else _cache_dir()
    path = path / f"{encoder.name}-L{encoder.max_length}-{h.hexdigest()[:16]}"
    if cache and path.with_suffix(".json").exists():
        try:
            t, _ = load_tensors(path)
            return TextEmbedding(t["context"], t["mask"].bool(), t["pooled"])
        except Exception:  # noqa: BLE001 - an unreadable cache is recomputed
            pass
    emb = encoder.encode(captions)
    if cache:
        try:
            save_tensors(
                path,
                {"context": emb.context, "mask": emb.mask.to(torch.uint8), "pooled": emb.pooled},
                {"kind": "hwaksan-caption-cache", "n": len(captions), "encoder": encoder.name},
            )
        except OSError:
            pass  # a read-only cache folder only costs the recomputation
    return emb


#: Random streams of the extension (the second part of ``mix_seed``).
_DROP_STREAM, _TEMPLATE_STREAM = 901, 902


class TextExtension(Extension):
    """Captions of a training set, their cached embeddings and the per-step condition
    ``{"context", "context_mask", "pooled"}`` (:mod:`hwaksan.conditioning.text`).

    Args:
        config: the experiment (``[text]`` and ``data.p_uncond``, ``train.seed``).
        encoder: a :class:`TextEncoder` (default: :func:`load_text_encoder`).

    After :meth:`prepare_data`, ``captions`` is the list of distinct training captions (the bank)
    and ``choices (N, T)`` holds the bank indices each image may take (one for captioned sets, one
    per template for labelled sets).
    """

    name = "text"

    def __init__(self, config: Config, encoder: TextEncoder | None = None) -> None:
        tc = config.text
        self.config = config
        self.encoder = encoder or load_text_encoder(tc.max_length, tc.encoder)
        self.dim = self.encoder.dim
        self.device = torch.device("cpu")
        self.num_classes = 0

    def prepare_data(self, data: ImageDataset) -> ImageDataset:
        mode = self.config.text.captions
        if mode == "auto":
            mode = "captions" if data.captions is not None else "templates"
        if mode == "captions":
            if data.captions is None:
                raise ConfigError(
                    f"text.captions = 'captions' but {data.name!r} has none; allowed: templates"
                )
            self.captions = list(dict.fromkeys(data.captions))
            lookup = {c: i for i, c in enumerate(self.captions)}
            self.choices = torch.tensor([[lookup[c]] for c in data.captions], dtype=torch.long)
        else:
            base = data.name.split(":")[0]
            if data.labels is None:
                raise ConfigError(f"text.captions = 'templates' needs class labels; {data.name!r} has none")
            try:
                table = class_captions(base)
            except ValueError as err:
                raise ConfigError(f"text.captions = 'templates': {err}") from None
            t = len(table[0])
            self.num_classes = len(table)
            self.captions = [c for row in table for c in row]
            self.choices = data.labels.long()[:, None] * t + torch.arange(t)[None]
        self.mode = mode
        self.bank = caption_embeddings(self.captions, self.encoder)
        return data

    def network_spec(self, spec: dict[str, Any], image_shape: tuple[int, ...]) -> dict[str, Any]:
        """``context_dim`` (cross-attention) and, with ``[text] pooled``, ``pooled_dim``."""
        if spec.get("arch") not in ("unet", "dit", "moe-dit"):
            raise ConfigError(
                "text conditioning needs a U-Net or DiT (cross-attention); model.preset gives "
                f"{spec.get('arch')!r}"
            )
        spec = dict(spec)
        if spec.setdefault("context_dim", self.dim) != self.dim:
            raise ConfigError(
                f"model.args.context_dim = {spec['context_dim']} but the text encoder gives {self.dim}"
            )
        if self.config.text.pooled:
            spec.setdefault("pooled_dim", self.dim)
        return spec

    def start(self, ctx: RunContext) -> None:
        self.device = ctx.device
        self.bank = self.bank.to(ctx.device)
        self.choices = self.choices.to(ctx.device)

    def batch_cond(self, cond: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Add the captions of this rank's images: caption ``j`` of the global batch picks its
        template and its dropout (probability ``data.p_uncond``; the null embedding, Ho & Salimans
        2022) from generators seeded by ``(train.seed, stream, step)``."""
        seed, total, positions = ctx.seed, ctx.batch_size, ctx.positions
        gen = torch.Generator().manual_seed(mix_seed(seed, _TEMPLATE_STREAM, ctx.step))
        pick = torch.randint(self.choices.shape[1], (total,), generator=gen)[positions].to(self.device)
        text = self.bank.select(self.choices[ctx.indices.to(self.device), pick]).cond()
        p = self.config.data.p_uncond
        if p > 0:
            gen = torch.Generator().manual_seed(mix_seed(seed, _DROP_STREAM, ctx.step))
            keep = (torch.rand(total, generator=gen)[positions] >= p).to(self.device)
            text = {
                "context": text["context"] * keep[:, None, None],
                "context_mask": text["context_mask"] & keep[:, None],
                "pooled": text["pooled"] * keep[:, None],
            }
        return {**cond, **text}

    def grid_captions(self, n: int) -> list[str]:
        """Captions of the sample grids written during training: for templates, the first
        template of class ``i % K``; otherwise the bank's caption ``i * len(bank) // n``."""
        if self.mode == "templates":
            t = self.choices.shape[1]
            return [self.captions[(i % self.num_classes) * t] for i in range(n)]
        return [self.captions[(i * len(self.captions)) // n] for i in range(n)]

    def sample_cond(self, cond: dict[str, Any], n: int, ctx: RunContext) -> dict[str, Any]:
        """Add the embeddings of :meth:`grid_captions` (from the bank)."""
        lookup = {c: i for i, c in enumerate(self.captions)}
        index = torch.tensor([lookup[c] for c in self.grid_captions(n)], device=self.device)
        return {**cond, **self.bank.select(index).cond()}

    def metadata(self) -> dict[str, Any]:
        """The prompt encoder's spec, to rebuild it at sampling time."""
        spec = TextSpec(
            encoder=self.encoder.name,
            max_length=self.encoder.max_length,
            dim=self.dim,
            captions=self.mode,
            pooled=bool(self.config.text.pooled),
            null="zeros",
        )
        return {"text": spec}
