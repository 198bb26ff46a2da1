"""Training with text conditions: cached caption embeddings and the per-step condition.

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
from typing import TYPE_CHECKING, Any

import torch

from ..conditioning.text import TextEmbedding, TextEncoder, load_text_encoder
from ..data.images import ImageDataset, class_captions
from ..data.text import minilm_dir
from .config import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config

__all__ = [
    "TextConditioning",
    "caption_embeddings",
    "text_network_spec",
]

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
    from ..io.checkpoint import load_tensors, save_tensors

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


#: Random streams of the trainer hook (the second part of ``mix_seed``).
_DROP_STREAM, _TEMPLATE_STREAM = 901, 902


# --------------------------------------------------------------------------------------------
# the trainer hook


def text_network_spec(config: Config, spec: dict[str, Any], dim: int) -> dict[str, Any]:
    """Network arguments for text conditioning: ``context_dim`` and (``[text] pooled``) ``pooled_dim``."""
    if spec.get("arch") not in ("unet", "dit", "moe-dit"):
        raise ConfigError(
            "text conditioning needs a U-Net or DiT (cross-attention); model.preset gives "
            f"{spec.get('arch')!r}"
        )
    spec = dict(spec)
    if spec.setdefault("context_dim", dim) != dim:
        raise ConfigError(f"model.args.context_dim = {spec['context_dim']} but the text encoder gives {dim}")
    if config.text.pooled:
        spec.setdefault("pooled_dim", dim)
    return spec


class TextConditioning:
    """Captions of a training set, their cached embeddings and the per-step condition.

    Args:
        config: the experiment (``[text]`` and ``data.p_uncond``, ``train.seed``).
        data: the training set: captions (``data.captions``) or class labels with templates.
        device: where conditions are built.
        encoder: a :class:`TextEncoder` (default: :func:`load_text_encoder`).

    ``captions`` is the list of distinct training captions (the bank); ``choices (N, T)`` holds the
    bank indices each image may take (one for captioned sets, one per template for labelled sets).
    """

    def __init__(
        self,
        config: Config,
        data: ImageDataset,
        device: torch.device | str = "cpu",
        encoder: TextEncoder | None = None,
    ) -> None:
        tc = config.text
        self.config = config
        self.device = torch.device(device)
        self.encoder = encoder or load_text_encoder(tc.max_length, tc.encoder)
        self.dim = self.encoder.dim
        mode = tc.captions
        self.num_classes = 0
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
        self.bank = caption_embeddings(self.captions, self.encoder).to(self.device)
        self.choices = self.choices.to(self.device)

    def batch_cond(self, step: int, index: torch.Tensor, positions: slice) -> dict[str, torch.Tensor]:
        """The condition of this rank's batch: images ``index (b,)`` at global-batch ``positions``.

        Caption ``j`` of the global batch picks its template and its dropout (probability
        ``data.p_uncond``) from generators seeded by ``(train.seed, stream, step)``.
        """
        from ..utils import mix_seed

        seed, total = self.config.train.seed, self.config.train.batch_size
        gen = torch.Generator().manual_seed(mix_seed(seed, _TEMPLATE_STREAM, step))
        pick = torch.randint(self.choices.shape[1], (total,), generator=gen)[positions].to(self.device)
        bank_idx = self.choices[index, pick]
        cond = self.bank.select(bank_idx).cond()
        p = self.config.data.p_uncond
        if p > 0:
            gen = torch.Generator().manual_seed(mix_seed(seed, _DROP_STREAM, step))
            keep = (torch.rand(total, generator=gen)[positions] >= p).to(self.device)
            cond = {
                "context": cond["context"] * keep[:, None, None],
                "context_mask": cond["context_mask"] & keep[:, None],
                "pooled": cond["pooled"] * keep[:, None],
            }
        return cond

    def grid_captions(self, n: int) -> list[str]:
        """Captions of the sample grids written during training: for templates, the first
        template of class ``i % K``; otherwise the bank's caption ``i * len(bank) // n``."""
        if self.mode == "templates":
            t = self.choices.shape[1]
            return [self.captions[(i % self.num_classes) * t] for i in range(n)]
        return [self.captions[(i * len(self.captions)) // n] for i in range(n)]

    def grid_cond(self, n: int) -> dict[str, torch.Tensor]:
        """The condition of :meth:`grid_captions` (from the bank, on the trainer's device)."""
        lookup = {c: i for i, c in enumerate(self.captions)}
        index = torch.tensor([lookup[c] for c in self.grid_captions(n)], device=self.device)
        return self.bank.select(index).cond()

    def meta(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild the encoder at sampling time."""
        return {
            "encoder": self.encoder.name,
            "max_length": self.encoder.max_length,
            "dim": self.dim,
            "captions": self.mode,
            "null": "zeros",
            "pooled": bool(self.config.text.pooled),
        }
